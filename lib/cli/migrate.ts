/**
 * `replicalog migrate <dir> [--dry-run] [--json] [--quiet]`: gives every entry of a pre-Raft WAL
 * its RAFT file through ReplicaLogStore.backfill() (never reimplemented here).
 *
 * --dry-run must not write anything, so it does not open the store (open creates directories,
 * takes the lock, empties staging/ and opens LevelDB, all writes): it walks the tree read-only
 * (lib/verify.ts) and predicts what the store would do — refuse (exit 1) on what open() refuses
 * or on what it could not write (EROFS, EACCES, no space), else list the entries backfill would
 * write and the leftovers open would remove.
 *
 * Scale: a Gitaly tree holds millions of entries and a descriptor limit of 1,024 is normal. The
 * tree is walked without keeping its entries, files are read at most CONCURRENCY at a time, the
 * entries to write are kept as 17 bytes each, and long lists (--json, the dry run's listing)
 * are written out a chunk at a time.
 */
import { readFile, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeEntry } from '../codec.js';
import { describeRootCause, ErrorCode, ReplicaLogError } from '../errors.js';
import { ReplicaLogStore } from '../replica-log-store.js';
import { BackfillTerms, mapBounded, ProblemCode, verifyWalk, walkTree, type Finding, type Problem, type TreeScan } from '../verify.js';
import { entryPath, formatLsn, kvPath, RAFT_FILE, RAFT_TEMPORARY_FILE, stagingPath, walPath } from '../wal/layout.js';
import { writeAccessProblem } from '../write-access.js';
import { DataError, EXIT_DATA, EXIT_OK, formatErrorLine, storeDirectory, type CliIo } from './io.js';
import { createProgress, entries as entriesText, plural, scanProgress } from './progress.js';

/** A dry run's refusal: migrate could not write where it must (EROFS, EACCES, …). */
export const NOT_WRITABLE = 'NOT_WRITABLE';
/** A dry run's refusal: the file system has no room for the RAFT files. */
export const NOT_ENOUGH_SPACE = 'NOT_ENOUGH_SPACE';

/** Files read (or checked) at once: bounded, whatever the size of the tree. */
const CONCURRENCY = 32;
/** Entries handled per step when reading back or writing out a long list. */
const CHUNK = 1024;

export interface MigrateCommandOptions {
  dryRun?: boolean;
  json?: boolean;
  /** No progress output (--quiet, --no-progress). */
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

const ACTIONS = ['write RAFT', 'rewrite damaged RAFT'] as const;

/** The entries backfill writes, 17 bytes each (index, term, action) instead of an object. */
export class PendingEntries {
  private indexes = new Float64Array(1024);
  private terms = new Float64Array(1024);
  private actions = new Uint8Array(1024);
  length = 0;

  push(index: number, term: number, action: MigratedEntry['action']): void {
    if (this.length === this.indexes.length) {
      const grow = <T extends Float64Array | Uint8Array>(array: T, make: (size: number) => T): T => {
        const grown = make(array.length * 2);
        grown.set(array);
        return grown;
      };
      this.indexes = grow(this.indexes, (size) => new Float64Array(size));
      this.terms = grow(this.terms, (size) => new Float64Array(size));
      this.actions = grow(this.actions, (size) => new Uint8Array(size));
    }
    this.indexes[this.length] = index;
    this.terms[this.length] = term;
    this.actions[this.length] = ACTIONS.indexOf(action);
    this.length++;
  }

  indexAt(position: number): number {
    return this.indexes[position]!;
  }

  at(position: number, term = this.terms[position]!): MigratedEntry {
    const index = this.indexes[position]!;
    return { index, lsn: formatLsn(index), term, action: ACTIONS[this.actions[position]!]! };
  }

  /** ` (first..last)`, ` (only)` or '' */
  range(): string {
    if (this.length === 0) return '';
    const first = formatLsn(this.indexes[0]!);
    return this.length === 1 ? ` (${first})` : ` (${first}..${formatLsn(this.indexes[this.length - 1]!)})`;
  }
}

/**
 * Writes `{...head, [listKey]: [item, …]}` as indented JSON, the list a chunk at a time (it may
 * hold a million items: never one string, never one array of objects).
 */
export async function writeJsonWithList(
  io: CliIo,
  head: Record<string, unknown>,
  listKey: string,
  count: number,
  itemsAt: (start: number, end: number) => Promise<unknown[]> | unknown[],
): Promise<void> {
  const opening = JSON.stringify(head, null, 2);
  io.stdout(`${opening.slice(0, -2)},\n  ${JSON.stringify(listKey)}: [`);
  for (let start = 0; start < count; start += CHUNK) {
    const items = await itemsAt(start, Math.min(count, start + CHUNK));
    io.stdout((start === 0 ? '\n' : ',\n') + items.map((item) => `    ${JSON.stringify(item)}`).join(',\n'));
  }
  io.stdout(count === 0 ? ']\n}\n' : '\n  ]\n}\n');
}

/** What makes ReplicaLogStore.open refuse a tree (replica-log-store.ts recover; log-manager.ts listIndexes). */
export function refusals(scan: TreeScan, problems: readonly Problem[]): Problem[] {
  const bootstrapped = scan.kv.hardState !== undefined;
  const damagedRaft = new Set<string>([ProblemCode.RaftEmpty, ProblemCode.RaftCorrupt, ProblemCode.RaftIndexMismatch]);
  return problems.filter((problem) => {
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

/**
 * What migrate would fail to write, asked of the kernel (access(2)): the store directory (lock,
 * kv/, staging/ are made there), wal/, kv/ and staging/ when they exist, and every entry
 * directory that gets a RAFT file. EROFS, EACCES, … name the reason. At most one finding per
 * kind of place, with a count for entry directories.
 */
export async function writabilityRefusals(
  root: string,
  pending: PendingEntries,
  rootRole = 'the store directory: migrate takes its lock and creates kv/ and staging/ there',
): Promise<Finding<string>[]> {
  const refused: Finding<string>[] = [];
  const check = async (path: string, what: string) => {
    const denied = await writeAccessProblem(path);
    if (denied === undefined || denied.code === 'ENOENT') return false;
    refused.push({ code: NOT_WRITABLE, path, message: `cannot write to ${path} (${what}): ${describeRootCause(denied)}` });
    return true;
  };
  if (await check(root, rootRole)) return refused;
  await check(walPath(root), 'wal/');
  await check(kvPath(root), 'the KV database');
  await check(stagingPath(root), 'staging/');
  let denied = 0;
  let first: { path: string; error: NodeJS.ErrnoException } | undefined;
  for (let start = 0; start < pending.length; start += CHUNK) {
    const chunk = Array.from({ length: Math.min(CHUNK, pending.length - start) }, (_, offset) => entryPath(root, pending.indexAt(start + offset)));
    await mapBounded(chunk, CONCURRENCY, async (path) => {
      const error = await writeAccessProblem(path);
      if (error === undefined) return;
      denied++;
      if (first === undefined || path < first.path) first = { path, error };
    });
  }
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
export function withAdvice(error: unknown, root: string, verifyCommand = `replicalog verify ${root}`): unknown {
  if (!(error instanceof ReplicaLogError) || error.code !== ErrorCode.Corrupt) return error;
  return new ReplicaLogError(
    ErrorCode.Corrupt,
    `${error.message}; a damaged log cannot be migrated or repaired in place: restore this replica from a peer (\`${verifyCommand}\` lists every problem)`,
    { path: error.path, index: error.index, cause: error },
  );
}

/**
 * Room for what migrate writes: one RAFT file per entry (a block and an inode each, plus its
 * temporary name) and the KV database and lock (a few MiB at most). ENOSPC before, not midway.
 */
export async function spaceRefusals(root: string, pending: number): Promise<Finding<string>[]> {
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
  // One read-only walk: the verifier's findings (what open would refuse), the entries backfill
  // would write with their terms, and the leftovers open would remove.
  const pending = new PendingEntries();
  const removals: string[] = [];
  let terms: BackfillTerms | undefined;
  const progress = scanProgress('migrate', options, io);
  let walked;
  try {
    walked = await verifyWalk(
      root,
      { partitionId: options.partitionId, readManifests: false, onProgress: (done, total) => progress.update(done, total) },
      (entry, verifier) => {
        if (!verifier.isRetained(entry)) {
          removals.push(entry.path);
          return;
        }
        if (entry.hasRaftTemporary) removals.push(join(entry.path, RAFT_TEMPORARY_FILE));
        terms ??= new BackfillTerms(verifier.kv);
        const term = terms.next(entry);
        if (term !== undefined) pending.push(entry.index, term, entry.raft.state === 'missing' ? 'write RAFT' : 'rewrite damaged RAFT');
      },
    );
  } finally {
    progress.stop();
  }
  const { scan, extent } = walked;
  removals.unshift(...scan.stagingLeftovers.map((name) => join(stagingPath(root), name)));
  const refused: Finding<string>[] = refusals(scan, walked.result.problems);
  // A tree open would accept can still not be migrated here: a read-only mount, a directory
  // without write permission for this user, a full file system.
  if (refused.length === 0) refused.push(...(await writabilityRefusals(root, pending)));
  if (refused.length === 0) refused.push(...(await spaceRefusals(root, pending.length)));
  const listed = refused.length === 0 ? pending.length : 0;

  if (options.json) {
    const head = { dir: root, status: extent.status, backfilled: 0, wouldBackfill: listed, dryRun: true, refused, removals };
    await writeJsonWithList(io, head, 'entries', listed, (start, end) => Array.from({ length: end - start }, (_, offset) => pending.at(start + offset)));
  } else if (refused.length > 0) {
    for (const problem of refused) io.stderr(formatErrorLine(new DataError(problem.message, problem.path, problem.code)) + '\n');
    const advice = refused.every((problem) => problem.code === NOT_WRITABLE)
      ? 'run it as the user that owns the store, on a writable mount'
      : refused.every((problem) => problem.code === NOT_ENOUGH_SPACE)
        ? 'free some space first'
        : 'see `replicalog verify`';
    io.stderr(`replicalog: ${root}: migration would be refused (${plural(refused.length, 'problem')}; ${advice})\n`);
  } else {
    io.stdout(`${root}: status ${extent.status}; dry run, nothing written\n`);
    io.stdout(listed === 0 ? 'nothing to migrate: every entry has a valid RAFT file\n' : `would backfill ${entriesText(listed)}${pending.range()}:\n`);
    for (let start = 0; start < listed; start += CHUNK) {
      let text = '';
      for (let position = start; position < Math.min(listed, start + CHUNK); position++) {
        const entry = pending.at(position);
        text += `  ${entry.lsn}  index ${entry.index}  term ${entry.term}  ${entry.action}\n`;
      }
      io.stdout(text);
    }
    io.stdout(removals.map((path) => `would remove leftover ${path}\n`).join(''));
  }
  return refused.length > 0 ? EXIT_DATA : EXIT_OK;
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
  const pending = new PendingEntries();
  let backfilled = 0;
  let status: string;
  try {
    status = store.status;
    if (store.pendingBackfill > 0) {
      // Which entries backfill will write (for the summary): the store holds the lock, so the
      // tree cannot change under us; the KV is not needed (open already removed what lies
      // below the anchor). One walk, no entry kept.
      const scanning = scanProgress('migrate', options, io);
      try {
        await walkTree(root, { readManifests: false, readKv: false, onProgress: (done, total) => scanning.update(done, total) }, (entry) => {
          if (entry.raft.state !== 'ok') pending.push(entry.index, 0, entry.raft.state === 'missing' ? 'write RAFT' : 'rewrite damaged RAFT');
        });
      } finally {
        scanning.stop();
      }
      const progress = createProgress(
        { command: 'replicalog migrate', label: 'migrate', lineStep: 0.01, onInterrupt: 'run it again to resume' },
        options,
        io,
      );
      try {
        ({ backfilled } = await store.backfill({ onProgress: (done, total) => progress.update(done, total) }));
      } finally {
        progress.stop();
      }
    }
  } finally {
    await store.close();
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  // A store whose log was just given its RAFT files has no hard state until Raft first runs on it.
  const state = status === 'needs-backfill' ? 'migrated; Raft has not started yet' : `status ${status}`;

  if (options.json) {
    // The terms actually written, read back CONCURRENCY files at a time, CHUNK entries per step.
    const head = { dir: root, status, state, backfilled, dryRun: false, seconds: Math.round(seconds * 1000) / 1000 };
    await writeJsonWithList(io, head, 'entries', backfilled === 0 ? 0 : pending.length, async (start, end) => {
      const positions = Array.from({ length: end - start }, (_, offset) => start + offset);
      return mapBounded(positions, CONCURRENCY, async (position) => {
        const written = decodeEntry(await readFile(join(entryPath(root, pending.indexAt(position)), RAFT_FILE)));
        return pending.at(position, written.term);
      });
    });
  } else if (backfilled === 0) {
    io.stdout(`${root}: ${state}; nothing to migrate: every entry has a valid RAFT file\n`);
  } else {
    const rate = Math.round(backfilled / Math.max(seconds, 1e-6));
    io.stdout(
      `${root}: ${status === 'needs-backfill' ? `${state} (it saves a hard state on its first start)` : state}; ` +
        `backfilled ${entriesText(backfilled)}${pending.range()} in ${seconds.toFixed(2)} s (${rate} entries/s)\n`,
    );
  }
  return EXIT_OK;
}
