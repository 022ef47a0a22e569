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
import { copyFile, lstat, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { decodeConfState, decodeEntry, decodeHardState, decodeLogEntry, decodeLsn, decodeSnapshot, type LogEntry } from './codec.js';
import type { ConfState, Entry, HardState, SnapshotMetadata } from './types.js';
import {
  DIRECTORY_MODE,
  FILE_MODE,
  KEY_CONF_STATE,
  KEY_HARD_STATE,
  KEY_INTENT,
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

/**
 * Reads the raft keys of `<dir>/kv` from a private copy (see the module comment). Never throws
 * for damage: an unreadable database or an undecodable key is reported in the result.
 */
export async function readKvSnapshot(dir: string, partitionId?: number): Promise<KvState> {
  const path = kvPath(resolve(dir));
  const state: KvState = { source: 'absent', path, intentPending: false, corruptKeys: [] };
  try {
    const stat = await lstat(path);
    if (!stat.isDirectory()) {
      state.source = 'copy';
      state.unreadable = `${path} is not a directory`;
      return state;
    }
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return state;
    state.source = 'copy';
    state.unreadable = errorMessage(error);
    return state;
  }
  state.source = 'copy';

  const names = [KEY_HARD_STATE, KEY_CONF_STATE, KEY_SNAPSHOT, KEY_SNAPSHOT_DATA, KEY_LOG_ANCHOR, KEY_INTENT, KEY_LATEST_CONFIG_CHANGE];
  let values: (Uint8Array | undefined)[] | undefined;
  let lastError: unknown;
  for (let attempt = 0; attempt < 5 && values === undefined; attempt++) {
    const copy = await mkdtemp(join(tmpdir(), 'replicalog-kv-'));
    try {
      await copyKvDirectory(path, copy);
      const database = new ClassicLevel<Uint8Array, Uint8Array>(copy, {
        keyEncoding: 'view',
        valueEncoding: 'view',
        createIfMissing: false,
      });
      await database.open();
      try {
        values = await database.getMany<Uint8Array, Uint8Array>(
          names.map((name) => kvKey(partitionId, name)),
          { keyEncoding: 'view', valueEncoding: 'view' },
        );
      } finally {
        await database.close();
      }
    } catch (error) {
      lastError = error;
    } finally {
      await rm(copy, { recursive: true, force: true });
    }
  }
  if (values === undefined) {
    state.unreadable = errorMessage(lastError);
    return state;
  }

  const [hardState, confState, snapshot, snapshotData, anchor, intent, latestConfigChange] = values;
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
  return state;
}

// ---------------------------------------------------------------------------------------------
// The wal/ tree

export type ManifestState =
  | { state: 'ok'; size: number; mode: number; logEntry: LogEntry }
  | { state: 'missing' }
  | { state: 'not-a-file' }
  | { state: 'corrupt'; size: number; mode: number; reason: string }
  | { state: 'unreadable'; reason: string };

export type RaftState =
  | { state: 'ok'; size: number; mode: number; entry: Entry }
  | { state: 'missing' }
  | { state: 'not-a-file' }
  | { state: 'empty'; mode: number }
  | { state: 'corrupt'; size: number; mode: number; reason: string }
  | { state: 'index-mismatch'; size: number; mode: number; entry: Entry }
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
  kv: KvState;
  /** The snapshot data file the KV names, if it names one. */
  snapshotDataFile?: { path: string; exists: boolean; size?: number };
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
  let entry: Entry;
  try {
    entry = decodeEntry(bytes);
  } catch (error) {
    return { state: 'corrupt', size: bytes.length, mode, reason: errorMessage(error) };
  }
  if (entry.index !== index) return { state: 'index-mismatch', size: bytes.length, mode, entry };
  return { state: 'ok', size: bytes.length, mode, entry };
}

async function readManifest(path: string, isFile: boolean, mode: number, decode: boolean, size: number): Promise<ManifestState> {
  if (!isFile) return { state: 'not-a-file' };
  if (!decode) return { state: 'ok', size, mode, logEntry: { relativePath: '', referenceTransactions: [], operations: [] } };
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    return { state: 'unreadable', reason: errorMessage(error) };
  }
  try {
    return { state: 'ok', size: bytes.length, mode, logEntry: decodeLogEntry(bytes) };
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

/** Reads the whole tree (read-only; see the module comment). Damage is recorded, never thrown. */
export async function scanTree(dir: string, options: ScanOptions = {}): Promise<TreeScan> {
  const root = resolve(dir);
  const wal = walPath(root);
  const readManifests = options.readManifests ?? true;
  const listing = await listDirectory(wal);
  const kv: KvState =
    options.readKv === false
      ? { source: 'absent', path: kvPath(root), intentPending: false, corruptKeys: [] }
      : await readKvSnapshot(root, options.partitionId);
  const scan: TreeScan = { dir: root, walPath: wal, entries: [], strayNames: [], stagingLeftovers: [], kv };
  if (listing.problem !== undefined) scan.walProblem = listing.problem;
  if (listing.unreadable === true) scan.walUnreadable = true;
  if (listing.mode !== undefined) scan.walMode = listing.mode;

  const named: { name: string; index: number }[] = [];
  for (const name of listing.names) {
    const index = parseLsn(name);
    if (index === undefined) scan.strayNames.push(name);
    else named.push({ name, index });
  }
  named.sort((a, b) => a.index - b.index);
  scan.strayNames.sort();
  const scanned = await mapBounded(named, options.concurrency ?? 32, ({ name, index }) => scanEntry(wal, name, index, readManifests));
  scan.entries = scanned.filter((entry): entry is ScannedEntry => entry !== undefined);

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

/** firstIndex/lastIndex/status exactly as ReplicaLogStore.open derives them (replica-log-store.ts recover). */
export function logExtent(scan: TreeScan): LogExtent {
  const hardState = scan.kv.hardState;
  const all = scan.entries;
  const anchor: LogAnchorRecord =
    scan.kv.anchor ?? (all.length > 0 && all[0]!.index > 1 ? { index: all[0]!.index - 1, term: hardState?.term ?? 0 } : { index: 0, term: 0 });
  // applySnapshot's intent pending: its KV batch (the new anchor) is durable and the next open
  // drops EVERY entry directory, whatever its index.
  const dropped = (entry: ScannedEntry) => scan.kv.intentPending || entry.index <= anchor.index;
  const compactionLeftovers = all.filter(dropped);
  const retained = all.filter((entry) => !dropped(entry));
  const lastIndex = retained.length > 0 ? retained[retained.length - 1]!.index : anchor.index;
  const status: TreeStatus = hardState !== undefined ? 'bootstrapped' : lastIndex > anchor.index ? 'needs-backfill' : 'unbootstrapped';
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
 * else the hard state's, else 0 (API.md; replica-log-store.ts recover).
 */
export function backfillTerms(scan: TreeScan, extent: LogExtent = logExtent(scan)): Map<number, number> {
  const terms = new Map<number, number>();
  let nearest: number | undefined = scan.kv.anchor !== undefined && scan.kv.anchor.index > 0 ? scan.kv.anchor.term : undefined;
  for (const entry of extent.retained) {
    if (entry.raft.state === 'ok') nearest = entry.raft.entry.term;
    else terms.set(entry.index, nearest ?? scan.kv.hardState?.term ?? 0);
  }
  return terms;
}

// ---------------------------------------------------------------------------------------------
// verifyTree

function octal(mode: number): string {
  return `0${mode.toString(8).padStart(3, '0')}`;
}

export interface VerifyOptions {
  partitionId?: number;
}

/**
 * Checks `dir` and returns every problem found (see ProblemCode), each naming the entry's LSN
 * directory where an entry is at fault. Read-only; works whatever the store's status is and
 * while the store is open elsewhere (then the KV part is a point-in-time view).
 */
export async function verifyTree(dir: string, options: VerifyOptions = {}): Promise<VerifyResult> {
  const scan = await scanTree(dir, { partitionId: options.partitionId });
  return verifyScan(scan);
}

/** verifyTree on an existing scan (the CLI reuses one scan for several reports). */
export function verifyScan(scan: TreeScan): VerifyResult {
  const problems: Problem[] = [];
  const notices: Notice[] = [];
  const atEntry = (entry: ScannedEntry, code: ProblemCode, message: string, path = entry.path): void => {
    problems.push({ code, path, lsn: entry.lsn, index: entry.index, message });
  };

  if (scan.walProblem !== undefined && scan.walUnreadable === true) {
    problems.push({ code: ProblemCode.Unreadable, path: scan.walPath, message: `cannot read ${scan.walPath}: ${scan.walProblem}` });
  } else if (scan.walProblem !== undefined) {
    problems.push({ code: ProblemCode.WalMissing, path: scan.walPath, message: `${scan.walProblem}: not a replicalog or Gitaly state directory` });
  } else if (scan.walMode !== undefined && scan.walMode !== DIRECTORY_MODE) {
    problems.push({ code: ProblemCode.BadMode, path: scan.walPath, message: `${scan.walPath} has mode ${octal(scan.walMode)}, expected ${octal(DIRECTORY_MODE)}` });
  }
  for (const name of scan.strayNames) {
    const path = join(scan.walPath, name);
    problems.push({ code: ProblemCode.StrayName, path, message: `${path} is not an LSN directory (13 lowercase base-36 characters)` });
  }

  // ---- KV
  const kv = scan.kv;
  if (kv.source === 'absent') {
    notices.push({ code: NoticeCode.KvAbsent, path: kv.path, message: `${kv.path} does not exist: no hard state, conf state or snapshot saved` });
  }
  if (kv.unreadable !== undefined) {
    problems.push({ code: ProblemCode.KvUnreadable, path: kv.path, message: `cannot read ${kv.path}: ${kv.unreadable}` });
  }
  for (const { key, message } of kv.corruptKeys) {
    problems.push({ code: ProblemCode.KvCorrupt, path: kv.path, message: `key ${key} in ${kv.path} does not decode: ${message}` });
  }
  if (kv.intentPending) {
    notices.push({ code: NoticeCode.IntentPending, path: kv.path, message: `an interrupted applySnapshot is pending in ${kv.path}: the next open removes the remaining entry directories` });
  }

  const extent = logExtent(scan);
  const bootstrapped = extent.status === 'bootstrapped';

  const lastDirectory = scan.entries[scan.entries.length - 1];
  if (!kv.intentPending && kv.anchor !== undefined && lastDirectory !== undefined && kv.anchor.index > lastDirectory.index) {
    // What open refuses (replica-log-store.ts recover): deleting the whole log is not provably safe.
    problems.push({
      code: ProblemCode.AnchorBeyondLog,
      path: kv.path,
      message: `the log anchor ${kv.anchor.index} in ${kv.path} is above the last entry directory ${lastDirectory.path}: not an interrupted compaction`,
    });
  } else {
    for (const entry of extent.compactionLeftovers) {
      const why = kv.intentPending
        ? `an interrupted applySnapshot (index ${extent.anchor.index}) drops every entry directory; the next open removes it`
        : `it is at or below the log anchor ${extent.anchor.index} (an interrupted compaction; the next open removes it)`;
      atEntry(entry, ProblemCode.CompactionLeftover, `${entry.path}: ${why}`);
    }
  }

  // ---- sequence: anchor+1 .. last without a hole
  let expected = extent.anchor.index + 1;
  for (const entry of extent.retained) {
    if (entry.index > expected) {
      const first = expected;
      const last = entry.index - 1;
      const range = first === last ? formatLsn(first) : `${formatLsn(first)}..${formatLsn(last)} (${last - first + 1} entries)`;
      problems.push({
        code: ProblemCode.Gap,
        path: join(scan.walPath, formatLsn(first)),
        lsn: formatLsn(first),
        index: first,
        message: `gap in the WAL: ${range} missing before ${entry.path}`,
      });
    }
    expected = entry.index + 1;
  }

  // ---- each entry
  let previousTerm: { term: number; what: string } | undefined =
    kv.anchor !== undefined && kv.anchor.index > 0 ? { term: kv.anchor.term, what: `the log anchor (index ${kv.anchor.index})` } : undefined;
  const needsMigration: ScannedEntry[] = [];
  for (const entry of extent.retained) {
    if (entry.unreadable !== undefined) {
      atEntry(entry, ProblemCode.Unreadable, `cannot read ${entry.path}: ${entry.unreadable}`);
      continue;
    }
    if (!entry.isDirectory) {
      atEntry(entry, ProblemCode.NotADirectory, `${entry.path} is not a directory`);
      continue;
    }
    if (entry.mode !== DIRECTORY_MODE) {
      atEntry(entry, ProblemCode.BadMode, `${entry.path} has mode ${octal(entry.mode)}, expected ${octal(DIRECTORY_MODE)}`);
    }
    for (const name of entry.strayNames) {
      atEntry(entry, ProblemCode.StrayName, `${join(entry.path, name)} is neither MANIFEST, RAFT nor a base-36 payload file`, join(entry.path, name));
    }
    if (entry.hasRaftTemporary) {
      const path = join(entry.path, RAFT_TEMPORARY_FILE);
      if (bootstrapped) atEntry(entry, ProblemCode.StrayName, `${path} is left over from an interrupted migration`, path);
      else notices.push({ code: NoticeCode.MigrationLeftover, path, lsn: entry.lsn, index: entry.index, message: `${path} is left over from an interrupted migration (migrate removes it)` });
    }

    // MANIFEST
    const manifestPath = join(entry.path, MANIFEST_FILE);
    const manifest = entry.manifest;
    switch (manifest.state) {
      case 'missing':
        atEntry(entry, ProblemCode.ManifestMissing, `${manifestPath} is missing`, manifestPath);
        break;
      case 'not-a-file':
        atEntry(entry, ProblemCode.NotAFile, `${manifestPath} is not a regular file`, manifestPath);
        break;
      case 'unreadable':
        atEntry(entry, ProblemCode.Unreadable, `cannot read ${manifestPath}: ${manifest.reason}`, manifestPath);
        break;
      case 'corrupt':
        atEntry(entry, ProblemCode.ManifestCorrupt, `${manifestPath} does not decode as a gitaly.LogEntry: ${manifest.reason}`, manifestPath);
        break;
      case 'ok': {
        const present = new Set(entry.payload.map((file) => file.name));
        for (const operation of manifest.logEntry.operations) {
          const link = operation.createHardLink;
          if (link === undefined || link.sourceInStorage) continue;
          const source = new TextDecoder().decode(link.sourcePath);
          if (!present.has(source)) {
            atEntry(entry, ProblemCode.PayloadMissing, `${join(entry.path, source)} is linked by MANIFEST but missing`, join(entry.path, source));
          }
        }
        break;
      }
    }
    if ((manifest.state === 'ok' || manifest.state === 'corrupt') && manifest.mode !== FILE_MODE) {
      atEntry(entry, ProblemCode.BadMode, `${manifestPath} has mode ${octal(manifest.mode)}, expected ${octal(FILE_MODE)}`, manifestPath);
    }

    // RAFT
    const raftPath = join(entry.path, RAFT_FILE);
    const raft = entry.raft;
    const rewritten = bootstrapped ? '' : ' (migrate rewrites it while the store has no hard state)';
    switch (raft.state) {
      case 'missing':
        if (bootstrapped) atEntry(entry, ProblemCode.RaftMissing, `${raftPath} is missing on a bootstrapped store`, raftPath);
        else needsMigration.push(entry);
        break;
      case 'not-a-file':
        atEntry(entry, ProblemCode.NotAFile, `${raftPath} is not a regular file`, raftPath);
        break;
      case 'unreadable':
        atEntry(entry, ProblemCode.Unreadable, `cannot read ${raftPath}: ${raft.reason}`, raftPath);
        break;
      case 'empty':
        atEntry(entry, ProblemCode.RaftEmpty, `${raftPath} is empty (a torn write)${rewritten}`, raftPath);
        break;
      case 'corrupt':
        atEntry(entry, ProblemCode.RaftCorrupt, `${raftPath} does not decode as a raftpb.Entry: ${raft.reason}${rewritten}`, raftPath);
        break;
      case 'index-mismatch':
        atEntry(entry, ProblemCode.RaftIndexMismatch, `${raftPath} holds index ${raft.entry.index}, not its LSN ${entry.index}${rewritten}`, raftPath);
        break;
      case 'ok':
        if (previousTerm !== undefined && raft.entry.term < previousTerm.term) {
          atEntry(entry, ProblemCode.TermRegression, `${raftPath} has term ${raft.entry.term}, lower than ${previousTerm.term} of ${previousTerm.what}`, raftPath);
        }
        previousTerm = { term: raft.entry.term, what: `entry ${entry.lsn}` };
        break;
    }
    if ((raft.state === 'ok' || raft.state === 'corrupt' || raft.state === 'index-mismatch' || raft.state === 'empty') && raft.mode !== FILE_MODE) {
      atEntry(entry, ProblemCode.BadMode, `${raftPath} has mode ${octal(raft.mode)}, expected ${octal(FILE_MODE)}`, raftPath);
    }

    // Payload files: Gitaly masks their permissions to & 0500 before linking them in.
    for (const file of entry.payload) {
      const path = join(entry.path, file.name);
      if (!file.isFile) atEntry(entry, ProblemCode.NotAFile, `${path} is not a regular file`, path);
      else if ((file.mode & ~0o500) !== 0) atEntry(entry, ProblemCode.BadMode, `${path} has mode ${octal(file.mode)}, expected at most 0500`, path);
    }
  }
  if (needsMigration.length > 0) {
    const first = needsMigration[0]!;
    const last = needsMigration[needsMigration.length - 1]!;
    const which = needsMigration.length === 1 ? first.lsn : `${needsMigration.length} entries, ${first.lsn}..${last.lsn}`;
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
      problems.push({
        code: ProblemCode.CommitAboveLast,
        path: kv.path,
        message: `the hard state's commit ${hardState.commit} is above the last index ${extent.lastIndex}${extent.retained.length > 0 ? ` (${extent.retained[extent.retained.length - 1]!.path})` : ''}`,
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
  if (kv.snapshot !== undefined && kv.snapshot.index > extent.lastIndex) {
    problems.push({
      code: ProblemCode.SnapshotBeyondLog,
      path: kv.path,
      message: `the snapshot's index ${kv.snapshot.index} is above the last index ${extent.lastIndex}`,
    });
  }
  if (scan.snapshotDataFile !== undefined && !scan.snapshotDataFile.exists) {
    problems.push({
      code: ProblemCode.SnapshotDataMissing,
      path: scan.snapshotDataFile.path,
      message: `the snapshot's data file ${scan.snapshotDataFile.path} named in ${kv.path} is missing`,
    });
  }

  // ---- staging leftovers
  for (const name of scan.stagingLeftovers) {
    const path = join(stagingPath(scan.dir), name);
    problems.push({ code: ProblemCode.StagingLeftover, path, message: `${path} is left over from an interrupted write (the next open removes it)` });
  }

  return { ok: problems.length === 0, problems, notices };
}
