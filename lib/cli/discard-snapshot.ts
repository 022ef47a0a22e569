/**
 * `replicalog discard-snapshot <dir> [--dry-run] [--json]`: rebuilds a cluster member whose
 * stored snapshot cannot be restored (the node refuses to start and names this command).
 *
 * Snapshots are validated before they are saved, so this is damage on disk (or a snapshot from
 * an older version). The log cannot rebuild what the snapshot replaced; the other members can.
 * The command:
 *   1. opens the store and restores its snapshot into a scratch state machine: if that works,
 *      it refuses (exit 1, ERR_SNAPSHOT_OK) and changes nothing: a store that is fine is never
 *      discarded;
 *   2. builds a fresh store beside it, `<dir>.rebuilding-<UTC time>`, holding the configuration
 *      (conf state) and the term and vote of the old one, with an empty log and commit 0.
 *      Keeping term and vote matters: a member that forgot its vote could vote twice in one
 *      term and help elect two leaders;
 *   3. takes the directory's lock (a node starting meanwhile makes it stop with ERR_LOCKED),
 *      renames the directory aside, `<dir>.discarded-<UTC time>` (nothing is deleted), renames
 *      the fresh store to `<dir>`, and fsyncs the parent directory. A crash in between leaves
 *      `<dir>` either the old store or the complete new one (or absent, with both beside it),
 *      never a half-built store.
 * Started again as before (same flags, no --bootstrap needed), the node does not campaign with
 * an empty log; the leader sends it a snapshot and it catches up. This relies on the other
 * members holding every committed entry (a majority of healthy replicas): rebuild one damaged
 * replica at a time.
 */
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { DirectoryLock } from '../lock.js';
import { KvStateMachine } from '../node/state-machine.js';
import { ReplicaLogStore } from '../replica-log-store.js';
import type { ConfState, HardState } from '../types.js';
import { DataError, EXIT_OK, json, storeDirectory, type CliIo } from './io.js';

export interface DiscardSnapshotOptions {
  dryRun?: boolean;
  json?: boolean;
  /** For tests: the time that names the directory moved aside. */
  now?: Date;
}

async function fsyncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** What the damaged store holds that the rebuilt one keeps, and why its snapshot fails. */
interface Damage {
  index: number;
  problem: string;
  hardState: HardState;
  confState: ConfState;
}

async function examine(root: string): Promise<Damage> {
  const store = await ReplicaLogStore.open({ dir: root });
  try {
    const { hardState, confState } = store.initialState();
    if (store.status !== 'bootstrapped') {
      throw new DataError(`${root} has no hard state (it is not a running member's store): there is no snapshot to discard`, root, 'ERR_NOT_A_MEMBER');
    }
    const snapshot = store.snapshot();
    try {
      KvStateMachine.fromSnapshot(snapshot.data, snapshot.metadata.index);
    } catch (error) {
      return { index: snapshot.metadata.index, problem: (error as Error).message, hardState, confState };
    }
    throw new DataError(
      `the stored snapshot at index ${snapshot.metadata.index} restores fine: nothing to discard (this command only rebuilds a member whose snapshot cannot be restored)`,
      root,
      'ERR_SNAPSHOT_OK',
    );
  } finally {
    await store.close();
  }
}

export async function runDiscardSnapshot(dir: string, options: DiscardSnapshotOptions, io: CliIo): Promise<number> {
  const root = storeDirectory(dir);
  const damage = await examine(root);
  const members = [...damage.confState.voters, ...damage.confState.learners, ...damage.confState.votersOutgoing, ...damage.confState.learnersNext];
  if (members.length === 0) {
    throw new DataError(`${root} holds no configuration: a rebuilt member would not know its cluster; restore it from a peer's copy instead`, root, 'ERR_NO_CONFIGURATION');
  }
  const stamp = (options.now ?? new Date()).toISOString().replace(/[:.]/g, '-');
  const aside = join(dirname(root), `${basename(root)}.discarded-${stamp}`);
  const rebuilding = join(dirname(root), `${basename(root)}.rebuilding-${stamp}`);
  const keptHardState: HardState = { term: damage.hardState.term, vote: damage.hardState.vote, commit: 0 };
  const report = {
    dir: root,
    snapshotIndex: damage.index,
    problem: damage.problem,
    movedTo: aside,
    hardState: keptHardState,
    voters: damage.confState.voters,
    dryRun: options.dryRun === true,
  };
  if (options.dryRun !== true) {
    const fresh = await ReplicaLogStore.open({ dir: rebuilding });
    try {
      // As a joining member: the configuration as an index-0 snapshot (bootstrap.ts), then the
      // old term and vote with nothing committed.
      await fresh.applySnapshot({ metadata: { index: 0, term: 0, confState: damage.confState } });
      await fresh.setHardState(keptHardState);
    } finally {
      await fresh.close();
    }
    // The lock is taken again (examine released it with the store): a node started meanwhile
    // makes this throw ERR_LOCKED before anything moved. Held across the renames, it keeps
    // holding the old directory (the lock follows the inode), then is released.
    let lock: DirectoryLock;
    try {
      lock = await DirectoryLock.acquire(root);
    } catch (error) {
      await rm(rebuilding, { recursive: true, force: true });
      throw error;
    }
    try {
      await rename(root, aside);
      await rename(rebuilding, root);
      // Both names (in one directory) are durable once it is fsynced.
      await fsyncDirectory(dirname(root));
    } finally {
      await lock.release();
    }
  }
  if (options.json === true) {
    io.stdout(json(report));
    return EXIT_OK;
  }
  const verb = options.dryRun === true ? 'would move' : 'moved';
  io.stdout(
    [
      `${root}: the stored snapshot at index ${damage.index} cannot be restored (${damage.problem})`,
      `${verb} the damaged store aside to ${aside} (nothing is deleted)`,
      `${options.dryRun === true ? 'would create' : 'created'} a fresh store at ${root}: voters [${damage.confState.voters.join(',')}], term ${keptHardState.term}, vote ${keptHardState.vote}, empty log`,
      options.dryRun === true
        ? 'dry run: nothing was changed'
        : 'start the node again with the same flags: the leader sends it a snapshot and it catches up (the other members must hold the committed log)',
      '',
    ].join('\n'),
  );
  return EXIT_OK;
}
