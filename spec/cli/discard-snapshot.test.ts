/**
 * `replicalog discard-snapshot` (issue 14): a member whose stored snapshot cannot be restored
 * refuses to start and names the command; the command refuses a store that is fine (and a
 * locked one), changes nothing on a dry run, and otherwise moves the store aside and leaves a
 * store that rejoins its running cluster and catches up by snapshot, keeping term and vote.
 */
import { existsSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { main } from '../../lib/cli/main.js';
import type { CliIo } from '../../lib/cli/io.js';
import { bootstrapJoiningStore, bootstrapSeedStore } from '../../lib/node/bootstrap.js';
import { ReplicaNode } from '../../lib/node/node.js';
import { freePorts } from '../../lib/node/ports.js';
import { KvStateMachine } from '../../lib/node/state-machine.js';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import type { PeerAddress } from '../../lib/transport/index.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';
import { waitFor } from '../helpers/wait-for.js';

const nodes = new Map<number, ReplicaNode>();
afterAll(async () => {
  for (const node of nodes.values()) await node.close();
  removeTempDirs();
});

function capture(): { io: CliIo; stdout: () => string; stderr: () => string } {
  let out = '';
  let err = '';
  return {
    io: { stdout: (text) => void (out += text), stderr: (text) => void (err += text), progressStream: process.stderr, isTTY: false },
    stdout: () => out,
    stderr: () => err,
  };
}

it('refuses a store that is fine, rebuilds a damaged member that then rejoins, and keeps term and vote', async () => {
  const root = makeTempDir('replicalog-discard-');
  const ids = [1, 2, 3];
  const ports = await freePorts(3);
  const peers = new Map<number, PeerAddress>(ids.map((id, i) => [id, { host: '127.0.0.1', port: ports[i]! }]));
  const dirOf = (id: number) => join(root, `node-${id}`);
  const seed = await ReplicaLogStore.open({ dir: dirOf(1) });
  await bootstrapSeedStore(seed, ids, KvStateMachine.from([['seeded', 'yes']], 0));
  await seed.close();
  for (const id of [2, 3]) {
    const store = await ReplicaLogStore.open({ dir: dirOf(id) });
    await bootstrapJoiningStore(store, ids);
    await store.close();
  }
  const start = async (id: number) => {
    const node = await ReplicaNode.start({ id, dir: dirOf(id), peers, clusterId: 'discard-test', tickMs: 20, snapshotEvery: 10, keepEntries: 3, log: process.env.DEBUG_DISCARD ? (line) => console.log(`[${id}] ${line}`) : () => undefined });
    nodes.set(id, node);
    return node;
  };
  for (const id of ids) await start(id);
  const leader = await waitFor('a leader', () => [...nodes.values()].find((node) => node.isLeader));
  for (let i = 0; i < 25; i++) await leader.put(`key-${i}`, `value-${i}`);
  await waitFor('node 3 to apply everything', () => nodes.get(3)!.status().applied >= leader.status().applied);

  // A healthy (but running, hence locked) store, then a healthy stopped one: refused, unchanged.
  const locked = capture();
  expect(await main(['discard-snapshot', dirOf(3)], locked.io)).toBe(1);
  expect(locked.stderr()).toMatch(/ERR_LOCKED/);
  await nodes.get(3)!.close();
  nodes.delete(3);
  const fine = capture();
  expect(await main(['discard-snapshot', dirOf(3)], fine.io)).toBe(1);
  expect(fine.stderr()).toMatch(/snapshot at index \d+ restores fine: nothing to discard .*\[ERR_SNAPSHOT_OK\]/);
  expect(readdirSync(root).filter((name) => name.includes('discarded'))).toEqual([]);

  // Damage: a snapshot whose data is not state-machine data, as a bad disk could leave it.
  const damaged = await ReplicaLogStore.open({ dir: dirOf(3) });
  const last = damaged.lastIndex();
  await damaged.applySnapshot({ metadata: { index: last, term: damaged.term(last), confState: damaged.initialState().confState }, data: new Uint8Array([1, 2, 3, 4]) });
  const { term, vote } = damaged.initialState().hardState;
  await damaged.close();
  expect(term).toBeGreaterThan(0);
  await expect(start(3)).rejects.toThrow(/replicalog discard-snapshot .*node-3/);

  // A dry run says what it would do and changes nothing.
  const dry = capture();
  expect(await main(['discard-snapshot', dirOf(3), '--dry-run'], dry.io)).toBe(0);
  expect(dry.stdout()).toMatch(/cannot be restored[\s\S]*would move[\s\S]*dry run: nothing was changed/);
  expect(readdirSync(root).filter((name) => name.includes('discarded'))).toEqual([]);

  const run = capture();
  expect(await main(['discard-snapshot', dirOf(3), '--json'], run.io)).toBe(0);
  const report = JSON.parse(run.stdout()) as { movedTo: string; snapshotIndex: number; hardState: { term: number; vote: number; commit: number }; voters: number[] };
  expect(report).toMatchObject({ snapshotIndex: last, hardState: { term, vote, commit: 0 }, voters: [1, 2, 3] });
  expect(existsSync(join(report.movedTo, 'wal'))).toBe(true);
  // The fresh store was built beside it and renamed into place: nothing else is left.
  expect(readdirSync(root).filter((name) => name.startsWith('node-3')).sort()).toEqual(['node-3', basename(report.movedTo)].sort());
  const fresh = await ReplicaLogStore.open({ dir: dirOf(3) });
  expect(fresh.initialState().hardState).toEqual({ term, vote, commit: 0 });
  expect(fresh.initialState().confState.voters).toEqual([1, 2, 3]);
  expect(fresh.lastIndex()).toBe(0);
  await fresh.close();

  // Started again as before: it catches up from the leader, with everything.
  const rebuilt = await start(3);
  await leader.put('after-rebuild', 'yes');
  await waitFor('the rebuilt member to catch up', () => rebuilt.get('after-rebuild') === 'yes');
  expect(rebuilt.get('key-0')).toBe('value-0');
  expect(rebuilt.get('seeded')).toBe('yes');
  await waitFor('equal digests', () => new Set([...nodes.values()].map((node) => node.status().digest)).size === 1);

  // And now it is fine again: refused.
  await rebuilt.close();
  nodes.delete(3);
  const again = capture();
  expect(await main(['discard-snapshot', dirOf(3)], again.io)).toBe(1);
  expect(again.stderr()).toMatch(/ERR_SNAPSHOT_OK/);
}, 60_000);

it('explains itself with --help, and refuses a directory that is not a store (exit 2)', async () => {
  const help = capture();
  expect(await main(['discard-snapshot', '--help'], help.io)).toBe(0);
  expect(help.stdout()).toMatch(/Usage: replicalog discard-snapshot \[options\] <dir>[\s\S]*ERR_SNAPSHOT_OK[\s\S]*discarded-<UTC time>/);
  const empty = makeTempDir('replicalog-discard-empty-');
  const refused = capture();
  expect(await main(['discard-snapshot', empty], refused.io)).toBe(2);
  expect(refused.stderr()).toMatch(/not a replicalog or Gitaly state directory/);
  expect(readdirSync(empty)).toEqual([]);
});
