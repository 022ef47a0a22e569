/**
 * Port of etcd raft v3.6 log.go: raftLog, raft's view of its log as the Storage (stable,
 * persisted) part followed by the Unstable part.
 *
 * Invariants:
 * - applied <= applying <= committed (applying: handed to the application, not yet acked).
 * - committed <= lastIndex().
 * - Storage is never read at or above unstable.offset.
 *
 * Go returns ErrCompacted/ErrUnavailable; here `term` and `slice` throw the coded sentinel
 * errors from errors.ts (check with hasErrorCode(e, ErrorCode.Compacted) etc.). Any other
 * storage error is rethrown unchanged: it stops the node.
 */
import { compactedError, ErrorCode, unavailableError } from '../errors.js';
import { NO_LIMIT, type Entry, type Snapshot, type Storage } from '../types.js';
import { raftPanic, type RaftLogger } from './logger.js';
import { Unstable } from './log-unstable.js';
import { entsSize, limitSize, pbEntryId, type EntryId, type LogSlice } from './util.js';

/**
 * Whether `error` carries `code`. Storages signal etcd's sentinels by a thrown error's `code`
 * (not its class), so a Storage from another copy of this package, or a user's own, works too.
 */
export function hasErrorCode(error: unknown, code: ErrorCode): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code;
}

/** True for the two sentinels raft treats as "not in the log" (ErrCompacted, ErrUnavailable). */
export function isOutOfBoundsError(error: unknown): boolean {
  return hasErrorCode(error, ErrorCode.Compacted) || hasErrorCode(error, ErrorCode.Unavailable);
}

export class RaftLog {
  storage: Storage;
  unstable: Unstable;
  /** Highest index known to be committed by a quorum. */
  committed: number;
  /** Highest index handed to the application for applying (>= applied). */
  applying: number;
  /** Highest index the application has applied. */
  applied: number;
  logger: RaftLogger;
  /** Byte budget of entries being applied at once (MaxCommittedSizePerReady). */
  maxApplyingEntsSize: number;
  /** Bytes of entries handed out for applying and not yet acknowledged. */
  applyingEntsSize = 0;
  /** Set when the applying budget is exhausted: no more committed entries until some are applied. */
  applyingEntsPaused = false;

  constructor(storage: Storage, logger: RaftLogger, maxApplyingEntsSize: number = NO_LIMIT) {
    const firstIndex = storage.firstIndex();
    const lastIndex = storage.lastIndex();
    this.storage = storage;
    this.unstable = new Unstable(lastIndex + 1, logger);
    this.maxApplyingEntsSize = maxApplyingEntsSize;
    // Everything below firstIndex is in the snapshot, hence committed and applied.
    this.committed = firstIndex - 1;
    this.applying = firstIndex - 1;
    this.applied = firstIndex - 1;
    this.logger = logger;
  }

  toString(): string {
    return (
      `committed=${this.committed}, applied=${this.applied}, applying=${this.applying}, ` +
      `unstable.offset=${this.unstable.offset}, unstable.offsetInProgress=${this.unstable.offsetInProgress}, ` +
      `len(unstable.Entries)=${this.unstable.entries.length}`
    );
  }

  /**
   * Appends the leader's slice `a` if its prev entry matches our log; returns the index of
   * the last entry of `a`, or undefined on mismatch. Advances commit to min(committed, that).
   */
  maybeAppend(a: LogSlice, committed: number): number | undefined {
    if (!this.matchTerm(a.prev)) return undefined;
    const lastNewIndex = a.prev.index + a.entries.length;
    const conflictIndex = this.findConflict(a.entries);
    if (conflictIndex === 0) {
      // Nothing new: every entry is already present.
    } else if (conflictIndex <= this.committed) {
      raftPanic(this.logger, `entry ${conflictIndex} conflict with committed entry [committed(${this.committed})]`);
    } else {
      const offset = a.prev.index + 1;
      if (conflictIndex - offset > a.entries.length) {
        raftPanic(this.logger, `index, ${conflictIndex - offset}, is out of range [${a.entries.length}]`);
      }
      this.append(a.entries.slice(conflictIndex - offset));
    }
    this.commitTo(Math.min(committed, lastNewIndex));
    return lastNewIndex;
  }

  /** Appends to the unstable log (truncating a conflicting suffix); returns the new last index. */
  append(entries: Entry[]): number {
    if (entries.length === 0) return this.lastIndex();
    const after = entries[0]!.index - 1;
    // Committed entries are never overwritten.
    if (after < this.committed) raftPanic(this.logger, `after(${after}) is out of range [committed(${this.committed})]`);
    this.unstable.truncateAndAppend(entries);
    return this.lastIndex();
  }

  /**
   * The index of the first entry of `entries` that is new or conflicts with our log (0 if all
   * are already present). `entries` must be contiguous.
   */
  findConflict(entries: readonly Entry[]): number {
    for (const entry of entries) {
      const id = pbEntryId(entry);
      if (!this.matchTerm(id)) {
        if (id.index <= this.lastIndex()) {
          this.logger.info(
            `found conflict at index ${id.index} [existing term: ${this.zeroTermOnOutOfBounds(id.index)}, conflicting term: ${id.term}]`,
          );
        }
        return id.index;
      }
    }
    return 0;
  }

  /**
   * The largest index <= `index` whose term is <= `term`, with that term; [index, 0] if a term
   * is unknown (compacted/unavailable), [0, 0] if none.
   */
  findConflictByTerm(index: number, term: number): [number, number] {
    for (; index > 0; index--) {
      let ourTerm: number;
      try {
        ourTerm = this.term(index);
      } catch (error) {
        if (isOutOfBoundsError(error)) return [index, 0];
        throw error;
      }
      if (ourTerm <= term) return [index, ourTerm];
    }
    return [0, 0];
  }

  nextUnstableEnts(): Entry[] {
    return this.unstable.nextEntries();
  }

  hasNextUnstableEnts(): boolean {
    return this.nextUnstableEnts().length > 0;
  }

  hasNextOrInProgressUnstableEnts(): boolean {
    return this.unstable.entries.length > 0;
  }

  /** Committed entries ready to be handed to the application, within the applying budget. */
  nextCommittedEnts(allowUnstable: boolean): Entry[] {
    if (this.applyingEntsPaused) return [];
    // A pending snapshot must be applied first.
    if (this.hasNextOrInProgressSnapshot()) return [];
    const lo = this.applying + 1;
    const hi = this.maxAppliableIndex(allowUnstable) + 1;
    if (lo >= hi) return [];
    const maxSize = this.maxApplyingEntsSize - this.applyingEntsSize;
    if (maxSize <= 0) {
      raftPanic(
        this.logger,
        `applying entry size (${this.maxApplyingEntsSize}-${this.applyingEntsSize})=${maxSize} not positive`,
      );
    }
    try {
      return this.slice(lo, hi, maxSize);
    } catch (error) {
      if (isOutOfBoundsError(error)) {
        raftPanic(this.logger, `unexpected error when getting unapplied entries (${(error as Error).message})`);
      }
      throw error;
    }
  }

  hasNextCommittedEnts(allowUnstable: boolean): boolean {
    if (this.applyingEntsPaused) return false;
    if (this.hasNextOrInProgressSnapshot()) return false;
    return this.applying + 1 < this.maxAppliableIndex(allowUnstable) + 1;
  }

  /** The highest index that may be applied: committed, capped at the stable log unless allowUnstable. */
  maxAppliableIndex(allowUnstable: boolean): number {
    let hi = this.committed;
    if (!allowUnstable) hi = Math.min(hi, this.unstable.offset - 1);
    return hi;
  }

  nextUnstableSnapshot(): Snapshot | undefined {
    return this.unstable.nextSnapshot();
  }

  hasNextUnstableSnapshot(): boolean {
    return this.unstable.nextSnapshot() !== undefined;
  }

  hasNextOrInProgressSnapshot(): boolean {
    return this.unstable.snapshot !== undefined;
  }

  /** The unstable snapshot if any, else storage's (which may throw the temporarily-unavailable sentinel). */
  snapshot(): Snapshot {
    if (this.unstable.snapshot !== undefined) return this.unstable.snapshot;
    return this.storage.snapshot();
  }

  firstIndex(): number {
    const index = this.unstable.maybeFirstIndex();
    return index !== undefined ? index : this.storage.firstIndex();
  }

  lastIndex(): number {
    const index = this.unstable.maybeLastIndex();
    return index !== undefined ? index : this.storage.lastIndex();
  }

  commitTo(toCommit: number): void {
    // The commit index never decreases.
    if (this.committed < toCommit) {
      if (this.lastIndex() < toCommit) {
        raftPanic(
          this.logger,
          `tocommit(${toCommit}) is out of range [lastIndex(${this.lastIndex()})]. Was the raft log corrupted, truncated, or lost?`,
        );
      }
      this.committed = toCommit;
    }
  }

  /** The application applied up to `i`; `size` bytes of the applying budget are released. */
  appliedTo(i: number, size: number): void {
    if (this.committed < i || i < this.applied) {
      raftPanic(this.logger, `applied(${i}) is out of range [prevApplied(${this.applied}), committed(${this.committed})]`);
    }
    this.applied = i;
    this.applying = Math.max(this.applying, i);
    this.applyingEntsSize = this.applyingEntsSize > size ? this.applyingEntsSize - size : 0;
    this.applyingEntsPaused = this.applyingEntsSize >= this.maxApplyingEntsSize;
  }

  /** Entries up to `i` (of `size` bytes) were handed to the application for applying. */
  acceptApplying(i: number, size: number, allowUnstable: boolean): void {
    if (this.committed < i) {
      raftPanic(this.logger, `applying(${i}) is out of range [prevApplying(${this.applying}), committed(${this.committed})]`);
    }
    this.applying = i;
    this.applyingEntsSize += size;
    // Pause when over budget, or when the size limit cut the batch short (i is below what was
    // appliable): then wait for the acknowledgement before handing out more.
    this.applyingEntsPaused =
      this.applyingEntsSize >= this.maxApplyingEntsSize || i < this.maxAppliableIndex(allowUnstable);
  }

  stableTo(id: EntryId): void {
    this.unstable.stableTo(id);
  }

  stableSnapTo(i: number): void {
    this.unstable.stableSnapTo(i);
  }

  acceptUnstable(): void {
    this.unstable.acceptInProgress();
  }

  lastEntryId(): EntryId {
    const index = this.lastIndex();
    let term: number;
    try {
      term = this.term(index);
    } catch (error) {
      raftPanic(this.logger, `unexpected error when getting the last term at ${index}: ${(error as Error).message}`);
    }
    return { term, index };
  }

  /**
   * The term of entry `i`. Throws the ErrCompacted sentinel below firstIndex()-1 and
   * ErrUnavailable above lastIndex(); any other storage error is rethrown as is.
   */
  term(i: number): number {
    // The unstable log answers for its entries and its snapshot's index.
    const unstableTerm = this.unstable.maybeTerm(i);
    if (unstableTerm !== undefined) return unstableTerm;
    // Valid term range is [firstIndex-1, lastIndex]: the entry before the first is kept for matching.
    if (i + 1 < this.firstIndex()) throw compactedError(i);
    if (i > this.lastIndex()) throw unavailableError(i);
    return this.storage.term(i);
  }

  /** Entries from `i` to the end, within maxSize. Empty if i > lastIndex. */
  entries(i: number, maxSize: number): Entry[] {
    if (i > this.lastIndex()) return [];
    return this.slice(i, this.lastIndex() + 1, maxSize);
  }

  /** Every entry in the log (tests). */
  allEntries(): Entry[] {
    for (;;) {
      try {
        return this.entries(this.firstIndex(), NO_LIMIT);
      } catch (error) {
        // A racing compaction: try again.
        if (hasErrorCode(error, ErrorCode.Compacted)) continue;
        throw error;
      }
    }
  }

  /** Whether a candidate whose last entry is `their` is at least as up to date as us (§5.4.1). */
  isUpToDate(their: EntryId): boolean {
    const our = this.lastEntryId();
    return their.term > our.term || (their.term === our.term && their.index >= our.index);
  }

  matchTerm(id: EntryId): boolean {
    return this.termInBounds(id.index) === id.term;
  }

  /**
   * term(i), or undefined where term() would throw ErrCompacted or ErrUnavailable. It builds no
   * error for those: a follower asks for the term past its last index on every append (in
   * findConflict), and an Error with its stack trace costs more than the append's bookkeeping.
   */
  private termInBounds(i: number): number | undefined {
    const unstableTerm = this.unstable.maybeTerm(i);
    if (unstableTerm !== undefined) return unstableTerm;
    if (i + 1 < this.firstIndex() || i > this.lastIndex()) return undefined;
    try {
      return this.storage.term(i);
    } catch (error) {
      // The storage may still refuse an index in range (compacted under us): same answer.
      if (isOutOfBoundsError(error)) return undefined;
      throw error;
    }
  }

  /**
   * Commits up to `at.index` if that entry has term `at.term` (the leader only commits entries
   * of its own term by counting replicas, §5.4.2).
   */
  maybeCommit(at: EntryId): boolean {
    if (at.term !== 0 && at.index > this.committed && this.matchTerm(at)) {
      this.commitTo(at.index);
      return true;
    }
    return false;
  }

  restore(s: Snapshot): void {
    this.logger.info(`log [${this.toString()}] starts to restore snapshot [index: ${s.metadata.index}, term: ${s.metadata.term}]`);
    this.committed = s.metadata.index;
    this.unstable.restore(s);
  }

  /**
   * Visits [lo, hi) in pages of at most pageSize bytes (each page non-empty). `visit` returns
   * false to stop early. Throws ErrCompacted if lo was compacted.
   */
  scan(lo: number, hi: number, pageSize: number, visit: (entries: Entry[]) => boolean): void {
    while (lo < hi) {
      const entries = this.slice(lo, hi, pageSize);
      if (entries.length === 0) throw new Error(`got 0 entries in [${lo}, ${hi})`);
      if (!visit(entries)) return;
      lo += entries.length;
    }
  }

  /**
   * Entries [lo, hi) within maxSize (always at least one if the range is non-empty), read from
   * storage below unstable.offset and from the unstable log above it.
   */
  slice(lo: number, hi: number, maxSize: number): Entry[] {
    this.mustCheckOutOfBounds(lo, hi);
    if (lo === hi) return [];
    if (lo >= this.unstable.offset) return limitSize(this.unstable.slice(lo, hi), maxSize).slice();

    const cut = Math.min(hi, this.unstable.offset);
    let stored: Entry[];
    try {
      stored = this.storage.entries(lo, cut, maxSize);
    } catch (error) {
      if (hasErrorCode(error, ErrorCode.Compacted)) throw error;
      if (hasErrorCode(error, ErrorCode.Unavailable)) {
        raftPanic(this.logger, `entries[${lo}:${cut}) is unavailable from storage`);
      }
      throw error;
    }
    if (hi <= this.unstable.offset) return stored;

    // Fewer entries than asked for means storage hit the size limit: stop there.
    if (stored.length < cut - lo) return stored;
    const size = entsSize(stored);
    if (size >= maxSize) return stored;

    const unstable = limitSize(this.unstable.slice(this.unstable.offset, hi), maxSize - size);
    // limitSize always returns one entry; drop it if it does not fit.
    if (unstable.length === 1 && size + entsSize(unstable) > maxSize) return stored;
    return stored.concat(unstable);
  }

  /** Throws ErrCompacted if lo < firstIndex; panics on lo > hi or hi beyond lastIndex+1. */
  private mustCheckOutOfBounds(lo: number, hi: number): void {
    if (lo > hi) raftPanic(this.logger, `invalid slice ${lo} > ${hi}`);
    const first = this.firstIndex();
    if (lo < first) throw compactedError(lo);
    const length = this.lastIndex() + 1 - first;
    if (hi > first + length) raftPanic(this.logger, `slice[${lo},${hi}) out of bound [${first},${this.lastIndex()}]`);
  }

  /** The term of `i`, or 0 if it is compacted or unavailable. */
  zeroTermOnOutOfBounds(i: number): number {
    return this.termInBounds(i) ?? 0;
  }
}
