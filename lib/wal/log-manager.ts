/**
 * The WAL log manager: entry directories under `<dir>/wal/<LSN>/`, written through
 * `<dir>/staging/` so that a reader (or a restart) never sees half an entry.
 *
 * Durability protocol. The model (README "Durability and ordering"): after a power cut a name
 * is sure only once its directory was fsynced (the two directories of a rename apart), data once
 * its file was. Each fsync below says what a power cut could do without it; `npm run powerloss
 * -- --barriers` drops each one in turn and shows the crash states that then fail.
 *   append (group commit of B entries)
 *     1. staging/<LSN>/{MANIFEST,RAFT} written (0400) in directories of mode 0700, for all B
 *        (16 at a time, the event loop running in between);
 *     2. every RAFT file fsynced (without: an entry renamed into wal/ with its data lost or
 *        zeroed, ERR_CORRUPT at open) and every entry directory fsynced (without: an entry in
 *        wal/ that lost its MANIFEST and RAFT names). Up to 32 in flight, in any order: all are
 *        done before step 4. The MANIFEST is empty: no data to sync, and its name is durable
 *        with its directory's fsync (its own fsync was a wasted barrier, issue 15);
 *     3. (truncating append) the old tail renamed out of wal/, newest first, then ONE fsync of
 *        wal/ (Gitaly B8 fsynced the parent instead) before any new entry is renamed in
 *        (without: an old entry kept above a new one, a term going down: ERR_CORRUPT);
 *     4. entries renamed into wal/ in index order;
 *     5. ONE fsync of wal/ (without: an acknowledged entry lost, its new name not durable) and,
 *        in parallel, ONE of staging/ (without: the entry keeps its staging/ name too, and
 *        open's removal of staging leftovers empties it: finding 6). Only now is the append
 *        acknowledged; its trash (a truncated tail) is deleted after.
 *   A crash before 5 loses only unacknowledged entries: open removes staging leftovers and cuts
 *   the log at a gap or at an emptied entry above the commit (torn, not corrupt).
 *   journal checkpoint, direct (replica-log-store.ts writeEntries; only entries above the
 *   durable log, which acknowledged journal records cover): every entry written straight into
 *   wal/<LSN> (new, or a compacted directory of the pool rewritten and renamed within wal/),
 *   then ONE syncfs, then the KV batch moving raft/journal_through past the records. A crash
 *   before the KV batch: open removes every entry from the first index a pending record
 *   writes and rewrites them from the records (a checkpoint never writes below its first
 *   record's first index), so whatever state these writes were left in is never read.
 *   compaction: the KV anchor first (synced); then the entries up to it moved out of wal/
 *   oldest first, with NO fsync of wal/: whatever a power cut keeps of those renames is at or
 *   below the durable anchor, which open removes. Trash deleted after the acknowledgement.
 *   (A journal store keeps them in wal/ for reuse instead: see recycling, below.)
 *   applySnapshot: KV batch {snapshot, anchor, intent} first; every entry moved out and wal/
 *   fsynced BEFORE the intent is cleared (without: an entry above the snapshot's index that a
 *   power cut brings back is kept once the intent is gone).
 *   open's repairs (an intent redone, a gap or an emptied entry cut, leftovers at or below the
 *   anchor): moved out, wal/ fsynced, deleted.
 *   backfill of one entry: RAFT.tmp written and fsynced (without: RAFT empty after the
 *   rename), renamed over RAFT, the entry directory fsynced (without: the entry loses its new
 *   RAFT after backfill reported it done). Gitaly B7 wrote RAFT in place.
 *   snapshot data: temp file fsynced (its data), renamed, snapshot/ fsynced (its name: Gitaly
 *   B11 skipped this), and the store directory when snapshot/ itself was just created.
 *   insertLogEntry: every file of the staged directory and the directory fsynced (a caller's
 *   files cannot be trusted to be durable), a truncation as in 3, the rename into wal/, then
 *   wal/ and the directory it left fsynced in parallel, as in 5.
 *
 * Every file-system call goes through the injectable FileSystem, and every named step calls the
 * optional crashPoint hook (tests kill or fail the process there).
 */
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { decodeEntry } from '../codec.js';
import { corruptError, describeRootCause, ErrorCode, invalidArgumentError, isReplicaLogError, ReplicaLogError } from '../errors.js';
import type { Entry } from '../types.js';
import { FifoQueue } from '../fifo-queue.js';
import { BoundedTasks, errorCode, forEachBounded, type FileSystem } from './file-system.js';
import {
  childPath,
  DIRECTORY_MODE,
  FILE_MODE,
  formatLsn,
  MANIFEST_FILE,
  parseLsn,
  RAFT_FILE,
  RAFT_TEMPORARY_FILE,
  snapshotFileName,
  snapshotDirectoryPath,
  stagingPath,
  walPath,
} from './layout.js';
import type { EntryDirectoryJob, EntryWriter } from './entry-writer-thread.js';
import { JOURNAL_DIRECTORY, journalRecordName, journalSegmentName, parseJournalRecordName, parseJournalSegmentName } from './journal.js';

/** Every named step of the write path, in the order a write passes them. */
export const CRASH_POINTS = [
  /** staged files (MANIFEST, RAFT: a chunk of an append; snapshot data) written, not fsynced */
  'after-file-write',
  /** about to fsync staged files (an append's chunk: its files and directories together) */
  'before-file-fsync',
  /** about to fsync a staged directory (an append's chunk: passed with the two above; insertLogEntry: files fsynced) */
  'before-directory-fsync',
  /** about to rename one old tail entry out of wal/ (truncating append) */
  'before-truncate-rename',
  /** old tail renamed out; about to fsync wal/ */
  'before-truncate-fsync',
  /** about to rename a staged entry into wal/ */
  'before-rename',
  /** one staged entry renamed into wal/ (not yet durable) */
  'after-rename',
  /** every entry of the batch renamed; about to fsync wal/ */
  'before-wal-fsync',
  /** wal/ fsynced: the append is durable, memory not yet updated */
  'after-wal-fsync',
  /** about to write a synced KV record or batch */
  'before-kv-write',
  /** KV record durable (anchor / snapshot / intent); entry directories not yet removed */
  'between-kv-and-wal',
  /** about to rename an entry directory out of wal/ (compaction, snapshot, open cleanup) */
  'before-prefix-rename',
  /** prefix renamed out of wal/; about to fsync wal/ (when the removal must be durable: not for a compaction) */
  'before-prefix-fsync',
  /** entry directories removed; about to clear the KV intent */
  'before-intent-clear',
  /** snapshot data temp file fsynced; about to rename it into place */
  'before-snapshot-rename',
  /** backfill: RAFT.tmp written, not fsynced */
  'backfill-after-temp-write',
  /** backfill: RAFT.tmp fsynced; about to rename it over RAFT */
  'backfill-before-rename',
  /** backfill: renamed; about to fsync the entry directory */
  'backfill-after-rename',
  /** journal: a write group's record file written, not yet fsynced (data or name) */
  'before-journal-fsync',
  /** journal: the record and journal/ fsynced (the group is durable), not yet acknowledged */
  'after-journal-fsync',
] as const;

export type CrashPointName = (typeof CRASH_POINTS)[number];
export type CrashPoint = (name: CrashPointName) => void;

/**
 * How many fsyncs of staged files and directories are in flight at once. libuv runs 4 at a
 * time; keeping more queued lets a pool thread start the next one without a round trip
 * through the event loop.
 */
export const FSYNC_CONCURRENCY = 32;

/**
 * Entries created in one go before the event loop gets a turn: about 3 synchronous calls
 * each, usually tens of µs apiece (more while the journal is busy).
 */
const STAGE_CHUNK = 16;
/** Entry directories moved out of wal/ between two turns of the event loop. */
const RENAME_CHUNK = 256;

/** What open() found in one entry's RAFT file. */
export type RaftInspection =
  | { state: 'ok'; entry: Entry }
  | { state: 'missing' }
  | { state: 'damaged'; reason: string };

/** A new entry to write: its index and the exact RAFT bytes. */
/**
 * Compacted entry directories kept for reuse, at most (each holds its old MANIFEST and RAFT
 * until reused: about 1 KiB of data and three inodes, and ~50 bytes of memory here). A
 * compaction that would exceed it has its directories deleted, as without recycling. Sized for
 * a compaction of a node's snapshot interval, which grows with its state (the snapshot log
 * ratio, lib/node/group.ts): at 16,384 the compactions behind snapshots of 60-80k keys deleted
 * tens of thousands of directories, and a 3-node cluster's throughput halved for a run (issue
 * 18: 3xC=16 1,316 and 778 puts/s against 1,937 and 1,962 with room for them all).
 */
export const RECYCLE_POOL_LIMIT = 131_072;

/** Where a compaction moves entry `index` out of wal/: into its batch directory in staging/. */
function compactedEntryPath(batch: string, index: number): string {
  return childPath(batch, `old-${formatLsn(index)}`);
}

/** A compacted entry directory waiting in wal/ (at or below the durable anchor) to be reused. */
interface RecyclableDirectory {
  /** Its index when it was compacted: it lies at wal/<LSN>. */
  index: number;
  /** Published by this store's checkpoints (exactly an empty MANIFEST and RAFT): reused without listing it. */
  plain: boolean;
}

export interface StagedEntry {
  index: number;
  raft: Uint8Array;
}

export function ioError(operation: string, path: string, cause: unknown): ReplicaLogError {
  if (isReplicaLogError(cause)) return cause as ReplicaLogError;
  return new ReplicaLogError(ErrorCode.Io, `${operation} ${path}: ${describeRootCause(cause)}`, { path, cause });
}

/** A journal segment's mode: written in place after it is created (journal-segments.ts). */
const JOURNAL_SEGMENT_MODE = 0o600;

export class WalLogManager {
  readonly walDirectory: string;
  readonly stagingDirectory: string;
  readonly snapshotDirectory: string;
  readonly journalDirectory: string;
  /**
   * Old tail entries being renamed out of wal/ by a truncating append: index → where they go.
   * Until the store publishes the new state, readers may still ask for them (see readEntrySync).
   */
  private readonly relocated = new Map<number, string>();
  /** Snapshot data files written but not yet named in KV (see writeSnapshotData). */
  private readonly snapshotFilesInFlight = new Set<string>();

  /**
   * Recycling (journal mode, issue 18). Creating three inodes per entry (directory, MANIFEST,
   * RAFT) and freeing them again at compaction is what the file system spends most on when the
   * log turns over: on ext4 each allocation scans past the inodes freed in the last minute or
   * more (ext4 keeps recently deleted inodes unused), so a compaction of thousands of entries
   * made every later entry dear for minutes. A journal store's compaction therefore leaves its
   * directories where they are (wal/<LSN>, at or below the durable anchor) and a checkpoint
   * reuses them: RAFT overwritten in place, MANIFEST emptied, then one rename within wal/ to the
   * new index. Nothing is allocated or freed, and nothing leaves wal/ to come back.
   *
   * Why it is safe after a power cut: the anchor is durable in KV before a directory joins the
   * pool, and open removes every directory at or below it, whatever content or name a power cut
   * kept. Under its new name the directory is an entry a journal record still covers until the
   * checkpoint's syncfs and KV batch (raft/journal_through) are durable, and open rewrites every
   * entry from the first covered index (replica-log-store.ts, "direct checkpoint").
   */
  private readonly recyclePool = new FifoQueue<RecyclableDirectory>();
  private syncsStarted = 0;
  /** The start number of the latest syncfs that completed. */
  private syncsCompletedThrough = 0;
  /** Entry directories staged by reuse (statistics and tests). */
  recycledEntries = 0;
  /**
   * Entries a staged checkpoint wrote into a reused directory where it lies (wal/<old LSN>):
   * index → that path. publishStaged renames them from there to their index.
   */
  private readonly stagedInPlace = new Map<number, string>();
  /**
   * Entries in wal/ that this store published from staging/ while it recycles: each holds
   * exactly an empty MANIFEST and its RAFT, so reusing it needs no listing of the directory and
   * no look at its MANIFEST (five of a reuse's eleven system calls). Anything else in wal/ (an
   * adopted Gitaly entry with payload files, what open found) is checked as before. An index
   * leaves the set when its directory is moved out (offered for reuse, cut by a truncation) or
   * replaced by an adopted one.
   */
  private readonly publishedPlain = new Set<number>();

  /** The store has recorded `name` in KV (or given it up): pruning may consider it again. */
  releaseSnapshotFile(name: string): void {
    this.snapshotFilesInFlight.delete(name);
  }

  constructor(
    readonly dir: string,
    private readonly fs: FileSystem,
    private readonly crashPoint: CrashPoint = () => {},
    /**
     * Creates a checkpoint's staged entries and makes its and a compaction's renames off the
     * main thread (entry-writer-thread.ts); only with the default file system, so a test's
     * FileSystem sees every call.
     */
    private readonly entryWriter?: EntryWriter,
  ) {
    this.walDirectory = walPath(dir);
    this.stagingDirectory = stagingPath(dir);
    this.snapshotDirectory = snapshotDirectoryPath(dir);
    this.journalDirectory = join(dir, JOURNAL_DIRECTORY);
  }

  private crash(name: CrashPointName): void {
    this.crashPoint(name);
  }

  private async io<T>(operation: string, path: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw ioError(operation, path, error);
    }
  }

  /** A storage's shared barrier over `paths` (lib/storage.ts); a failure names the store directory. */
  async sharedBarrier(barrier: (paths: readonly string[]) => Promise<void>, paths: readonly string[]): Promise<void> {
    await this.io('barrier', this.dir, () => barrier(paths));
  }

  /** Creates a directory (mode 0700) if missing and makes its name durable by fsyncing the parent. */
  private async ensureDirectory(path: string, parent: string): Promise<void> {
    const created = await this.io('mkdir', path, () => this.fs.mkdir(path, DIRECTORY_MODE));
    if (created) await this.io('fsync', parent, () => this.fs.fsync(parent));
  }

  /**
   * Open: creates wal/ and staging/, makes every name in the store directory durable, and
   * removes staging leftovers (crashed writes, trash).
   *
   * The store directory is fsynced at every open, after kv/ (and LOCK.db) were created by
   * LevelDB and wal/ and staging/ here: LevelDB never fsyncs the directory that holds kv/, and a
   * pre-Raft tree already has wal/ and staging/, so nothing else would make kv/'s name durable
   * (finding 1); and a name created by an earlier open that died before its fsync is made durable
   * now (finding 2). Before this returns, no write has been acknowledged.
   */
  async prepare(options: { journal: boolean; barrier?: (paths: readonly string[]) => Promise<void> } = { journal: false }): Promise<void> {
    await this.io('mkdir', this.walDirectory, () => this.fs.mkdir(this.walDirectory, DIRECTORY_MODE));
    await this.io('mkdir', this.stagingDirectory, () => this.fs.mkdir(this.stagingDirectory, DIRECTORY_MODE));
    // journal/ before the fsync of the store directory, which makes its name durable too.
    if (options.journal) await this.io('mkdir', this.journalDirectory, () => this.fs.mkdir(this.journalDirectory, DIRECTORY_MODE));
    // A storage's partitions opening together share one pass (one syncfs when they are many).
    const barrier = options.barrier;
    if (barrier !== undefined) await this.sharedBarrier(barrier, [this.dir]);
    else await this.io('fsync', this.dir, () => this.fs.fsync(this.dir));
    const leftovers = await this.io('readdir', this.stagingDirectory, () => this.fs.readdir(this.stagingDirectory));
    for (const name of leftovers) {
      const path = join(this.stagingDirectory, name);
      await this.io('remove', path, () => this.fs.remove(path));
    }
  }

  /** The LSNs in wal/, ascending. A name that is not a canonical LSN is corruption. */
  async listIndexes(): Promise<number[]> {
    const names = await this.io('readdir', this.walDirectory, () => this.fs.readdir(this.walDirectory));
    const indexes: number[] = new Array<number>(names.length);
    let lowest = Number.POSITIVE_INFINITY;
    let highest = 0;
    for (let position = 0; position < names.length; position++) {
      const index = parseLsn(names[position]!);
      if (index === undefined) {
        const path = join(this.walDirectory, names[position]!);
        throw corruptError(`stray name in the WAL: ${path} is not an LSN directory`, { path });
      }
      indexes[position] = index;
      if (index < lowest) lowest = index;
      if (index > highest) highest = index;
    }
    // Names in a directory are distinct, so n of them between lowest and highest with
    // highest - lowest + 1 = n are exactly that range: no sort needed (the usual case; a
    // million-entry sort costs more than the listing). Otherwise sort, and the caller finds
    // the gap.
    if (names.length > 0 && highest - lowest + 1 === names.length) {
      for (let position = 0; position < indexes.length; position++) indexes[position] = lowest + position;
      return indexes;
    }
    return indexes.sort((a, b) => a - b);
  }

  /** Bytes of an entry's MANIFEST, or undefined when it has none (or it is not a file). */
  async manifestSize(index: number): Promise<number | undefined> {
    const path = join(this.entryDirectory(index), MANIFEST_FILE);
    const stat = await this.io('stat', path, () => this.fs.stat(path));
    return stat?.isFile === true ? stat.size : undefined;
  }

  entryDirectory(index: number): string {
    return childPath(this.walDirectory, formatLsn(index));
  }

  /** Open: classifies one entry's RAFT file. Never reads MANIFEST or payload files. */
  inspectRaftSync(index: number): RaftInspection {
    const directory = this.entryDirectory(index);
    const path = join(directory, RAFT_FILE);
    let bytes: Uint8Array;
    try {
      bytes = this.fs.readFileSync(path);
    } catch (error) {
      const code = errorCode(error);
      if (code === 'ENOENT') return { state: 'missing' };
      if (code === 'ENOTDIR') throw corruptError(`${directory} is not a directory`, { path: directory, index });
      // A RAFT that is a directory is damage in the tree, not a failing disk.
      if (code === 'EISDIR') throw corruptError(`${path} is a directory, not a RAFT file`, { path: directory, index });
      throw ioError('read', path, error);
    }
    if (bytes.length === 0) return { state: 'damaged', reason: `${path} is empty (a torn write)` };
    let entry: Entry;
    try {
      entry = decodeEntry(bytes);
    } catch (error) {
      return { state: 'damaged', reason: `${path} does not decode: ${(error as Error).message}` };
    }
    if (entry.index !== index) return { state: 'damaged', reason: `${path} holds index ${entry.index}, not its LSN ${index}` };
    return { state: 'ok', entry };
  }

  /**
   * Reads and checks one entry's RAFT file (a cache miss of Storage.entries). Returns undefined
   * when the entry directory is gone, for the caller to map (ERR_COMPACTED below the first
   * index, else ERR_CORRUPT). A file that does not decode, or whose index is not its LSN, is
   * ERR_CORRUPT naming the path: a wrong entry is never served.
   */
  readEntrySync(index: number): Entry | undefined {
    const bytes = this.readRaftBytesSync(index);
    if (bytes === undefined) return undefined;
    const path = join(this.entryDirectory(index), RAFT_FILE);
    let entry: Entry;
    try {
      entry = decodeEntry(bytes);
    } catch (error) {
      throw corruptError(`${path} does not decode: ${(error as Error).message}`, { path: this.entryDirectory(index), index, cause: error });
    }
    if (bytes.length === 0 || entry.index !== index) {
      throw corruptError(`${path} holds index ${entry.index}, not its LSN ${index}`, { path: this.entryDirectory(index), index });
    }
    return entry;
  }

  private readRaftBytesSync(index: number): Uint8Array | undefined {
    const inWal = join(this.entryDirectory(index), RAFT_FILE);
    const moved = this.relocated.get(index);
    // An old tail entry being renamed out: try its new place, then wal/, then the new place
    // again. The rename is atomic and the next one (a new entry at this index) cannot start
    // while this synchronous read runs, so one of the three reads finds the old entry.
    const candidates = moved === undefined ? [inWal] : [join(moved, RAFT_FILE), inWal, join(moved, RAFT_FILE)];
    for (const path of candidates) {
      try {
        return this.fs.readFileSync(path);
      } catch (error) {
        if (errorCode(error) !== 'ENOENT') throw ioError('read', path, error);
      }
    }
    return undefined;
  }

  /** A fresh directory under staging/ for one write (its new entries and its trash). */
  async createBatchDirectory(): Promise<string> {
    const prefix = join(this.stagingDirectory, 'batch-');
    return this.io('mkdtemp', prefix, () => this.fs.mkdtemp(prefix));
  }

  /** Removes a batch directory after the store published the new state (errors ignored: open cleans staging). */
  async discardBatchDirectory(batch: string): Promise<void> {
    for (const index of [...this.relocated.keys()]) {
      if (this.relocated.get(index)!.startsWith(join(batch, '/'))) this.relocated.delete(index);
    }
    try {
      await this.fs.remove(batch);
    } catch {
      // Left for the next open, which empties staging/.
    }
  }

  /** Where an entry of an append is staged: staging/<LSN> (unique there while the write runs). */
  stagedEntryDirectory(index: number): string {
    return childPath(this.stagingDirectory, formatLsn(index));
  }

  /**
   * What step 2 fsyncs for these staged entries: each RAFT file and each entry directory (the
   * empty MANIFEST's name is made durable by its directory's fsync).
   */
  stagedDurablePaths(indexes: readonly number[]): string[] {
    const paths: string[] = [];
    for (const index of indexes) paths.push(join(this.stagedEntryDirectory(index), RAFT_FILE));
    for (const index of indexes) paths.push(this.stagedEntryDirectory(index));
    return paths;
  }

  /**
   * Steps 1–2: creates every entry's directory staging/<LSN>/ with its MANIFEST and RAFT, and
   * fsyncs all those files and directories (at most FSYNC_CONCURRENCY in flight). Entries are
   * created STAGE_CHUNK at a time; each chunk's fsyncs start as soon as it is created, while
   * the next chunk is. A directory and its files need no order between their fsyncs: all of
   * them are durable before step 4's rename, which is what makes the entry part of the log.
   * Many fsyncs in flight at once let the kernel's journal merge their commits.
   *
   * Without fsync (a journal checkpoint: the caller's syncfs follows) compacted directories are
   * reused. `direct` (a direct checkpoint, replica-log-store.ts): every entry is written where
   * it belongs, wal/<LSN> (a new directory, or a reused one renamed there from wal/<old LSN>
   * after its RAFT was overwritten), not through staging/: allowed only for entries a journal
   * record still covers, which open rewrites whatever a power cut left of them.
   */
  async stageEntries(entries: readonly StagedEntry[], options: { fsync: boolean; direct?: boolean } = { fsync: true }): Promise<void> {
    const writer = this.entryWriter;
    const direct = options.direct === true && !options.fsync;
    const target = (index: number): string => (direct ? this.entryDirectory(index) : this.stagedEntryDirectory(index));
    // Whatever an earlier staging left (a write that failed before its publication).
    this.stagedInPlace.clear();
    const recycled = !options.fsync && this.recycles ? this.takeRecycled(entries.length) : { paths: [], plain: [] };
    // Only while recycling (a journal store): elsewhere nothing would ever take them out again.
    if (direct && this.recycles) for (const { index } of entries) this.publishedPlain.add(index);
    if (!options.fsync && writer !== undefined) {
      // Created off the main thread.
      const jobs = entries.map(({ index, raft }, position) => {
        const job: EntryDirectoryJob = { directory: target(index), bytes: raft, fileMode: FILE_MODE, directoryMode: DIRECTORY_MODE };
        const source = recycled.paths[position];
        if (source !== undefined) {
          job.recycled = source;
          if (recycled.plain[position] === true) job.recycledPlain = true;
          // Direct: the thread renames it to wal/<LSN> once its RAFT is rewritten.
          if (direct) job.moveRecycled = true;
        }
        return job;
      });
      const reused = await this.io('write', direct ? this.walDirectory : this.stagingDirectory, () => writer.create(jobs));
      if (!direct) for (const position of reused) this.stagedInPlace.set(entries[position]!.index, recycled.paths[position]!);
      this.recycledEntries += reused.length;
      this.crash('after-file-write');
      return;
    }
    if (recycled.paths.length > 0) {
      const reused = new Set<number>();
      for (const [position, source] of recycled.paths.entries()) {
        const { index, raft } = entries[position]!;
        if (!(await this.stageRecycled(source, raft, recycled.plain[position] === true))) continue;
        reused.add(index);
        if (!direct) {
          this.stagedInPlace.set(index, source);
          continue;
        }
        const destination = target(index);
        this.crash('before-rename');
        await this.io('rename', source, () => this.fs.rename(source, destination));
        this.crash('after-rename');
      }
      this.recycledEntries += reused.size;
      entries = entries.filter((entry) => !reused.has(entry.index));
    }
    const fsyncs = new BoundedTasks(FSYNC_CONCURRENCY);
    try {
      for (let start = 0; start < entries.length; start += STAGE_CHUNK) {
        // The creating calls are synchronous (nodeFileSystem): between chunks the event loop
        // runs (timers, network: a Raft node's ticks), while the chunks already created are
        // being fsynced on the pool.
        if (start > 0) await new Promise<void>((resume) => setImmediate(resume));
        const raftFiles: string[] = [];
        const theRest: string[] = [];
        for (const { index, raft } of entries.slice(start, start + STAGE_CHUNK)) {
          const directory = target(index);
          const manifest = join(directory, MANIFEST_FILE);
          const raftPath = join(directory, RAFT_FILE);
          // A leftover of this process's earlier failed write (otherwise open empties staging/ and
          // removes the entries in wal/ a journal record covers).
          if (!(await this.io('mkdir', directory, () => this.fs.mkdir(directory, DIRECTORY_MODE)))) {
            await this.io('remove', directory, () => this.fs.remove(directory));
            await this.io('mkdir', directory, () => this.fs.mkdir(directory, DIRECTORY_MODE));
          }
          // A 0-byte MANIFEST is an empty gitaly.LogEntry: what Gitaly's draftLogEntry writes for
          // raft-internal entries.
          await this.io('write', manifest, () => this.fs.writeFile(manifest, new Uint8Array(0), FILE_MODE));
          await this.io('write', raftPath, () => this.fs.writeFile(raftPath, raft, FILE_MODE));
          raftFiles.push(raftPath);
          // The empty MANIFEST needs no fsync of its own: it has no data to lose, and its name is
          // made durable by the fsync of the entry directory (a wasted barrier, issue 15).
          theRest.push(directory);
        }
        this.crash('after-file-write');
        this.crash('before-file-fsync');
        this.crash('before-directory-fsync');
        // RAFT files first in the queue: their fsyncs write data and commit the journal
        // transaction that also holds the creation of the MANIFESTs and directories, so the
        // fsyncs queued behind them mostly find nothing left to commit (5-10 % faster, measured).
        // Without fsync: the caller makes the batch durable with one syncFileSystem() instead.
        if (options.fsync) for (const path of raftFiles.concat(theRest)) fsyncs.add(() => this.io('fsync', path, () => this.fs.fsync(path)));
      }
    } catch (error) {
      // Every fsync started has finished before this throws: nothing of this write runs on
      // after it. The creating failure is the one reported.
      await fsyncs.settle().catch(() => {});
      throw error;
    }
    await fsyncs.settle();
  }

  /**
   * Step 3: renames entries `from`..`last` out of wal/ into `batch`, newest first (a crash
   * leaves a prefix, never a hole), then fsyncs wal/ once (not its parent: Gitaly B8).
   */
  async truncateTail(batch: string, from: number, last: number): Promise<void> {
    if (from > last) return;
    for (let index = last; index >= from; index--) {
      this.publishedPlain.delete(index);
      const source = this.entryDirectory(index);
      const target = compactedEntryPath(batch, index);
      this.relocated.set(index, target);
      this.crash('before-truncate-rename');
      await this.io('rename', source, () => this.fs.rename(source, target));
    }
    this.crash('before-truncate-fsync');
    await this.io('fsync', this.walDirectory, () => this.fs.fsync(this.walDirectory));
  }

  /**
   * Steps 4–5: renames staged entries into wal/ in index order, then fsyncs wal/ once. An entry
   * staged in a reused directory is renamed from where it lies (stagedInPlace).
   */
  async publishStaged(indexes: readonly number[], options: { fsync: boolean } = { fsync: true }): Promise<void> {
    const renames = indexes.map((index) => [this.stagedInPlace.get(index) ?? this.stagedEntryDirectory(index), this.entryDirectory(index)] as const);
    this.stagedInPlace.clear();
    // Only while recycling (a journal store): elsewhere nothing would ever take them out again.
    if (this.recycles) for (const index of indexes) this.publishedPlain.add(index);
    const writer = this.entryWriter;
    if (!options.fsync && writer !== undefined) {
      // A checkpoint's thousands of renames, off the main thread, in the same order.
      this.crash('before-rename');
      await this.io('rename', this.walDirectory, () => writer.rename(renames));
      this.crash('after-rename');
    } else {
      for (const [source, target] of renames) {
        this.crash('before-rename');
        await this.io('rename', source, () => this.fs.rename(source, target));
        this.crash('after-rename');
      }
    }
    this.crash('before-wal-fsync');
    if (!options.fsync) {
      // The caller's syncFileSystem() makes both directories durable at once.
      this.crash('after-wal-fsync');
      return;
    }
    // staging/ with wal/ (in parallel: one barrier's latency): every rename out of staging/ must
    // be durable with its rename into wal/. Otherwise both names may survive a power cut, and
    // open's removal of the staging/ name would empty the acknowledged entry (finding 6).
    await Promise.all([
      this.io('fsync', this.walDirectory, () => this.fs.fsync(this.walDirectory)),
      this.io('fsync', this.stagingDirectory, () => this.fs.fsync(this.stagingDirectory)),
    ]);
    this.crash('after-wal-fsync');
  }

  /**
   * insertLogEntry's checks (nothing written): the caller's staged directory is a directory
   * with a MANIFEST, on the same file system as wal/ (the adoption is a rename). Then
   * prepareAdoptedDirectory writes RAFT into it and fsyncs every file and directory in it (the
   * caller may not have), the directory itself last.
   */
  async checkAdoptable(stagedDir: string): Promise<void> {
    const stagedStat = await this.io('stat', stagedDir, () => this.fs.stat(stagedDir));
    if (stagedStat === undefined || !stagedStat.isDirectory) {
      throw invalidArgumentError(`insertLogEntry: ${stagedDir} is not a directory`);
    }
    const walStat = await this.io('stat', this.walDirectory, () => this.fs.stat(this.walDirectory));
    if (walStat !== undefined && walStat.device !== stagedStat.device) {
      throw invalidArgumentError(`insertLogEntry: ${stagedDir} is not on the same file system as ${this.walDirectory}`);
    }
    const manifest = join(stagedDir, MANIFEST_FILE);
    const manifestStat = await this.io('stat', manifest, () => this.fs.stat(manifest));
    if (manifestStat === undefined || !manifestStat.isFile) {
      throw invalidArgumentError(`insertLogEntry: ${stagedDir} has no MANIFEST file`);
    }
  }

  /** Writes RAFT into the checked staged directory, then fsyncs everything in it. */
  async prepareAdoptedDirectory(stagedDir: string, raft: Uint8Array): Promise<void> {
    const raftPath = join(stagedDir, RAFT_FILE);
    await this.io('remove', raftPath, () => this.fs.remove(raftPath));
    await this.io('write', raftPath, () => this.fs.writeFile(raftPath, raft, FILE_MODE));
    this.crash('after-file-write');
    await this.fsyncTree(stagedDir);
  }

  /** fsyncs every file below `directory`, then each directory after its contents. */
  private async fsyncTree(directory: string): Promise<void> {
    const names = await this.io('readdir', directory, () => this.fs.readdir(directory));
    const files: string[] = [];
    for (const name of names) {
      const path = join(directory, name);
      const stat = await this.io('stat', path, () => this.fs.stat(path));
      if (stat?.isDirectory) await this.fsyncTree(path);
      else if (stat?.isFile) files.push(path);
    }
    this.crash('before-file-fsync');
    await forEachBounded(files, FSYNC_CONCURRENCY, (path) => this.io('fsync', path, () => this.fs.fsync(path)));
    this.crash('before-directory-fsync');
    await this.io('fsync', directory, () => this.fs.fsync(directory));
  }

  /** insertLogEntry's second half: renames the prepared directory into wal/ and fsyncs wal/. */
  async publishAdopted(stagedDir: string, index: number): Promise<void> {
    const target = this.entryDirectory(index);
    this.publishedPlain.delete(index);
    this.crash('before-rename');
    await this.io('rename', stagedDir, () => this.fs.rename(stagedDir, target));
    this.crash('after-rename');
    this.crash('before-wal-fsync');
    // The directory it left with wal/: both names must not survive a power cut (finding 6).
    const source = dirname(stagedDir);
    await Promise.all([
      this.io('fsync', this.walDirectory, () => this.fs.fsync(this.walDirectory)),
      this.io('fsync', source, () => this.fs.fsync(source)),
    ]);
    this.crash('after-wal-fsync');
  }

  /**
   * Removes entry directories (open's repairs): moves them out (below), then deletes the
   * renamed trees.
   */
  async removeEntries(batch: string, indexes: readonly number[]): Promise<void> {
    await this.moveEntriesOut(batch, indexes, { durable: true });
    await this.io('remove', batch, () => this.fs.remove(batch));
  }

  /**
   * Moves entry directories out of wal/ into `batch` (trash, deleted by the caller, usually
   * after the acknowledgement), oldest first. Only called once KV records that the removal
   * happened, so a crash at any point is finished at the next open. `durable`: then fsync wal/.
   * Not needed when every index moved is at or below the anchor KV holds (compaction): open
   * removes such a directory whatever a power cut kept of its renames, and no later write can
   * lower the anchor without fsyncing wal/ itself (applySnapshot, below).
   */
  async moveEntriesOut(batch: string, indexes: readonly number[], options: { durable: boolean }): Promise<void> {
    const renames = indexes.map((index) => [this.entryDirectory(index), compactedEntryPath(batch, index)] as const);
    // A compaction moves thousands, RENAME_CHUNK at a time: off the main thread where the
    // writer thread exists, else synchronous calls (nodeFileSystem) with the event loop let
    // run between chunks (a Raft node's heartbeats).
    const writer = this.entryWriter;
    for (let start = 0; start < renames.length; start += RENAME_CHUNK) {
      const chunk = renames.slice(start, start + RENAME_CHUNK);
      if (writer !== undefined) {
        this.crash('before-prefix-rename');
        await this.io('rename', this.walDirectory, () => writer.rename(chunk));
        continue;
      }
      if (start > 0) await new Promise<void>((resume) => setImmediate(resume));
      for (const [source, target] of chunk) {
        this.crash('before-prefix-rename');
        await this.io('rename', source, () => this.fs.rename(source, target));
      }
    }
    if (indexes.length === 0) return;
    this.crash('before-prefix-fsync');
    if (options.durable) await this.io('fsync', this.walDirectory, () => this.fs.fsync(this.walDirectory));
  }

  /**
   * backfill of one entry: RAFT.tmp written and fsynced, renamed over RAFT (atomic: RAFT is
   * either absent/damaged or complete), then the entry directory fsynced so the rename is durable.
   */
  async writeRaftAtomically(index: number, raft: Uint8Array): Promise<void> {
    const directory = this.entryDirectory(index);
    const temporary = join(directory, RAFT_TEMPORARY_FILE);
    const target = join(directory, RAFT_FILE);
    // A temp file left by a crashed backfill is mode 0400: remove it rather than overwrite.
    await this.io('remove', temporary, () => this.fs.remove(temporary));
    await this.io('write', temporary, () => this.fs.writeFile(temporary, raft, FILE_MODE));
    this.crash('backfill-after-temp-write');
    await this.io('fsync', temporary, () => this.fs.fsync(temporary));
    this.crash('backfill-before-rename');
    await this.io('rename', temporary, () => this.fs.rename(temporary, target));
    this.crash('backfill-after-rename');
    await this.io('fsync', directory, () => this.fs.fsync(directory));
  }

  // -------------------------------------------------------------------------------------------
  // Snapshot data files: snapshot/<LSN>.snap

  /** Writes a snapshot data file: temp + fsync + rename + fsync of snapshot/. Returns its name. */
  async writeSnapshotData(index: number, data: Uint8Array): Promise<string> {
    const name = snapshotFileName(index, randomBytes(6).toString('hex'));
    // Kept out of pruneSnapshotFiles until the caller releases it (after KV names it, or not).
    this.snapshotFilesInFlight.add(name);
    await this.ensureDirectory(this.snapshotDirectory, this.dir);
    const target = join(this.snapshotDirectory, name);
    const temporary = `${target}.tmp`;
    await this.io('remove', temporary, () => this.fs.remove(temporary));
    await this.io('write', temporary, () => this.fs.writeFile(temporary, data, FILE_MODE));
    this.crash('after-file-write');
    await this.io('fsync', temporary, () => this.fs.fsync(temporary));
    this.crash('before-snapshot-rename');
    await this.io('rename', temporary, () => this.fs.rename(temporary, target));
    // The rename is durable only once snapshot/ is fsynced (Gitaly B11 skipped this).
    await this.io('fsync', this.snapshotDirectory, () => this.fs.fsync(this.snapshotDirectory));
    return name;
  }

  // ---------------------------------------------------------------- journal (journal.ts)

  /** syncfs(2) of the store's file system; false (nothing done) where it is not available. */
  async syncFileSystem(): Promise<boolean> {
    const sync = this.fs.syncFileSystem;
    if (sync === undefined) return false;
    const number = ++this.syncsStarted;
    const done = await this.io('syncfs', this.dir, () => sync(this.dir));
    if (done) this.syncsCompletedThrough = Math.max(this.syncsCompletedThrough, number);
    return done;
  }

  /** Whether compacted directories can be reused here: syncfs works and files can be overwritten. */
  get recycles(): boolean {
    return this.fs.overwriteFile !== undefined && this.syncsCompletedThrough > 0;
  }

  /**
   * Journal mode: a compaction's directories (its indexes, all at or below the anchor KV holds
   * durably) stay in wal/ for reuse, as many as the pool has room for (the oldest). Returns the
   * indexes that did not fit, for the caller to move out and delete.
   */
  keepForRecycling(indexes: readonly number[]): number[] {
    // Every index offered left the log: reused or deleted, it is no longer a published entry.
    const plain = indexes.map((index) => this.publishedPlain.delete(index));
    const kept = Math.min(indexes.length, Math.max(0, RECYCLE_POOL_LIMIT - this.recyclePool.length));
    for (let position = 0; position < kept; position++) this.recyclePool.push({ index: indexes[position]!, plain: plain[position]! });
    return indexes.slice(kept);
  }

  /** Entries dropped from wal/ without being offered for reuse (a snapshot replaced the log). */
  forgetPublished(indexes: readonly number[]): void {
    for (const index of indexes) this.publishedPlain.delete(index);
  }

  /** Directories ready for reuse, oldest first, at most `count`. */
  private takeRecycled(count: number): { paths: string[]; plain: boolean[] } {
    const paths: string[] = [];
    const plain: boolean[] = [];
    while (paths.length < count && this.recyclePool.length > 0) {
      const taken = this.recyclePool.shift()!;
      paths.push(this.entryDirectory(taken.index));
      plain.push(taken.plain);
    }
    return { paths, plain };
  }

  /**
   * Removes every directory still waiting for reuse (close: a closed store's wal/ holds its log
   * only). Moved out of wal/ into a batch, then deleted; no fsync: each is at or below the
   * durable anchor, which open removes whatever a power cut kept (errors ignored for the same
   * reason).
   */
  async discardRecyclePool(): Promise<void> {
    const indexes: number[] = [];
    for (let taken = this.recyclePool.shift(); taken !== undefined; taken = this.recyclePool.shift()) indexes.push(taken.index);
    if (indexes.length === 0) return;
    try {
      const batch = await this.createBatchDirectory();
      await this.moveEntriesOut(batch, indexes, { durable: false });
      await this.discardBatchDirectory(batch);
    } catch {
      // Left for the next open, which removes entry directories at or below the anchor.
    }
  }

  /** Directories in the pool (stats). */
  get recyclePoolSize(): number {
    return this.recyclePool.length;
  }

  /**
   * The main-thread twin of the entry writer thread's reuse() (entry-writer-thread.ts): reuses
   * `recycled` in place (it lies in wal/ under its old index; it is renamed to its new one after) when
   * it holds exactly MANIFEST and RAFT; false (and removed) otherwise, and the caller creates a
   * new directory.
   */
  private async stageRecycled(recycled: string, raft: Uint8Array, plain: boolean): Promise<boolean> {
    const overwrite = this.fs.overwriteFile!;
    const directory = recycled;
    const raftPath = join(directory, RAFT_FILE);
    if (plain) {
      // Published by this store: exactly an empty MANIFEST and RAFT (publishedPlain).
      try {
        await overwrite(raftPath, raft, FILE_MODE);
        return true;
      } catch (error) {
        // Gone (it should not be): a new directory is made instead.
        if (errorCode(error) === 'ENOENT') return false;
        throw ioError('write', raftPath, error);
      }
    }
    const names = await this.io('readdir', recycled, () => this.fs.readdir(recycled));
    if (names.length !== 2 || !names.includes(MANIFEST_FILE) || !names.includes(RAFT_FILE)) {
      await this.io('remove', recycled, () => this.fs.remove(recycled));
      return false;
    }
    await this.io('write', raftPath, () => overwrite(raftPath, raft, FILE_MODE));
    const manifest = join(directory, MANIFEST_FILE);
    const stat = await this.io('stat', manifest, () => this.fs.stat(manifest));
    if (stat !== undefined && stat.size !== 0) await this.io('write', manifest, () => overwrite(manifest, new Uint8Array(0), FILE_MODE));
    return true;
  }

  /**
   * journal/'s record files (sequences) and segments (numbers), each ascending; both empty
   * without journal/. Any other name is corruption.
   */
  async listJournal(): Promise<{ records: number[]; segments: number[] }> {
    const stat = await this.io('stat', this.journalDirectory, () => this.fs.stat(this.journalDirectory));
    if (stat === undefined) return { records: [], segments: [] };
    if (!stat.isDirectory) throw corruptError(`${this.journalDirectory} is not a directory`, { path: this.journalDirectory });
    const names = await this.io('readdir', this.journalDirectory, () => this.fs.readdir(this.journalDirectory));
    const records: number[] = [];
    const segments: number[] = [];
    for (const name of names) {
      const sequence = parseJournalRecordName(name);
      const segment = sequence === undefined ? parseJournalSegmentName(name) : undefined;
      if (sequence !== undefined) records.push(sequence);
      else if (segment !== undefined) segments.push(segment);
      else {
        const path = join(this.journalDirectory, name);
        throw corruptError(`stray name in the journal: ${path} is not a journal record or segment`, { path });
      }
    }
    return { records: records.sort((a, b) => a - b), segments: segments.sort((a, b) => a - b) };
  }

  /** Whether the file system can write records into segments (writeAt and syncData). */
  get journalSegmentsSupported(): boolean {
    return this.fs.writeAt !== undefined && this.fs.syncData !== undefined;
  }

  journalSegmentPath(segment: number): string {
    return join(this.journalDirectory, journalSegmentName(segment));
  }

  readJournalSegmentSync(segment: number): Uint8Array {
    return this.readJournalFileSync(this.journalSegmentPath(segment));
  }

  private readJournalFileSync(path: string): Uint8Array {
    try {
      return this.fs.readFileSync(path);
    } catch (error) {
      throw ioError('read', path, error);
    }
  }

  /**
   * A new segment of `size` zero bytes, its data and its name durable (file, then journal/)
   * before it is used: a record written into it then needs only its own fdatasync.
   */
  async createJournalSegment(segment: number, size: number): Promise<void> {
    const path = this.journalSegmentPath(segment);
    // Owner read-write (not FILE_MODE's 0400): records are written into it after it is made,
    // and opening a 0400 file for writing fails for anyone but root.
    await this.io('write', path, () => this.fs.writeFile(path, new Uint8Array(size), JOURNAL_SEGMENT_MODE));
    await this.io('fsync', path, () => this.fs.fsync(path));
    await this.io('fsync', this.journalDirectory, () => this.fs.fsync(this.journalDirectory));
  }

  /** Makes one write group durable: its record written at `offset` of a segment, then fdatasync. */
  async writeJournalSegmentRecord(segment: number, offset: number, bytes: Uint8Array): Promise<void> {
    const path = this.journalSegmentPath(segment);
    await this.io('write', path, () => this.fs.writeAt!(path, offset, bytes));
    this.crash('before-journal-fsync');
    await this.io('fsync', path, () => this.fs.syncData!(path));
    this.crash('after-journal-fsync');
  }

  /** Removes segments. No fsync: every record in them is at or below raft/journal_through. */
  async removeJournalSegments(segments: readonly number[]): Promise<void> {
    for (const segment of segments) {
      const path = this.journalSegmentPath(segment);
      await this.io('remove', path, () => this.fs.remove(path));
    }
  }

  journalRecordPath(sequence: number): string {
    return join(this.journalDirectory, journalRecordName(sequence));
  }

  readJournalRecordSync(sequence: number): Uint8Array {
    return this.readJournalFileSync(this.journalRecordPath(sequence));
  }

  /**
   * Makes one write group durable: a new record file, then its data and its name fsynced in
   * parallel (one round: a record whose name survived without its data is torn, and only the
   * record of an unacknowledged group can be; open drops it).
   */
  async writeJournalRecord(sequence: number, bytes: Uint8Array, barrier?: (paths: readonly string[]) => Promise<void>): Promise<void> {
    const path = this.journalRecordPath(sequence);
    await this.io('write', path, () => this.fs.writeFile(path, bytes, FILE_MODE));
    this.crash('before-journal-fsync');
    // The record's data and its name in journal/, in one round (a storage's partitions: one
    // shared pass, `barrier`).
    if (barrier !== undefined) await this.sharedBarrier(barrier, [path, this.journalDirectory]);
    else await Promise.all([this.io('fsync', path, () => this.fs.fsync(path)), this.io('fsync', this.journalDirectory, () => this.fs.fsync(this.journalDirectory))]);
    this.crash('after-journal-fsync');
  }

  /**
   * Removes checkpointed records. No fsync: KV's raft/journal_through already says they are
   * covered, and open removes any that a power cut brings back.
   */
  async removeJournalRecords(sequences: readonly number[]): Promise<void> {
    for (const sequence of sequences) {
      const path = this.journalRecordPath(sequence);
      await this.io('remove', path, () => this.fs.remove(path));
    }
  }

  readSnapshotDataSync(name: string): Uint8Array {
    const path = join(this.snapshotDirectory, name);
    try {
      return this.fs.readFileSync(path);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') throw corruptError(`snapshot data file ${path} is missing`, { path });
      throw ioError('read', path, error);
    }
  }

  async snapshotFileExists(name: string): Promise<boolean> {
    const path = join(this.snapshotDirectory, name);
    const stat = await this.io('stat', path, () => this.fs.stat(path));
    return stat?.isFile === true;
  }

  /** Removes every file in snapshot/ but `keep` (older snapshots, temp files of crashed writes). */
  async pruneSnapshotFiles(keep: string | undefined): Promise<void> {
    const stat = await this.io('stat', this.snapshotDirectory, () => this.fs.stat(this.snapshotDirectory));
    if (stat === undefined) return;
    const names = await this.io('readdir', this.snapshotDirectory, () => this.fs.readdir(this.snapshotDirectory));
    for (const name of names) {
      if (name === keep) continue;
      // A snapshot being written beside the queue (createSnapshot), or its temporary file.
      if (this.snapshotFilesInFlight.has(name) || this.snapshotFilesInFlight.has(name.replace(/\.tmp$/, ''))) continue;
      const path = join(this.snapshotDirectory, name);
      await this.io('remove', path, () => this.fs.remove(path));
    }
  }
}
