/**
 * The on-disk layout, Gitaly-compatible (API.md "On-disk format"): names and keys only, no I/O.
 *
 *   <dir>/kv/                 LevelDB (classic-level) unless a db is passed in
 *   <dir>/wal/<LSN>/          one directory per entry, mode 0700
 *       MANIFEST              gitaly.LogEntry (0 bytes when it has no operations), mode 0400
 *       RAFT                  raftpb.Entry, gogo bytes, mode 0400
 *       1 2 … 9 a b … 10 …    payload files, base-36 names
 *   <dir>/staging/            temporary directories on the same filesystem
 */
import { join } from 'node:path';
import { checkSafeUnsigned } from '../errors.js';

export const WAL_DIRECTORY = 'wal';
export const STAGING_DIRECTORY = 'staging';
export const KV_DIRECTORY = 'kv';
export const MANIFEST_FILE = 'MANIFEST';
export const RAFT_FILE = 'RAFT';

/** Mode of entry directories and of the directories replicalog creates. */
export const DIRECTORY_MODE = 0o700;
/** Mode of MANIFEST, RAFT and files replicalog writes into an entry. */
export const FILE_MODE = 0o400;

/** An LSN directory name is the index in lowercase base 36, left-padded with '0' to 13 characters. */
export const LSN_NAME_LENGTH = 13;

export function formatLsn(index: number): string {
  checkSafeUnsigned(index, 'LSN');
  return index.toString(36).padStart(LSN_NAME_LENGTH, '0');
}

/**
 * Parses a canonical LSN directory name; returns undefined for anything else (a stray name,
 * upper case, wrong width, or a value above Number.MAX_SAFE_INTEGER), so callers can report it.
 */
export function parseLsn(name: string): number | undefined {
  // Hand-written (open() parses every name in wal/: a regex, parseInt and a round trip cost
  // about 0.3 µs per name, a third of listing 1 M names). 13 lowercase base-36 digits,
  // left-padded, are canonical by construction; only the value's range is left to check.
  if (name.length !== LSN_NAME_LENGTH) return undefined;
  let value = 0;
  for (let position = 0; position < LSN_NAME_LENGTH; position++) {
    const code = name.charCodeAt(position);
    let digit: number;
    if (code >= 48 && code <= 57) digit = code - 48; // 0-9
    else if (code >= 97 && code <= 122) digit = code - 87; // a-z
    else return undefined;
    value = value * 36 + digit;
  }
  // Above 2^53 the float may round, but never down to MAX_SAFE_INTEGER or below.
  return value <= Number.MAX_SAFE_INTEGER ? value : undefined;
}

/** Payload files inside an entry are numbered 1, 2, … in base 36 (Gitaly wal.Entry.stageFile). */
export function payloadFileName(sequence: number): string {
  return sequence.toString(36);
}

export function walPath(dir: string): string {
  return join(dir, WAL_DIRECTORY);
}

export function stagingPath(dir: string): string {
  return join(dir, STAGING_DIRECTORY);
}

export function kvPath(dir: string): string {
  return join(dir, KV_DIRECTORY);
}

/**
 * `parent`/`name` for a parent path that is already normalised (made by path.join or mkdtemp,
 * so no trailing slash, no `.` or `..`) and a plain name: what path.join would return, without
 * its normalisation pass (about a microsecond a call; a checkpoint makes five paths per entry).
 */
export function childPath(parent: string, name: string): string {
  return `${parent}/${name}`;
}

export function entryPath(dir: string, index: number): string {
  return join(dir, WAL_DIRECTORY, formatLsn(index));
}

/** Path of an entry directory relative to the store directory (used in backfilled RaftEntry.local_path). */
export function entryRelativePath(index: number): string {
  return `${WAL_DIRECTORY}/${formatLsn(index)}`;
}

// ---------------------------------------------------------------------------------------------
// KV keys (raw bytes). With a partition id every key is prefixed by "p/" + 8-byte BE id + "/".

export const KEY_HARD_STATE = 'raft/hard_state';
export const KEY_CONF_STATE = 'raft/conf_state';
export const KEY_LATEST_CONFIG_CHANGE = 'raft/latest_config_change';

export function partitionPrefix(partitionId: number | undefined): Uint8Array {
  if (partitionId === undefined) return new Uint8Array(0);
  checkSafeUnsigned(partitionId, 'partitionId');
  const prefix = new Uint8Array(11);
  prefix[0] = 0x70; // 'p'
  prefix[1] = 0x2f; // '/'
  new DataView(prefix.buffer).setBigUint64(2, BigInt(partitionId), false);
  prefix[10] = 0x2f; // '/'
  return prefix;
}

export function kvKey(partitionId: number | undefined, name: string): Uint8Array {
  const prefix = partitionPrefix(partitionId);
  const suffix = new TextEncoder().encode(name);
  const key = new Uint8Array(prefix.length + suffix.length);
  key.set(prefix, 0);
  key.set(suffix, prefix.length);
  return key;
}

// ---------------------------------------------------------------------------------------------
// ReplicaLogStore additions (replicalog's own names; Gitaly has no equivalent).

/** The lock database (see lib/lock.ts): one open store per directory. */
export const LOCK_DATABASE = 'LOCK.db';
/** Snapshot data files written by createSnapshot/applySnapshot. */
export const SNAPSHOT_DIRECTORY = 'snapshot';
/** Suffix of a snapshot data file; the name is the snapshot index as an LSN. */
export const SNAPSHOT_FILE_SUFFIX = '.snap';
/** Temporary file written beside RAFT by backfill() and renamed over it (Gitaly B7). */
export const RAFT_TEMPORARY_FILE = 'RAFT.tmp';

export function lockPath(dir: string): string {
  return join(dir, LOCK_DATABASE);
}

export function snapshotDirectoryPath(dir: string): string {
  return join(dir, SNAPSHOT_DIRECTORY);
}

/**
 * A snapshot data file's name: the snapshot index as an LSN plus a unique tag, so a new file
 * never replaces the one the saved metadata still points to (two snapshots can share index 0).
 */
export function snapshotFileName(index: number, uniqueTag: string): string {
  return `${formatLsn(index)}-${uniqueTag}${SNAPSHOT_FILE_SUFFIX}`;
}

/**
 * True for a name snapshotFileName can produce. The name comes from the KV record
 * raft/snapshot_data, so it is checked before it is joined to snapshot/ (no '../', no NUL).
 */
export function isSnapshotFileName(name: string): boolean {
  return /^[0-9a-z]{13}-[0-9a-f]{1,64}\.snap$/.test(name);
}

/** raft/snapshot: the latest snapshot's metadata (raftpb.Snapshot without data). */
export const KEY_SNAPSHOT = 'raft/snapshot';
/** raft/snapshot_data: the name of the latest snapshot's data file in snapshot/ (absent: no data). */
export const KEY_SNAPSHOT_DATA = 'raft/snapshot_data';
/** raft/log_anchor: index and term (two 8-byte big-endian numbers) of the last compacted or snapshotted entry. */
export const KEY_LOG_ANCHOR = 'raft/log_anchor';
/** raft/intent: a multi-step operation to redo at open (applySnapshot's "drop every entry directory"). */
export const KEY_INTENT = 'raft/intent';
/**
 * raft/log_checkpoint: the open() accelerator (raft-state.ts encodeCheckpoint): an index V no
 * higher than the saved commit and the term runs of the retained entries up to V, so open()
 * reads RAFT files only past V. Only ever written together with, or after, a hard state whose
 * commit is >= V (see replica-log-store.ts "Checkpoint").
 */
export const KEY_LOG_CHECKPOINT = 'raft/log_checkpoint';
/**
 * raft/journal_through: the sequence (8 bytes big-endian) of the last journal record whose
 * effect is durable in wal/ and KV (lib/wal/journal.ts). Written in the same synced batch as
 * the hard state of a journal checkpoint; records at or below it are leftovers.
 */
export const KEY_JOURNAL_THROUGH = 'raft/journal_through';
