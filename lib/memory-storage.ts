/**
 * MemoryStorage: the in-memory reference store, with etcd raft v3.6 MemoryStorage semantics
 * plus replicalog's validation (gaps, term regressions, committed entries, hard state going
 * backwards are refused with a coded error and change nothing).
 *
 * Representation (etcd's): `log[0]` is a dummy entry holding the index S and term T_S of the
 * last compacted or snapshotted entry; `log[k]` holds index S+k. So firstIndex() = S+1,
 * lastIndex() = S+log.length-1 and term(S) = T_S always answers.
 *
 * Divergences from etcd v3.6, each deliberate: conditions etcd panics on throw coded errors;
 * applySnapshot accepts an index-0 snapshot on a fresh store (etcd v3.7, PR #370); the conf
 * state is stored on its own (setConfState) and replaced by applySnapshot.
 */
import { entrySize } from './codec.js';
import {
  checkSafeUnsigned,
  compactedError,
  ErrorCode,
  ReplicaLogError,
  snapOutOfDateError,
  unavailableError,
} from './errors.js';
import { checkCompact, checkEntriesArguments, checkHardState, planAppend, type LogView } from './log-rules.js';
import {
  cloneConfState,
  cloneSnapshot,
  copyBytes,
  emptyConfState,
  emptyHardState,
  emptySnapshot,
  hardStateCopy,
  NO_LIMIT,
  withoutNegativeZero,
  type ConfState,
  type Entry,
  type HardState,
  type Snapshot,
  type WritableStorage,
} from './types.js';
import {
  checkBytes,
  validateConfStateUntrusted,
  validateEntriesUntrusted,
  validateHardStateUntrusted,
  validateSnapshotUntrusted,
} from './validate.js';

/** A stored entry: a private frozen copy, so neither the caller's object nor a reader can change it. */
export function storedCopy(entry: Entry): Entry {
  const copy: Entry = { type: entry.type, term: withoutNegativeZero(entry.term), index: withoutNegativeZero(entry.index) };
  if (entry.data !== undefined) copy.data = copyBytes(entry.data);
  return Object.freeze(copy);
}

/** A copy handed to a reader (data copied too: typed arrays cannot be frozen). */
export function readerCopy(entry: Entry): Entry {
  const copy: Entry = { type: entry.type, term: entry.term, index: entry.index };
  if (entry.data !== undefined) copy.data = copyBytes(entry.data);
  return copy;
}

/**
 * Takes the longest prefix of `entries` whose total entrySize is <= maxSize, always keeping
 * the first entry (etcd util.go limitSize; an exact fit is included).
 */
export function limitSize(entries: Entry[], maxSize: number): Entry[] {
  if (entries.length === 0 || maxSize === NO_LIMIT) return entries;
  let size = entrySize(entries[0]!);
  let count = 1;
  for (; count < entries.length; count++) {
    size += entrySize(entries[count]!);
    if (size > maxSize) break;
  }
  return count === entries.length ? entries : entries.slice(0, count);
}

export class MemoryStorage implements WritableStorage, LogView {
  private log: Entry[] = [Object.freeze({ type: 0, term: 0, index: 0 })];
  private savedHardState: HardState = emptyHardState();
  private savedConfState: ConfState = emptyConfState();
  private savedSnapshot: Snapshot = emptySnapshot();

  private get offset(): number {
    return this.log[0]!.index;
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: { ...this.savedHardState }, confState: cloneConfState(this.savedConfState) };
  }

  /** The saved hard state (LogView). */
  hardState(): HardState {
    return { ...this.savedHardState };
  }

  entries(lo: number, hi: number, maxSize: number = NO_LIMIT): Entry[] {
    const budget = checkEntriesArguments(lo, hi, maxSize);
    const offset = this.offset;
    if (lo <= offset) throw compactedError(lo);
    if (hi > this.lastIndex() + 1) throw unavailableError(hi - 1);
    // Only the dummy: even entries(first, first) is unavailable (etcd; TestRawNodeStart relies on it).
    if (this.log.length === 1) throw unavailableError(lo);
    return limitSize(this.log.slice(lo - offset, hi - offset), budget).map(readerCopy);
  }

  term(index: number): number {
    checkSafeUnsigned(index, 'term index');
    const offset = this.offset;
    if (index < offset) throw compactedError(index);
    if (index - offset >= this.log.length) throw unavailableError(index);
    return this.log[index - offset]!.term;
  }

  firstIndex(): number {
    return this.offset + 1;
  }

  lastIndex(): number {
    return this.offset + this.log.length - 1;
  }

  snapshot(): Snapshot {
    return cloneSnapshot(this.savedSnapshot);
  }

  async append(entries: Entry[]): Promise<void> {
    validateEntriesUntrusted(entries);
    const plan = planAppend(this, entries);
    if (plan.length === 0) return;
    // Truncate at the batch's first index (keeping the dummy and everything below), then append.
    const keep = plan[0]!.index - this.offset;
    this.log = this.log.slice(0, keep).concat(plan.map(storedCopy));
  }

  async setHardState(hardState: HardState): Promise<void> {
    validateHardStateUntrusted(hardState);
    checkHardState(this, hardState);
    this.savedHardState = hardStateCopy(hardState);
  }

  async setConfState(confState: ConfState): Promise<void> {
    validateConfStateUntrusted(confState);
    this.savedConfState = cloneConfState(confState);
  }

  async applySnapshot(snapshot: Snapshot): Promise<void> {
    validateSnapshotUntrusted(snapshot);
    const index = snapshot.metadata.index;
    const storedIndex = this.savedSnapshot.metadata.index;
    // v3.7 rule: while no snapshot is stored, any snapshot (even an index-0 bootstrap) is accepted.
    if (storedIndex !== 0 && storedIndex >= index) throw snapOutOfDateError(index);
    if (storedIndex === 0 && index === 0 && this.offset !== 0) throw snapOutOfDateError(index);
    if (index < this.savedHardState.commit) {
      throw new ReplicaLogError(
        ErrorCode.Committed,
        `applySnapshot: snapshot index ${index} is below the saved commit ${this.savedHardState.commit}`,
        { index },
      );
    }
    this.savedSnapshot = cloneSnapshot(snapshot);
    this.savedConfState = cloneConfState(snapshot.metadata.confState);
    this.log = [Object.freeze({ type: 0, term: snapshot.metadata.term, index })];
  }

  async createSnapshot(index: number, confState?: ConfState, data?: Uint8Array): Promise<Snapshot> {
    checkSafeUnsigned(index, 'createSnapshot index');
    if (confState !== undefined) validateConfStateUntrusted(confState);
    checkBytes(data, 'createSnapshot data');
    if (index <= this.savedSnapshot.metadata.index) throw snapOutOfDateError(index);
    if (index > this.lastIndex()) {
      throw new ReplicaLogError(
        ErrorCode.Unavailable,
        `snapshot ${index} is out of bound lastindex(${this.lastIndex()})`,
        { index },
      );
    }
    if (index < this.offset) throw compactedError(index);
    const snapshot: Snapshot = {
      metadata: {
        index,
        term: this.log[index - this.offset]!.term,
        confState: cloneConfState(confState ?? this.savedSnapshot.metadata.confState),
      },
    };
    if (data !== undefined) snapshot.data = copyBytes(data);
    this.savedSnapshot = snapshot;
    return cloneSnapshot(snapshot);
  }

  async compact(index: number): Promise<void> {
    checkCompact(this, index);
    const position = index - this.offset;
    const anchor = this.log[position]!;
    this.log = [Object.freeze({ type: 0, term: anchor.term, index: anchor.index }), ...this.log.slice(position + 1)];
  }
}
