/**
 * `replicalog migrate <storage>`: every partition of a storage directory (lib/storage.ts) given
 * its RAFT files through ReplicaLogStorage.openPartition() + ReplicaLogStore.backfill() (never
 * reimplemented here), or only the one `--partition ID` names.
 *
 * - One progress bar for the whole storage: entries done / entries in every partition's wal/
 *   (counted first, one directory listing per partition). A partition already migrated or
 *   bootstrapped counts as done at once.
 * - Resumable: backfill is idempotent per partition (each RAFT file is written atomically), so
 *   a run killed midway is finished by running the command again; partitions with nothing left
 *   to write are skipped and reported.
 * - Bounded memory and descriptors at 100,000 partitions: at most PARTITION_CONCURRENCY
 *   partitions are open at a time (open, backfill, close; fewer under a low descriptor limit), holding at most ENTRIES_IN_FLIGHT entries between them (a
 *   larger partition runs alone), and what is kept per partition is a few bytes (typed arrays).
 * - A partition the store refuses (ERR_CORRUPT: a gap, a damaged RAFT file on a bootstrapped
 *   partition, …) does not stop the others: it is reported (exit 1) and left as it was. Any
 *   other error (I/O, no space, the storage locked) stops the run; it resumes when repeated.
 *
 * --dry-run writes nothing (the storage is not opened): the partitions are walked read-only as
 * `verify` walks them (lib/verify-storage.ts) and the refusals predicted per partition.
 */
import { readFileSync } from 'node:fs';
import { opendir } from 'node:fs/promises';
import { ErrorCode, ReplicaLogError } from '../errors.js';
import { ReplicaLogStorage } from '../storage.js';
import type { ReplicaLogStore } from '../replica-log-store.js';
import type { Finding } from '../verify.js';
import { listStorage, walkStorage, type StorageListing, type StoragePartition } from '../verify-storage.js';
import { kvPath, parseLsn, walPath } from '../wal/layout.js';
import { partitionPath, partitionsPath } from '../wal/storage-layout.js';
import { DataError, EXIT_DATA, EXIT_OK, existingDirectory, formatErrorLine, UsageError, type CliIo } from './io.js';
import {
  NOT_ENOUGH_SPACE,
  NOT_WRITABLE,
  PendingEntries,
  refusals,
  spaceRefusals,
  withAdvice,
  writabilityRefusals,
  writeJsonWithList,
  type MigrateCommandOptions,
} from './migrate.js';
import { createProgress, entries as entriesText, plural, storageScanProgress } from './progress.js';
import { idRanges } from './storage-verify.js';

/** Partitions open (and backfilling) at the same time: their fsyncs overlap, their memory stays bounded. */
export const PARTITION_CONCURRENCY = 16;
/**
 * Descriptors one backfilling partition may hold at once: backfill rewrites 16 entries at a
 * time, each with its temporary file and its directory open for fsync, plus what open reads.
 */
const DESCRIPTORS_PER_PARTITION = 40;
/** Descriptors left for the rest: LevelDB's files, the lock, stdio, the listing. */
const DESCRIPTORS_RESERVED = 64;

/** The soft limit on open files (Linux: /proc/self/limits), or undefined when it cannot be read. */
export function openFileLimit(): number | undefined {
  try {
    const match = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (match === null) return undefined;
    return match[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(match[1]);
  } catch {
    return undefined;
  }
}

/**
 * Partitions migrated at the same time: PARTITION_CONCURRENCY, fewer when the descriptor limit
 * would not hold them (256 allows 4; the usual 1,024 allows all 16), 4 when the limit is unknown.
 */
export function partitionConcurrency(limit: number | undefined): number {
  if (limit === undefined) return 4;
  return Math.max(1, Math.min(PARTITION_CONCURRENCY, Math.floor((limit - DESCRIPTORS_RESERVED) / DESCRIPTORS_PER_PARTITION)));
}
/** At most this many entries in the partitions open at the same time (one partition always runs). */
export const ENTRIES_IN_FLIGHT = 65_536;
/** Items per chunk when a per-partition list is written out. */
const CHUNK = 1024;

export interface MigrateStorageOptions extends MigrateCommandOptions {
  storageName?: string;
}

/** What migrate did with a partition (the JSON `action`). */
const ACTIONS = ['migrated', 'already migrated', 'bootstrapped', 'empty', 'refused'] as const;
type Action = (typeof ACTIONS)[number];
/** A partition's status before the run ('unknown': the store refused to open it). */
const STATUSES = ['unbootstrapped', 'needs-backfill', 'bootstrapped', 'unknown'] as const;

/** Per-partition results, a few bytes each (100,000 partitions: about 2 MB). */
class PartitionResults {
  readonly actions: Uint8Array;
  readonly statuses: Uint8Array;
  readonly backfilled: Float64Array;
  readonly listed: Float64Array;
  constructor(count: number) {
    this.actions = new Uint8Array(count);
    this.statuses = new Uint8Array(count);
    this.backfilled = new Float64Array(count);
    this.listed = new Float64Array(count);
  }
  set(position: number, action: Action, status: (typeof STATUSES)[number], backfilled: number): void {
    this.actions[position] = ACTIONS.indexOf(action);
    this.statuses[position] = STATUSES.indexOf(status);
    this.backfilled[position] = backfilled;
  }
  action(position: number): Action {
    return ACTIONS[this.actions[position]!]!;
  }
}

/**
 * The entries of the partitions open at the same time: a partition's memory (its term index,
 * the entries backfill writes) grows with its entries, so large partitions take turns however
 * many workers there are. One partition is always admitted, whatever its size.
 */
export class EntryBudget {
  private entries = 0;
  private partitions = 0;
  private waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}

  /** Resolves once `entries` more fit (or nothing else is admitted). */
  async admit(entries: number): Promise<void> {
    while (this.partitions > 0 && this.entries + entries > this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.entries += entries;
    this.partitions++;
  }

  release(entries: number): void {
    this.entries -= entries;
    this.partitions--;
    const waiting = this.waiting;
    this.waiting = [];
    for (const resolve of waiting) resolve();
  }

  get inFlight(): { entries: number; partitions: number } {
    return { entries: this.entries, partitions: this.partitions };
  }
}

/** How many LSN-named entries `wal/` of a partition lists (0 when it has no wal/). */
async function countEntries(dir: string): Promise<number> {
  let count = 0;
  try {
    for await (const entry of await opendir(walPath(dir), { bufferSize: 4096 })) if (parseLsn(entry.name) !== undefined) count++;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
  return count;
}

/** The partitions to work on: every one, or --partition's (bad usage when it does not exist). */
function selectPartitions(listing: StorageListing, partitionId: number | undefined): StoragePartition[] {
  if (partitionId === undefined) return listing.partitions;
  const found = listing.partitions.find((partition) => partition.partitionId === partitionId);
  if (found === undefined) {
    throw new UsageError(
      `storage ${JSON.stringify(listing.name)} has no partition ${partitionId} (${partitionPath(listing.dir, listing.name, partitionId)} does not exist)`,
      listing.dir,
    );
  }
  return [found];
}

/** `1..4, 7` of the partitions whose action is `action` (and how many). */
function partitionsWith(results: PartitionResults, partitions: readonly StoragePartition[], action: Action): { count: number; ids: number[] } {
  const ids: number[] = [];
  let count = 0;
  for (let position = 0; position < partitions.length; position++) {
    if (results.action(position) !== action) continue;
    count++;
    if (ids.length < 1000) ids.push(partitions[position]!.partitionId);
  }
  return { count, ids };
}

export async function runMigrateStorage(dir: string, options: MigrateStorageOptions, io: CliIo): Promise<number> {
  const root = existingDirectory(dir);
  if (options.dryRun) return dryRunStorage(root, options, io);
  const started = process.hrtime.bigint();
  // The listing is read-only; a stray name is refused as ReplicaLogStorage.listPartitions refuses it.
  const listing = await listStorage(root, options.storageName);
  const partitions = selectPartitions(listing, options.partitionId);
  if (options.partitionId === undefined && listing.strays.length > 0) {
    const first = listing.strays[0]!;
    throw new ReplicaLogError(
      ErrorCode.Corrupt,
      `${first.message}${listing.strays.length > 1 ? ` (and ${listing.strays.length - 1} more)` : ''}: the storage cannot list its partitions; \`replicalog verify ${root}\` lists every stray name`,
      { path: first.path },
    );
  }
  const storage = await ReplicaLogStorage.open({ dir: root, name: listing.name });
  const results = new PartitionResults(partitions.length);
  const refused: (Finding<string> & { partition: number })[] = [];
  let backfilled = 0;
  let total = 0;
  try {
    // The bar's total: every entry directory of every partition (the lock is held: it cannot change).
    for (let position = 0; position < partitions.length; position++) {
      results.listed[position] = await countEntries(partitions[position]!.dir);
      total += results.listed[position]!;
    }
    const progress = createProgress({ command: 'replicalog migrate', label: 'migrate', lineStep: 0.01, onInterrupt: 'run it again to resume' }, options, io);
    let done = 0;
    progress.update(0, total);
    const migrate = async (position: number) => {
      const partition = partitions[position]!;
      let credited = 0;
      const credit = (count: number) => {
        if (count === 0) return;
        credited += count;
        done += count;
        progress.update(done, total);
      };
      let store: ReplicaLogStore | undefined;
      let status: (typeof STATUSES)[number] = 'unknown';
      try {
        store = await storage.openPartition(partition.partitionId);
        status = store.status;
        const pending = store.pendingBackfill;
        if (status === 'bootstrapped') results.set(position, 'bootstrapped', status, 0);
        else if (pending === 0) results.set(position, status === 'unbootstrapped' ? 'empty' : 'already migrated', status, 0);
        else {
          let reported = 0;
          const result = await store.backfill({
            onProgress: (entriesDone) => {
              credit(entriesDone - reported);
              reported = entriesDone;
            },
          });
          results.set(position, 'migrated', status, result.backfilled);
          backfilled += result.backfilled;
        }
      } catch (error) {
        // A partition the store refuses is reported and left as it was; anything else stops the run.
        if (!(error instanceof ReplicaLogError) || error.code !== ErrorCode.Corrupt) throw error;
        results.set(position, 'refused', status, 0);
        const advised = withAdvice(error, partition.dir, `replicalog verify ${root} --partition ${partition.partitionId}`) as ReplicaLogError;
        refused.push({ partition: partition.partitionId, code: advised.code, path: advised.path ?? partition.dir, message: advised.message });
      } finally {
        await store?.close();
      }
      // The partition's other entries (already with RAFT, or refused) are done too.
      credit(Math.max(0, results.listed[position]! - credited));
    };
    let next = 0;
    let stopped = false;
    const budget = new EntryBudget(ENTRIES_IN_FLIGHT);
    const worker = async () => {
      try {
        while (!stopped && next < partitions.length) {
          const position = next++;
          const entries = results.listed[position]!;
          await budget.admit(entries);
          try {
            await migrate(position);
          } finally {
            budget.release(entries);
          }
        }
      } catch (error) {
        stopped = true; // the other workers finish the partition they hold, then stop
        throw error;
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(partitionConcurrency(openFileLimit()), partitions.length) }, worker));
    } finally {
      progress.stop();
    }
  } finally {
    await storage.close();
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  refused.sort((a, b) => a.partition - b.partition);
  const migrated = partitionsWith(results, partitions, 'migrated');
  const alreadyMigrated = partitionsWith(results, partitions, 'already migrated');
  const bootstrapped = partitionsWith(results, partitions, 'bootstrapped');
  const empty = partitionsWith(results, partitions, 'empty');
  const exitCode = refused.length === 0 ? EXIT_OK : EXIT_DATA;

  if (options.json) {
    const head = {
      dir: root,
      storage: listing.name,
      partitions: partitions.length,
      migrated: migrated.count,
      alreadyMigrated: alreadyMigrated.count,
      bootstrapped: bootstrapped.count,
      empty: empty.count,
      refusedPartitions: refused.length,
      backfilled,
      entries: total,
      dryRun: false,
      seconds: Math.round(seconds * 1000) / 1000,
      refused,
    };
    // One summary per partition (never its entries), written a chunk at a time.
    await writeJsonWithList(io, head, 'results', partitions.length, (start, end) =>
      Array.from({ length: end - start }, (_, offset) => {
        const position = start + offset;
        return {
          partition: partitions[position]!.partitionId,
          status: STATUSES[results.statuses[position]!],
          action: results.action(position),
          backfilled: results.backfilled[position],
          entries: results.listed[position],
        };
      }),
    );
    return exitCode;
  }
  for (const problem of refused) io.stderr(formatErrorLine(new DataError(`partition ${problem.partition}: ${problem.message}`, problem.path, problem.code)) + '\n');
  const rate = Math.round(backfilled / Math.max(seconds, 1e-6));
  const skipped = [
    ...(alreadyMigrated.count > 0 ? [`${alreadyMigrated.count} already migrated (${idRanges(alreadyMigrated.ids)})`] : []),
    ...(bootstrapped.count > 0 ? [`${bootstrapped.count} bootstrapped (${idRanges(bootstrapped.ids)})`] : []),
    ...(empty.count > 0 ? [`${empty.count} empty (${idRanges(empty.ids)})`] : []),
  ];
  let text = `${root}: storage ${JSON.stringify(listing.name)}, ${plural(partitions.length, 'partition')}: `;
  text +=
    migrated.count === 0
      ? 'nothing to migrate'
      : `migrated ${plural(migrated.count, 'partition')}, backfilled ${entriesText(backfilled)} in ${seconds.toFixed(2)} s (${rate} entries/s; Raft has not started on them yet)`;
  if (skipped.length > 0) text += `; skipped ${skipped.join(', ')}`;
  if (refused.length > 0) text += `; REFUSED ${plural(refused.length, 'partition')} (${idRanges(refused.map((problem) => problem.partition))}): restore them from a peer`;
  io.stdout(text + '\n');
  return exitCode;
}

/** migrate <storage> --dry-run: read-only, partition by partition (see the module comment). */
async function dryRunStorage(root: string, options: MigrateStorageOptions, io: CliIo): Promise<number> {
  interface PartitionPlan {
    partition: number;
    status: string;
    wouldBackfill: number;
    first: string | null;
    last: string | null;
    removals: number;
  }
  const plans: PartitionPlan[] = [];
  const refused: (Finding<string> & { partition?: number })[] = [];
  let wouldBackfill = 0;
  let pending = new PendingEntries();
  const progress = storageScanProgress('migrate', options, io);
  let walked;
  try {
    walked = await walkStorage(
      root,
      { name: options.storageName, partitionId: options.partitionId, readManifests: false, onProgress: (done, total) => progress.update(done, total) },
      async ({ partitionId, dir, scan, result, extent }) => {
        const found: Finding<string>[] = refusals(scan, result.problems);
        if (found.length === 0) found.push(...(await writabilityRefusals(dir, pending, 'the partition directory: migrate creates staging/ there')));
        refused.push(...found.map((problem) => ({ partition: partitionId, ...problem })));
        const count = found.length === 0 ? pending.length : 0;
        wouldBackfill += count;
        plans.push({
          partition: partitionId,
          status: extent.status,
          wouldBackfill: count,
          first: count > 0 ? (extent.firstPending?.lsn ?? null) : null,
          last: count > 0 ? (extent.lastPending?.lsn ?? null) : null,
          removals: scan.stagingLeftovers.length + extent.compactionLeftovers,
        });
        pending = new PendingEntries();
      },
      (_partitionId, entry, verifier) => {
        if (verifier.isRetained(entry) && entry.raft.state !== 'ok') pending.push(entry.index, 0, entry.raft.state === 'missing' ? 'write RAFT' : 'rewrite damaged RAFT');
      },
    );
  } finally {
    progress.stop();
  }
  // The storage itself: stray names (open lists its partitions), then where migrate writes first.
  refused.unshift(...walked.problems.filter((problem) => problem.code !== 'KV_WITHOUT_PARTITION'));
  if (refused.length === 0) {
    const empty = new PendingEntries();
    refused.push(...(await writabilityRefusals(root, empty, 'the storage directory: migrate takes its lock and creates kv/ there')));
    if (refused.length === 0) refused.push(...(await writabilityRefusals(partitionsPath(root), empty, 'partitions/')));
    if (refused.length === 0) refused.push(...(await writabilityRefusals(kvPath(root), empty, 'the KV database')).filter((problem) => problem.path === kvPath(root)));
  }
  if (refused.length === 0) refused.push(...(await spaceRefusals(root, wouldBackfill)));
  const listed = refused.length === 0;

  if (options.json) {
    const head = { dir: walked.dir, storage: walked.name, partitions: walked.partitions, backfilled: 0, wouldBackfill: listed ? wouldBackfill : 0, dryRun: true, refused };
    await writeJsonWithList(io, head, 'results', plans.length, (start, end) => plans.slice(start, end));
  } else if (!listed) {
    for (const problem of refused) {
      const where = problem.partition === undefined ? '' : `partition ${problem.partition}: `;
      io.stderr(formatErrorLine(new DataError(`${where}${problem.message}`, problem.path, problem.code)) + '\n');
    }
    const advice = refused.every((problem) => problem.code === NOT_WRITABLE)
      ? 'run it as the user that owns the storage, on a writable mount'
      : refused.every((problem) => problem.code === NOT_ENOUGH_SPACE)
        ? 'free some space first'
        : `see \`replicalog verify ${walked.dir}\``;
    io.stderr(`replicalog: ${walked.dir}: migration would be refused (${plural(refused.length, 'problem')}; ${advice})\n`);
  } else {
    const migrating = plans.filter((plan) => plan.wouldBackfill > 0);
    io.stdout(
      `${walked.dir}: storage ${JSON.stringify(walked.name)}, ${plural(walked.partitions, 'partition')}; dry run, nothing written\n` +
        (migrating.length === 0
          ? 'nothing to migrate: every entry has a valid RAFT file\n'
          : `would backfill ${entriesText(wouldBackfill)} in ${plural(migrating.length, 'partition')}:\n`),
    );
    for (let start = 0; start < migrating.length; start += CHUNK) {
      io.stdout(
        migrating
          .slice(start, start + CHUNK)
          .map((plan) => `  partition ${plan.partition}  ${entriesText(plan.wouldBackfill)} (${plan.first === plan.last ? plan.first : `${plan.first}..${plan.last}`})\n`)
          .join(''),
      );
    }
    const removals = plans.reduce((sum, plan) => sum + plan.removals, 0);
    if (removals > 0) io.stdout(`would remove ${plural(removals, 'leftover')} (staging/, compaction)\n`);
  }
  return listed ? EXIT_OK : EXIT_DATA;
}
