/**
 * ReplicaLogStore: a durable Raft log store with etcd raft v3.6's Storage contract over
 * Gitaly's on-disk WAL format. It behaves exactly like MemoryStorage on every observable (the
 * same rules from log-rules.ts, the same codes and messages) and survives a restart.
 *
 * On disk (API.md "On-disk format"; lib/wal/layout.ts):
 *   <dir>/wal/<LSN>/{MANIFEST,RAFT,payload…}  one directory per retained entry (log-manager.ts)
 *   <dir>/staging/                            batches being written, trash being removed
 *   <dir>/snapshot/<LSN>-<tag>.snap           the latest snapshot's data, if it has data
 *   <dir>/kv/                                 LevelDB with the raft keys (raft-state.ts), unless opts.db
 *   <dir>/LOCK.db/                            the directory lock (lock.ts)
 *
 * Reads are synchronous and answered from memory: the anchor (index S and term T_S of the
 * last compacted or snapshotted entry, so firstIndex() = S+1 and term(S) = T_S always
 * answers), lastIndex(), the run-length terms of every retained entry, and a bounded cache of
 * recent entries. A cache miss reads the entry's RAFT file with readFileSync and checks that it
 * decodes to an entry whose index is its LSN (else ERR_CORRUPT naming the path).
 *
 * Writes are serialised in call order by a promise queue. Each one validates first (nothing
 * changes when it is refused), then makes its change durable, then publishes it to memory in
 * one synchronous step: a synchronous reader sees the state before or after, never between.
 * Group commit: append and setHardState calls queued back to back (made while an earlier write
 * runs, or in one tick as a Ready loop makes them) form one write group, checked call by call
 * but flushed as one durable write (lib/write-group.ts); any other write ends the group.
 * Any failure while changing the disk (an fsync error, ENOSPC, …) makes the store refuse every
 * further write with ERR_IO until it is closed and reopened: after a failed fsync the kernel
 * may have dropped the dirty pages, so only a fresh open knows what is on disk.
 *
 * Multi-step operations are ordered to be atomic across a crash:
 *   compact(i)        KV anchor (i, term(i)) synced FIRST; then entry directories <= i are
 *                     moved out oldest first (no fsync of wal/ needed) and deleted after the
 *                     acknowledgement. At open, entry directories <= the anchor are leftovers
 *                     of an interrupted compaction (or of one a power cut undid) and are removed.
 *   applySnapshot(s)  data file (temp, fsync, rename, fsync snapshot/); then ONE synced KV batch
 *                     {snapshot metadata, data file name, conf state, anchor, intent "drop every
 *                     entry directory"}; then the directories are removed, wal/ fsynced and the
 *                     intent cleared. At open a pending intent is redone.
 *   createSnapshot    data file as above, then the metadata in KV (the conf state is untouched).
 *
 * Checkpoint (KV raft/log_checkpoint, raft-state.ts): so that open() need not read every
 * retained RAFT file, KV may hold { V, the term runs of the retained entries up to V }.
 *   Invariant C1: V <= the saved commit. The record is only ever written (a) in the SAME synced
 *     batch as a hard state whose commit is at least V (setHardState), or (b) alone at close() with V =
 *     the commit already saved — never in a separate unsynced write, so no crash can leave a
 *     checkpoint whose V is above the durable commit. The commit never goes down.
 *   Invariant C2: when it is written, every entry <= V is durable (commit <= lastIndex, and
 *     lastIndex only counts entries whose append was fsynced) and the runs are the in-memory
 *     terms, which are exactly the terms of the RAFT files on disk.
 *   Invariant C3: it is only written once a hard state exists and no entry is pending backfill
 *     (pendingRaft empty): the runs never hold a term that backfill has yet to write.
 *   Why it stays right: an entry <= commit is never truncated or replaced with another term
 *   (log-rules planAppend refuses it with ERR_COMMITTED; insertLogEntry applies the same
 *   rules); compact(i) only removes entries, so the checkpoint merely covers indexes that are
 *   gone (open skips them); applySnapshot(s) is refused below the commit, so s >= commit >= V
 *   and every entry the checkpoint describes is dropped (its batch also deletes the record).
 *   So for every retained entry <= V the checkpoint's term is its term forever: the record
 *   can become stale, never wrong.
 *   At open it is used only when consistent with KV and wal/ (a hard state exists, V <= its
 *   commit, anchor < V <= last, its first run starts at or below the first retained index;
 *   terms non-decreasing and runs strictly increasing are checked when decoding); otherwise
 *   open() reads every RAFT file as before (openStats says which). Entries <= V must still be
 *   listed in wal/ (gaps and stray names are found as before) but their RAFT files are not
 *   read: a RAFT file damaged or missing at or below V is not found by open() — a read of it
 *   still fails (ERR_CORRUPT: missing, does not decode, its index is not its LSN, or its term
 *   is not the indexed one), and `replicalog verify` (verify.ts) reads every file. The entry
 *   cache starts with the tail only (entries <= V are read from disk on first use).
 *
 * Status (API.md): `unbootstrapped` — no hard state and no WAL entries (an empty wal/ without
 * a hard state is a fresh store: firstIndex 1, lastIndex 0); `needs-backfill` — no hard state
 * but WAL entries (a log written before Raft, or entries appended before any hard state);
 * `bootstrapped` — a hard state is saved. Independently of the status, while any retained
 * entry lacks a valid RAFT file (`pendingBackfill > 0`), `entries()` and `term()` of such an
 * entry throw ERR_NEEDS_BACKFILL and every write but backfill() is refused the same way.
 *
 * Gitaly bugs fixed here: B1 maxSize in bytes (limitSize); B2 a RAFT file missing below the
 * first index is ERR_COMPACTED; B3/B4 term(firstIndex()-1) and the last term come from the
 * anchor record, never from the hard state; B5/B6 via log-rules.ts; B7 atomic backfill; B8
 * trailing deletes fsync wal/; B9 entries above the commit index survive a restart and are
 * served — they were acknowledged as durable, and raft itself truncates them if a new leader
 * disagrees (deleting them at open would break a follower's promise to the leader that
 * counted them towards a quorum).
 */
import { StoreStatsCollector, type StoreStats } from './store-stats.js';
import { join, resolve } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { encodeEntry, encodeRaftEntry, entrySize } from './codec.js';
import {
  checkSafeUnsigned,
  closedError,
  compactedError,
  corruptError,
  describeRootCause,
  ErrorCode,
  invalidArgumentError,
  isReplicaLogError,
  ReplicaLogError,
  snapOutOfDateError,
  unavailableError,
} from './errors.js';
import { DirectoryLock } from './lock.js';
import type { KvGroupCommit } from './wal/kv-group-commit.js';
import { createDirectoryDurably } from './wal/durable-directory.js';
import { partitionsPath, storageOfPartitionDirectory } from './wal/storage-layout.js';
import { existsSync } from 'node:fs';
import { checkCompact, checkEntriesArguments, checkHardState, planAppend, type LogView } from './log-rules.js';
import { readerCopy, storedCopy } from './memory-storage.js';
import {
  cloneConfState,
  cloneSnapshot,
  copyBytes,
  emptyConfState,
  emptyHardState,
  emptySnapshot,
  EntryType,
  NO_LIMIT,
  hardStateCopy,
  type ConfState,
  type Entry,
  type HardState,
  type Snapshot,
  type SnapshotMetadata,
  type WritableStorage,
} from './types.js';
import {
  validateConfStateUntrusted,
  validateEntriesUntrusted,
  validateEntryUntrusted,
  validateHardStateUntrusted,
  validateSnapshotUntrusted,
} from './validate.js';
import { EntryCache } from './wal/entry-cache.js';
import { nodeFileSystem, type FileSystem } from './wal/file-system.js';
import { entryRelativePath, isSnapshotFileName, kvPath } from './wal/layout.js';
import { guardLevelDatabaseOpen } from './wal/level-files.js';
import { WalLogManager, type CrashPoint, type CrashPointName } from './wal/log-manager.js';
import { entryWriterThread } from './wal/entry-writer-thread.js';
import { RaftStateStore, type LogAnchor, type LogCheckpoint, type RaftStateChange, type SavedRaftState } from './wal/raft-state.js';
import { TermRuns } from './wal/term-runs.js';
import { PendingLog, type GroupedWrite, type WriteGroup } from './write-group.js';
import { crc32, decodeJournalPayload, encodeJournalRecord, encodeSegmentRecord, JOURNAL_RECORD_HEADER_BYTES, journalRecordTear, scanJournalSegment } from './wal/journal.js';
import { JournalSegmentWriter } from './wal/journal-segments.js';

/** How many entries backfill() rewrites at the same time. */
const BACKFILL_CONCURRENCY = 16;

/**
 * createSnapshot: data at least this large is written from the caller's buffer under a CRC
 * check instead of being copied first (see createSnapshot).
 */
export const SNAPSHOT_DATA_COPY_LIMIT = 1 << 20;

/** A hard state whose commit is this many entries past the checkpoint's V carries a new one. */
export const CHECKPOINT_INTERVAL = 4096;
/**
 * close() writes a checkpoint when it would cover at least this many more committed entries
 * (capped by the interval): below that a full scan at open costs a few milliseconds.
 */
const CHECKPOINT_AT_CLOSE_MIN = 1024;
/**
 * A log whose terms change more often than this (16 bytes per run) gets no checkpoint: the
 * record would be rewritten at every interval for little gain. Open then reads every RAFT file.
 */
const CHECKPOINT_MAX_RUNS = 65536;

/**
 * Journal mode (lib/wal/journal.ts): a checkpoint starts once this many acknowledged entries
 * (or JOURNAL_CHECKPOINT_RECORDS records) wait in the journal only, and runs behind the
 * acknowledgements. A write group waits for the running checkpoint when JOURNAL_MAX_PENDING
 * entries are still waiting: the entries held in memory until they are in wal/ stay bounded.
 */
export const JOURNAL_CHECKPOINT_ENTRIES = 1024;
const JOURNAL_CHECKPOINT_RECORDS = 256;
const JOURNAL_MAX_PENDING = 4 * JOURNAL_CHECKPOINT_ENTRIES;
/**
 * And at most this long after a record starts waiting (a quiet store's entries reach wal/, where
 * Gitaly's readers see them, within about a second).
 */
export const JOURNAL_CHECKPOINT_DELAY_MS = 1000;

/** An acknowledged write group that is durable in its journal record only. */
interface JournalPending {
  sequence: number;
  plan: readonly Entry[];
  hardState: HardState | undefined;
}

/** What open() found in journal/ past raft/journal_through (ReplicaLogStore.readJournal). */
interface PendingJournal {
  listed: { records: number[]; segments: number[] };
  /** The highest sequence of a whole record, covered or not (0: none). */
  lastSeen: number;
  /** Whole records past the marker, in sequence order. */
  records: (JournalPending & { path: string })[];
  /** The newest record, torn (an unacknowledged group): dropped. */
  tear: { path: string; reason: string } | undefined;
}

/**
 * A snapshot data file written by prepareSnapshotData, for createSnapshot at `index` (an opaque
 * token of the store that wrote it: `size` is the data's length in bytes).
 */
export interface PreparedSnapshotData {
  readonly index: number;
  readonly size: number;
}

/** How open() built the term index (ReplicaLogStore.openStats). */
export interface OpenStats {
  /** RAFT files open() read (the whole retained log, or only the tail past the checkpoint). */
  scanned: number;
  /** Retained entries whose term came from the checkpoint, their RAFT files not read. */
  fromCheckpoint: number;
  /**
   * `used`; `absent` (no record); `stale` (it covers no retained entry: everything it
   * described was compacted); `invalid` (undecodable or inconsistent with the log: `reason`).
   * Every case but `used` is a full scan.
   */
  checkpoint: 'used' | 'absent' | 'stale' | 'invalid';
  reason?: string;
}

export type StoreStatus = 'unbootstrapped' | 'needs-backfill' | 'bootstrapped';

/** `K`/`V`: the default key and value types of a given `db` (the store uses raw bytes on every call). */
export interface ReplicaLogStoreOptions<K = string, V = string> extends PartitionStoreOptions {
  /** The store directory; created (mode 0700) when missing. */
  dir: string;
  /** Prefixes every KV key with `p/` + the id as 8 bytes big-endian + `/` (a db shared by partitions). */
  partitionId?: number;
  /** An already-open classic-level database to keep the raft keys in; the store never closes it. */
  db?: ClassicLevel<K, V>;
}

/**
 * What a storage (lib/storage.ts) lends each partition store it opens: its database, its
 * group commit and its file system (whose syncfs is the storage's shared barrier).
 */
export interface PartitionHost {
  readonly database: ClassicLevel<Uint8Array, Uint8Array>;
  /** The database's path, for error messages. */
  readonly where: string;
  readonly groupCommit: KvGroupCommit;
  readonly fileSystem: FileSystem;
  /** 'shared': appends make their entries durable through `barrier`, shared with the other partitions. */
  readonly appendBarriers: 'per-file' | 'shared';
  /** Resolves once every path is durable (a pass shared by the partitions that ask together). */
  barrier(paths: readonly string[]): Promise<void>;
  /** Called once by the partition store's close(), after its last write. */
  release(store: ReplicaLogStore): void;
}

/** The options of one store that a storage's partitions take too. */
export interface PartitionStoreOptions {
  /** Entry cache bounds (defaults: 4096 entries, 16 MiB). */
  cacheMaxEntries?: number;
  cacheMaxBytes?: number;
  /**
   * Entries of commit progress between two checkpoints written with setHardState (default
   * CHECKPOINT_INTERVAL); 0 never writes one (an existing one is still used at open).
   */
  checkpointInterval?: number;
  /**
   * Write groups (append + setHardState) are made durable as one journal record each (one
   * round of two parallel fsyncs) and written into wal/ and KV behind the acknowledgement
   * (lib/wal/journal.ts). Default false. A journal left by a crash is replayed at open either way.
   */
  journal?: boolean;
  /** Journal mode: the longest a record waits for its checkpoint (default JOURNAL_CHECKPOINT_DELAY_MS). */
  journalCheckpointDelayMs?: number;
  /** Test only: the file system the WAL uses (fault injection). */
  fileSystem?: FileSystem;
  /** Test only: called at every named step of the write path (crash injection). */
  crashPoint?: CrashPoint;
}

export interface BackfillOptions {
  /** Called with (0, total) first and then after each entry is durable. */
  onProgress?(done: number, total: number): void;
}

function cloneMetadata(metadata: SnapshotMetadata): SnapshotMetadata {
  return { index: metadata.index, term: metadata.term, confState: cloneConfState(metadata.confState) };
}

export function needsBackfillError(dir: string, pending: number): ReplicaLogError {
  return new ReplicaLogError(
    ErrorCode.NeedsBackfill,
    `${pending} entries in ${join(dir, 'wal')} have no valid RAFT file (a log written before Raft): run \`replicalog migrate ${dir}\` or store.backfill()`,
    { path: dir },
  );
}

export class ReplicaLogStore implements WritableStorage, LogView {
  readonly dir: string;
  readonly partitionId: number | undefined;

  // ---- in-memory state, published in one synchronous step after each durable change
  private anchor: LogAnchor = { index: 0, term: 0 };
  /** Data files prepareSnapshotData wrote, by the token it returned, until createSnapshot takes one. */
  private readonly preparedSnapshotFiles = new WeakMap<PreparedSnapshotData, { file: string; data: Uint8Array }>();
  private last = 0;
  private readonly terms = new TermRuns();
  private readonly cache: EntryCache;
  /** Retained entries without a valid RAFT file; their terms in `terms` are the ones backfill will write. */
  private readonly pendingRaft = new Set<number>();
  /** Counters for stats() (set by open()). */
  private collector = new StoreStatsCollector();
  /** What open() repaired (torn states only unacknowledged writes could leave), for logs and tests. */
  readonly repairs: string[] = [];
  private savedHardState: HardState | undefined;
  private savedConfState: ConfState = emptyConfState();
  private snapshotMetadata: SnapshotMetadata = emptySnapshot().metadata;
  private snapshotDataFile: string | undefined;
  /** Whether KV holds raft/log_anchor (written with the first hard state, or by compact/applySnapshot). */
  private anchorRecorded = false;
  /** V of the checkpoint in KV when it is usable, else 0 (what the next checkpoint improves on). */
  private checkpointThrough = 0;
  private readonly checkpointInterval: number;
  /** How an append's entries are made durable (writeEntries). */
  private readonly appendBarriers: 'per-file' | 'shared';
  private openStatsRecord: OpenStats = { scanned: 0, fromCheckpoint: 0, checkpoint: 'absent' };

  // ---- journal mode (lib/wal/journal.ts)
  private readonly journalMode: boolean;
  /** The last journal record written (or found at open). */
  private journalSequence = 0;
  /**
   * Where records go when the file system can write in place (writeAt, syncData) and the store
   * is not a storage's partition (whose records share the storage's barrier): segments. Else
   * one file per record.
   */
  private journalSegments: JournalSegmentWriter | undefined;
  /** Acknowledged groups durable in the journal only, oldest first, not yet in a checkpoint. */
  private journalPending: JournalPending[] = [];
  private journalPendingEntries = 0;
  private journalCheckpointRunning: Promise<void> | undefined;
  private journalCheckpointTimer: NodeJS.Timeout | undefined;
  /** What the running checkpoint covers (for stats()). */
  private journalInCheckpoint = { records: 0, entries: 0, lowestIndex: Number.POSITIVE_INFINITY };
  /**
   * Published entries that are not (or not yet known to be) in wal/: reads are answered from
   * here first. An entry leaves once the checkpoint that wrote it into wal/ is durable.
   */
  private readonly pinned = new Map<number, Entry>();
  /** The last index durable in wal/ (journal mode; lastIndex() may be ahead of it). */
  private walLast = 0;

  // ---- lifecycle
  private closed = false;
  /** The first close() (every later call returns it). */
  private closing: Promise<void> | undefined;
  private failure: ReplicaLogError | undefined;
  private queue: Promise<void> = Promise.resolve();
  /** Trash of the running write (moved-out entry directories), deleted after its acknowledgement. */
  private readonly trashAfterAcknowledgement: string[] = [];
  /** Journal mode: the directory moves of compactions, run behind the queue (moveOutBehindQueue). */
  private compactionMoves: Promise<void> = Promise.resolve();
  /** The write group at the tail of the queue that appends and hard states may still join. */
  private openGroup: WriteGroup | undefined;
  /** What the log-rules checks see (no closed check, for the same reason as termOf). */
  private readonly view: LogView = {
    firstIndex: () => this.anchor.index + 1,
    lastIndex: () => this.last,
    term: (index) => this.termOf(index),
    hardState: () => this.hardState(),
  };

  private constructor(
    dir: string,
    partitionId: number | undefined,
    private readonly wal: WalLogManager,
    private readonly raftState: RaftStateStore,
    /** The directory lock (a store opened alone); a storage's partition has none: `host` holds it. */
    private readonly lock: DirectoryLock | undefined,
    private readonly ownedDatabase: ClassicLevel<Uint8Array, Uint8Array> | undefined,
    /** The storage this partition store belongs to (lib/storage.ts), told when it closes. */
    private readonly host: PartitionHost | undefined,
    private readonly crashPoint: CrashPoint,
    cache: EntryCache,
    checkpointInterval: number,
    journal: boolean,
    private readonly journalCheckpointDelayMs: number,
  ) {
    this.dir = dir;
    this.partitionId = partitionId;
    this.cache = cache;
    this.checkpointInterval = checkpointInterval;
    this.journalMode = journal;
    // In a storage the barriers are shared by every partition (one pass answers all of those
    // that reached it together: their paths' fsyncs, or one syncfs when they are many).
    this.appendBarriers = host?.appendBarriers ?? 'per-file';
  }

  /**
   * Opens (creating if needed) the store in `dir`: takes the directory lock (ERR_LOCKED when
   * another open store holds it), finishes any interrupted multi-step operation, checks the
   * tree (ERR_CORRUPT naming the path) and builds the in-memory index from the RAFT files —
   * only those past the checkpoint when KV holds a consistent one (header "Checkpoint").
   */
  static async open<K = string, V = string>(options: ReplicaLogStoreOptions<K, V>): Promise<ReplicaLogStore> {
    if (typeof options !== 'object' || options === null) throw invalidArgumentError('open: options must be an object');
    if (typeof options.dir !== 'string' || options.dir === '') throw invalidArgumentError('open: dir must be a non-empty string');
    if (options.partitionId !== undefined) checkSafeUnsigned(options.partitionId, 'partitionId');
    if (options.cacheMaxEntries !== undefined) checkSafeUnsigned(options.cacheMaxEntries, 'cacheMaxEntries');
    if (options.cacheMaxBytes !== undefined) checkSafeUnsigned(options.cacheMaxBytes, 'cacheMaxBytes');
    if (options.checkpointInterval !== undefined) checkSafeUnsigned(options.checkpointInterval, 'checkpointInterval');
    if (options.journalCheckpointDelayMs !== undefined) checkSafeUnsigned(options.journalCheckpointDelayMs, 'journalCheckpointDelayMs');
    const dir = resolve(options.dir);
    // A storage's partition has no lock or KV of its own: opened alone it would get new, empty
    // ones beside the storage's (its hard state and conf state would seem lost).
    const storageDir = storageOfPartitionDirectory(dir);
    if (storageDir !== undefined) {
      throw invalidArgumentError(`open: ${dir} is a partition of the storage ${storageDir}: open it with ReplicaLogStorage.openPartition`);
    }
    // And a storage's own directory is not a store (its partitions/ beside kv/).
    if (existsSync(partitionsPath(dir))) {
      throw invalidArgumentError(`open: ${dir} is a storage of partitions (${partitionsPath(dir)}): open it with ReplicaLogStorage.open`);
    }
    const openStarted = process.hrtime.bigint();
    const collector = new StoreStatsCollector();
    const fileSystem = collector.timed(options.fileSystem ?? nodeFileSystem);
    // Every level created, and the store directory's own name, made durable (finding 2, 3).
    await createDirectoryDurably(fileSystem, dir);
    const lock = await DirectoryLock.acquire(dir);
    let ownedDatabase: ClassicLevel<Uint8Array, Uint8Array> | undefined;
    try {
      let database: ClassicLevel<Uint8Array, Uint8Array>;
      let where: string;
      let restoredKvFiles: string[] = [];
      if (options.db !== undefined) {
        // A db just constructed is still 'opening' (abstract-level opens it on the next tick).
        if (options.db.status === 'opening') await options.db.open().catch(() => {});
        if (options.db.status !== 'open') throw invalidArgumentError(`open: the given db is ${options.db.status}, not open`);
        database = options.db as unknown as ClassicLevel<Uint8Array, Uint8Array>;
        where = `the given db (${options.db.location})`;
      } else {
        where = kvPath(dir);
        ownedDatabase = new ClassicLevel<Uint8Array, Uint8Array>(where, { keyEncoding: 'view', valueEncoding: 'view' });
        try {
          // LevelDB's open can keep its deletions and lose CURRENT's rename (finding 8): the files
          // it may delete get a second name while it opens (wal/level-files.ts).
          const guard = await guardLevelDatabaseOpen(where, fileSystem);
          restoredKvFiles = guard.restored;
          await ownedDatabase.open();
          await guard.afterOpen();
        } catch (error) {
          throw new ReplicaLogError(ErrorCode.Io, `cannot open ${where}: ${describeRootCause(error)}`, { path: where, cause: error });
        }
        database = ownedDatabase;
      }
      const store = ReplicaLogStore.assemble(dir, options, { database, where, fileSystem, collector, lock, ownedDatabase, host: undefined });
      if (restoredKvFiles.length > 0) store.repairs.push(`${where}: ${restoredKvFiles.join(', ')} linked back (a LevelDB open cut by a power cut)`);
      await store.recover(where);
      collector.opened(Number(process.hrtime.bigint() - openStarted) / 1e9);
      return store;
    } catch (error) {
      await ownedDatabase?.close().catch(() => {});
      await lock.release().catch(() => {});
      throw error;
    }
  }

  /**
   * Opens partition `options.partitionId` of a storage in `dir`, which the storage created and
   * made durable: no lock and no database of its own (the storage's), so an idle partition
   * holds no descriptor. Internal: called by ReplicaLogStorage.openPartition.
   */
  static async openInStorage(host: PartitionHost, dir: string, options: PartitionStoreOptions & { partitionId: number }): Promise<ReplicaLogStore> {
    const openStarted = process.hrtime.bigint();
    const collector = new StoreStatsCollector();
    const fileSystem = collector.timed(host.fileSystem);
    const store = ReplicaLogStore.assemble(dir, options, {
      database: host.database,
      where: host.where,
      fileSystem,
      collector,
      lock: undefined,
      ownedDatabase: undefined,
      host,
    });
    await store.recover(host.where);
    collector.opened(Number(process.hrtime.bigint() - openStarted) / 1e9);
    return store;
  }

  private static assemble(
    dir: string,
    options: PartitionStoreOptions & { partitionId?: number },
    parts: {
      database: ClassicLevel<Uint8Array, Uint8Array>;
      where: string;
      fileSystem: FileSystem;
      collector: StoreStatsCollector;
      lock: DirectoryLock | undefined;
      ownedDatabase: ClassicLevel<Uint8Array, Uint8Array> | undefined;
      host: PartitionHost | undefined;
    },
  ): ReplicaLogStore {
    const crashPoint = options.crashPoint ?? (() => {});
    const wal = new WalLogManager(dir, parts.fileSystem, crashPoint, options.fileSystem === undefined ? entryWriterThread : undefined);
    const store = new ReplicaLogStore(
      dir,
      options.partitionId,
      wal,
      new RaftStateStore(parts.database, options.partitionId, parts.where, parts.host?.groupCommit),
      parts.lock,
      parts.ownedDatabase,
      parts.host,
      crashPoint,
      new EntryCache(options.cacheMaxEntries, options.cacheMaxBytes),
      options.checkpointInterval ?? CHECKPOINT_INTERVAL,
      options.journal === true,
      options.journalCheckpointDelayMs ?? JOURNAL_CHECKPOINT_DELAY_MS,
    );
    store.collector = parts.collector;
    return store;
  }

  /** Open: redo a pending intent, remove leftovers, check the tree, build the index. */
  private async recover(where: string): Promise<void> {
    await this.wal.prepare(this.host === undefined ? { journal: this.journalMode } : { journal: this.journalMode, barrier: this.host.barrier });
    const saved = await this.raftState.load();
    let indexes = await this.wal.listIndexes();

    if (saved.intent === 'drop-all-entries') {
      // applySnapshot's KV batch is durable but its directory removal may not have finished.
      await this.wal.removeEntries(await this.wal.createBatchDirectory(), indexes);
      this.crashPoint('before-intent-clear');
      await this.raftState.write({ intent: null });
      indexes = [];
    }

    const hardState = saved.hardState;
    await this.refuseLostKv(saved.anchor === undefined && hardState === undefined, indexes, where);
    // Without an anchor record (a tree written by Gitaly) the anchor is just below the oldest
    // retained entry; its term is unknown, so the hard state's term (Gitaly's lastTerm) or 0.
    const anchor: LogAnchor =
      saved.anchor ??
      (indexes.length > 0 && indexes[0]! > 1 ? { index: indexes[0]! - 1, term: hardState?.term ?? 0 } : { index: 0, term: 0 });

    // A durable anchor above every entry directory is an empty log at the anchor. A power cut
    // can leave it: compact(lastIndex) records the anchor, then renames the directories out, and
    // unsynced renames survive in any order (finding 4). Every directory at or below it is a
    // leftover, removed below. Nothing committed can hide there: a commit above the anchor with
    // no entry above it is refused further down (commit above the last index).
    if (saved.snapshotDataFile !== undefined && !isSnapshotFileName(saved.snapshotDataFile)) {
      throw corruptError(`${where}: the snapshot data file name ${JSON.stringify(saved.snapshotDataFile)} is not one replicalog writes`, {
        path: where,
      });
    }

    // Entry directories at or below the anchor are leftovers of an interrupted compaction.
    const stale = indexes.filter((index) => index <= anchor.index);
    if (stale.length > 0) {
      await this.wal.removeEntries(await this.wal.createBatchDirectory(), stale);
      indexes = indexes.slice(stale.length);
    }

    // The retained entries must be exactly anchor+1 .. last. A gap is torn, not corrupt, when
    // only unacknowledged writes can have left it: an append is acknowledged after wal/ is
    // fsynced, so an acknowledged entry never goes missing, and appends run one after another,
    // so every entry after a missing one belongs to the same unacknowledged write or a later
    // one. The saved commit is the check: entries above it were never acknowledged as committed
    // (raft re-replicates them), so the log is cut at the gap (finding 4). A gap at or below the
    // commit could hide committed data: ERR_CORRUPT.
    const commit = hardState?.commit ?? 0;
    // Only a log replicalog wrote (an anchor or a hard state is recorded) is repaired: in a
    // pre-Raft tree every entry is the application's acknowledged data.
    const written = saved.anchor !== undefined || hardState !== undefined;

    // Entries a journal record past raft/journal_through covers: everything in wal/ from the
    // first index the oldest such record writes. A checkpoint writes wal/ only from there on
    // (its records start at its first index: checkpointableRecords), directly and before its
    // syncfs (a direct checkpoint), so a power cut may have left any of those entries torn,
    // stale or renamed from a compacted directory. They are not part of the log: the replay
    // below rewrites them from the records. Entries below that index are the durable log the
    // record applies to (the last checkpoint's syncfs and KV batch made them so). A record that
    // would write at or below the saved commit or the anchor is left to the replay to refuse.
    const journal = this.readJournal(saved.journalThrough ?? 0, await this.wal.listJournal());
    const coveredFrom = journal.records.find((record) => record.plan.length > 0)?.plan[0]!.index;
    if (written && coveredFrom !== undefined && coveredFrom > commit && coveredFrom > anchor.index) {
      const position = indexes.findIndex((index) => index >= coveredFrom);
      if (position !== -1) {
        const covered = indexes.slice(position);
        await this.wal.removeEntries(await this.wal.createBatchDirectory(), covered);
        this.repairs.push(
          `removed ${covered.length} entr${covered.length === 1 ? 'y' : 'ies'} from ${this.wal.entryDirectory(coveredFrom)} on, which journal records rewrite (an unfinished checkpoint)`,
        );
        indexes = indexes.slice(0, position);
      }
    }
    let expected = anchor.index + 1;
    for (let position = 0; position < indexes.length; position++) {
      const index = indexes[position]!;
      if (index !== expected) {
        const path = this.wal.entryDirectory(expected);
        if (!written || expected <= commit) {
          throw corruptError(`gap in the WAL: ${path} is missing (the next entry is ${this.wal.entryDirectory(index)})${written ? `, at or below the commit ${commit}` : ''}`, {
            path,
            index: expected,
          });
        }
        const torn = indexes.slice(position);
        await this.wal.removeEntries(await this.wal.createBatchDirectory(), torn);
        this.repairs.push(`cut the log at the gap before ${this.wal.entryDirectory(index)}: ${torn.length} unacknowledged entr${torn.length === 1 ? 'y' : 'ies'} removed`);
        indexes = indexes.slice(0, position);
        break;
      }
      expected++;
    }

    let last = indexes.length > 0 ? indexes[indexes.length - 1]! : anchor.index;
    const bootstrapped = hardState !== undefined;
    let nearestTerm: number | undefined = saved.anchor !== undefined && saved.anchor.index > 0 ? saved.anchor.term : undefined;

    // Terms of the retained entries <= V from a consistent checkpoint, without reading their
    // RAFT files (header "Checkpoint": such a term can never have changed since it was written).
    // Every one of these indexes was listed in wal/ just above (the gap check).
    const decision = this.checkpointCrossCheck(ReplicaLogStore.checkpointDecision(saved, anchor, last), anchor);
    let position = 0;
    if (decision.use !== undefined) {
      const { starts, terms, verifiedThrough } = decision.use;
      const first = anchor.index + 1;
      for (let run = 0; run < starts.length; run++) {
        const runLast = run + 1 < starts.length ? starts[run + 1]! - 1 : verifiedThrough;
        if (runLast < first) continue; // compacted since the checkpoint was written
        this.terms.push(Math.max(starts[run]!, first), terms[run]!);
        nearestTerm = terms[run]!;
      }
      position = verifiedThrough - anchor.index; // indexes[position] === verifiedThrough + 1
      this.checkpointThrough = verifiedThrough;
    }
    this.openStatsRecord = { scanned: indexes.length - position, fromCheckpoint: position, checkpoint: decision.state };
    if (decision.reason !== undefined) this.openStatsRecord.reason = decision.reason;

    // Terms from the RAFT files (never MANIFEST or payloads) of the entries past the checkpoint
    // (all of them without one). A damaged RAFT file is a torn backfill on a store without hard
    // state (backfill rewrites it) and corruption otherwise.
    for (; position < indexes.length; position++) {
      const index = indexes[position]!;
      const inspection = this.wal.inspectRaftSync(index);
      if (inspection.state === 'ok') {
        // Terms never decrease along a log (append refuses it): a regression is damage.
        if (nearestTerm !== undefined && inspection.entry.term < nearestTerm) {
          throw corruptError(
            `corrupt WAL entry ${this.wal.entryDirectory(index)}: term ${inspection.entry.term} is below term ${nearestTerm} of the entry before it`,
            { path: this.wal.entryDirectory(index), index },
          );
        }
        this.terms.push(index, inspection.entry.term);
        nearestTerm = inspection.entry.term;
        this.cache.add(inspection.entry);
        continue;
      }
      // An entry with neither RAFT nor a MANIFEST holding data was written by append() (a
      // Gitaly entry's MANIFEST holds its data) and has lost its files. In a log replicalog
      // wrote, above the commit, only an unacknowledged append leaves that: under the POSIX model
      // both sides of its rename out of staging/ may survive a power cut, and open's removal of
      // the staging/ name then empties the wal/ one (an append is acknowledged only once staging/
      // is fsynced too: finding 6). Torn, not corrupt: the log is cut there, as at a gap.
      if (inspection.state === 'missing' && written && index > commit && ((await this.wal.manifestSize(index)) ?? 0) === 0) {
        const torn = indexes.slice(position);
        await this.wal.removeEntries(await this.wal.createBatchDirectory(), torn);
        this.repairs.push(`cut the log at ${this.wal.entryDirectory(index)} (no RAFT, no data): ${torn.length} unacknowledged entr${torn.length === 1 ? 'y' : 'ies'} removed`);
        indexes = indexes.slice(0, position);
        last = index - 1;
        break;
      }
      if (inspection.state === 'damaged' && bootstrapped) {
        throw corruptError(`corrupt WAL entry ${this.wal.entryDirectory(index)}: ${inspection.reason}`, {
          path: this.wal.entryDirectory(index),
          index,
        });
      }
      // The term backfill will write: nearest earlier entry's, else the hard state's, else 0.
      this.pendingRaft.add(index);
      this.terms.push(index, nearestTerm ?? hardState?.term ?? 0);
    }

    if (hardState !== undefined && hardState.commit > last) {
      throw corruptError(`${where}: the hard state's commit ${hardState.commit} is above the last index ${last} of ${this.wal.walDirectory}`, {
        path: where,
        index: hardState.commit,
      });
    }

    if (saved.snapshotDataFile !== undefined && !(await this.wal.snapshotFileExists(saved.snapshotDataFile))) {
      const path = join(this.wal.snapshotDirectory, saved.snapshotDataFile);
      throw corruptError(`snapshot data file ${path} is missing`, { path });
    }
    await this.wal.pruneSnapshotFiles(saved.snapshotDataFile);

    // Once Raft owns the log (a hard state is saved) the anchor is recorded — after every check
    // passed — so a missing prefix (wal/ starting above anchor+1) is a detectable gap instead
    // of a silently moved firstIndex. Before that Gitaly may still prune the WAL on its own
    // (Raft can be toggled off and on, gitaly.md §1.5): nothing is recorded for a pre-Raft tree.
    // A fresh store (no entry, no hard state) records (0, 0) too, so a lost first entry of its
    // first append is a detectable gap, never a log that starts at 2 (finding 5). A pre-Raft
    // tree holds entries and records nothing until Raft owns it.
    const fresh = saved.anchor === undefined && hardState === undefined && indexes.length === 0 && anchor.index === 0;
    if ((saved.anchor === undefined && hardState !== undefined) || fresh) await this.raftState.write({ anchor });
    this.anchorRecorded = saved.anchor !== undefined || hardState !== undefined || fresh;

    this.anchor = anchor;
    this.last = last;
    this.savedHardState = hardState;
    this.savedConfState = saved.confState ?? emptyConfState();
    if (saved.snapshot) this.snapshotMetadata = saved.snapshot;
    this.snapshotDataFile = saved.snapshotDataFile;
    this.walLast = last;
    await this.replayJournal(saved.journalThrough ?? 0, journal);
  }

  /**
   * Open, before the log is scanned: the journal records past raft/journal_through
   * (acknowledged groups whose checkpoint had not finished), from record files and segments,
   * read and checked. Only the newest record can be torn (only an unacknowledged group's): it
   * is dropped. A missing record, or a torn one before a whole one past the marker, is
   * ERR_CORRUPT. Nothing is changed.
   */
  private readJournal(through: number, listed: { records: number[]; segments: number[] }): PendingJournal {
    // Every record found, in order: record files by sequence, then each segment's records.
    const found: { sequence: number; path: string; payload: Uint8Array }[] = [];
    // The newest tear seen so far, and whether a whole record past the marker came after it.
    let tear: { path: string; reason: string } | undefined;
    const noticeWhole = (sequence: number, path: string) => {
      if (tear !== undefined && sequence > through) throw corruptError(`${tear.path}: torn journal record (${tear.reason}) before ${path}`, { path: tear.path });
    };
    let lastSeen = 0;
    for (const sequence of listed.records) {
      const path = this.wal.journalRecordPath(sequence);
      const bytes = this.wal.readJournalRecordSync(sequence);
      const reason = journalRecordTear(bytes);
      if (reason !== undefined) {
        if (sequence > through) tear = { path, reason };
        continue;
      }
      noticeWhole(sequence, path);
      lastSeen = Math.max(lastSeen, sequence);
      found.push({ sequence, path, payload: bytes.subarray(JOURNAL_RECORD_HEADER_BYTES) });
    }
    for (const segment of listed.segments) {
      const path = this.wal.journalSegmentPath(segment);
      const scan = scanJournalSegment(this.wal.readJournalSegmentSync(segment), path);
      for (const record of scan.records) {
        const at = `${path} at offset ${record.offset}`;
        noticeWhole(record.sequence, at);
        lastSeen = Math.max(lastSeen, record.sequence);
        found.push({ sequence: record.sequence, path: at, payload: record.payload });
      }
      if (scan.tear !== undefined) tear = { path: `${path} at offset ${scan.tear.offset}`, reason: scan.tear.reason };
    }
    const live = found.filter((record) => record.sequence > through).sort((a, b) => a.sequence - b.sequence);
    const records: PendingJournal['records'] = [];
    for (let position = 0; position < live.length; position++) {
      const { sequence, path, payload } = live[position]!;
      if (sequence !== through + 1 + position) {
        throw corruptError(`journal record ${through + 1 + position} is missing (the next one is ${sequence}, ${path})`, { path });
      }
      const record = decodeJournalPayload(payload, path);
      records.push({ sequence, path, plan: record.entries, hardState: record.hardState });
    }
    return { listed, lastSeen, records, tear };
  }

  /**
   * Open, last step: the records readJournal found are applied to the recovered log in order
   * and made durable through the checkpoint's write path; then the journal is emptied. They are
   * written in the groups a running store's checkpoints take (checkpointableRecords), each group
   * with its own KV batch, so that a power cut during this replay again leaves records that
   * begin at the lowest index anything in wal/ past the durable log was written at. An entry the
   * log already holds with the same term is the same entry (Log Matching) and is not rewritten.
   * A record that does not apply is ERR_CORRUPT.
   */
  private async replayJournal(through: number, journal: PendingJournal): Promise<void> {
    const { listed, records, tear } = journal;
    const nextSegment = listed.segments.length > 0 ? listed.segments[listed.segments.length - 1]! + 1 : 1;
    if (this.journalMode && this.appendBarriers !== 'shared' && this.wal.journalSegmentsSupported) {
      this.journalSegments = new JournalSegmentWriter(this.wal, nextSegment);
    }
    this.journalSequence = Math.max(through, journal.lastSeen);
    if (tear !== undefined) this.repairs.push(`dropped the torn journal record ${tear.path} (${tear.reason}): an unacknowledged write group`);
    const emptyJournal = async () => {
      await this.wal.removeJournalRecords(listed.records);
      await this.wal.removeJournalSegments(listed.segments);
    };
    if (records.length === 0) return emptyJournal();
    let written = 0;
    for (let start = 0; start < records.length; ) {
      const count = ReplicaLogStore.checkpointableRecords(records.slice(start));
      const group = records.slice(start, start + count);
      start += count;
      const pending = new PendingLog(this.view);
      for (const record of group) {
        try {
          if (this.pendingRaft.size > 0) throw needsBackfillError(this.dir, this.pendingRaft.size);
          const fresh = unmatchedSuffix(pending, record.plan);
          if (fresh.length > 0) pending.append(planAppend(pending, fresh));
          if (record.hardState !== undefined) {
            checkHardState(pending, record.hardState);
            pending.setHardState(record.hardState);
          }
        } catch (error) {
          throw corruptError(`${record.path}: the journal record does not apply to the log in ${this.wal.walDirectory}: ${(error as Error).message}`, { path: record.path, cause: error });
        }
      }
      const plan = pending.plannedEntries;
      const next = pending.plannedHardState;
      const trash = plan.length > 0 ? await this.writeEntries(plan, this.last, 'file-system') : undefined;
      const checkpoint = await this.writeHardState(next, plan, group[group.length - 1]!.sequence);
      if (plan.length > 0) this.publishAppend(plan);
      this.walLast = this.last;
      if (next !== undefined) {
        this.savedHardState = next;
        this.anchorRecorded = true;
      }
      if (checkpoint !== undefined) this.checkpointThrough = checkpoint.verifiedThrough;
      if (trash !== undefined) await this.wal.discardBatchDirectory(trash);
      written += plan.length;
    }
    await emptyJournal();
    this.repairs.push(`replayed ${records.length} journal record${records.length === 1 ? '' : 's'} (${written} entries written into wal/)`);
  }

  /**
   * Finding 8: LevelDB (classic-level 3, no option changes it) fsyncs kv/ before it renames
   * CURRENT at open, so a power cut can keep the removal of the old log without the rename, and
   * the database then opens empty. A store replicalog created records its anchor at its first
   * open, before any append; an entry append() wrote has an empty MANIFEST (its data is in RAFT),
   * where a pre-Raft entry's MANIFEST holds the application's data. So entries with an empty
   * MANIFEST in a store whose KV holds neither an anchor nor a hard state mean the KV lost its
   * records: refuse (ERR_CORRUPT) rather than start over as if nothing had been saved, which
   * could let a node vote twice in one term. The first and last entries are looked at (two stats).
   */
  private async refuseLostKv(kvEmpty: boolean, indexes: readonly number[], where: string): Promise<void> {
    if (!kvEmpty || indexes.length === 0) return;
    for (const index of new Set([indexes[0]!, indexes[indexes.length - 1]!])) {
      if ((await this.wal.manifestSize(index)) === 0) {
        throw corruptError(
          `${where} holds no anchor and no hard state, but ${this.wal.entryDirectory(index)} was written by append() (its MANIFEST is empty): ` +
            'the key-value database lost its records (a power cut during a LevelDB open can do that); restore this replica from a peer',
          { path: where, index },
        );
      }
    }
  }

  /**
   * A well-formed checkpoint can still disagree with the files (a damaged record). Before its
   * terms are used, the RAFT files at the first retained index and at V are read and must carry
   * the terms it gives them; otherwise open falls back to the full scan.
   */
  private checkpointCrossCheck(
    decision: ReturnType<typeof ReplicaLogStore.checkpointDecision>,
    anchor: LogAnchor,
  ): ReturnType<typeof ReplicaLogStore.checkpointDecision> {
    const checkpoint = decision.use;
    if (checkpoint === undefined) return decision;
    const termAt = (index: number): number => {
      let run = 0;
      while (run + 1 < checkpoint.starts.length && checkpoint.starts[run + 1]! <= index) run++;
      return checkpoint.terms[run]!;
    };
    for (const index of new Set([anchor.index + 1, checkpoint.verifiedThrough])) {
      const inspection = this.wal.inspectRaftSync(index);
      if (inspection.state !== 'ok' || inspection.entry.term !== termAt(index)) {
        const found = inspection.state === 'ok' ? `term ${inspection.entry.term}` : `a ${inspection.state} RAFT file`;
        return { state: 'invalid', reason: `checkpoint gives index ${index} term ${termAt(index)}, its RAFT file has ${found}` };
      }
    }
    return decision;
  }

  /**
   * Whether open() may take terms from the saved checkpoint. `anchor`/`last` are the retained
   * range after the leftovers were removed and the gap check passed (so every index in
   * (anchor, last] is listed in wal/).
   */
  private static checkpointDecision(
    saved: SavedRaftState,
    anchor: LogAnchor,
    last: number,
  ): { state: OpenStats['checkpoint']; reason?: string; use?: LogCheckpoint } {
    const record = saved.checkpoint;
    if (record === undefined) return { state: 'absent' };
    if (!record.ok) return { state: 'invalid', reason: record.reason };
    const checkpoint = record.checkpoint;
    const v = checkpoint.verifiedThrough;
    // C3: never written without a hard state; C1: never above its commit.
    if (saved.hardState === undefined) return { state: 'invalid', reason: 'a checkpoint without a hard state' };
    if (v > last) return { state: 'invalid', reason: `checkpoint index ${v} is above the last index ${last}` };
    if (v > saved.hardState.commit) return { state: 'invalid', reason: `checkpoint index ${v} is above the commit ${saved.hardState.commit}` };
    // Everything it described is compacted (or dropped by a snapshot): nothing to take from it.
    if (v <= anchor.index) return { state: 'stale', reason: `checkpoint index ${v} is at or below the anchor ${anchor.index}` };
    // Its runs must cover every retained index up to V.
    if (checkpoint.starts[0]! > anchor.index + 1) {
      return { state: 'invalid', reason: `checkpoint runs start at ${checkpoint.starts[0]}, above the first index ${anchor.index + 1}` };
    }
    return { state: 'used', use: checkpoint };
  }

  /**
   * The checkpoint with V = `commit` to write with a hard state whose commit is at least
   * `commit` (invariant C1), or undefined when none is due: V must be <= the published
   * lastIndex and improve on the saved V by at least `minimumGain` entries. The runs are the
   * published terms of (anchor, V] (C2). Never while backfill is pending or before a hard
   * state (C3).
   */
  private checkpointFor(commit: number, minimumGain: number): LogCheckpoint | undefined {
    // C3: callers only ask with a hard state (setHardState's, or the saved one at close).
    if (this.checkpointInterval === 0 || this.pendingRaft.size > 0) return undefined;
    if (commit <= this.anchor.index || commit > this.last) return undefined;
    if (commit - Math.max(this.checkpointThrough, this.anchor.index) < Math.max(1, minimumGain)) return undefined;
    if (this.terms.runCountThrough(commit) > CHECKPOINT_MAX_RUNS) return undefined;
    const { starts, terms } = this.terms.runsThrough(commit);
    return { verifiedThrough: commit, starts, terms };
  }

  /** What this store did since it opened: writes, bytes, fsyncs and their latency, write groups, cache, open time. */
  stats(): StoreStats {
    const stats = this.collector.snapshot();
    // Waiting: not yet in a checkpoint, or in the one running (its records leave when it ends).
    stats.journalRecordsWaiting = this.journalPending.length + this.journalInCheckpoint.records;
    stats.journalEntriesWaiting = this.journalPendingEntries + this.journalInCheckpoint.entries;
    stats.entriesRecycled = this.wal.recycledEntries;
    stats.recyclePoolSize = this.wal.recyclePoolSize;
    return stats;
  }

  /** How open() built the term index: how many RAFT files it read, how many terms came from the checkpoint. */
  get openStats(): OpenStats {
    return { ...this.openStatsRecord };
  }

  // -------------------------------------------------------------------------------------------
  // Status

  get status(): StoreStatus {
    if (this.savedHardState !== undefined) return 'bootstrapped';
    return this.last > this.anchor.index ? 'needs-backfill' : 'unbootstrapped';
  }

  /** How many retained entries lack a valid RAFT file (what backfill() would write). */
  get pendingBackfill(): number {
    return this.pendingRaft.size;
  }

  // -------------------------------------------------------------------------------------------
  // Storage (synchronous reads, from memory; RAFT files on a cache miss)

  private checkOpen(): void {
    if (this.closed) throw closedError('ReplicaLogStore');
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    this.checkOpen();
    return { hardState: this.hardState(), confState: cloneConfState(this.savedConfState) };
  }

  /** The saved hard state (LogView); the empty one when none was saved. */
  hardState(): HardState {
    const saved = this.savedHardState ?? emptyHardState();
    return { term: saved.term, vote: saved.vote, commit: saved.commit };
  }

  firstIndex(): number {
    this.checkOpen();
    return this.anchor.index + 1;
  }

  lastIndex(): number {
    this.checkOpen();
    return this.last;
  }

  term(index: number): number {
    this.checkOpen();
    return this.termOf(index);
  }

  /** term() without the closed check: queued writes still run while close() drains them. */
  private termOf(index: number): number {
    checkSafeUnsigned(index, 'term index');
    if (index < this.anchor.index) throw compactedError(index);
    if (index > this.last) throw unavailableError(index);
    if (index === this.anchor.index) return this.anchor.term;
    if (this.pendingRaft.has(index)) throw needsBackfillError(this.dir, this.pendingRaft.size);
    return this.terms.termAt(index);
  }

  entries(lo: number, hi: number, maxSize: number = NO_LIMIT): Entry[] {
    this.checkOpen();
    const budget = checkEntriesArguments(lo, hi, maxSize);
    if (this.pendingRaft.size > 0) throw needsBackfillError(this.dir, this.pendingRaft.size);
    if (lo <= this.anchor.index) throw compactedError(lo);
    if (hi > this.last + 1) throw unavailableError(hi - 1);
    // No retained entry: even entries(first, first) is unavailable (etcd; TestRawNodeStart).
    if (this.last === this.anchor.index) throw unavailableError(lo);
    // etcd limitSize, reading only what is returned: the first entry always, then while the
    // running total of entrySize stays within maxSize (an exact fit included).
    const result: Entry[] = [];
    let size = 0;
    for (let index = lo; index < hi; index++) {
      const entry = this.readEntry(index);
      size += entrySize(entry);
      if (result.length > 0 && size > budget) break;
      result.push(entry);
    }
    return result;
  }

  /** One entry for a reader: a copy from the cache, or a fresh decode of its RAFT file. */
  private readEntry(index: number): Entry {
    const pinned = this.pinned.get(index);
    if (pinned !== undefined) return readerCopy(pinned);
    const cached = this.cache.get(index);
    this.collector.cacheRead(cached !== undefined);
    if (cached !== undefined) return readerCopy(cached);
    const entry = this.wal.readEntrySync(index);
    if (entry !== undefined) {
      // The term index may come from the checkpoint (its RAFT file unread at open): a file that
      // decodes to another term is served neither by entries() nor contradicted by term().
      const indexed = this.terms.termAt(index);
      if (entry.term !== indexed) {
        const path = this.wal.entryDirectory(index);
        throw corruptError(`WAL entry ${path} holds term ${entry.term}, but the log's term of index ${index} is ${indexed}`, { path, index });
      }
      return entry;
    }
    // Gitaly B2: a file that vanished below the first index was compacted meanwhile.
    if (index < this.anchor.index + 1) throw compactedError(index);
    const path = this.wal.entryDirectory(index);
    throw corruptError(`WAL entry ${path} is missing although the log holds index ${index}`, { path, index });
  }

  snapshot(): Snapshot {
    this.checkOpen();
    const snapshot: Snapshot = { metadata: cloneMetadata(this.snapshotMetadata) };
    if (this.snapshotDataFile !== undefined) snapshot.data = this.wal.readSnapshotDataSync(this.snapshotDataFile);
    return snapshot;
  }

  // -------------------------------------------------------------------------------------------
  // Write side

  /**
   * Runs `operation` after every earlier write, in call order. Arguments were validated and
   * copied by the caller before this (synchronously), so later changes to them are invisible.
   */
  private enqueue<T>(operation: () => Promise<T>, onTurn?: () => void, group = false, independentOfJournal?: () => boolean): Promise<T> {
    if (this.closed) return Promise.reject(closedError('ReplicaLogStore'));
    // A write queued now runs after the open write group: later appends must not join it (they
    // would overtake this write). joinGroup re-opens a group it starts after this call.
    this.openGroup = undefined;
    // Not async (it runs inside then(), which turns a throw into the rejection): one write in
    // flight keeps no suspended frame here.
    const run = (): Promise<T> => {
      onTurn?.();
      if (this.failure !== undefined) throw this.failureError(this.failure);
      // Every other kind of write works on wal/ and KV directly: the journal's acknowledged
      // groups go there first, so it sees (and changes) the log in order. Unless it touches
      // nothing a waiting record does (independentOfJournal, checked on its turn): then it runs
      // beside the checkpoint, and the write groups queued behind it do not wait seconds for a
      // checkpoint of thousands of entries (issue 18: a stall at every snapshot).
      if (!group && !(this.journalMode && independentOfJournal?.() === true)) return this.compactionMoves.then(() => this.drainJournal()).then(operation);
      return operation();
    };
    const result = this.queue.then(run);
    // The write's trash is deleted once its promise has settled (the acknowledgement goes out
    // first) and before the next queued write runs.
    // (No async call when there is no trash: most writes have none, and a store of a storage
    // with thousands of partitions writing at once pays for every allocation in GC.)
    const afterWrite = () => (this.trashAfterAcknowledgement.length === 0 ? undefined : this.deleteTrash());
    this.queue = result.then(afterWrite, afterWrite);
    return result;
  }

  /** What every write is refused with after an I/O failure poisoned the store. */
  private failureError(failure: ReplicaLogError): ReplicaLogError {
    return new ReplicaLogError(ErrorCode.Io, `store refuses writes after an earlier I/O failure (${failure.message}); close and reopen it`, {
      path: this.dir,
      cause: failure,
    });
  }

  /**
   * Deletes the trash directories of the write just acknowledged (errors ignored: a leftover in
   * staging/ is removed at the next open). A wasted wait before the acknowledgement otherwise:
   * nothing reads the trash once the new state is published.
   */
  private async deleteTrash(): Promise<void> {
    for (const trash of this.trashAfterAcknowledgement.splice(0)) await this.wal.discardBatchDirectory(trash);
  }

  /**
   * Runs a step that changes the disk; any failure poisons the store (ERR_IO until reopened).
   * Not async, and its rejection handler is bound once: a storage's thousands of partitions
   * writing at once keep one promise per write in flight here, not a suspended frame.
   */
  private durably<T>(step: () => Promise<T>): Promise<T> {
    let running: Promise<T>;
    try {
      running = step();
    } catch (error) {
      return Promise.reject(this.poison(error));
    }
    return running.then(undefined, this.poisonAndThrow);
  }

  /** Records `error` as the store's failure (an ERR_IO naming the store unless it is ours already). */
  private poison(error: unknown): ReplicaLogError {
    const failure = isReplicaLogError(error)
      ? (error as ReplicaLogError)
      : new ReplicaLogError(ErrorCode.Io, `write interrupted: ${(error as Error)?.message ?? String(error)}`, {
          path: this.dir,
          cause: error,
        });
    this.failure = failure;
    return failure;
  }

  private readonly poisonAndThrow = (error: unknown): never => {
    throw this.poison(error);
  };

  private refuseWhileBackfillPending(): void {
    if (this.pendingRaft.size > 0) throw needsBackfillError(this.dir, this.pendingRaft.size);
  }

  /** Validation errors become rejected promises (never synchronous throws from a Promise-returning method). */
  private static prepare<T>(build: () => T): { value: T } | { error: unknown } {
    try {
      return { value: build() };
    } catch (error) {
      return { error };
    }
  }

  append(entries: Entry[]): Promise<void> {
    const prepared = ReplicaLogStore.prepare(() => {
      this.checkOpen();
      return validateEntriesUntrusted(entries).map(storedCopy);
    });
    if ('error' in prepared) return Promise.reject(prepared.error);
    return this.joinGroup({ kind: 'append', entries: prepared.value });
  }

  /** Publishes durable appended entries (the first one's index may truncate the tail). */
  private publishAppend(plan: readonly Entry[]): void {
    const start = plan[0]!.index;
    this.terms.truncateFrom(start);
    this.cache.truncateFrom(start);
    for (const entry of plan) {
      this.terms.push(entry.index, entry.term);
      this.cache.add(entry);
    }
    this.last = plan[plan.length - 1]!.index;
  }

  /**
   * Adopts a staged entry directory (MANIFEST and payload files, on the same file system) as
   * the entry at `entry.index`: writes RAFT = encodeEntry(entry) into it, fsyncs it, truncates
   * the tail from that index if needed, renames it into wal/ and fsyncs wal/. The same rules as
   * append() apply (no gap, no term regression, never below or at the commit).
   */
  insertLogEntry(entry: Entry, stagedDir: string): Promise<void> {
    const prepared = ReplicaLogStore.prepare(() => {
      this.checkOpen();
      if (typeof stagedDir !== 'string' || stagedDir === '') throw invalidArgumentError('insertLogEntry: stagedDir must be a path');
      return storedCopy(validateEntryUntrusted(entry));
    });
    if ('error' in prepared) return Promise.reject(prepared.error);
    const stored = prepared.value;
    const directory = resolve(stagedDir);
    return this.enqueue(async () => {
      this.refuseWhileBackfillPending();
      const plan = planAppend(this.view, [stored]);
      if (plan.length === 0) return; // already compacted: the caller keeps its directory
      await this.wal.checkAdoptable(directory);
      const truncating = stored.index <= this.last;
      await this.durably(async () => {
        await this.wal.prepareAdoptedDirectory(directory, encodeEntry(stored));
        // A trash directory only when there is an old tail to move out (a wasted mkdir and
        // removal otherwise, issue 15).
        const batchDirectory = truncating ? await this.wal.createBatchDirectory() : undefined;
        if (batchDirectory !== undefined) await this.wal.truncateTail(batchDirectory, stored.index, this.last);
        await this.wal.publishAdopted(directory, stored.index);
        this.publishAppend([stored]);
        // Drained first (journal mode): wal/ holds exactly the log now. A checkpoint decides
        // from walLast whether it replaces entries in wal/ (then through staging/, cutting the
        // old tail) or only adds above them (a direct checkpoint).
        this.walLast = this.last;
        if (batchDirectory !== undefined) this.trashAfterAcknowledgement.push(batchDirectory);
      });
    });
  }

  setHardState(hardState: HardState): Promise<void> {
    const prepared = ReplicaLogStore.prepare(() => {
      this.checkOpen();
      validateHardStateUntrusted(hardState);
      return hardStateCopy(hardState);
    });
    if ('error' in prepared) return Promise.reject(prepared.error);
    return this.joinGroup({ kind: 'hardState', hardState: prepared.value });
  }

  /**
   * Adds an append or setHardState call to the write group at the tail of the queue, or starts
   * one (lib/write-group.ts). A group stays open until its turn comes: every append and
   * setHardState called meanwhile, with no other kind of write between, joins it.
   */
  private joinGroup(write: { kind: 'append'; entries: Entry[] } | { kind: 'hardState'; hardState: HardState }): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let group = this.openGroup;
      if (group === undefined) {
        const started: WriteGroup = { writes: [] };
        // Whatever fails the group as a whole (the store poisoned by an earlier failure, an I/O
        // error while flushing) rejects each call not already refused on its own.
        const close = () => {
          // Closed to new calls once its turn comes (even when it is refused as a whole):
          // later calls start the next group.
          if (this.openGroup === started) this.openGroup = undefined;
        };
        this.enqueue(() => this.flushGroup(started), close, true).catch((error: unknown) => {
          for (const waiting of started.writes) waiting.reject(error);
        });
        this.openGroup = group = started;
      }
      group.writes.push({ ...write, resolve, reject } as GroupedWrite);
    });
  }

  /**
   * Flushes a write group: checks each call in order against the log as the earlier accepted
   * ones leave it (a refused call rejects alone), then makes the result durable — the entries
   * (staged, fsynced, renamed, ONE fsync of wal/), THEN the last hard state with its checkpoint
   * in one synced KV batch. Entries first, so a saved commit never points past the durable log.
   */
  private flushGroup(group: WriteGroup): Promise<void> {
    const only = group.writes.length === 1 ? group.writes[0]! : undefined;
    if (only !== undefined && only.kind === 'hardState' && !this.journalMode) return this.flushLoneHardState(only);
    return this.flushWrites(group);
  }

  /**
   * flushWrites for a group of one setHardState (a storage's partitions write thousands of
   * these at once): the same checks and steps without the planning objects or a suspended
   * frame per write.
   */
  private flushLoneHardState(write: GroupedWrite & { kind: 'hardState' }): Promise<void> {
    const next = write.hardState;
    try {
      this.refuseWhileBackfillPending();
      checkHardState(this.view, next);
    } catch (error) {
      write.reject(error);
      return Promise.resolve();
    }
    return this.writeHardState(next, NO_ENTRIES).then((checkpoint) => {
      this.savedHardState = next;
      this.anchorRecorded = true;
      if (checkpoint !== undefined) this.checkpointThrough = checkpoint.verifiedThrough;
      this.collector.writeGroup(1, 0, 0, 0, true);
      write.resolve();
    });
  }

  private async flushWrites(group: WriteGroup): Promise<void> {
    const pending = new PendingLog(this.view);
    const accepted: GroupedWrite[] = [];
    for (const write of group.writes) {
      try {
        this.refuseWhileBackfillPending();
        if (write.kind === 'append') {
          pending.append(planAppend(pending, write.entries));
        } else {
          checkHardState(pending, write.hardState);
          pending.setHardState(write.hardState);
        }
        accepted.push(write);
      } catch (error) {
        write.reject(error);
      }
    }
    const plan = pending.plannedEntries;
    const next = pending.plannedHardState;
    if (this.journalMode) return this.flushGroupToJournal(accepted, plan, next);
    const trash = plan.length > 0 ? await this.writeEntries(plan, this.last, this.appendBarriers) : undefined;
    const checkpoint = next === undefined ? undefined : await this.writeHardState(next, plan);
    // Published in ONE synchronous step once all of it is durable: a reader sees the log before
    // the group or after it, never its entries without its hard state.
    if (plan.length > 0) this.publishAppend(plan);
    if (next !== undefined) {
      this.savedHardState = next;
      this.anchorRecorded = true;
      if (checkpoint !== undefined) this.checkpointThrough = checkpoint.verifiedThrough;
    }
    let bytes = 0;
    for (const entry of plan) bytes += entrySize(entry);
    this.collector.writeGroup(accepted.length, countAppends(accepted), plan.length, bytes, next !== undefined);
    // Acknowledged as soon as it is durable and published; the old tail's trash is deleted after
    // (still inside this queued write, so the next write waits for it). A crash before the
    // deletion leaves trash in staging/, which open removes.
    for (const write of accepted) write.resolve();
    if (trash !== undefined) await this.wal.discardBatchDirectory(trash);
  }

  /**
   * Journal mode: the group is durable once its record is (one round of fsyncs); it is then
   * published and acknowledged, and reaches wal/ and KV with a later checkpoint.
   */
  private async flushGroupToJournal(accepted: readonly GroupedWrite[], plan: readonly Entry[], next: HardState | undefined): Promise<void> {
    if (plan.length > 0 || next !== undefined) {
      const sequence = this.journalSequence + 1;
      const record = next === undefined ? { entries: [...plan] } : { entries: [...plan], hardState: next };
      const segments = this.journalSegments;
      if (segments !== undefined) {
        const bytes = encodeSegmentRecord(sequence, record);
        await this.durably(() => segments.append(sequence, bytes));
      } else {
        const bytes = encodeJournalRecord(record);
        await this.durably(() => this.wal.writeJournalRecord(sequence, bytes, this.appendBarriers === 'shared' ? this.host?.barrier : undefined));
      }
      this.journalSequence = sequence;
      if (plan.length > 0) {
        const start = plan[0]!.index;
        // A truncating group: pinned entries past its end are no longer part of the log.
        if (start <= this.last) for (const index of [...this.pinned.keys()]) if (index > plan[plan.length - 1]!.index) this.pinned.delete(index);
        this.publishAppend(plan);
        for (const entry of plan) this.pinned.set(entry.index, entry);
      }
      if (next !== undefined) this.savedHardState = next;
      this.journalPending.push({ sequence, plan, hardState: next });
      this.journalPendingEntries += plan.length;
      let bytesWritten = 0;
      for (const entry of plan) bytesWritten += entrySize(entry);
      this.collector.writeGroup(accepted.length, countAppends(accepted), plan.length, bytesWritten, next !== undefined);
    }
    for (const write of accepted) write.resolve();
    this.scheduleJournalCheckpoint();
    // Back-pressure (the next group waits in the queue): entries held only in memory and the
    // journal stay bounded while a slow checkpoint runs.
    if (this.journalPendingEntries >= JOURNAL_MAX_PENDING && this.journalCheckpointRunning !== undefined) {
      await this.journalCheckpointRunning.catch(() => {});
    }
  }

  /**
   * Starts a checkpoint of every pending journal record unless one runs (then returns that
   * one). It runs beside the queue: write groups only write journal records meanwhile, and
   * every other write first waits for it (drainJournal).
   */
  private startJournalCheckpoint(): Promise<void> {
    if (this.journalCheckpointRunning !== undefined) return this.journalCheckpointRunning;
    clearTimeout(this.journalCheckpointTimer);
    this.journalCheckpointTimer = undefined;
    const records = this.journalPending.splice(0, ReplicaLogStore.checkpointableRecords(this.journalPending));
    let entries = 0;
    for (const record of records) entries += record.plan.length;
    this.journalInCheckpoint = { records: records.length, entries, lowestIndex: ReplicaLogStore.lowestJournalIndex(records) };
    this.journalPendingEntries -= entries;
    if (records.length === 0) return Promise.resolve();
    const running = this.durably(() => this.checkpointJournal(records)).then(
      () => this.collector.journalCheckpoint(),
    ).finally(() => {
      this.journalCheckpointRunning = undefined;
      this.journalInCheckpoint = { records: 0, entries: 0, lowestIndex: Number.POSITIVE_INFINITY };
      // Records left behind by the split (checkpointableRecords) get their own checkpoint.
      if (!this.closed && this.failure === undefined) this.scheduleJournalCheckpoint();
    });
    this.journalCheckpointRunning = running;
    return running;
  }

  /** After a write group (or a checkpoint): a checkpoint now when enough waits, else within journalCheckpointDelayMs. */
  private scheduleJournalCheckpoint(): void {
    if (this.journalPendingEntries >= JOURNAL_CHECKPOINT_ENTRIES || this.journalPending.length >= JOURNAL_CHECKPOINT_RECORDS) {
      void this.startJournalCheckpoint().catch(() => {});
    } else if (this.journalPending.length > 0 && this.journalCheckpointTimer === undefined) {
      this.journalCheckpointTimer = setTimeout(() => {
        this.journalCheckpointTimer = undefined;
        if (!this.closed && this.failure === undefined) void this.startJournalCheckpoint().catch(() => {});
      }, this.journalCheckpointDelayMs);
      this.journalCheckpointTimer.unref();
    }
  }

  /**
   * How many of `records` (oldest first) one checkpoint takes: all of them, but stopping before
   * the first record that writes below the first index of the records taken. So every
   * checkpoint writes wal/ only from the first index of its own first record on, and after a
   * power cut in it the records past raft/journal_through begin with that record: open may
   * remove everything in wal/ from its first index (it rewrites it from the records) and still
   * has the log every record applies to. (A record replacing the tail below an earlier record's
   * entries, in the same checkpoint, would make that checkpoint cut wal/ below them, and the
   * earlier record would then not apply to what a power cut left.) At least one is taken.
   */
  private static checkpointableRecords(records: readonly { plan: readonly Entry[] }[]): number {
    let first: number | undefined;
    for (let position = 0; position < records.length; position++) {
      const plan = records[position]!.plan;
      if (plan.length === 0) continue;
      if (first === undefined) first = plan[0]!.index;
      else if (plan[0]!.index < first) return position;
    }
    return records.length;
  }

  /** The lowest entry index `records` write (a record may replace the tail from its first index). */
  private static lowestJournalIndex(records: readonly JournalPending[]): number {
    let lowest = Number.POSITIVE_INFINITY;
    for (const record of records) if (record.plan.length > 0) lowest = Math.min(lowest, record.plan[0]!.index);
    return lowest;
  }

  /**
   * True when no acknowledged record still on its way to wal/ (waiting or in the running
   * checkpoint) writes an entry at or below `index`: every entry up to `index` is durable in wal/
   * as the log has it, and a checkpoint running meanwhile only touches wal/ above `index`.
   */
  private journalClearThrough(index: number): boolean {
    return index < Math.min(this.journalInCheckpoint.lowestIndex, ReplicaLogStore.lowestJournalIndex(this.journalPending));
  }

  /** Waits until every acknowledged journal record is durable in wal/ and KV. */
  private async drainJournal(): Promise<void> {
    while (this.journalCheckpointRunning !== undefined || this.journalPending.length > 0) {
      await (this.journalCheckpointRunning ?? this.startJournalCheckpoint());
    }
  }

  /**
   * One checkpoint: the net effect of `records` on the durable log (each record's entries
   * replace the tail from their first index) is written with the plain write path (staged,
   * fsynced, renamed, wal/ fsynced), THEN the last hard state with raft/journal_through in one
   * synced KV batch (a saved commit never points past the durable log, and the marker never
   * covers a record whose entries are not durable), THEN the records are removed. A crash at
   * any point leaves a state open repairs and then replays the records past the marker onto.
   */
  private async checkpointJournal(records: readonly JournalPending[]): Promise<void> {
    let last = this.walLast;
    const latest = new Map<number, Entry>();
    let hardState: HardState | undefined;
    for (const record of records) {
      if (record.plan.length > 0) {
        const start = record.plan[0]!.index;
        if (start <= last) for (const index of [...latest.keys()]) if (index >= start) latest.delete(index);
        for (const entry of record.plan) latest.set(entry.index, entry);
        last = record.plan[record.plan.length - 1]!.index;
      }
      if (record.hardState !== undefined) hardState = record.hardState;
    }
    // Contiguous: every record's entries start at most one past the log it was appended to.
    const net = [...latest.values()].sort((a, b) => a.index - b.index);
    const trash = net.length > 0 ? await this.writeEntries(net, this.walLast, 'file-system') : undefined;
    const checkpoint = await this.writeHardState(hardState, net, records[records.length - 1]!.sequence);
    this.walLast = last;
    if (hardState !== undefined) this.anchorRecorded = true;
    if (checkpoint !== undefined) this.checkpointThrough = checkpoint.verifiedThrough;
    // A later group may have replaced an entry meanwhile: only the very entry written leaves.
    for (const entry of net) if (this.pinned.get(entry.index) === entry) this.pinned.delete(entry.index);
    if (trash !== undefined) await this.wal.discardBatchDirectory(trash);
    // Segments: those filled with records now covered; record files: these records' files.
    if (this.journalSegments !== undefined) await this.journalSegments.release(records[records.length - 1]!.sequence);
    else await this.wal.removeJournalRecords(records.map((record) => record.sequence));
  }

  /**
   * The durable half of append: stages `plan`, cuts the durable tail from its first index if
   * needed, renames the entries into wal/ and fsyncs it. Memory is not changed: the caller
   * publishes. Returns the batch directory holding the old tail (a truncating append), which
   * must outlive the publication: until then a reader may still read an old entry from it
   * (readEntrySync).
   */
  private async writeEntries(
    plan: readonly Entry[],
    durableLast: number = this.last,
    barriers: 'per-file' | 'file-system' | 'shared' = 'per-file',
  ): Promise<string | undefined> {
    const start = plan[0]!.index;
    const truncating = start <= durableLast;
    const staged = plan.map((entry) => ({ index: entry.index, raft: encodeEntry(entry) }));
    const host = this.host;
    return this.durably(async () => {
      if (barriers === 'shared' && host !== undefined) {
        // A storage's partition: the same order as per-file, each barrier one pass shared with
        // every partition that reaches it together. The staged RAFT files and directories are
        // durable before any of them is renamed into wal/ (without: an entry in wal/ with its
        // data lost); wal/ and staging/ are durable before the acknowledgement (finding 6).
        await this.wal.stageEntries(staged, { fsync: false });
        this.crashPoint('before-file-fsync');
        await this.wal.sharedBarrier(host.barrier, this.wal.stagedDurablePaths(staged.map((entry) => entry.index)));
        const trash = truncating ? await this.wal.createBatchDirectory() : undefined;
        if (trash !== undefined) await this.wal.truncateTail(trash, start, durableLast);
        await this.wal.publishStaged(plan.map((entry) => entry.index), { fsync: false });
        await this.wal.sharedBarrier(host.barrier, [this.wal.walDirectory, this.wal.stagingDirectory]);
        return trash;
      }
      if (barriers === 'file-system' && !truncating && this.wal.recycles) {
        // A direct checkpoint (issue 18): every entry is written where it belongs, wal/<LSN>,
        // then ONE syncfs, then (the caller) the KV batch that moves raft/journal_through past
        // its records. No staging/ and no rename into wal/: each entry here is above the
        // durable log and still covered by an acknowledged journal record (the checkpoint's
        // records start at its first index: startJournalCheckpoint), and open removes every
        // entry from the first index a record past journal_through covers and rewrites them
        // from the records, whatever a power cut kept of these writes. syncfs has worked here
        // before (recycles), so the barrier is there.
        await this.wal.stageEntries(staged, { fsync: false, direct: true });
        this.crashPoint('before-wal-fsync');
        if (!(await this.wal.syncFileSystem())) throw new Error('syncfs stopped working');
        this.crashPoint('after-wal-fsync');
        return undefined;
      }
      if (barriers === 'file-system') {
        // A journal checkpoint's large batch: the same order, each barrier one syncfs of the
        // whole file system instead of two fsyncs per entry (falls back where there is none).
        await this.wal.stageEntries(staged, { fsync: false });
        if (await this.wal.syncFileSystem()) {
          // Every staged entry is complete and durable before any of it is visible in wal/.
          const trash = truncating ? await this.wal.createBatchDirectory() : undefined;
          if (trash !== undefined) await this.wal.truncateTail(trash, start, durableLast);
          await this.wal.publishStaged(plan.map((entry) => entry.index), { fsync: false });
          // The renames into wal/ and out of staging/, before KV records the checkpoint.
          if (!(await this.wal.syncFileSystem())) throw new Error('syncfs stopped working');
          return trash;
        }
        // No syncfs here: staged again (stageEntries replaces a leftover directory) and fsynced
        // file by file, as a plain append does.
      }
      await this.wal.stageEntries(staged);
      const trash = truncating ? await this.wal.createBatchDirectory() : undefined;
      if (trash !== undefined) await this.wal.truncateTail(trash, start, durableLast);
      await this.wal.publishStaged(plan.map((entry) => entry.index));
      return trash;
    });
  }

  /**
   * The durable half of setHardState (already checked), after the group's entries `plan` are
   * durable. Every checkpointInterval entries of commit progress a checkpoint rides in the SAME
   * synced batch (invariant C1: its V is at most this commit, atomically, so no crash leaves a
   * checkpoint above the durable commit). Its runs come from the published terms, which do not
   * hold `plan` yet, so V stops below plan's first index: every entry <= V is durable and its
   * term is the published one (C2). Returns the checkpoint written, if any.
   */
  private writeHardState(next: HardState | undefined, plan: readonly Entry[], journalThrough?: number): Promise<LogCheckpoint | undefined> {
    const verifiedThrough = next === undefined ? 0 : plan.length > 0 ? Math.min(next.commit, plan[0]!.index - 1) : next.commit;
    const checkpoint = next === undefined ? undefined : this.checkpointFor(verifiedThrough, this.checkpointInterval);
    // The first hard state also records the anchor: Raft owns the log from now on.
    const change: RaftStateChange = next === undefined ? {} : this.anchorRecorded ? { hardState: next } : { hardState: next, anchor: { ...this.anchor } };
    if (checkpoint !== undefined) change.checkpoint = checkpoint;
    if (journalThrough !== undefined) change.journalThrough = journalThrough;
    return this.durably(() => {
      this.crashPoint('before-kv-write');
      return this.raftState.write(change);
    }).then(() => checkpoint);
  }

  setConfState(confState: ConfState): Promise<void> {
    const prepared = ReplicaLogStore.prepare(() => {
      this.checkOpen();
      return cloneConfState(validateConfStateUntrusted(confState));
    });
    if ('error' in prepared) return Promise.reject(prepared.error);
    const next = prepared.value;
    return this.enqueue(async () => {
      this.refuseWhileBackfillPending();
      await this.durably(async () => {
        this.crashPoint('before-kv-write');
        await this.raftState.write({ confState: next });
      });
      this.savedConfState = next;
    });
  }

  applySnapshot(snapshot: Snapshot): Promise<void> {
    const prepared = ReplicaLogStore.prepare(() => {
      this.checkOpen();
      const copy = cloneSnapshot(validateSnapshotUntrusted(snapshot));
      if (copy.data !== undefined) copy.data = copyBytes(copy.data);
      return copy;
    });
    if ('error' in prepared) return Promise.reject(prepared.error);
    const next = prepared.value;
    return this.enqueue(async () => {
      this.refuseWhileBackfillPending();
      const { index, term } = next.metadata;
      // MemoryStorage's rules exactly (v3.7: any snapshot while none is stored, even index 0
      // on a fresh log; never below the saved commit).
      const storedIndex = this.snapshotMetadata.index;
      if (storedIndex !== 0 && storedIndex >= index) throw snapOutOfDateError(index);
      if (storedIndex === 0 && index === 0 && this.anchor.index !== 0) throw snapOutOfDateError(index);
      const commit = this.hardState().commit;
      if (index < commit) {
        throw new ReplicaLogError(
          ErrorCode.Committed,
          `applySnapshot: snapshot index ${index} is below the saved commit ${commit}`,
          { index },
        );
      }
      await this.durably(async () => {
        const dataFile = next.data === undefined ? undefined : await this.wal.writeSnapshotData(index, next.data);
        this.crashPoint('before-kv-write');
        // One atomic batch: after it, the snapshot is the log's new base whatever happens next;
        // the intent makes the next open finish removing the entry directories.
        await this.raftState.write({
          snapshot: next.metadata,
          snapshotDataFile: dataFile ?? null,
          confState: next.metadata.confState,
          anchor: { index, term },
          intent: 'drop-all-entries',
          // index >= commit >= V: the checkpoint can only describe entries this drops.
          checkpoint: null,
        });
        this.anchorRecorded = true;
        this.checkpointThrough = 0;
        this.crashPoint('between-kv-and-wal');
        const dropped = this.retainedIndexes();
        this.anchor = { index, term };
        this.last = index;
        // Drained first (journal mode): wal/ is emptied below, and the log ends at the snapshot.
        this.walLast = index;
        this.terms.clear();
        this.cache.clear();
        this.snapshotMetadata = cloneMetadata(next.metadata);
        this.snapshotDataFile = dataFile;
        this.savedConfState = cloneConfState(next.metadata.confState);
        // wal/ fsynced before the intent is cleared: dropped entries can be above the snapshot's
        // index, and without the intent open would keep any of them a power cut brought back.
        const trash = await this.wal.createBatchDirectory();
        await this.wal.moveEntriesOut(trash, dropped, { durable: true });
        this.wal.forgetPublished(dropped);
        this.trashAfterAcknowledgement.push(trash);
        this.crashPoint('before-intent-clear');
        await this.raftState.write({ intent: null });
        await this.wal.pruneSnapshotFiles(dataFile);
      });
    });
  }

  /**
   * Writes a snapshot's data file for createSnapshot(index, confState, prepared) ahead of it, and
   * outside the write queue: a write queued after createSnapshot waits until its turn is over,
   * and that turn had to wait for the data file (the whole state: tens of MB, written and fsynced
   * in 0.3-0.6 s under load), so a leader's appends stopped that long at every snapshot (issue
   * 18: no put answered for half a second; 3xC=64's p99 came mostly from those seconds). The file
   * is named uniquely and named by nothing until createSnapshot records it in KV; a prepared file
   * never used is removed at the next open. Single use; `data` must not change until this
   * settles (ERR_INVALID_ARGUMENT otherwise, as createSnapshot).
   */
  prepareSnapshotData(index: number, data: Uint8Array): Promise<PreparedSnapshotData> {
    const prepared = ReplicaLogStore.prepare(() => {
      this.checkOpen();
      checkSafeUnsigned(index, 'prepareSnapshotData index');
      if (!(data instanceof Uint8Array)) throw invalidArgumentError('prepareSnapshotData: data must be a Uint8Array');
      return ReplicaLogStore.snapshotBytes(data);
    });
    if ('error' in prepared) return Promise.reject(prepared.error);
    const { data: bytes, crc } = prepared.value;
    if (this.failure !== undefined) return Promise.reject(this.failureError(this.failure));
    return this.durably(() => this.wal.writeSnapshotData(index, bytes)).then(async (file) => {
      await this.refuseChangedSnapshotData(file, bytes, crc, `prepareSnapshotData ${index}`);
      const token: PreparedSnapshotData = Object.freeze({ index, size: bytes.length });
      this.preparedSnapshotFiles.set(token, { file, data: bytes });
      return token;
    });
  }

  /**
   * Small data is copied. Large data (a node's whole state: tens of MB) is written from the
   * caller's buffer under a CRC taken now and checked once the file is written: a copy cost 95 ms
   * per 30 MB here (page faults), all of it blocking the event loop; the CRC 5 ms.
   */
  private static snapshotBytes(data: Uint8Array): { data: Uint8Array; crc: number | undefined } {
    const borrowed = data.length >= SNAPSHOT_DATA_COPY_LIMIT;
    return { data: borrowed ? data : copyBytes(data), crc: borrowed ? crc32(data) : undefined };
  }

  /**
   * A caller that changed a borrowed buffer before the promise settled gets ERR_INVALID_ARGUMENT
   * and nothing is saved: the file written is not named in KV, and goes now (open would prune it too).
   */
  private async refuseChangedSnapshotData(file: string, data: Uint8Array, crc: number | undefined, what: string): Promise<void> {
    if (crc === undefined || crc32(data) === crc) return;
    this.wal.releaseSnapshotFile(file);
    await this.wal.pruneSnapshotFiles(this.snapshotDataFile);
    throw invalidArgumentError(`${what}: data changed while it was being written (it must not change until the promise settles)`);
  }

  createSnapshot(index: number, confState?: ConfState, data?: Uint8Array | PreparedSnapshotData): Promise<Snapshot> {
    const prepared = ReplicaLogStore.prepare(() => {
      this.checkOpen();
      checkSafeUnsigned(index, 'createSnapshot index');
      if (confState !== undefined) validateConfStateUntrusted(confState);
      const cloned = confState === undefined ? undefined : cloneConfState(confState);
      if (data === undefined || data instanceof Uint8Array) {
        return { confState: cloned, ...(data === undefined ? { data: undefined, crc: undefined } : ReplicaLogStore.snapshotBytes(data)), file: undefined };
      }
      // A file prepareSnapshotData wrote: it is taken now (single use).
      const file = typeof data === 'object' && data !== null ? this.preparedSnapshotFiles.get(data) : undefined;
      if (file === undefined) throw invalidArgumentError('createSnapshot: data must be a Uint8Array, absent, or prepared by this store\'s prepareSnapshotData and not used yet');
      if (data.index !== index) throw invalidArgumentError(`createSnapshot ${index}: the data was prepared for index ${data.index}`);
      this.preparedSnapshotFiles.delete(data);
      return { confState: cloned, data: file.data, crc: undefined, file: file.file };
    });
    if ('error' in prepared) return Promise.reject(prepared.error);
    const { confState: nextConfState, data: nextData, crc: dataCrc, file: preparedFile } = prepared.value;
    // The data file (the bulk of a snapshot: the whole state) is written and fsynced at once,
    // beside the queue, so appends queued meanwhile do not wait for it; only the KV record that
    // makes it the snapshot waits for its turn (and that turn waits for the file: use
    // prepareSnapshotData to write it before). Its name is unique and kept from pruning until then.
    const written =
      preparedFile !== undefined
        ? Promise.resolve(preparedFile)
        : nextData === undefined || this.failure !== undefined
          ? undefined
          : this.durably(() => this.wal.writeSnapshotData(index, nextData));
    written?.catch(() => {}); // reported by the queued step below
    return this.enqueue(async () => {
      const dataFile = written === undefined ? undefined : await written;
      try {
        if (dataFile !== undefined) await this.refuseChangedSnapshotData(dataFile, nextData!, dataCrc, `createSnapshot ${index}`);
        this.refuseWhileBackfillPending();
        if (index <= this.snapshotMetadata.index) throw snapOutOfDateError(index);
        if (index > this.last) {
          throw new ReplicaLogError(ErrorCode.Unavailable, `snapshot ${index} is out of bound lastindex(${this.last})`, { index });
        }
        if (index < this.anchor.index) throw compactedError(index);
        const metadata: SnapshotMetadata = {
          index,
          term: this.termOf(index),
          confState: nextConfState ?? cloneConfState(this.snapshotMetadata.confState),
        };
        await this.durably(async () => {
          this.crashPoint('before-kv-write');
          await this.raftState.write({ snapshot: metadata, snapshotDataFile: dataFile ?? null });
          this.snapshotMetadata = cloneMetadata(metadata);
          this.snapshotDataFile = dataFile;
          await this.wal.pruneSnapshotFiles(dataFile);
        });
        const snapshot: Snapshot = { metadata: cloneMetadata(metadata) };
        // The store keeps only the file: the bytes it was given (or its copy of them) are the
        // caller's. A second copy cost a node 20-90 ms of its event loop per snapshot of 20 MB.
        if (nextData !== undefined) snapshot.data = nextData;
        return snapshot;
      } finally {
        if (dataFile !== undefined) this.wal.releaseSnapshotFile(dataFile);
      }
      // Journal mode: runs without waiting for the journal's records to reach wal/. It reads the
      // published log (acknowledged groups, durable in their records) and writes only KV's
      // snapshot keys, which no checkpoint writes; after a power cut open replays the records,
      // so the log again holds every entry up to the snapshot's index.
    }, undefined, false, () => true);
  }

  compact(index: number): Promise<void> {
    const prepared = ReplicaLogStore.prepare(() => this.checkOpen());
    if ('error' in prepared) return Promise.reject(prepared.error);
    return this.enqueue(async () => {
      this.refuseWhileBackfillPending();
      checkCompact(this.view, index);
      const anchor: LogAnchor = { index, term: this.termOf(index) };
      await this.durably(async () => {
        this.crashPoint('before-kv-write');
        // The anchor is durable FIRST: from here on the compaction has happened (term(i)
        // answers from it), and entry directories <= i are leftovers for open to remove.
        await this.raftState.write({ anchor });
        this.anchorRecorded = true;
        this.crashPoint('between-kv-and-wal');
        const removed: number[] = [];
        for (let old = this.anchor.index + 1; old <= index; old++) removed.push(old);
        this.anchor = anchor;
        if (index >= this.last) this.terms.clear();
        else this.terms.dropBelow(index + 1);
        this.cache.dropBelow(index + 1);
        // No fsync of wal/: every directory moved is at or below the durable anchor, which open
        // removes whatever a power cut kept of these renames (log-manager.ts moveEntriesOut).
        if (this.journalMode) {
          this.moveOutBehindQueue(removed);
          return;
        }
        const trash = await this.wal.createBatchDirectory();
        await this.wal.moveEntriesOut(trash, removed, { durable: false });
        this.trashAfterAcknowledgement.push(trash);
      });
      // Journal mode: no wait for the journal when no record on its way to wal/ writes an entry
      // at or below `index` (a node compacts thousands of entries behind its tail): the
      // directories moved out are durable in wal/ already, a running checkpoint only adds and
      // replaces directories above `index`, and the anchor is a KV key no checkpoint writes.
    }, undefined, false, () => this.journalClearThrough(index));
  }

  /**
   * Journal mode: a compaction's directories leave wal/ behind the queue, one compaction after
   * another. Thousands of renames (each of which may wait for the disk while a syncfs or a
   * snapshot file is being written) took seconds inside the queue, and every write group waited
   * behind them (issue 18). Safe beside later writes: the anchor is durable, nothing reads an
   * entry at or below it, and later writes only touch indexes above it (a checkpoint writes
   * what the journal holds, all above the anchor). A crash before the moves end leaves
   * directories at or below the anchor in wal/, which open removes, as it always did. Every
   * write that works on wal/ directly (the drained ones) and close wait for the moves.
   */
  private moveOutBehindQueue(indexes: readonly number[]): void {
    this.compactionMoves = this.compactionMoves.then(() =>
      this.durably(async () => {
        // A journal store's checkpoints reuse compacted directories where they lie, in wal/
        // (log-manager.ts, recycling): only those the pool has no room for move out.
        const leaving = this.wal.recycles ? this.wal.keepForRecycling(indexes) : indexes;
        if (leaving.length === 0) return;
        const trash = await this.wal.createBatchDirectory();
        await this.wal.moveEntriesOut(trash, leaving, { durable: false });
        await this.wal.discardBatchDirectory(trash);
      }),
    );
    // A failure poisoned the store (durably): every later write reports it.
    this.compactionMoves = this.compactionMoves.catch(() => {});
  }

  private retainedIndexes(): number[] {
    const indexes: number[] = [];
    for (let index = this.anchor.index + 1; index <= this.last; index++) indexes.push(index);
    return indexes;
  }

  /**
   * Gives every retained entry without a valid RAFT file one (API.md; Gitaly §1.5): type
   * Normal, index = its LSN, term = the nearest earlier entry's (else the hard state's, else
   * 0), data = gitaly.RaftEntry{ data: { local_path: "wal/<LSN>" } }. Each file is written
   * atomically (temp, fsync, rename, directory fsync: Gitaly B7), so the run is resumable after
   * a crash and idempotent (a second run writes nothing). MANIFEST and payload files are never
   * touched. A damaged RAFT file is rewritten only on a store without hard state: on a
   * bootstrapped store open() already refused it as corruption.
   */
  backfill(options: BackfillOptions = {}): Promise<{ backfilled: number }> {
    const prepared = ReplicaLogStore.prepare(() => {
      this.checkOpen();
      if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
        throw invalidArgumentError('backfill: onProgress must be a function');
      }
    });
    if ('error' in prepared) return Promise.reject(prepared.error);
    return this.enqueue(async () => {
      const pending = [...this.pendingRaft].sort((a, b) => a - b);
      const total = pending.length;
      if (total === 0) return { backfilled: 0 };
      // A backfilled RAFT file points at the entry's MANIFEST. An entry whose MANIFEST is empty
      // or missing has nothing to point at: it was written by append() (whose data lives only
      // in RAFT) and lost its RAFT file. Rewriting it would replace its data with a pointer to
      // nothing, so the whole run is refused before anything is written (finding 7).
      for (let start = 0; start < total; start += BACKFILL_CONCURRENCY) {
        const chunk = pending.slice(start, start + BACKFILL_CONCURRENCY);
        const sizes = await Promise.all(chunk.map((index) => this.wal.manifestSize(index)));
        const empty = sizes.findIndex((size) => size === undefined || size === 0);
        if (empty !== -1) {
          const index = chunk[empty]!;
          const path = join(this.wal.entryDirectory(index), 'MANIFEST');
          throw corruptError(
            `corrupt WAL entry ${this.wal.entryDirectory(index)}: no valid RAFT file and ${sizes[empty] === undefined ? 'no MANIFEST' : 'an empty MANIFEST'}, ` +
              'so there is nothing a backfilled entry could point at (its data was in the RAFT file); restore this replica from a peer',
            { path, index },
          );
        }
      }
      options.onProgress?.(0, total);
      let done = 0;
      // Each entry's rewrite is atomic on its own (temp, fsync, rename, directory fsync), so
      // entries are rewritten BACKFILL_CONCURRENCY at a time: their fsyncs overlap in the libuv
      // pool. Chunks go in index order, so a crash leaves a resumable set, never a torn file.
      for (let start = 0; start < total; start += BACKFILL_CONCURRENCY) {
        const chunk = pending.slice(start, start + BACKFILL_CONCURRENCY);
        // allSettled, not all: every write of the chunk has finished before the queue moves on.
        const results = await Promise.allSettled(
          chunk.map(async (index) => {
            const entry: Entry = {
              type: EntryType.Normal,
              term: this.terms.termAt(index),
              index,
              data: encodeRaftEntry({
                id: 0,
                data: { localPath: new TextEncoder().encode(entryRelativePath(index)), packed: new Uint8Array(0) },
              }),
            };
            await this.durably(() => this.wal.writeRaftAtomically(index, encodeEntry(entry)));
            this.pendingRaft.delete(index);
            done++;
            options.onProgress?.(done, total);
          }),
        );
        const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
        if (failed) throw failed.reason;
      }
      return { backfilled: total };
    });
  }

  /**
   * Waits for queued writes, then closes the KV database (unless it was given) and releases
   * the lock. Every later call fails with ERR_CLOSED; a second close() does nothing but wait
   * for the first to finish (a storage's close() relies on it: it must not close the shared
   * database under a partition whose own close() is still writing).
   */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    this.closed = true;
    await this.queue;
    // Journal mode: what only the journal holds goes to wal/ and KV, so a clean close leaves an
    // empty journal. A failure leaves the records for the next open to replay.
    if (this.failure === undefined) await this.drainJournal().catch(() => {});
    // After a failure a checkpoint may still run beside the queue: it ends before the lock goes.
    await this.journalCheckpointRunning?.catch(() => {});
    await this.compactionMoves;
    // Drained: every segment is covered by raft/journal_through (errors ignored: open removes
    // covered segments too). After a failure they stay for the next open to replay.
    if (this.failure === undefined && this.journalCheckpointRunning === undefined && this.journalPending.length === 0) {
      await this.journalSegments?.removeAll().catch(() => {});
    }
    await this.journalSegments?.settle();
    // A checkpoint at V = the saved commit (already durable: invariant C1), alone in one synced
    // batch, when it covers enough new entries. Not after an I/O failure (memory may be ahead of
    // the disk). A failure here is ignored: the record is only an accelerator, and the old one
    // (if any) stays valid — stale at worst, never wrong.
    if (this.failure === undefined && this.savedHardState !== undefined) {
      const checkpoint = this.checkpointFor(this.savedHardState.commit, Math.min(CHECKPOINT_AT_CLOSE_MIN, this.checkpointInterval));
      if (checkpoint !== undefined) await this.raftState.write({ checkpoint }).catch(() => {});
    }
    // Compacted directories kept for reuse would be staging/ leftovers to verify: deleted now
    // (errors ignored: the next open empties staging/ anyway).
    await this.wal.discardRecyclePool();
    this.cache.clear();
    if (this.host !== undefined) {
      this.host.release(this);
      return;
    }
    try {
      await this.ownedDatabase?.close();
    } finally {
      await this.lock?.release();
    }
  }
}

export type { CrashPointName };

const NO_ENTRIES: readonly Entry[] = [];

function countAppends(writes: readonly GroupedWrite[]): number {
  let appends = 0;
  for (const write of writes) if (write.kind === 'append') appends++;
  return appends;
}

/**
 * The entries of a journal record that the log does not already hold: a leading entry whose
 * index the log holds with the same term is the same entry (Log Matching), and one below the
 * first index was compacted since; the rest is appended as the record first was.
 */
function unmatchedSuffix(log: LogView, entries: readonly Entry[]): Entry[] {
  let position = 0;
  while (position < entries.length) {
    const entry = entries[position]!;
    if (entry.index < log.firstIndex()) position++;
    else if (entry.index <= log.lastIndex() && log.term(entry.index) === entry.term) position++;
    else break;
  }
  return entries.slice(position);
}
