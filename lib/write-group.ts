/**
 * Write groups: the coalescing half of ReplicaLogStore's group commit.
 *
 * `append` and `setHardState` calls that arrive while an earlier write is running (or in the
 * same tick, as a Ready loop makes them: append(entries) then setHardState(hs)) join one
 * group, flushed as ONE durable write: the entries of every append in it staged and fsynced
 * together with one fsync of wal/, then the last hard state in one synced KV batch.
 *
 * Each call is still checked on its own, in call order, against the log as every earlier
 * accepted call of the group leaves it (PendingLog below), with the same rules from
 * log-rules.ts a lone call meets; a refused call rejects alone and changes nothing, and the
 * others go on. So what a group writes is exactly what the accepted calls would have written
 * one by one, and each of their promises resolves only once all of it is durable.
 */
import type { LogView } from './log-rules.js';
import type { Entry, HardState } from './types.js';

/** One call waiting in a group, with the settlement of its promise. */
export type GroupedWrite = ({ kind: 'append'; entries: Entry[] } | { kind: 'hardState'; hardState: HardState }) & {
  resolve(): void;
  reject(error: unknown): void;
};

export interface WriteGroup {
  readonly writes: GroupedWrite[];
}

/**
 * The log as the accepted calls of a group leave it, over the durable log `base`: the entries
 * to write (contiguous from `start`; every durable entry >= start is replaced) and the last
 * hard state. Implements LogView, so planAppend and checkHardState check each call against it.
 */
export class PendingLog implements LogView {
  private start = 0;
  private entries: Entry[] = [];
  private pendingHardState: HardState | undefined;

  constructor(private readonly base: LogView) {}

  firstIndex(): number {
    return this.base.firstIndex();
  }

  lastIndex(): number {
    return this.entries.length > 0 ? this.start + this.entries.length - 1 : this.base.lastIndex();
  }

  term(index: number): number {
    if (this.entries.length > 0 && index >= this.start) return this.entries[index - this.start]!.term;
    return this.base.term(index);
  }

  hardState(): HardState {
    return this.pendingHardState ?? this.base.hardState();
  }

  /** Applies an accepted append's plan (planAppend's result against this view). */
  append(plan: readonly Entry[]): void {
    if (plan.length === 0) return;
    const first = plan[0]!.index;
    if (this.entries.length > 0 && first >= this.start) {
      // Replaces this group's own entries from `first` on (first <= lastIndex()+1: planAppend);
      // usually first = lastIndex()+1 and nothing is cut. In place: a group of many small
      // appends stays linear.
      this.entries.length = first - this.start;
      for (const entry of plan) this.entries.push(entry);
    } else {
      this.start = first;
      this.entries = plan.slice();
    }
  }

  setHardState(hardState: HardState): void {
    this.pendingHardState = hardState;
  }

  /** The entries to write, contiguous, the first one's index being where the durable log is cut. */
  get plannedEntries(): readonly Entry[] {
    return this.entries;
  }

  /** The hard state to save, if an accepted call set one. */
  get plannedHardState(): HardState | undefined {
    return this.pendingHardState;
  }
}
