/** Fixtures shared by the ported etcd raft tests. */
import { Unstable } from '../../lib/raft/log-unstable.js';
import { silentLogger } from '../../lib/raft/logger.js';
import { EntryType, emptyConfState, type Entry, type Snapshot } from '../../lib/types.js';

/** Go's index(i).terms(t...): entries i, i+1, … with the given terms. */
export function index(first: number): { terms: (...terms: number[]) => Entry[] } {
  return {
    terms: (...terms: number[]) => terms.map((term, i) => ({ type: EntryType.Normal, term, index: first + i })),
  };
}

/** An entry without data. */
export function entry(term: number, idx: number): Entry {
  return { type: EntryType.Normal, term, index: idx };
}

export function snapshotAt(idx: number, term: number, voters: number[] = []): Snapshot {
  return { metadata: { index: idx, term, confState: { ...emptyConfState(), voters } } };
}

/** Go's `unstable{…}` struct literal. */
export function makeUnstable(fields: {
  entries?: Entry[];
  offset?: number;
  offsetInProgress?: number;
  snapshot?: Snapshot;
  snapshotInProgress?: boolean;
}): Unstable {
  const u = new Unstable(fields.offset ?? 0, silentLogger);
  u.entries = fields.entries ?? [];
  u.offsetInProgress = fields.offsetInProgress ?? 0;
  u.snapshot = fields.snapshot;
  u.snapshotInProgress = fields.snapshotInProgress ?? false;
  return u;
}

/** Go's index(i).termRange(from, to): entries i, i+1, … with terms from..to-1. */
export function termRange(first: number, from: number, to: number): Entry[] {
  const entries: Entry[] = [];
  for (let term = from; term < to; term++) entries.push({ type: EntryType.Normal, term, index: first + term - from });
  return entries;
}
