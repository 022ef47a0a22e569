/**
 * Read-only inspection of a store directory, independent of ReplicaLogStore and of its status:
 * `scanTree` reads the `wal/` tree and a point-in-time copy of the KV database, and
 * `verifyTree` turns what it found into a list of every problem (never stopping at the first).
 *
 * Nothing here takes the store's lock or writes under `<dir>`:
 *   - `wal/` and `staging/` are read with readdir/lstat/readFile only;
 *   - the KV database (`<dir>/kv`, LevelDB) is NEVER opened in place. Opening LevelDB is not a
 *     read: it replays and rewrites its log, writes a new MANIFEST and LOG, and holds an
 *     exclusive lock for as long as it is open, which would make a concurrent
 *     ReplicaLogStore.open fail. So the directory is copied to a private temporary directory
 *     and the copy is opened. While the store is open in another process this is a
 *     point-in-time, best-effort view (a file compacted away mid-copy makes us retry).
 *
 * Decision on entries without RAFT: a log written before Raft (no hard state) is a valid tree
 * that still needs `replicalog migrate`, so a missing RAFT file there is a *notice*
 * (NEEDS_MIGRATION), not a problem, and `ok` stays true. On a bootstrapped store (a hard state
 * exists) a missing RAFT file is a problem. A RAFT file that is empty, does not decode, or
 * whose index is not its LSN is a problem whatever the status (on a store without hard state,
 * migrate rewrites it; the problem is still reported so nobody serves it meanwhile).
 */
import { decodeAnchor, decodeIntent, type LogAnchor } from './wal/raft-state.js';
import { decodeJournalPayload, decodeJournalRecord, JOURNAL_DIRECTORY, journalRecordTear, parseJournalRecordName, parseJournalSegmentName, scanJournalSegment, type SegmentScan } from './wal/journal.js';
import { copyFile, lstat, mkdtemp, opendir, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { decodeConfState, decodeEntry, decodeHardState, decodeLogEntry, decodeLsn, decodeSnapshot } from './codec.js';
import type { ConfState, Entry, HardState, SnapshotMetadata } from './types.js';
import {
  DIRECTORY_MODE,
  FILE_MODE,
  KEY_CONF_STATE,
  KEY_HARD_STATE,
  KEY_INTENT,
  KEY_JOURNAL_THROUGH,
  KEY_LATEST_CONFIG_CHANGE,
  KEY_LOG_ANCHOR,
  KEY_SNAPSHOT,
  KEY_SNAPSHOT_DATA,
  MANIFEST_FILE,
  RAFT_FILE,
  RAFT_TEMPORARY_FILE,
  formatLsn,
  kvKey,
  kvPath,
  parseLsn,
  snapshotDirectoryPath,
  stagingPath,
  walPath,
  isSnapshotFileName,
} from './wal/layout.js';

// ---------------------------------------------------------------------------------------------
// Problems

export const ProblemCode = {
  /** `<dir>/wal` is missing or not a directory. */
  WalMissing: 'WAL_MISSING',
  /** A name in `wal/` that is not a canonical LSN, or a file in an entry directory that has no business there. */
  StrayName: 'STRAY_NAME',
  /** `wal/<LSN>` is not a directory. */
  NotADirectory: 'NOT_A_DIRECTORY',
  /** MANIFEST, RAFT or a payload file that is not a regular file. */
  NotAFile: 'NOT_A_FILE',
  /** LSNs missing between the anchor (or the first entry) and the last entry. */
  Gap: 'GAP',
  /** No MANIFEST in an entry directory. */
  ManifestMissing: 'MANIFEST_MISSING',
  /** MANIFEST does not decode as a gitaly.LogEntry (0 bytes is valid). */
  ManifestCorrupt: 'MANIFEST_CORRUPT',
  /** No RAFT file on a bootstrapped store. */
  RaftMissing: 'RAFT_MISSING',
  /** A 0-byte RAFT file (a torn write: Gitaly B7). */
  RaftEmpty: 'RAFT_EMPTY',
  /** RAFT does not decode as a raftpb.Entry. */
  RaftCorrupt: 'RAFT_CORRUPT',
  /** RAFT decodes to an entry whose index is not its directory's LSN. */
  RaftIndexMismatch: 'RAFT_INDEX_MISMATCH',
  /** A directory not 0700, MANIFEST/RAFT not 0400, a payload file with bits outside 0500. */
  BadMode: 'BAD_MODE',
  /** An entry whose term is lower than the entry (or anchor) before it. */
  TermRegression: 'TERM_REGRESSION',
  /** MANIFEST links a payload file (source_in_storage false) that is not in the entry directory. */
  PayloadMissing: 'PAYLOAD_MISSING',
  /** The hard state's commit is above the last index. */
  CommitAboveLast: 'COMMIT_ABOVE_LAST',
  /**
   * The log anchor is above every entry directory and no applySnapshot intent is pending: not
   * an interrupted compaction (compact(i) needs i <= lastIndex), so open refuses the tree.
   */
  AnchorBeyondLog: 'ANCHOR_BEYOND_LOG',
  /** The snapshot metadata's index is above the last index. */
  SnapshotBeyondLog: 'SNAPSHOT_BEYOND_LOG',
  /** The KV names a snapshot data file that is not in `snapshot/`. */
  SnapshotDataMissing: 'SNAPSHOT_DATA_MISSING',
  /** Entry directories at or below the log anchor (an interrupted compaction; open removes them). */
  CompactionLeftover: 'COMPACTION_LEFTOVER',
  /** Something in `staging/` (a crashed write; open removes it). */
  StagingLeftover: 'STAGING_LEFTOVER',
  /** A KV key that does not decode. */
  KvCorrupt: 'KV_CORRUPT',
  /** The KV database could not be copied or opened. */
  KvUnreadable: 'KV_UNREADABLE',
  /** A file or directory that could not be read (permissions, I/O error). */
  Unreadable: 'UNREADABLE',
  /**
   * journal/ holds a name that is not a record, a record missing before a later one, or a torn
   * or undecodable record that is not the newest (open refuses the tree).
   */
  JournalCorrupt: 'JOURNAL_CORRUPT',
} as const;
export type ProblemCode = (typeof ProblemCode)[keyof typeof ProblemCode];

export const NoticeCode = {
  /** Entries without RAFT on a store without hard state: run `replicalog migrate`. */
  NeedsMigration: 'NEEDS_MIGRATION',
  /** RAFT.tmp left by an interrupted migration on a store without hard state (migrate removes it). */
  MigrationLeftover: 'MIGRATION_LEFTOVER',
  /** applySnapshot's "drop every entry directory" intent is pending (the next open finishes it). */
  IntentPending: 'INTENT_PENDING',
  /** There is no `<dir>/kv` (a log written before Raft, or a store whose KV lives elsewhere). */
  KvAbsent: 'KV_ABSENT',
  /**
   * The hard state's commit is below firstIndex - 1: entries were compacted, or a snapshot
   * applied, beyond the commit. Both are legal (raft saves a snapshot before the hard state
   * that raises the commit to it); the next hard state raises it.
   */
  CommitBelowFirst: 'COMMIT_BELOW_FIRST',
  /**
   * Acknowledged write groups wait in journal/ (a journal-mode store that was not closed): the
   * next open writes them into wal/ and KV. A torn newest record (an unacknowledged group) is
   * dropped then.
   */
  JournalPending: 'JOURNAL_PENDING',
} as const;
export type NoticeCode = (typeof NoticeCode)[keyof typeof NoticeCode];

export interface Finding<Code extends string> {
  code: Code;
  /** The file or directory at fault (absolute). */
  path?: string;
  /** The entry's LSN directory name (13 base-36 characters) where an entry is at fault. */
  lsn?: string;
  /** The same entry's index as a number. */
  index?: number;
  message: string;
}
export type Problem = Finding<ProblemCode>;
export type Notice = Finding<NoticeCode>;

export interface VerifyResult {
  ok: boolean;
  problems: Problem[];
  /** Facts worth knowing that are not damage (see the module comment). */
  notices: Notice[];
}

// ---------------------------------------------------------------------------------------------
// KV: a point-in-time copy

/** The log anchor: index and term of the last compacted or snapshotted entry. */
export type LogAnchorRecord = LogAnchor;

export interface KvState {
  /** 'copy': read from a private copy of <dir>/kv; 'absent': there is no <dir>/kv. */
  source: 'copy' | 'absent';
  /** <dir>/kv */
  path: string;
  hardState?: HardState;
  confState?: ConfState;
  snapshot?: SnapshotMetadata;
  snapshotDataFile?: string;
  anchor?: LogAnchorRecord;
  intentPending: boolean;
  latestConfigChange?: number;
  /** raft/journal_through: the last journal record already checkpointed. */
  journalThrough?: number;
  /** Keys that did not decode (their fields above stay undefined). */
  corruptKeys: { key: string; message: string }[];
  /** Why the copy could not be made or opened (then every field above is undefined). */
  unreadable?: string;
}

function errorMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const cause = error instanceof Error && error.cause instanceof Error ? `: ${error.cause.message}` : '';
  return (message + cause).replace(/\s+/g, ' ');
}

function errnoCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error ? String((error as { code: unknown }).code) : undefined;
}

/** LevelDB files never needed by a reader: the lock (held by the owner) and the info logs. */
const KV_FILES_NOT_COPIED = new Set(['LOCK', 'LOG', 'LOG.old']);

async function copyKvDirectory(source: string, target: string): Promise<void> {
  const names = await readdir(source);
  // CURRENT names the MANIFEST, which names the table files: copy the pointer first, so a
  // compaction that runs meanwhile shows up as a missing file (ENOENT) and we retry.
  names.sort((a, b) => (a === 'CURRENT' ? -1 : b === 'CURRENT' ? 1 : a.localeCompare(b)));
  for (const name of names) {
    if (KV_FILES_NOT_COPIED.has(name)) continue;
    await copyFile(join(source, name), join(target, name));
  }
}

/** The raft keys a KvState is read from, in this order. */
const RAFT_KEY_NAMES = [KEY_HARD_STATE, KEY_CONF_STATE, KEY_SNAPSHOT, KEY_SNAPSHOT_DATA, KEY_LOG_ANCHOR, KEY_INTENT, KEY_LATEST_CONFIG_CHANGE, KEY_JOURNAL_THROUGH];

/**
 * A private, point-in-time copy of a KV database, opened once and read for any number of
 * partitions (a storage's kv/ holds every partition's keys under its p/<id>/ prefix: one copy
 * serves them all). Read-only towards the original; close() removes the copy.
 */
export class KvCopy {
  private constructor(
    /** The original database's path (what findings name). */
    readonly path: string,
    private readonly copyPath: string | undefined,
    private readonly database: ClassicLevel<Uint8Array, Uint8Array> | undefined,
    /** 'absent': there is no database at `path`; else why it could not be copied or opened. */
    private readonly unreadable: string | undefined,
    private readonly absent: boolean,
  ) {}

  /**
   * Copies `path` (a LevelDB directory) and opens the copy, retrying a copy that a live
   * compaction invalidated (up to 5 times). Never throws for damage: an absent or unreadable
   * database gives a KvCopy whose reads say so.
   */
  static async open(path: string): Promise<KvCopy> {
    try {
      const stat = await lstat(path);
      if (!stat.isDirectory()) return new KvCopy(path, undefined, undefined, `${path} is not a directory`, false);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return new KvCopy(path, undefined, undefined, undefined, true);
      return new KvCopy(path, undefined, undefined, errorMessage(error), false);
    }
    let lastError: unknown;
    for (let attempt = 0; attempt < 5; attempt++) {
      const copy = await mkdtemp(join(tmpdir(), 'replicalog-kv-'));
      try {
        await copyKvDirectory(path, copy);
        const database = new ClassicLevel<Uint8Array, Uint8Array>(copy, { keyEncoding: 'view', valueEncoding: 'view', createIfMissing: false });
        await database.open();
        return new KvCopy(path, copy, database, undefined, false);
      } catch (error) {
        lastError = error;
        await rm(copy, { recursive: true, force: true });
      }
    }
    return new KvCopy(path, undefined, undefined, errorMessage(lastError), false);
  }

  /** Whether there is no database at `path` at all. */
  get isAbsent(): boolean {
    return this.absent;
  }

  /** Why the database could not be read, or undefined. */
  get problem(): string | undefined {
    return this.unreadable;
  }

  /** The raft keys of partition `partitionId` (or of an unpartitioned store). */
  async read(partitionId?: number): Promise<KvState> {
    const state: KvState = { source: this.absent ? 'absent' : 'copy', path: this.path, intentPending: false, corruptKeys: [] };
    if (this.absent) return state;
    if (this.database === undefined) {
      state.unreadable = this.unreadable ?? 'not open';
      return state;
    }
    let values: (Uint8Array | undefined)[];
    try {
      values = await this.database.getMany<Uint8Array, Uint8Array>(
        RAFT_KEY_NAMES.map((name) => kvKey(partitionId, name)),
        { keyEncoding: 'view', valueEncoding: 'view' },
      );
    } catch (error) {
      state.unreadable = errorMessage(error);
      return state;
    }
    return decodeKvState(state, values);
  }

  /**
   * The partition ids that have at least one key under their p/<id>/ prefix, ascending, and
   * how many keys lie outside every partition prefix. One seek per partition, not one step
   * per key.
   */
  async partitionIds(): Promise<{ ids: number[]; otherKeys: number }> {
    if (this.database === undefined) return { ids: [], otherKeys: 0 };
    const ids: number[] = [];
    let otherKeys = 0;
    const iterator = this.database.keys({ keyEncoding: 'view' });
    try {
      for (;;) {
        const key = await iterator.next();
        if (key === undefined) break;
        const isPartitionKey = key.length >= 11 && key[0] === 0x70 && key[1] === 0x2f && key[10] === 0x2f;
        if (!isPartitionKey) {
          otherKeys++;
          continue;
        }
        const id = new DataView(key.buffer, key.byteOffset, key.length).getBigUint64(2, false);
        if (id > BigInt(Number.MAX_SAFE_INTEGER)) {
          otherKeys++;
          continue;
        }
        ids.push(Number(id));
        // Past every key of this partition: p/ + (id + 1) as 8 bytes (the next prefix, or above).
        const next = new Uint8Array(10);
        next[0] = 0x70;
        next[1] = 0x2f;
        new DataView(next.buffer).setBigUint64(2, id + 1n, false);
        iterator.seek(next);
      }
    } finally {
      await iterator.close();
    }
    return { ids, otherKeys };
  }

  /** Closes the copy and removes it. */
  async close(): Promise<void> {
    if (this.database !== undefined) await this.database.close().catch(() => {});
    if (this.copyPath !== undefined) await rm(this.copyPath, { recursive: true, force: true });
  }
}

/**
 * Reads the raft keys of `<dir>/kv` from a private copy (see the module comment). Never throws
 * for damage: an unreadable database or an undecodable key is reported in the result.
 */
export async function readKvSnapshot(dir: string, partitionId?: number): Promise<KvState> {
  const copy = await KvCopy.open(kvPath(resolve(dir)));
  try {
    return await copy.read(partitionId);
  } finally {
    await copy.close();
  }
}

function decodeKvState(state: KvState, values: (Uint8Array | undefined)[]): KvState {
  const [hardState, confState, snapshot, snapshotData, anchor, intent, latestConfigChange, journalThrough] = values;
  const decode = <T>(key: string, bytes: Uint8Array | undefined, decoder: (bytes: Uint8Array) => T): T | undefined => {
    if (bytes === undefined) return undefined;
    try {
      return decoder(bytes);
    } catch (error) {
      state.corruptKeys.push({ key, message: errorMessage(error) });
      return undefined;
    }
  };
  const decodedHardState = decode(KEY_HARD_STATE, hardState, decodeHardState);
  if (decodedHardState !== undefined) state.hardState = decodedHardState;
  const decodedConfState = decode(KEY_CONF_STATE, confState, decodeConfState);
  if (decodedConfState !== undefined) state.confState = decodedConfState;
  const decodedSnapshot = decode(KEY_SNAPSHOT, snapshot, decodeSnapshot);
  if (decodedSnapshot !== undefined) state.snapshot = decodedSnapshot.metadata;
  const snapshotDataFile = decode(KEY_SNAPSHOT_DATA, snapshotData, (bytes) => {
    const name = new TextDecoder().decode(bytes);
    if (!isSnapshotFileName(name)) throw new Error(`${JSON.stringify(name)} is not a snapshot file name replicalog writes`);
    return name;
  });
  if (snapshotDataFile !== undefined) state.snapshotDataFile = snapshotDataFile;
  const decodedAnchor = decode(KEY_LOG_ANCHOR, anchor, (bytes) => decodeAnchor(bytes));
  if (decodedAnchor !== undefined) state.anchor = decodedAnchor;
  state.intentPending = decode(KEY_INTENT, intent, (bytes) => decodeIntent(bytes)) !== undefined;
  const decodedLatest = decode(KEY_LATEST_CONFIG_CHANGE, latestConfigChange, decodeLsn);
  if (decodedLatest !== undefined) state.latestConfigChange = decodedLatest;
  const decodedThrough = decode(KEY_JOURNAL_THROUGH, journalThrough, (bytes) => {
    if (bytes.length !== 8) throw new Error(`${bytes.length} bytes, not 8`);
    return Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0));
  });
  if (decodedThrough !== undefined) state.journalThrough = decodedThrough;
  return state;
}

// ---------------------------------------------------------------------------------------------
// The wal/ tree

/**
 * What the checks need of a decoded MANIFEST, not the LogEntry itself: a Gitaly tree holds
 * millions of entries, and a decoded LogEntry (with views into its file's bytes) costs
 * kilobytes each. `operations` is undefined when the MANIFEST was not decoded (readManifests false).
 */
export type ManifestState =
  | { state: 'ok'; size: number; mode: number; operations?: number; linkedPayloads: string[] }
  | { state: 'missing' }
  | { state: 'not-a-file' }
  | { state: 'corrupt'; size: number; mode: number; reason: string }
  | { state: 'unreadable'; reason: string };

/** What the checks need of a decoded RAFT entry (its data is dropped: it may be large). */
export interface EntryHead {
  index: number;
  term: number;
  type: Entry['type'];
}

export type RaftState =
  | { state: 'ok'; size: number; mode: number; entry: EntryHead }
  | { state: 'missing' }
  | { state: 'not-a-file' }
  | { state: 'empty'; mode: number }
  | { state: 'corrupt'; size: number; mode: number; reason: string }
  | { state: 'index-mismatch'; size: number; mode: number; entry: EntryHead }
  | { state: 'unreadable'; reason: string };

export interface ScannedFile {
  name: string;
  isFile: boolean;
  mode: number;
}

export interface ScannedEntry {
  index: number;
  /** The LSN directory name. */
  lsn: string;
  path: string;
  isDirectory: boolean;
  /** Permission bits of the entry directory (or file). */
  mode: number;
  manifest: ManifestState;
  raft: RaftState;
  /** Payload files (base-36 names). */
  payload: ScannedFile[];
  /** Names that are neither MANIFEST, RAFT, RAFT.tmp nor a base-36 payload name. */
  strayNames: string[];
  /** A RAFT.tmp left by an interrupted backfill. */
  hasRaftTemporary: boolean;
  /** Set when the directory itself could not be listed. */
  unreadable?: string;
}

export interface TreeScan {
  dir: string;
  walPath: string;
  /** undefined when wal/ exists and is a directory; else why not. */
  walProblem?: string;
  /** wal/ exists but could not be read (EACCES, EIO, …): walProblem names the system error. */
  walUnreadable?: boolean;
  walMode?: number;
  /** Retained entry directories (and LSN-named non-directories), ascending by index. */
  entries: ScannedEntry[];
  /** Names in wal/ that are not canonical LSNs. */
  strayNames: string[];
  /** Names in staging/. */
  stagingLeftovers: string[];
  /** LSN-named entries listed in wal/: how many, the first and the last (whether they were kept in `entries` or not). */
  listed: { count: number; first?: number; last?: number };
  kv: KvState;
  /** The snapshot data file the KV names, if it names one. */
  snapshotDataFile?: { path: string; exists: boolean; size?: number };
  /** journal/ (lib/wal/journal.ts), when there is one. */
  journal?: JournalScan;
}

export interface JournalScan {
  path: string;
  /**
   * Records by sequence, ascending: record files (a torn one has `tear`, an undecodable one
   * `corrupt`) and the whole records of the segments (`path` names the segment and the offset).
   */
  records: { sequence: number; path: string; entries?: number; firstIndex?: number; lastIndex?: number; tear?: string; corrupt?: string }[];
  /**
   * Torn records in segments (where the segment's records stop), with the highest sequence of a
   * whole record found after them in segment order (open refuses a tear before a live record).
   */
  segmentTears: { path: string; reason: string; laterSequence?: number }[];
  /** Segments that open refuses whatever the marker (scanJournalSegment's ERR_CORRUPT). */
  corruptSegments: { path: string; message: string }[];
  strayNames: string[];
  unreadable?: string;
}

/** Lists journal/ and checks every record (read-only). */
async function scanJournal(root: string): Promise<JournalScan | undefined> {
  const path = join(root, JOURNAL_DIRECTORY);
  let names: string[];
  try {
    names = await readdir(path);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    return { path, records: [], segmentTears: [], corruptSegments: [], strayNames: [], unreadable: errorMessage(error) };
  }
  const scan: JournalScan = { path, records: [], segmentTears: [], corruptSegments: [], strayNames: [] };
  // Names of 20 digits sort as they count: segments in the order they were written.
  for (const name of names.sort()) {
    const segment = parseJournalSegmentName(name);
    if (segment !== undefined) {
      await scanSegmentInto(scan, join(path, name));
      continue;
    }
    const sequence = parseJournalRecordName(name);
    if (sequence === undefined) {
      scan.strayNames.push(name);
      continue;
    }
    const recordPath = join(path, name);
    const record: JournalScan['records'][number] = { sequence, path: recordPath };
    try {
      const bytes = await readFile(recordPath);
      const tear = journalRecordTear(bytes);
      if (tear !== undefined) record.tear = tear;
      else {
        const { entries } = decodeJournalRecord(bytes, recordPath);
        record.entries = entries.length;
        if (entries.length > 0) {
          record.firstIndex = entries[0]!.index;
          record.lastIndex = entries[entries.length - 1]!.index;
        }
      }
    } catch (error) {
      record.corrupt = errorMessage(error);
    }
    scan.records.push(record);
  }
  scan.records.sort((a, b) => a.sequence - b.sequence);
  return scan;
}

/** Adds one segment's whole records and its tear (journal.ts, scanJournalSegment) to `scan`. */
async function scanSegmentInto(scan: JournalScan, segmentPath: string): Promise<void> {
  let result: SegmentScan;
  try {
    result = scanJournalSegment(await readFile(segmentPath), segmentPath);
  } catch (error) {
    scan.corruptSegments.push({ path: segmentPath, message: errorMessage(error) });
    return;
  }
  for (const found of result.records) {
    const recordPath = `${segmentPath} at offset ${found.offset}`;
    const record: JournalScan['records'][number] = { sequence: found.sequence, path: recordPath };
    try {
      const { entries } = decodeJournalPayload(found.payload, recordPath);
      record.entries = entries.length;
      if (entries.length > 0) {
        record.firstIndex = entries[0]!.index;
        record.lastIndex = entries[entries.length - 1]!.index;
      }
    } catch (error) {
      record.corrupt = errorMessage(error);
    }
    scan.records.push(record);
    // A whole record after an earlier tear (in segment order).
    for (const tear of scan.segmentTears) tear.laterSequence = Math.max(tear.laterSequence ?? 0, found.sequence);
  }
  if (result.tear !== undefined) scan.segmentTears.push({ path: `${segmentPath} at offset ${result.tear.offset}`, reason: result.tear.reason });
}

export interface ScanOptions {
  /** Read and decode MANIFEST files (default true; migrate's pre-scan only needs RAFT). */
  readManifests?: boolean;
  /**
   * Read the KV database from a copy (default true). migrate turns it off: it holds the store
   * open, and the store has already loaded the KV and removed what lies below the anchor.
   */
  readKv?: boolean;
  partitionId?: number;
  /**
   * Read the KV from this open copy (with partitionId's prefix) instead of copying `<dir>/kv`:
   * a storage's partitions share the storage's kv/ (lib/verify-storage.ts).
   */
  kvCopy?: KvCopy;
  /** How many entry directories are read at the same time (default 32). */
  concurrency?: number;
}

/** Gitaly payload names: a base-36 sequence number starting at 1, no leading zero. */
const PAYLOAD_NAME = /^[1-9a-z][0-9a-z]*$/;

async function readRaft(path: string, index: number, isFile: boolean, mode: number): Promise<RaftState> {
  if (!isFile) return { state: 'not-a-file' };
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    return { state: 'unreadable', reason: errorMessage(error) };
  }
  if (bytes.length === 0) return { state: 'empty', mode };
  let entry: EntryHead;
  try {
    const decoded = decodeEntry(bytes);
    entry = { index: decoded.index, term: decoded.term, type: decoded.type };
  } catch (error) {
    return { state: 'corrupt', size: bytes.length, mode, reason: errorMessage(error) };
  }
  if (entry.index !== index) return { state: 'index-mismatch', size: bytes.length, mode, entry };
  return { state: 'ok', size: bytes.length, mode, entry };
}

async function readManifest(path: string, isFile: boolean, mode: number, decode: boolean, size: number): Promise<ManifestState> {
  if (!isFile) return { state: 'not-a-file' };
  if (!decode) return { state: 'ok', size, mode, linkedPayloads: [] };
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    return { state: 'unreadable', reason: errorMessage(error) };
  }
  try {
    const logEntry = decodeLogEntry(bytes);
    // Payload files the MANIFEST links from the entry directory (not from the storage).
    const linkedPayloads: string[] = [];
    for (const operation of logEntry.operations) {
      const link = operation.createHardLink;
      if (link !== undefined && !link.sourceInStorage) linkedPayloads.push(new TextDecoder().decode(link.sourcePath));
    }
    return { state: 'ok', size: bytes.length, mode, operations: logEntry.operations.length, linkedPayloads };
  } catch (error) {
    return { state: 'corrupt', size: bytes.length, mode, reason: errorMessage(error) };
  }
}

/** One entry directory; undefined when it vanished before it could be read (a live store compacted it). */
async function scanEntry(walDirectory: string, name: string, index: number, readManifests: boolean): Promise<ScannedEntry | undefined> {
  const path = join(walDirectory, name);
  const scanned: ScannedEntry = {
    index,
    lsn: name,
    path,
    isDirectory: false,
    mode: 0,
    manifest: { state: 'missing' },
    raft: { state: 'missing' },
    payload: [],
    strayNames: [],
    hasRaftTemporary: false,
  };
  try {
    const stat = await lstat(path);
    scanned.isDirectory = stat.isDirectory();
    scanned.mode = stat.mode & 0o7777;
    if (!scanned.isDirectory) return scanned;
    const names = (await readdir(path)).sort();
    for (const child of names) {
      const childPath = join(path, child);
      let childStat;
      try {
        childStat = await lstat(childPath);
      } catch (error) {
        if (errnoCode(error) === 'ENOENT') continue; // removed meanwhile
        throw error;
      }
      const isFile = childStat.isFile();
      const mode = childStat.mode & 0o7777;
      if (child === MANIFEST_FILE) scanned.manifest = await readManifest(childPath, isFile, mode, readManifests, childStat.size);
      else if (child === RAFT_FILE) scanned.raft = await readRaft(childPath, index, isFile, mode);
      else if (child === RAFT_TEMPORARY_FILE) scanned.hasRaftTemporary = true;
      else if (PAYLOAD_NAME.test(child)) scanned.payload.push({ name: child, isFile, mode });
      else scanned.strayNames.push(child);
    }
  } catch (error) {
    // Removed between readdir(wal) and now (the store compacted or truncated meanwhile).
    if (errnoCode(error) === 'ENOENT' && !scanned.isDirectory && scanned.mode === 0) return undefined;
    scanned.unreadable = errorMessage(error);
  }
  return scanned;
}

async function listDirectory(path: string): Promise<{ names: string[]; mode?: number; problem?: string; unreadable?: boolean }> {
  try {
    const stat = await lstat(path);
    if (!stat.isDirectory()) return { names: [], problem: `${path} is not a directory` };
    return { names: await readdir(path), mode: stat.mode & 0o7777 };
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return { names: [], problem: `${path} does not exist` };
    // Permission denied, an I/O error: the directory is there, it cannot be read.
    return { names: [], problem: errorMessage(error), unreadable: true };
  }
}

/** Runs `task` over `items` with at most `limit` in flight, keeping the results in order. */
export async function mapBounded<T, R>(items: readonly T[], limit: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const position = next++;
      results[position] = await task(items[position]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Entry directories read per step of a walk (in index order, `concurrency` at a time). */
const WALK_CHUNK = 1024;

/**
 * The LSN-named entries of wal/ as sorted indexes (8 bytes each, not a string and an object:
 * a Gitaly tree holds millions), read from the directory stream in batches, plus the names
 * that are not canonical LSNs.
 */
async function listWal(wal: string): Promise<{ indexes: Float64Array; strayNames: string[]; mode?: number; problem?: string; unreadable?: boolean }> {
  let indexes = new Float64Array(1024);
  let count = 0;
  const strayNames: string[] = [];
  let mode: number;
  try {
    const stat = await lstat(wal);
    if (!stat.isDirectory()) return { indexes: new Float64Array(0), strayNames, problem: `${wal} is not a directory` };
    mode = stat.mode & 0o7777;
    const directory = await opendir(wal, { bufferSize: 4096 });
    for await (const entry of directory) {
      const index = parseLsn(entry.name);
      if (index === undefined) {
        strayNames.push(entry.name);
        continue;
      }
      if (count === indexes.length) {
        const grown = new Float64Array(indexes.length * 2);
        grown.set(indexes);
        indexes = grown;
      }
      indexes[count++] = index;
    }
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return { indexes: new Float64Array(0), strayNames: [], problem: `${wal} does not exist` };
    // Permission denied, an I/O error: the directory is there, it cannot be read.
    return { indexes: new Float64Array(0), strayNames: [], problem: errorMessage(error), unreadable: true };
  }
  return { indexes: indexes.slice(0, count).sort(), strayNames: strayNames.sort(), mode };
}

export interface WalkOptions extends ScanOptions {
  /** Called after each step of the walk with the entry directories read so far and their number. */
  onProgress?(done: number, total: number): void;
}

/**
 * Reads the tree like scanTree, but hands each entry directory to `visit` in index order and
 * keeps none of them: memory is bounded by one step of the walk (plus 8 bytes per listed
 * entry), whatever the size of the tree. The returned scan has every field but `entries`
 * (empty); `listed` has the count and the first and last LSN listed.
 */
export async function walkTree(
  dir: string,
  options: WalkOptions,
  visit: (entry: ScannedEntry) => void,
  /** Called with the header (KV, listing, staging; `entries` empty) before the first entry. */
  onHeader?: (scan: TreeScan) => void,
): Promise<TreeScan> {
  const root = resolve(dir);
  const wal = walPath(root);
  const readManifests = options.readManifests ?? true;
  const listing = await listWal(wal);
  const kv: KvState =
    options.readKv === false
      ? { source: 'absent', path: kvPath(root), intentPending: false, corruptKeys: [] }
      : options.kvCopy !== undefined
        ? await options.kvCopy.read(options.partitionId)
        : await readKvSnapshot(root, options.partitionId);
  const count = listing.indexes.length;
  const scan: TreeScan = {
    dir: root,
    walPath: wal,
    entries: [],
    strayNames: listing.strayNames,
    stagingLeftovers: [],
    kv,
    listed: { count, ...(count > 0 ? { first: listing.indexes[0]!, last: listing.indexes[count - 1]! } : {}) },
  };
  if (listing.problem !== undefined) scan.walProblem = listing.problem;
  if (listing.unreadable === true) scan.walUnreadable = true;
  if (listing.mode !== undefined) scan.walMode = listing.mode;

  if (scan.kv.snapshotDataFile !== undefined) {
    const path = join(snapshotDirectoryPath(root), scan.kv.snapshotDataFile);
    try {
      const stat = await lstat(path);
      scan.snapshotDataFile = { path, exists: stat.isFile(), size: stat.size };
    } catch {
      scan.snapshotDataFile = { path, exists: false };
    }
  }
  const staging = await listDirectory(stagingPath(root));
  scan.stagingLeftovers = staging.names.sort();
  const journal = await scanJournal(root);
  if (journal !== undefined) scan.journal = journal;

  onHeader?.(scan);
  const concurrency = options.concurrency ?? 32;
  options.onProgress?.(0, count);
  for (let start = 0; start < count; start += WALK_CHUNK) {
    const chunk = Array.from(listing.indexes.subarray(start, Math.min(count, start + WALK_CHUNK)));
    const scanned = await mapBounded(chunk, concurrency, (index) => scanEntry(wal, formatLsn(index), index, readManifests));
    for (const entry of scanned) if (entry !== undefined) visit(entry);
    options.onProgress?.(Math.min(count, start + WALK_CHUNK), count);
  }
  return scan;
}

/** Reads the whole tree (read-only; see the module comment) and keeps every entry. Damage is recorded, never thrown. */
export async function scanTree(dir: string, options: WalkOptions = {}): Promise<TreeScan> {
  const entries: ScannedEntry[] = [];
  const scan = await walkTree(dir, options, (entry) => entries.push(entry));
  scan.entries = entries;
  return scan;
}

// ---------------------------------------------------------------------------------------------
// The log as the store would see it

export type TreeStatus = 'unbootstrapped' | 'needs-backfill' | 'bootstrapped';

export interface LogExtent {
  status: TreeStatus;
  /** The index and term below the first retained entry (from KV, or derived as the store does). */
  anchor: LogAnchorRecord;
  firstIndex: number;
  lastIndex: number;
  /** Entries above the anchor, ascending. */
  retained: ScannedEntry[];
  /** Entry directories at or below the anchor (an interrupted compaction; open removes them). */
  compactionLeftovers: ScannedEntry[];
  /** Retained entries without a valid RAFT file (what backfill would write). */
  pendingMigration: ScannedEntry[];
}

/** The same as LogExtent, counted while walking (no entry kept). */
export interface ExtentSummary {
  status: TreeStatus;
  anchor: LogAnchorRecord;
  firstIndex: number;
  lastIndex: number;
  retainedEntries: number;
  compactionLeftovers: number;
  /** Retained entries without a valid RAFT file, and the first and last of them. */
  pendingMigration: number;
  firstPending?: { index: number; lsn: string };
  lastPending?: { index: number; lsn: string };
}

/**
 * The log anchor as ReplicaLogStore.open derives it (replica-log-store.ts recover): the KV's,
 * else just below the first entry directory, else (0, 0).
 */
function anchorOf(kv: KvState, firstListed: number | undefined): LogAnchorRecord {
  if (kv.anchor !== undefined) return kv.anchor;
  return firstListed !== undefined && firstListed > 1 ? { index: firstListed - 1, term: kv.hardState?.term ?? 0 } : { index: 0, term: 0 };
}

/** applySnapshot's intent pending: its KV batch (the new anchor) is durable and the next open drops EVERY entry directory. */
function isDropped(kv: KvState, anchor: LogAnchorRecord, entry: ScannedEntry): boolean {
  return kv.intentPending || entry.index <= anchor.index;
}

/**
 * The first index that journal records past raft/journal_through rewrite (Infinity: none), as
 * ReplicaLogStore.open decides it: open removes every entry directory from there on (an
 * unfinished checkpoint may have left them torn) and writes them again from the records.
 */
export function journalCoveredFrom(scan: TreeScan, anchor: LogAnchorRecord): number {
  const { kv } = scan;
  if (kv.intentPending || (kv.anchor === undefined && kv.hardState === undefined)) return Number.POSITIVE_INFINITY;
  const through = kv.journalThrough ?? 0;
  const first = scan.journal?.records.find((record) => record.sequence > through && record.firstIndex !== undefined)?.firstIndex;
  if (first === undefined || first <= (kv.hardState?.commit ?? 0) || first <= anchor.index) return Number.POSITIVE_INFINITY;
  return first;
}

/** firstIndex/lastIndex/status exactly as ReplicaLogStore.open derives them (replica-log-store.ts recover). */
export function logExtent(scan: TreeScan): LogExtent {
  const all = scan.entries;
  const anchor = anchorOf(scan.kv, all[0]?.index);
  const compactionLeftovers = all.filter((entry) => isDropped(scan.kv, anchor, entry));
  const coveredFrom = journalCoveredFrom(scan, anchor);
  const retained = all.filter((entry) => !isDropped(scan.kv, anchor, entry) && entry.index < coveredFrom);
  const lastIndex = retained.length > 0 ? retained[retained.length - 1]!.index : anchor.index;
  const status: TreeStatus = scan.kv.hardState !== undefined ? 'bootstrapped' : lastIndex > anchor.index ? 'needs-backfill' : 'unbootstrapped';
  return {
    status,
    anchor,
    firstIndex: anchor.index + 1,
    lastIndex,
    retained,
    compactionLeftovers,
    pendingMigration: retained.filter((entry) => entry.raft.state !== 'ok'),
  };
}

/**
 * The term backfill gives each pending entry: the nearest earlier entry's (RAFT or anchor),
 * else the hard state's, else 0 (API.md; replica-log-store.ts recover). Fed in index order.
 */
export class BackfillTerms {
  private nearest: number | undefined;
  constructor(private readonly kv: KvState) {
    this.nearest = kv.anchor !== undefined && kv.anchor.index > 0 ? kv.anchor.term : undefined;
  }

  /** The term backfill writes for `entry` (a retained entry), or undefined when it has a valid RAFT file. */
  next(entry: ScannedEntry): number | undefined {
    if (entry.raft.state === 'ok') {
      this.nearest = entry.raft.entry.term;
      return undefined;
    }
    return this.nearest ?? this.kv.hardState?.term ?? 0;
  }
}

export function backfillTerms(scan: TreeScan, extent: LogExtent = logExtent(scan)): Map<number, number> {
  const terms = new Map<number, number>();
  const backfill = new BackfillTerms(scan.kv);
  for (const entry of extent.retained) {
    const term = backfill.next(entry);
    if (term !== undefined) terms.set(entry.index, term);
  }
  return terms;
}

// ---------------------------------------------------------------------------------------------
// verifyTree

function octal(mode: number): string {
  return `0${mode.toString(8).padStart(3, '0')}`;
}

export interface VerifyOptions extends Pick<WalkOptions, 'onProgress' | 'kvCopy'> {
  partitionId?: number;
}

/**
 * Checks `dir` and returns every problem found (see ProblemCode), each naming the entry's LSN
 * directory where an entry is at fault. Read-only; works whatever the store's status is and
 * while the store is open elsewhere (then the KV part is a point-in-time view). Walks the tree
 * without keeping its entries (bounded memory).
 */
export async function verifyTree(dir: string, options: VerifyOptions = {}): Promise<VerifyResult> {
  return (await verifyWalk(dir, options)).result;
}

/** verifyTree plus the scan's header and the extent (for inspect), in one walk. */
export async function verifyWalk(
  dir: string,
  options: WalkOptions,
  visit?: (entry: ScannedEntry, verifier: TreeVerifier) => void,
): Promise<{ scan: TreeScan; result: VerifyResult; extent: ExtentSummary }> {
  let verifier: TreeVerifier | undefined;
  const scan = await walkTree(
    dir,
    options,
    (entry) => {
      verifier!.add(entry);
      visit?.(entry, verifier!);
    },
    (header) => {
      verifier = new TreeVerifier(header);
    },
  );
  const { result, extent } = verifier!.finish();
  return { scan, result, extent };
}

/** verifyTree on an existing scan (the CLI reuses one scan for several reports). */
export function verifyScan(scan: TreeScan): VerifyResult {
  const verifier = new TreeVerifier({ ...scan, listed: { count: scan.entries.length, first: scan.entries[0]?.index, last: scan.entries[scan.entries.length - 1]?.index } });
  for (const entry of scan.entries) verifier.add(entry);
  return verifier.finish().result;
}

/**
 * The checks of verifyTree, fed one entry at a time in index order (TreeScan's header first:
 * the KV, the wal/ listing's first and last LSN). Problems are kept in the order a whole-tree
 * check lists them (the tree, the KV, compaction leftovers, gaps, entries, the KV against the
 * log, staging), so the result does not depend on how the tree was read.
 */
export class TreeVerifier {
  private readonly head: Problem[] = [];
  private readonly leftovers: Problem[] = [];
  private readonly gaps: Problem[] = [];
  private readonly atEntries: Problem[] = [];
  private readonly notices: Notice[] = [];
  readonly anchor: LogAnchorRecord;
  readonly bootstrapped: boolean;
  /** The anchor is above every entry directory (open refuses the tree; leftovers are not listed then). */
  private readonly anchorBeyondLog: boolean;
  private expected: number;
  private previousTerm: { term: number; what: string } | undefined;
  private retained = 0;
  private lastRetained: ScannedEntry | undefined;
  private leftoverCount = 0;
  /** See journalCoveredFrom: entries from here on are rewritten from the journal at the next open. */
  private readonly coveredFrom: number;
  private covered: { count: number; first?: ScannedEntry } = { count: 0 };
  private pending = 0;
  private firstPending: ScannedEntry | undefined;
  private lastPending: ScannedEntry | undefined;
  /** Entries without RAFT on a store without hard state: the NEEDS_MIGRATION notice. */
  private needsMigration = 0;
  private firstNeedsMigration: ScannedEntry | undefined;
  private lastNeedsMigration: ScannedEntry | undefined;

  constructor(private readonly scan: TreeScan) {
    const { kv } = scan;
    if (scan.walProblem !== undefined && scan.walUnreadable === true) {
      this.head.push({ code: ProblemCode.Unreadable, path: scan.walPath, message: `cannot read ${scan.walPath}: ${scan.walProblem}` });
    } else if (scan.walProblem !== undefined) {
      this.head.push({ code: ProblemCode.WalMissing, path: scan.walPath, message: `${scan.walProblem}: not a replicalog or Gitaly state directory` });
    } else if (scan.walMode !== undefined && scan.walMode !== DIRECTORY_MODE) {
      this.head.push({ code: ProblemCode.BadMode, path: scan.walPath, message: `${scan.walPath} has mode ${octal(scan.walMode)}, expected ${octal(DIRECTORY_MODE)}` });
    }
    for (const name of scan.strayNames) {
      const path = join(scan.walPath, name);
      this.head.push({ code: ProblemCode.StrayName, path, message: `${path} is not an LSN directory (13 lowercase base-36 characters)` });
    }

    // ---- KV
    if (kv.source === 'absent') {
      this.notices.push({ code: NoticeCode.KvAbsent, path: kv.path, message: `${kv.path} does not exist: no hard state, conf state or snapshot saved` });
    }
    if (kv.unreadable !== undefined) {
      this.head.push({ code: ProblemCode.KvUnreadable, path: kv.path, message: `cannot read ${kv.path}: ${kv.unreadable}` });
    }
    for (const { key, message } of kv.corruptKeys) {
      this.head.push({ code: ProblemCode.KvCorrupt, path: kv.path, message: `key ${key} in ${kv.path} does not decode: ${message}` });
    }
    if (kv.intentPending) {
      this.notices.push({ code: NoticeCode.IntentPending, path: kv.path, message: `an interrupted applySnapshot is pending in ${kv.path}: the next open removes the remaining entry directories` });
    }

    this.anchor = anchorOf(kv, scan.listed.first);
    this.bootstrapped = kv.hardState !== undefined;
    const lastListed = scan.listed.last;
    this.anchorBeyondLog = !kv.intentPending && kv.anchor !== undefined && lastListed !== undefined && kv.anchor.index > lastListed;
    if (this.anchorBeyondLog) {
      // What open refuses (replica-log-store.ts recover): deleting the whole log is not provably safe.
      this.head.push({
        code: ProblemCode.AnchorBeyondLog,
        path: kv.path,
        message: `the log anchor ${kv.anchor!.index} in ${kv.path} is above the last entry directory ${join(scan.walPath, formatLsn(lastListed!))}: not an interrupted compaction`,
      });
    }
    this.coveredFrom = journalCoveredFrom(scan, this.anchor);
    this.expected = this.anchor.index + 1;
    this.previousTerm = kv.anchor !== undefined && kv.anchor.index > 0 ? { term: kv.anchor.term, what: `the log anchor (index ${kv.anchor.index})` } : undefined;
  }

  private atEntry(entry: ScannedEntry, code: ProblemCode, message: string, path = entry.path): void {
    this.atEntries.push({ code, path, lsn: entry.lsn, index: entry.index, message });
  }

  /** The KV state the checks run against. */
  get kv(): KvState {
    return this.scan.kv;
  }

  /** Whether open keeps `entry` (above the anchor, no applySnapshot intent pending). */
  isRetained(entry: ScannedEntry): boolean {
    return !isDropped(this.scan.kv, this.anchor, entry) && entry.index < this.coveredFrom;
  }

  /** The next entry directory, in index order. */
  add(entry: ScannedEntry): void {
    const { kv } = this.scan;
    if (isDropped(kv, this.anchor, entry)) {
      this.leftoverCount++;
      if (!this.anchorBeyondLog) {
        const why = kv.intentPending
          ? `an interrupted applySnapshot (index ${this.anchor.index}) drops every entry directory; the next open removes it`
          : `it is at or below the log anchor ${this.anchor.index} (an interrupted compaction; the next open removes it)`;
        this.leftovers.push({ code: ProblemCode.CompactionLeftover, path: entry.path, lsn: entry.lsn, index: entry.index, message: `${entry.path}: ${why}` });
      }
      return;
    }
    if (entry.index >= this.coveredFrom) {
      // Whatever an unfinished checkpoint left here (torn, stale, a reused directory) is not
      // checked: open removes it and writes these entries again from the journal.
      this.covered.count++;
      this.covered.first ??= entry;
      return;
    }
    this.retained++;
    this.lastRetained = entry;
    if (entry.raft.state !== 'ok') {
      this.pending++;
      this.firstPending ??= entry;
      this.lastPending = entry;
    }

    // ---- sequence: anchor+1 .. last without a hole
    if (entry.index > this.expected) {
      const first = this.expected;
      const last = entry.index - 1;
      const range = first === last ? formatLsn(first) : `${formatLsn(first)}..${formatLsn(last)} (${last - first + 1} entries)`;
      this.gaps.push({
        code: ProblemCode.Gap,
        path: join(this.scan.walPath, formatLsn(first)),
        lsn: formatLsn(first),
        index: first,
        message: `gap in the WAL: ${range} missing before ${entry.path}`,
      });
    }
    this.expected = entry.index + 1;

    // ---- the entry
    if (entry.unreadable !== undefined) {
      this.atEntry(entry, ProblemCode.Unreadable, `cannot read ${entry.path}: ${entry.unreadable}`);
      return;
    }
    if (!entry.isDirectory) {
      this.atEntry(entry, ProblemCode.NotADirectory, `${entry.path} is not a directory`);
      return;
    }
    if (entry.mode !== DIRECTORY_MODE) {
      this.atEntry(entry, ProblemCode.BadMode, `${entry.path} has mode ${octal(entry.mode)}, expected ${octal(DIRECTORY_MODE)}`);
    }
    for (const name of entry.strayNames) {
      this.atEntry(entry, ProblemCode.StrayName, `${join(entry.path, name)} is neither MANIFEST, RAFT nor a base-36 payload file`, join(entry.path, name));
    }
    if (entry.hasRaftTemporary) {
      const path = join(entry.path, RAFT_TEMPORARY_FILE);
      if (this.bootstrapped) this.atEntry(entry, ProblemCode.StrayName, `${path} is left over from an interrupted migration`, path);
      else this.notices.push({ code: NoticeCode.MigrationLeftover, path, lsn: entry.lsn, index: entry.index, message: `${path} is left over from an interrupted migration (migrate removes it)` });
    }

    // MANIFEST
    const manifestPath = join(entry.path, MANIFEST_FILE);
    const manifest = entry.manifest;
    switch (manifest.state) {
      case 'missing':
        this.atEntry(entry, ProblemCode.ManifestMissing, `${manifestPath} is missing`, manifestPath);
        break;
      case 'not-a-file':
        this.atEntry(entry, ProblemCode.NotAFile, `${manifestPath} is not a regular file`, manifestPath);
        break;
      case 'unreadable':
        this.atEntry(entry, ProblemCode.Unreadable, `cannot read ${manifestPath}: ${manifest.reason}`, manifestPath);
        break;
      case 'corrupt':
        this.atEntry(entry, ProblemCode.ManifestCorrupt, `${manifestPath} does not decode as a gitaly.LogEntry: ${manifest.reason}`, manifestPath);
        break;
      case 'ok': {
        const present = new Set(entry.payload.map((file) => file.name));
        for (const source of manifest.linkedPayloads) {
          if (!present.has(source)) {
            this.atEntry(entry, ProblemCode.PayloadMissing, `${join(entry.path, source)} is linked by MANIFEST but missing`, join(entry.path, source));
          }
        }
        break;
      }
    }
    if ((manifest.state === 'ok' || manifest.state === 'corrupt') && manifest.mode !== FILE_MODE) {
      this.atEntry(entry, ProblemCode.BadMode, `${manifestPath} has mode ${octal(manifest.mode)}, expected ${octal(FILE_MODE)}`, manifestPath);
    }

    // RAFT
    const raftPath = join(entry.path, RAFT_FILE);
    const raft = entry.raft;
    const rewritten = this.bootstrapped ? '' : ' (migrate rewrites it while the store has no hard state)';
    switch (raft.state) {
      case 'missing':
        if (this.bootstrapped) this.atEntry(entry, ProblemCode.RaftMissing, `${raftPath} is missing on a bootstrapped store`, raftPath);
        else {
          this.needsMigration++;
          this.firstNeedsMigration ??= entry;
          this.lastNeedsMigration = entry;
        }
        break;
      case 'not-a-file':
        this.atEntry(entry, ProblemCode.NotAFile, `${raftPath} is not a regular file`, raftPath);
        break;
      case 'unreadable':
        this.atEntry(entry, ProblemCode.Unreadable, `cannot read ${raftPath}: ${raft.reason}`, raftPath);
        break;
      case 'empty':
        this.atEntry(entry, ProblemCode.RaftEmpty, `${raftPath} is empty (a torn write)${rewritten}`, raftPath);
        break;
      case 'corrupt':
        this.atEntry(entry, ProblemCode.RaftCorrupt, `${raftPath} does not decode as a raftpb.Entry: ${raft.reason}${rewritten}`, raftPath);
        break;
      case 'index-mismatch':
        this.atEntry(entry, ProblemCode.RaftIndexMismatch, `${raftPath} holds index ${raft.entry.index}, not its LSN ${entry.index}${rewritten}`, raftPath);
        break;
      case 'ok':
        if (this.previousTerm !== undefined && raft.entry.term < this.previousTerm.term) {
          this.atEntry(entry, ProblemCode.TermRegression, `${raftPath} has term ${raft.entry.term}, lower than ${this.previousTerm.term} of ${this.previousTerm.what}`, raftPath);
        }
        this.previousTerm = { term: raft.entry.term, what: `entry ${entry.lsn}` };
        break;
    }
    if ((raft.state === 'ok' || raft.state === 'corrupt' || raft.state === 'index-mismatch' || raft.state === 'empty') && raft.mode !== FILE_MODE) {
      this.atEntry(entry, ProblemCode.BadMode, `${raftPath} has mode ${octal(raft.mode)}, expected ${octal(FILE_MODE)}`, raftPath);
    }

    // Payload files: Gitaly masks their permissions to & 0500 before linking them in.
    for (const file of entry.payload) {
      const path = join(entry.path, file.name);
      if (!file.isFile) this.atEntry(entry, ProblemCode.NotAFile, `${path} is not a regular file`, path);
      else if ((file.mode & ~0o500) !== 0) this.atEntry(entry, ProblemCode.BadMode, `${path} has mode ${octal(file.mode)}, expected at most 0500`, path);
    }
  }

  /** The extent as open would derive it, from what was added so far. */
  extent(): ExtentSummary {
    const lastIndex = this.lastRetained?.index ?? this.anchor.index;
    const status: TreeStatus = this.bootstrapped ? 'bootstrapped' : lastIndex > this.anchor.index ? 'needs-backfill' : 'unbootstrapped';
    const at = (entry: ScannedEntry | undefined) => (entry === undefined ? {} : { index: entry.index, lsn: entry.lsn });
    return {
      status,
      anchor: this.anchor,
      firstIndex: this.anchor.index + 1,
      lastIndex,
      retainedEntries: this.retained,
      compactionLeftovers: this.leftoverCount,
      pendingMigration: this.pending,
      ...(this.firstPending !== undefined ? { firstPending: at(this.firstPending) as { index: number; lsn: string } } : {}),
      ...(this.lastPending !== undefined ? { lastPending: at(this.lastPending) as { index: number; lsn: string } } : {}),
    };
  }

  /** Every problem and notice, after the last entry. */
  /**
   * The last index once open replays the journal: each whole record past raft/journal_through
   * replaces the tail from its first entry, so the newest one holding entries ends the log.
   */
  private lastIndexAfterJournal(walLast: number): number {
    const through = this.scan.kv.journalThrough ?? 0;
    let last = walLast;
    for (const record of this.scan.journal?.records ?? []) {
      if (record.sequence > through && record.lastIndex !== undefined) last = record.lastIndex;
    }
    return last;
  }

  finish(): { result: VerifyResult; extent: ExtentSummary } {
    const { scan } = this;
    const { kv } = scan;
    const extent = this.extent();
    const tail: Problem[] = [];
    const notices = [...this.notices];
    if (this.needsMigration > 0) {
      const first = this.firstNeedsMigration!;
      const last = this.lastNeedsMigration!;
      const which = this.needsMigration === 1 ? first.lsn : `${this.needsMigration} entries, ${first.lsn}..${last.lsn}`;
      notices.push({
        code: NoticeCode.NeedsMigration,
        path: first.path,
        lsn: first.lsn,
        index: first.index,
        message: `no RAFT file in ${which} (a log written before Raft): run \`replicalog migrate ${scan.dir}\``,
      });
    }

    // ---- KV against the log
    const hardState = kv.hardState;
    if (hardState !== undefined) {
      if (hardState.commit > extent.lastIndex) {
        tail.push({
          code: ProblemCode.CommitAboveLast,
          path: kv.path,
          message: `the hard state's commit ${hardState.commit} is above the last index ${extent.lastIndex}${this.lastRetained !== undefined ? ` (${this.lastRetained.path})` : ''}`,
        });
      }
      if (hardState.commit < extent.firstIndex - 1) {
        notices.push({
          code: NoticeCode.CommitBelowFirst,
          path: kv.path,
          message: `the hard state's commit ${hardState.commit} is below firstIndex-1 = ${extent.firstIndex - 1}: entries were compacted or a snapshot applied beyond the commit (legal; the next hard state raises it)`,
        });
      }
    }
    // A journal-mode store records a snapshot without waiting for its checkpoint: the entries up
    // to its index may still be in journal records, which the next open writes into wal/.
    const replayedLast = this.lastIndexAfterJournal(extent.lastIndex);
    if (kv.snapshot !== undefined && kv.snapshot.index > replayedLast) {
      tail.push({
        code: ProblemCode.SnapshotBeyondLog,
        path: kv.path,
        message: `the snapshot's index ${kv.snapshot.index} is above the last index ${replayedLast}${replayedLast === extent.lastIndex ? '' : ' (after the journal)'}`,
      });
    }
    if (scan.snapshotDataFile !== undefined && !scan.snapshotDataFile.exists) {
      tail.push({
        code: ProblemCode.SnapshotDataMissing,
        path: scan.snapshotDataFile.path,
        message: `the snapshot's data file ${scan.snapshotDataFile.path} named in ${kv.path} is missing`,
      });
    }

    // ---- staging leftovers
    for (const name of scan.stagingLeftovers) {
      const path = join(stagingPath(scan.dir), name);
      tail.push({ code: ProblemCode.StagingLeftover, path, message: `${path} is left over from an interrupted write (the next open removes it)` });
    }

    // ---- journal
    const journal = scan.journal;
    if (journal !== undefined) {
      if (journal.unreadable !== undefined) tail.push({ code: ProblemCode.Unreadable, path: journal.path, message: `cannot read ${journal.path}: ${journal.unreadable}` });
      for (const name of journal.strayNames) {
        const path = join(journal.path, name);
        tail.push({ code: ProblemCode.JournalCorrupt, path, message: `${path} is not a journal record or segment` });
      }
      const through = kv.journalThrough ?? 0;
      const live = journal.records.filter((record) => record.sequence > through);
      let entries = 0;
      for (let position = 0; position < live.length; position++) {
        const record = live[position]!;
        const newest = position === live.length - 1;
        if (record.sequence !== through + 1 + position) {
          tail.push({ code: ProblemCode.JournalCorrupt, path: record.path, message: `journal record ${through + 1 + position} is missing before ${record.path}` });
          break;
        }
        if (record.corrupt !== undefined) tail.push({ code: ProblemCode.JournalCorrupt, path: record.path, message: record.corrupt });
        else if (record.tear !== undefined && !newest) tail.push({ code: ProblemCode.JournalCorrupt, path: record.path, message: `${record.path} is torn (${record.tear}) but is not the newest record` });
        entries += record.entries ?? 0;
      }
      for (const corrupt of journal.corruptSegments) tail.push({ code: ProblemCode.JournalCorrupt, path: corrupt.path, message: corrupt.message });
      let segmentTorn = false;
      for (const tear of journal.segmentTears) {
        if (tear.laterSequence !== undefined && tear.laterSequence > through) {
          tail.push({ code: ProblemCode.JournalCorrupt, path: tear.path, message: `${tear.path} is torn (${tear.reason}) but a whole record (sequence ${tear.laterSequence}) follows it` });
        } else if (tear.laterSequence === undefined) segmentTorn = true;
      }
      if (live.length === 0 && segmentTorn) {
        notices.push({
          code: NoticeCode.JournalPending,
          path: journal.path,
          message: `a torn journal record (an unacknowledged group) is in ${journal.path}: the next open drops it`,
        });
      } else if (live.length > 0) {
        const torn = live[live.length - 1]?.tear !== undefined || segmentTorn ? ' (the newest is torn: an unacknowledged group, dropped then)' : '';
        notices.push({
          code: NoticeCode.JournalPending,
          path: journal.path,
          message: `${live.length} journal record${live.length === 1 ? '' : 's'} (${entries} entries) wait in ${journal.path}${torn}: the next open writes them into wal/ and KV`,
        });
      }
    }
    const firstCovered = this.covered.first;
    if (firstCovered !== undefined) {
      const count = this.covered.count;
      notices.push({
        code: NoticeCode.JournalPending,
        path: firstCovered.path,
        lsn: firstCovered.lsn,
        index: firstCovered.index,
        message: `${count} entry director${count === 1 ? 'y' : 'ies'} from ${firstCovered.path} on (an unfinished checkpoint): the next open removes ${count === 1 ? 'it' : 'them'} and writes the journal's entries again`,
      });
    }

    const problems = [...this.head, ...this.leftovers, ...this.gaps, ...this.atEntries, ...tail];
    return { result: { ok: problems.length === 0, problems, notices }, extent };
  }
}
