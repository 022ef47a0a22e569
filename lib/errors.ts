/**
 * Every error replicalog throws is an `Error` (or `RangeError`) with a stable `code`.
 * The four etcd sentinels keep etcd's exact message; the index or path at fault is carried in
 * properties (`index`, `path`) and, for the other codes, named in the message.
 */

export const ErrorCode = {
  /** requested index is unavailable due to compaction (etcd ErrCompacted) */
  Compacted: 'ERR_COMPACTED',
  /** requested entry at index is unavailable (etcd ErrUnavailable) */
  Unavailable: 'ERR_UNAVAILABLE',
  /** requested index is older than the existing snapshot (etcd ErrSnapOutOfDate) */
  SnapOutOfDate: 'ERR_SNAP_OUT_OF_DATE',
  /** snapshot is temporarily unavailable (etcd ErrSnapshotTemporarilyUnavailable) */
  SnapshotTemporarilyUnavailable: 'ERR_SNAPSHOT_TEMPORARILY_UNAVAILABLE',
  /** malformed bytes, or an on-disk tree that contradicts itself */
  Corrupt: 'ERR_CORRUPT',
  /** a number outside 0..Number.MAX_SAFE_INTEGER (thrown as a RangeError) */
  OutOfRange: 'ERR_OUT_OF_RANGE',
  /** a gap inside a batch or after lastIndex() */
  NotContiguous: 'ERR_NOT_CONTIGUOUS',
  /** a term lower than the entry before it */
  TermRegression: 'ERR_TERM_REGRESSION',
  /** dropping or replacing an entry at or below the saved commit */
  Committed: 'ERR_COMMITTED',
  /** a hard state whose term or commit goes backwards, or whose commit is above lastIndex() */
  HardState: 'ERR_HARD_STATE',
  /** a call on a closed store */
  Closed: 'ERR_CLOSED',
  /** the store directory is held by another open store */
  Locked: 'ERR_LOCKED',
  /** the log was written before Raft and must be migrated (replicalog migrate) */
  NeedsBackfill: 'ERR_NEEDS_BACKFILL',
  /** an argument of the wrong type or shape */
  InvalidArgument: 'ERR_INVALID_ARGUMENT',
  /** a file-system or database operation failed; the store may refuse writes until reopened */
  Io: 'ERR_IO',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** etcd raft's exact sentinel messages (storage.go). */
export const SentinelMessage = {
  [ErrorCode.Compacted]: 'requested index is unavailable due to compaction',
  [ErrorCode.Unavailable]: 'requested entry at index is unavailable',
  [ErrorCode.SnapOutOfDate]: 'requested index is older than the existing snapshot',
  [ErrorCode.SnapshotTemporarilyUnavailable]: 'snapshot is temporarily unavailable',
} as const;

export interface ErrorDetails {
  /** The log index at fault, where there is one. */
  index?: number;
  /** The file or directory at fault, where there is one. */
  path?: string;
  cause?: unknown;
}

export class ReplicaLogError extends Error {
  readonly code: ErrorCode;
  readonly index?: number;
  readonly path?: string;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'ReplicaLogError';
    this.code = code;
    if (details.index !== undefined) this.index = details.index;
    if (details.path !== undefined) this.path = details.path;
  }
}

/** ERR_OUT_OF_RANGE is a RangeError, as API.md requires. */
export class ReplicaLogRangeError extends RangeError {
  readonly code = ErrorCode.OutOfRange;
  constructor(message: string) {
    super(message);
    this.name = 'ReplicaLogRangeError';
  }
}

export type CodedError = ReplicaLogError | ReplicaLogRangeError;

/** True when `error` is one of replicalog's errors (optionally with the given code). */
export function isReplicaLogError(error: unknown, code?: ErrorCode): error is CodedError {
  if (!(error instanceof ReplicaLogError) && !(error instanceof ReplicaLogRangeError)) return false;
  return code === undefined || error.code === code;
}

/** True for the etcd sentinels raft handles itself (everything else stops a raft node). */
export function isSentinelError(error: unknown): error is ReplicaLogError {
  return (
    error instanceof ReplicaLogError &&
    (error.code === ErrorCode.Compacted ||
      error.code === ErrorCode.Unavailable ||
      error.code === ErrorCode.SnapOutOfDate ||
      error.code === ErrorCode.SnapshotTemporarilyUnavailable)
  );
}

export function compactedError(index?: number): ReplicaLogError {
  return new ReplicaLogError(ErrorCode.Compacted, SentinelMessage[ErrorCode.Compacted], { index });
}

export function unavailableError(index?: number): ReplicaLogError {
  return new ReplicaLogError(ErrorCode.Unavailable, SentinelMessage[ErrorCode.Unavailable], { index });
}

export function snapOutOfDateError(index?: number): ReplicaLogError {
  return new ReplicaLogError(ErrorCode.SnapOutOfDate, SentinelMessage[ErrorCode.SnapOutOfDate], { index });
}

export function snapshotTemporarilyUnavailableError(): ReplicaLogError {
  return new ReplicaLogError(
    ErrorCode.SnapshotTemporarilyUnavailable,
    SentinelMessage[ErrorCode.SnapshotTemporarilyUnavailable],
  );
}

export function corruptError(message: string, details: ErrorDetails = {}): ReplicaLogError {
  return new ReplicaLogError(ErrorCode.Corrupt, message, details);
}

export function closedError(what = 'store'): ReplicaLogError {
  return new ReplicaLogError(ErrorCode.Closed, `${what} is closed`);
}

export function invalidArgumentError(message: string): ReplicaLogError {
  return new ReplicaLogError(ErrorCode.InvalidArgument, message);
}

/**
 * Validates a number that must be a safe, non-negative integer (index, term, node id, size).
 * `name` is used in the message, e.g. "entries[3].index".
 */
export function checkSafeUnsigned(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    if (typeof value === 'number' && Number.isFinite(value)) {
      throw new ReplicaLogRangeError(`${name} must be an integer, got ${value}`);
    }
    if (typeof value === 'number') throw new ReplicaLogRangeError(`${name} must be finite, got ${value}`);
    throw invalidArgumentError(`${name} must be a number, got ${typeof value}`);
  }
  if (value < 0 || value > Number.MAX_SAFE_INTEGER) {
    throw new ReplicaLogRangeError(`${name} ${value} is outside 0..${Number.MAX_SAFE_INTEGER}`);
  }
  return value;
}

/** System error names and what LevelDB (which reports strerror text, not a code) says for them. */
const SYSTEM_CAUSES: readonly [code: string, text: string][] = [
  ['EROFS', 'Read-only file system'],
  ['EACCES', 'Permission denied'],
  ['EPERM', 'Operation not permitted'],
  ['ENOSPC', 'No space left on device'],
  ['EMFILE', 'Too many open files'],
  ['EDQUOT', 'Disk quota exceeded'],
  ['ENOTDIR', 'Not a directory'],
  ['EIO', 'Input/output error'],
];

/**
 * The innermost cause of `error` (its `.cause` chain) as one line, led by the system error code
 * when there is one (EROFS, EACCES, ENOSPC, EMFILE, …), so a message names the real reason
 * ("read-only file system") instead of a wrapper's ("Database failed to open").
 */
export function describeRootCause(error: unknown): string {
  const { message, systemCode } = rootCause(error);
  if (systemCode === undefined) return message;
  return message.startsWith(systemCode) ? message : `${systemCode}: ${message}`;
}

/** The system error code (EROFS, EACCES, ENOSPC, EMFILE, …) at the root of `error`'s cause chain, if any. */
export function rootSystemCode(error: unknown): string | undefined {
  return rootCause(error).systemCode;
}

function rootCause(error: unknown): { message: string; systemCode?: string } {
  let innermost: unknown = error;
  for (let depth = 0; depth < 10 && innermost instanceof Error && innermost.cause !== undefined; depth++) innermost = innermost.cause;
  const message = innermost instanceof Error ? innermost.message : String(innermost);
  const code = (innermost as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return { message, systemCode: code };
  const known = SYSTEM_CAUSES.find(([, text]) => message.includes(text));
  return known === undefined ? { message } : { message, systemCode: known[0] };
}
