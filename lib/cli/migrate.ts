/**
 * `replicalog migrate <dir> [--dry-run] [--json]`: gives every entry of a pre-Raft WAL its RAFT
 * file through ReplicaLogStore.backfill() (never reimplemented here).
 *
 * --dry-run must not write anything, so it does not open the store (open creates directories,
 * takes the lock, empties staging/ and opens LevelDB, all writes): it scans the tree read-only
 * (lib/verify.ts) and predicts what the store would do — refuse (exit 1) on what open() refuses,
 * else list the entries backfill would write and the leftovers open would remove.
 */
import { readFile, statfs } from 'node:fs/promises';

import { join } from 'node:path';
import cliProgress from 'cli-progress';
import { decodeEntry } from '../codec.js';
import { ReplicaLogStore } from '../replica-log-store.js';
import { describeRootCause, ErrorCode, ReplicaLogError } from '../errors.js';
import { kvPath, RAFT_FILE, RAFT_TEMPORARY_FILE, stagingPath, walPath } from '../wal/layout.js';
import { backfillTerms, logExtent, mapBounded, ProblemCode, scanTree, verifyScan, type Finding, type Problem, type TreeScan } from '../verify.js';
import { writeAccessProblem } from '../write-access.js';
import { DataError, EXIT_DATA, EXIT_OK, formatErrorLine, json, storeDirectory, type CliIo } from './io.js';

/** A dry run's refusal: migrate could not write where it must (EROFS, EACCES, …). */
const NOT_WRITABLE = 'NOT_WRITABLE';
/** A dry run's refusal: the file system has no room for the RAFT files. */
const NOT_ENOUGH_SPACE = 'NOT_ENOUGH_SPACE';

/** RAFT files read back at once after a backfill (bounded: see runMigrate). */
const READ_BACK_CONCURRENCY = 32;

export interface MigrateCommandOptions {
  dryRun?: boolean;
  json?: boolean;
  /** No progress output. */
  quiet?: boolean;
  partitionId?: number;
}

export interface MigratedEntry {
  index: number;
  lsn: string;
  term: number;
  /** What was (or, in a dry run, would be) done. */
  action: 'write RAFT' | 'rewrite damaged RAFT';
}

/** What makes ReplicaLogStore.open refuse a tree (replica-log-store.ts recover; log-manager.ts listIndexes). */
function refusals(scan: TreeScan): Problem[] {
  const bootstrapped = scan.kv.hardState !== undefined;
  const damagedRaft = new Set<string>([ProblemCode.RaftEmpty, ProblemCode.RaftCorrupt, ProblemCode.RaftIndexMismatch]);
  return verifyScan(scan).problems.filter((problem) => {
    switch (problem.code) {
      case ProblemCode.StrayName:
        return problem.lsn === undefined; // a stray name in wal/ itself; inside an entry it is ignored
      case ProblemCode.Gap:
      case ProblemCode.NotADirectory:
      case ProblemCode.CommitAboveLast:
      case ProblemCode.KvCorrupt:
      case ProblemCode.KvUnreadable:
      case ProblemCode.SnapshotDataMissing:
      case ProblemCode.Unreadable:
        return true;
      case ProblemCode.NotAFile:
        return problem.path?.endsWith('/RAFT') === true; // open reads every RAFT file
      default:
        return bootstrapped && damagedRaft.has(problem.code);
    }
  });
}

function plannedEntries(scan: TreeScan): MigratedEntry[] {
  const extent = logExtent(scan);
  const terms = backfillTerms(scan, extent);
  return extent.pendingMigration.map((entry) => ({
    index: entry.index,
    lsn: entry.lsn,
    term: terms.get(entry.index) ?? 0,
    action: entry.raft.state === 'missing' ? 'write RAFT' : 'rewrite damaged RAFT',
  }));
}

function range(entries: readonly MigratedEntry[]): string {
  if (entries.length === 0) return '';
  return entries.length === 1 ? ` (${entries[0]!.lsn})` : ` (${entries[0]!.lsn}..${entries[entries.length - 1]!.lsn})`;
}

/**
 * What migrate would fail to write, asked of the kernel (access(2)): the store directory (lock,
 * kv/, staging/ are made there), wal/, kv/ and staging/ when they exist, and every entry
 * directory that gets a RAFT file. EROFS, EACCES, … name the reason. At most one finding per
 * kind of place, with a count for entry directories.
 */
async function writabilityRefusals(root: string, pending: readonly { path: string }[]): Promise<Finding<string>[]> {
  const refused: Finding<string>[] = [];
  const check = async (path: string, what: string) => {
    const denied = await writeAccessProblem(path);
    if (denied === undefined || denied.code === 'ENOENT') return false;
    refused.push({ code: NOT_WRITABLE, path, message: `cannot write to ${path} (${what}): ${describeRootCause(denied)}` });
    return true;
  };
  if (await check(root, 'the store directory: migrate takes its lock and creates kv/ and staging/ there')) return refused;
  await check(walPath(root), 'wal/');
  await check(kvPath(root), 'the KV database');
  await check(stagingPath(root), 'staging/');
  let denied = 0;
  let first: { path: string; error: NodeJS.ErrnoException } | undefined;
  await mapBounded(pending, 32, async (entry) => {
    const error = await writeAccessProblem(entry.path);
    if (error === undefined) return;
    denied++;
    if (first === undefined) first = { path: entry.path, error };
  });
  if (first !== undefined) {
    refused.push({
      code: NOT_WRITABLE,
      path: first.path,
      message: `cannot write to ${first.path}${denied > 1 ? ` and ${denied - 1} other entry director${denied === 2 ? 'y' : 'ies'}` : ''} (its RAFT file is written there): ${describeRootCause(first.error)}`,
    });
  }
  return refused;
}

/**
 * Advice that fits a refusal of open(): a damaged or incomplete log (a gap, a corrupt RAFT file
 * on a bootstrapped store, …) cannot be migrated or repaired in place, so say where the data
 * must come from instead. Same code, path and cause.
 */
function withAdvice(error: unknown, root: string): unknown {
  if (!(error instanceof ReplicaLogError) || error.code !== ErrorCode.Corrupt) return error;
  return new ReplicaLogError(
    ErrorCode.Corrupt,
    `${error.message}; a damaged log cannot be migrated or repaired in place: restore this replica from a peer (\`replicalog verify ${root}\` lists every problem)`,
    { path: error.path, index: error.index, cause: error },
  );
}

/**
 * Room for what migrate writes: one RAFT file per entry (a block and an inode each, plus its
 * temporary name) and the KV database and lock (a few MiB at most). ENOSPC before, not midway.
 */
async function spaceRefusals(root: string, pending: number): Promise<Finding<string>[]> {
  let stats;
  try {
    stats = await statfs(root);
  } catch {
    return []; // the writability check names what is wrong with the directory
  }
  const neededBytes = pending * stats.bsize + 4 * 1024 * 1024;
  const availableBytes = stats.bavail * stats.bsize;
  const neededInodes = pending + 64;
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  if (availableBytes < neededBytes) {
    return [{ code: NOT_ENOUGH_SPACE, path: root, message: `ENOSPC: migrate needs about ${mib(neededBytes)} on the file system of ${root}, ${mib(availableBytes)} is available` }];
  }
  // A file system without inode accounting (btrfs, some tmpfs) reports 0 files in total.
  if (stats.files > 0 && stats.ffree < neededInodes) {
    return [{ code: NOT_ENOUGH_SPACE, path: root, message: `ENOSPC: migrate needs about ${neededInodes} inodes on the file system of ${root}, ${stats.ffree} are free` }];
  }
  return [];
}

async function dryRun(root: string, options: MigrateCommandOptions, io: CliIo): Promise<number> {
  const scan = await scanTree(root, { partitionId: options.partitionId, readManifests: false });
  const extent = logExtent(scan);
  const refused: Finding<string>[] = refusals(scan);
  // A tree open would accept can still not be migrated here: a read-only mount, a directory
  // without write permission for this user.
  if (refused.length === 0) refused.push(...(await writabilityRefusals(root, extent.pendingMigration)));
  if (refused.length === 0) refused.push(...(await spaceRefusals(root, extent.pendingMigration.length)));
  const entries = refused.length === 0 ? plannedEntries(scan) : [];
  const removals = [
    ...scan.stagingLeftovers.map((name) => join(stagingPath(root), name)),
    ...extent.compactionLeftovers.map((entry) => entry.path),
    ...extent.retained.filter((entry) => entry.hasRaftTemporary).map((entry) => join(entry.path, RAFT_TEMPORARY_FILE)),
  ];
  if (options.json) {
    io.stdout(json({ dir: root, status: extent.status, backfilled: 0, wouldBackfill: entries.length, dryRun: true, refused, removals, entries }));
  } else if (refused.length > 0) {
    for (const problem of refused) io.stderr(formatErrorLine(new DataError(problem.message, problem.path, problem.code)) + '\n');
    const advice = refused.every((problem) => problem.code === NOT_WRITABLE)
      ? 'run it as the user that owns the store, on a writable mount'
      : refused.every((problem) => problem.code === NOT_ENOUGH_SPACE)
        ? 'free some space first'
        : 'see `replicalog verify`';
    io.stderr(`replicalog: ${root}: migration would be refused (${refused.length} problem${refused.length === 1 ? '' : 's'}; ${advice})\n`);
  } else {
    let text = `${root}: status ${extent.status}; dry run, nothing written\n`;
    text += entries.length === 0 ? 'nothing to migrate: every entry has a valid RAFT file\n' : `would backfill ${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}${range(entries)}:\n`;
    for (const entry of entries) text += `  ${entry.lsn}  index ${entry.index}  term ${entry.term}  ${entry.action}\n`;
    for (const path of removals) text += `would remove leftover ${path}\n`;
    io.stdout(text);
  }
  return refused.length > 0 ? EXIT_DATA : EXIT_OK;
}

/** Progress: a bar on a terminal, plain lines (every 1 %) otherwise, nothing with --json. */
function progressReporter(options: MigrateCommandOptions, io: CliIo): { update(done: number, total: number): void; stop(): void } {
  if (options.json || options.quiet) return { update() {}, stop() {} };
  if (io.isTTY) {
    let bar: cliProgress.SingleBar | undefined;
    // Ctrl-C while the bar is drawn: stop it (it restores line wrap and the cursor), then exit
    // as SIGINT would (130). The migration resumes where it stopped when run again.
    const onInterrupt = () => {
      bar?.stop();
      io.stderr('\nreplicalog migrate: interrupted; run it again to resume\n');
      process.exit(130);
    };
    return {
      update(done, total) {
        if (bar === undefined) {
          bar = new cliProgress.SingleBar(
            { stream: io.progressStream, format: 'migrate [{bar}] {percentage}% | {value}/{total} entries | ETA {eta_formatted}', hideCursor: false },
            cliProgress.Presets.shades_classic,
          );
          process.once('SIGINT', onInterrupt);
          bar.start(total, done);
        } else bar.update(done);
      },
      stop() {
        process.off('SIGINT', onInterrupt);
        bar?.stop();
      },
    };
  }
  let nextLine = 0;
  return {
    update(done, total) {
      if (done < nextLine && done !== total) return;
      io.stderr(`replicalog migrate: ${done}/${total} entries\n`);
      nextLine = done + Math.max(1, Math.floor(total / 100));
    },
    stop() {},
  };
}

export async function runMigrate(dir: string, options: MigrateCommandOptions, io: CliIo): Promise<number> {
  const root = storeDirectory(dir);
  if (options.dryRun) return dryRun(root, options, io);

  const started = process.hrtime.bigint();
  let store: ReplicaLogStore;
  try {
    store = await ReplicaLogStore.open({ dir: root, ...(options.partitionId !== undefined ? { partitionId: options.partitionId } : {}) });
  } catch (error) {
    throw withAdvice(error, root);
  }
  let entries: MigratedEntry[] = [];
  let backfilled = 0;
  let status: string;
  try {
    status = store.status;
    if (store.pendingBackfill > 0) {
      // Which entries backfill will write: the store holds the lock, so the tree cannot change
      // under us; the KV is not needed (open already removed what lies below the anchor).
      const scan = await scanTree(root, { readManifests: false, readKv: false });
      const pending = logExtent(scan).pendingMigration;
      const progress = progressReporter(options, io);
      try {
        ({ backfilled } = await store.backfill({ onProgress: (done, total) => progress.update(done, total) }));
      } finally {
        progress.stop();
      }
      // Report the terms actually written.
      // At most READ_BACK_CONCURRENCY files open at once: a Gitaly tree holds millions of
      // entries and a descriptor limit of 1,024 is normal.
      entries = await mapBounded(pending, READ_BACK_CONCURRENCY, async (entry): Promise<MigratedEntry> => {
        const written = decodeEntry(await readFile(join(entry.path, RAFT_FILE)));
        return { index: entry.index, lsn: entry.lsn, term: written.term, action: entry.raft.state === 'missing' ? 'write RAFT' : 'rewrite damaged RAFT' };
      });
    }
  } finally {
    await store.close();
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;

  if (options.json) {
    io.stdout(json({ dir: root, status, backfilled, dryRun: false, seconds: Math.round(seconds * 1000) / 1000, entries }));
  } else if (backfilled === 0) {
    io.stdout(`${root}: ${status === 'needs-backfill' ? 'migrated; Raft has not started yet' : `status ${status}`}; nothing to migrate: every entry has a valid RAFT file\n`);
  } else {
    const rate = Math.round(backfilled / Math.max(seconds, 1e-6));
    io.stdout(`${root}: ${status === 'needs-backfill' ? 'migrated; Raft has not started yet (it saves a hard state on its first start)' : `status ${status}`}; backfilled ${backfilled} entr${backfilled === 1 ? 'y' : 'ies'}${range(entries)} in ${seconds.toFixed(2)} s (${rate} entries/s)\n`);
  }
  return EXIT_OK;
}
