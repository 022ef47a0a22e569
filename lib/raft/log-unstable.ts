/**
 * Port of etcd raft v3.6 log_unstable.go: the entries (and at most one snapshot) not yet
 * written to Storage.
 *
 * Invariants:
 * - entries[i] has index offset+i (the unstable entries are contiguous from `offset`).
 * - If a snapshot is present, offset == snapshot.metadata.index + 1.
 * - offset <= offsetInProgress <= offset + entries.length: entries below offsetInProgress have
 *   been handed to the application in a Ready and are being written.
 * - snapshotInProgress implies snapshot !== undefined.
 */
import type { Entry, Snapshot } from '../types.js';
import { raftPanic, type RaftLogger } from './logger.js';
import type { EntryId } from './util.js';

export class Unstable {
  /** An incoming snapshot not yet persisted. */
  snapshot: Snapshot | undefined = undefined;
  /** Entries not yet persisted; entries[i] has index offset+i. */
  entries: Entry[] = [];
  /** Index of entries[0] (or where the next entry would go). */
  offset: number;
  /** True once the snapshot was handed out in a Ready. */
  snapshotInProgress = false;
  /** Entries below this index have been handed out in a Ready. */
  offsetInProgress: number;
  logger: RaftLogger;

  constructor(offset: number, logger: RaftLogger) {
    this.offset = offset;
    this.offsetInProgress = offset;
    this.logger = logger;
  }

  /** The first index if a snapshot is present (snapshot.index + 1). */
  maybeFirstIndex(): number | undefined {
    return this.snapshot === undefined ? undefined : this.snapshot.metadata.index + 1;
  }

  /** The last index of the unstable entries, else of the snapshot, else undefined. */
  maybeLastIndex(): number | undefined {
    if (this.entries.length !== 0) return this.offset + this.entries.length - 1;
    if (this.snapshot !== undefined) return this.snapshot.metadata.index;
    return undefined;
  }

  /** The term of index `i` if the unstable log (entries or snapshot) knows it. */
  maybeTerm(i: number): number | undefined {
    if (i < this.offset) {
      if (this.snapshot !== undefined && this.snapshot.metadata.index === i) return this.snapshot.metadata.term;
      return undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || i > last) return undefined;
    return this.entries[i - this.offset]!.term;
  }

  /** Entries not yet handed out for writing. */
  nextEntries(): Entry[] {
    const inProgress = this.offsetInProgress - this.offset;
    if (this.entries.length === inProgress) return [];
    return this.entries.slice(inProgress);
  }

  /** The snapshot if it has not been handed out for writing yet. */
  nextSnapshot(): Snapshot | undefined {
    if (this.snapshot === undefined || this.snapshotInProgress) return undefined;
    return this.snapshot;
  }

  /** Marks everything currently unstable as handed out (being written). */
  acceptInProgress(): void {
    if (this.entries.length > 0) this.offsetInProgress = this.entries[this.entries.length - 1]!.index + 1;
    if (this.snapshot !== undefined) this.snapshotInProgress = true;
  }

  /**
   * Entries up to `id` are durable: drop them, unless the entry at id.index has since been
   * overwritten with a different term (then the write was of a stale entry and is ignored).
   */
  stableTo(id: EntryId): void {
    const term = this.maybeTerm(id.index);
    if (term === undefined) {
      this.logger.info(`entry at index ${id.index} missing from unstable log; ignoring`);
      return;
    }
    if (id.index < this.offset) {
      this.logger.info(`entry at index ${id.index} matched unstable snapshot; ignoring`);
      return;
    }
    if (term !== id.term) {
      this.logger.info(
        `entry at (index,term)=(${id.index},${id.term}) mismatched with entry at (${id.index},${term}) in unstable log; ignoring`,
      );
      return;
    }
    const count = id.index + 1 - this.offset;
    this.entries = this.entries.slice(count);
    this.offset = id.index + 1;
    this.offsetInProgress = Math.max(this.offsetInProgress, this.offset);
  }

  /** The snapshot at index `i` is durable: forget it. */
  stableSnapTo(i: number): void {
    if (this.snapshot !== undefined && this.snapshot.metadata.index === i) {
      this.snapshot = undefined;
      this.snapshotInProgress = false;
    }
  }

  /** Replaces everything with snapshot `s` (its entries are gone). */
  restore(s: Snapshot): void {
    this.offset = s.metadata.index + 1;
    this.offsetInProgress = this.offset;
    this.entries = [];
    this.snapshot = s;
    this.snapshotInProgress = false;
  }

  /** Appends `entries`, first truncating any unstable entries at or after entries[0].index. */
  truncateAndAppend(entries: Entry[]): void {
    const fromIndex = entries[0]!.index;
    if (fromIndex === this.offset + this.entries.length) {
      // Directly after the current entries.
      this.entries = this.entries.concat(entries);
    } else if (fromIndex <= this.offset) {
      this.logger.info(`replace the unstable entries from index ${fromIndex}`);
      // Everything unstable is replaced; the write of the old entries (if any) is moot.
      this.entries = entries.slice();
      this.offset = fromIndex;
      this.offsetInProgress = this.offset;
    } else {
      this.logger.info(`truncate the unstable entries before index ${fromIndex}`);
      const keep = this.slice(this.offset, fromIndex);
      this.entries = keep.concat(entries);
      // Entries at or after fromIndex must be (re)written.
      this.offsetInProgress = Math.min(this.offsetInProgress, fromIndex);
    }
  }

  /** Entries [lo, hi), which must lie within the unstable entries. */
  slice(lo: number, hi: number): Entry[] {
    this.mustCheckOutOfBounds(lo, hi);
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }

  private mustCheckOutOfBounds(lo: number, hi: number): void {
    if (lo > hi) raftPanic(this.logger, `invalid unstable.slice ${lo} > ${hi}`);
    const upper = this.offset + this.entries.length;
    if (lo < this.offset || hi > upper) {
      raftPanic(this.logger, `unstable.slice[${lo},${hi}) out of bound [${this.offset},${upper}]`);
    }
  }
}
