/**
 * The validation rules every replicalog store applies to writes, shared so MemoryStorage and
 * ReplicaLogStore refuse exactly the same inputs with exactly the same codes. Each function
 * only reads; it throws before the caller changes anything.
 */
import { checkSafeUnsigned, compactedError, ErrorCode, invalidArgumentError, ReplicaLogError } from './errors.js';
import type { Entry, HardState } from './types.js';

/** The minimal read view of a log the rules need. */
export interface LogView {
  firstIndex(): number;
  lastIndex(): number;
  /** term(i) for i in [firstIndex()-1, lastIndex()] */
  term(index: number): number;
  hardState(): HardState;
}

/**
 * Checks a batch for `append` and returns the part of it to write (the compacted prefix
 * trimmed, etcd MemoryStorage.Append semantics, and a prefix that matches committed entries
 * trimmed too, so they are never rewritten), or an empty array when nothing is to be done.
 * Refuses: a gap inside the batch or after lastIndex() (ERR_NOT_CONTIGUOUS); a term lower
 * than the entry before it (ERR_TERM_REGRESSION); dropping or replacing an entry at or below
 * the saved commit (ERR_COMMITTED).
 */
export function planAppend(log: LogView, batch: readonly Entry[]): Entry[] {
  if (batch.length === 0) return [];
  for (let position = 1; position < batch.length; position++) {
    const previous = batch[position - 1]!;
    const entry = batch[position]!;
    if (entry.index !== previous.index + 1) {
      throw new ReplicaLogError(
        ErrorCode.NotContiguous,
        `append: entries are not contiguous: index ${entry.index} follows ${previous.index}`,
        { index: entry.index },
      );
    }
    if (entry.term < previous.term) {
      throw new ReplicaLogError(
        ErrorCode.TermRegression,
        `append: term regression at index ${entry.index}: term ${entry.term} after term ${previous.term}`,
        { index: entry.index },
      );
    }
  }
  const first = log.firstIndex();
  const last = log.lastIndex();
  const batchLast = batch[batch.length - 1]!.index;
  // Everything in the batch is already compacted: ignored, as etcd does.
  if (batchLast < first) return [];
  const trimmed = batch[0]!.index < first ? batch.slice(first - batch[0]!.index) : batch.slice();
  const start = trimmed[0]!.index;
  if (start > last + 1) {
    throw new ReplicaLogError(
      ErrorCode.NotContiguous,
      `append: missing log entry: last index is ${last}, append at ${start}`,
      { index: start },
    );
  }
  const previousTerm = log.term(start - 1);
  if (trimmed[0]!.term < previousTerm) {
    throw new ReplicaLogError(
      ErrorCode.TermRegression,
      `append: term regression at index ${start}: term ${trimmed[0]!.term} after term ${previousTerm} at index ${start - 1}`,
      { index: start },
    );
  }
  // Appending at `start` discards every stored entry >= start. That is only allowed where it
  // changes nothing at or below the commit index: a committed entry is never truncated or
  // replaced (Gitaly B6 allowed replacing the entry *at* commit).
  const commit = log.hardState().commit;
  const protectedLast = Math.min(commit, last);
  if (start <= protectedLast) {
    const trimmedLast = trimmed[trimmed.length - 1]!.index;
    if (trimmedLast < protectedLast) {
      throw new ReplicaLogError(
        ErrorCode.Committed,
        `append: would truncate committed entries ${trimmedLast + 1}..${protectedLast} (commit is ${commit})`,
        { index: trimmedLast + 1 },
      );
    }
    for (const entry of trimmed) {
      if (entry.index > protectedLast) break;
      if (log.term(entry.index) !== entry.term) {
        throw new ReplicaLogError(
          ErrorCode.Committed,
          `append: would replace committed entry ${entry.index} (term ${log.term(entry.index)}) with term ${entry.term} (commit is ${commit})`,
          { index: entry.index },
        );
      }
    }
    // The committed prefix matches (same index and term: the same entry, by Raft's log
    // matching property). Drop it from the plan rather than rewrite it: a store truncates from
    // the plan's first index, and a crash mid-rewrite would leave commit above the last index.
    return trimmed.slice(protectedLast - start + 1);
  }
  return trimmed;
}

/**
 * Checks a hard state against the saved one: term and commit never go backwards, the vote
 * does not change within a term, and commit is never above lastIndex() (a commit pointing at
 * entries that are not durable makes a restart fail).
 */
export function checkHardState(log: LogView, next: HardState): void {
  const saved = log.hardState();
  const fail = (reason: string) =>
    new ReplicaLogError(ErrorCode.HardState, `setHardState: ${reason}`, { index: next.commit });
  if (next.term < saved.term) throw fail(`term goes backwards from ${saved.term} to ${next.term}`);
  if (next.term === saved.term && saved.vote !== 0 && next.vote !== saved.vote) {
    throw fail(`vote changes from ${saved.vote} to ${next.vote} within term ${next.term}`);
  }
  if (next.commit < saved.commit) throw fail(`commit goes backwards from ${saved.commit} to ${next.commit}`);
  if (next.commit > log.lastIndex()) {
    throw fail(`commit ${next.commit} is above the last index ${log.lastIndex()}`);
  }
}

/** compact(i): refuses i <= firstIndex()-1 (ERR_COMPACTED) and i > lastIndex() (ERR_UNAVAILABLE). */
export function checkCompact(log: LogView, index: number): void {
  checkSafeUnsigned(index, 'compact index');
  if (index <= log.firstIndex() - 1) throw compactedError(index);
  if (index > log.lastIndex()) {
    throw new ReplicaLogError(
      ErrorCode.Unavailable,
      `compact ${index} is out of bound lastindex(${log.lastIndex()})`,
      { index },
    );
  }
}

/** Validates `entries(lo, hi, maxSize)` arguments and returns the byte budget. */
export function checkEntriesArguments(lo: unknown, hi: unknown, maxSize: unknown): number {
  checkSafeUnsigned(lo, 'entries lo');
  checkSafeUnsigned(hi, 'entries hi');
  if ((lo as number) > (hi as number)) throw invalidArgumentError(`entries: lo ${String(lo)} is above hi ${String(hi)}`);
  if (maxSize === undefined || maxSize === Number.POSITIVE_INFINITY) return Number.POSITIVE_INFINITY;
  return checkSafeUnsigned(maxSize, 'entries maxSize');
}
