/**
 * The in-memory storage the InteractionEnv gives each node: etcd raft v3.6's MemoryStorage
 * semantics, synchronous, with no checks beyond Go's. The project's MemoryStorage is stricter
 * (it refuses, for example, a hard state whose commit is above the last stored index), which is
 * right for an application but not for replaying etcd's transcripts: etcd's harness writes the
 * hard state of a MsgStorageAppend before its entries.
 *
 * Like etcd's rafttest `snapOverrideStorage`, snapshot() returns whatever `snapshotOverride`
 * gives (the newest state-machine snapshot the harness recorded), not the stored one.
 */
import { compactedError, snapOutOfDateError, unavailableError } from '../errors.js';
import {
  NO_LIMIT,
  cloneConfState,
  cloneSnapshot,
  emptyHardState,
  emptySnapshot,
  hardStateCopy,
  type ConfState,
  type Entry,
  type HardState,
  type Snapshot,
  type Storage,
} from '../types.js';
import { limitSize } from './util.js';

export class InteractionStorage implements Storage {
  /** ents[0] is a dummy carrying the index and term of the last compacted entry. */
  private ents: Entry[] = [{ type: 0, term: 0, index: 0 }];
  private savedHardState: HardState = emptyHardState();
  private savedSnapshot: Snapshot = emptySnapshot();

  constructor(private readonly snapshotOverride?: () => Snapshot) {}

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: hardStateCopy(this.savedHardState), confState: cloneConfState(this.savedSnapshot.metadata.confState) };
  }

  entries(lo: number, hi: number, maxSize: number = NO_LIMIT): Entry[] {
    const offset = this.ents[0]!.index;
    if (lo <= offset) throw compactedError(lo);
    if (hi > this.lastIndex() + 1) throw new Error(`entries' hi(${hi}) is out of bound lastindex(${this.lastIndex()})`);
    if (this.ents.length === 1) throw unavailableError(lo);
    return limitSize(this.ents.slice(lo - offset, hi - offset), maxSize);
  }

  term(index: number): number {
    const offset = this.ents[0]!.index;
    if (index < offset) throw compactedError(index);
    if (index - offset >= this.ents.length) throw unavailableError(index);
    return this.ents[index - offset]!.term;
  }

  firstIndex(): number {
    return this.ents[0]!.index + 1;
  }

  lastIndex(): number {
    return this.ents[0]!.index + this.ents.length - 1;
  }

  snapshot(): Snapshot {
    if (this.snapshotOverride !== undefined) return this.snapshotOverride();
    return cloneSnapshot(this.savedSnapshot);
  }

  setHardState(hardState: HardState): void {
    this.savedHardState = hardStateCopy(hardState);
  }

  /** Replaces the log by the snapshot; ERR_SNAP_OUT_OF_DATE unless it is newer than the stored one. */
  applySnapshot(snapshot: Snapshot): void {
    if (this.savedSnapshot.metadata.index >= snapshot.metadata.index) throw snapOutOfDateError(snapshot.metadata.index);
    this.savedSnapshot = cloneSnapshot(snapshot);
    this.ents = [{ type: 0, term: snapshot.metadata.term, index: snapshot.metadata.index }];
  }

  /** Discards entries below `compactIndex` (which becomes the dummy). */
  compact(compactIndex: number): void {
    const offset = this.ents[0]!.index;
    if (compactIndex <= offset) throw compactedError(compactIndex);
    if (compactIndex > this.lastIndex()) {
      throw new Error(`compact ${compactIndex} is out of bound lastindex(${this.lastIndex()})`);
    }
    const anchor = this.ents[compactIndex - offset]!;
    this.ents = [{ type: 0, term: anchor.term, index: anchor.index }, ...this.ents.slice(compactIndex - offset + 1)];
  }

  /** Appends `entries` (contiguous), replacing any stored entries at or above the first one. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[0]!.index + entries.length - 1;
    // Entirely compacted already: nothing to do.
    if (last < first) return;
    const kept = first > entries[0]!.index ? entries.slice(first - entries[0]!.index) : entries.slice();
    const offset = kept[0]!.index - this.ents[0]!.index;
    if (this.ents.length < offset) {
      throw new Error(`missing log entry [last: ${this.lastIndex()}, append at: ${kept[0]!.index}]`);
    }
    this.ents = this.ents.slice(0, offset).concat(kept.map((entry) => ({ ...entry })));
  }
}
