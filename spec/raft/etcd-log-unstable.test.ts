/** Port of etcd raft v3.6 log_unstable_test.go. */
import { describe, expect, it } from 'vitest';
import type { Entry, Snapshot } from '../../lib/types.js';
import { index, makeUnstable, snapshotAt } from './helpers.js';

const snap4 = (): Snapshot => snapshotAt(4, 1);

describe('unstable (log_unstable_test.go)', () => {
  it('TestUnstableMaybeFirstIndex', () => {
    const cases: Array<[Entry[], number, Snapshot | undefined, number | undefined]> = [
      [index(5).terms(1), 5, undefined, undefined],
      [[], 0, undefined, undefined],
      [index(5).terms(1), 5, snap4(), 5],
      [[], 5, snap4(), 5],
    ];
    for (const [entries, offset, snapshot, want] of cases) {
      expect(makeUnstable({ entries, offset, snapshot }).maybeFirstIndex()).toBe(want);
    }
  });

  it('TestMaybeLastIndex', () => {
    const cases: Array<[Entry[], number, Snapshot | undefined, number | undefined]> = [
      [index(5).terms(1), 5, undefined, 5],
      [index(5).terms(1), 5, snap4(), 5],
      [[], 5, snap4(), 4],
      [[], 0, undefined, undefined],
    ];
    for (const [entries, offset, snapshot, want] of cases) {
      expect(makeUnstable({ entries, offset, snapshot }).maybeLastIndex()).toBe(want);
    }
  });

  it('TestUnstableMaybeTerm', () => {
    const cases: Array<[Entry[], number, Snapshot | undefined, number, number | undefined]> = [
      [index(5).terms(1), 5, undefined, 5, 1],
      [index(5).terms(1), 5, undefined, 6, undefined],
      [index(5).terms(1), 5, undefined, 4, undefined],
      [index(5).terms(1), 5, snap4(), 5, 1],
      [index(5).terms(1), 5, snap4(), 6, undefined],
      [index(5).terms(1), 5, snap4(), 4, 1],
      [index(5).terms(1), 5, snap4(), 3, undefined],
      [[], 5, snap4(), 5, undefined],
      [[], 5, snap4(), 4, 1],
      [[], 0, undefined, 5, undefined],
    ];
    for (const [entries, offset, snapshot, i, want] of cases) {
      expect(makeUnstable({ entries, offset, snapshot }).maybeTerm(i)).toBe(want);
    }
  });

  it('TestUnstableRestore', () => {
    const u = makeUnstable({ entries: index(5).terms(1), offset: 5, offsetInProgress: 6, snapshot: snap4(), snapshotInProgress: true });
    const s = snapshotAt(6, 2);
    u.restore(s);
    expect(u.offset).toBe(7);
    expect(u.offsetInProgress).toBe(7);
    expect(u.entries.length).toBe(0);
    expect(u.snapshot).toBe(s);
    expect(u.snapshotInProgress).toBe(false);
  });

  it('TestUnstableNextEntries', () => {
    const cases: Array<[Entry[], number, number, Entry[]]> = [
      [index(5).terms(1, 1), 5, 5, index(5).terms(1, 1)],
      [index(5).terms(1, 1), 5, 6, index(6).terms(1)],
      [index(5).terms(1, 1), 5, 7, []],
    ];
    for (const [entries, offset, offsetInProgress, want] of cases) {
      expect(makeUnstable({ entries, offset, offsetInProgress }).nextEntries()).toEqual(want);
    }
  });

  it('TestUnstableNextSnapshot', () => {
    const s = snap4();
    expect(makeUnstable({}).nextSnapshot()).toBeUndefined();
    expect(makeUnstable({ snapshot: s }).nextSnapshot()).toBe(s);
    expect(makeUnstable({ snapshot: s, snapshotInProgress: true }).nextSnapshot()).toBeUndefined();
  });

  it('TestUnstableAcceptInProgress', () => {
    const cases: Array<[Entry[], Snapshot | undefined, number, boolean, number, boolean]> = [
      [[], undefined, 5, false, 5, false],
      [index(5).terms(1), undefined, 5, false, 6, false],
      [index(5).terms(1, 1), undefined, 5, false, 7, false],
      [index(5).terms(1, 1), undefined, 6, false, 7, false],
      [index(5).terms(1, 1), undefined, 7, false, 7, false],
      [[], snap4(), 5, false, 5, true],
      [index(5).terms(1), snap4(), 5, false, 6, true],
      [index(5).terms(1, 1), snap4(), 5, false, 7, true],
      [index(5).terms(1, 1), snap4(), 6, false, 7, true],
      [index(5).terms(1, 1), snap4(), 7, false, 7, true],
      [[], snap4(), 5, true, 5, true],
      [index(5).terms(1), snap4(), 5, true, 6, true],
      [index(5).terms(1, 1), snap4(), 5, true, 7, true],
      [index(5).terms(1, 1), snap4(), 6, true, 7, true],
      [index(5).terms(1, 1), snap4(), 7, true, 7, true],
    ];
    for (const [entries, snapshot, offsetInProgress, snapshotInProgress, wantOffset, wantSnap] of cases) {
      const u = makeUnstable({ entries, snapshot, offsetInProgress, snapshotInProgress });
      u.acceptInProgress();
      expect(u.offsetInProgress).toBe(wantOffset);
      expect(u.snapshotInProgress).toBe(wantSnap);
    }
  });

  it('TestUnstableStableTo', () => {
    const cases: Array<[Entry[], number, number, Snapshot | undefined, number, number, number, number, number]> = [
      [[], 0, 0, undefined, 5, 1, 0, 0, 0],
      [index(5).terms(1), 5, 6, undefined, 5, 1, 6, 6, 0],
      [index(5).terms(1, 1), 5, 6, undefined, 5, 1, 6, 6, 1],
      [index(5).terms(1, 1), 5, 7, undefined, 5, 1, 6, 7, 1],
      [index(6).terms(2), 6, 7, undefined, 6, 1, 6, 7, 1],
      [index(5).terms(1), 5, 6, undefined, 4, 1, 5, 6, 1],
      [index(5).terms(1), 5, 6, undefined, 4, 2, 5, 6, 1],
      [index(5).terms(1), 5, 6, snap4(), 5, 1, 6, 6, 0],
      [index(5).terms(1, 1), 5, 6, snap4(), 5, 1, 6, 6, 1],
      [index(5).terms(1, 1), 5, 7, snap4(), 5, 1, 6, 7, 1],
      [index(6).terms(2), 6, 7, snapshotAt(5, 1), 6, 1, 6, 7, 1],
      [index(5).terms(1), 5, 6, snap4(), 4, 1, 5, 6, 1],
      [index(5).terms(2), 5, 6, snapshotAt(4, 2), 4, 1, 5, 6, 1],
    ];
    for (const [entries, offset, offsetInProgress, snapshot, idx, term, wantOffset, wantInProgress, wantLen] of cases) {
      const u = makeUnstable({ entries, offset, offsetInProgress, snapshot });
      u.stableTo({ term, index: idx });
      expect([u.offset, u.offsetInProgress, u.entries.length]).toEqual([wantOffset, wantInProgress, wantLen]);
    }
  });

  it('TestUnstableTruncateAndAppend', () => {
    const cases: Array<[Entry[], number, number, Entry[], number, number, Entry[]]> = [
      [index(5).terms(1), 5, 5, index(6).terms(1, 1), 5, 5, index(5).terms(1, 1, 1)],
      [index(5).terms(1), 5, 6, index(6).terms(1, 1), 5, 6, index(5).terms(1, 1, 1)],
      [index(5).terms(1), 5, 5, index(5).terms(2, 2), 5, 5, index(5).terms(2, 2)],
      [index(5).terms(1), 5, 5, index(4).terms(2, 2, 2), 4, 4, index(4).terms(2, 2, 2)],
      [index(5).terms(1), 5, 6, index(5).terms(2, 2), 5, 5, index(5).terms(2, 2)],
      [index(5).terms(1, 1, 1), 5, 5, index(6).terms(2), 5, 5, index(5).terms(1, 2)],
      [index(5).terms(1, 1, 1), 5, 5, index(7).terms(2, 2), 5, 5, index(5).terms(1, 1, 2, 2)],
      [index(5).terms(1, 1, 1), 5, 6, index(6).terms(2), 5, 6, index(5).terms(1, 2)],
      [index(5).terms(1, 1, 1), 5, 7, index(6).terms(2), 5, 6, index(5).terms(1, 2)],
    ];
    for (const [entries, offset, offsetInProgress, toAppend, wantOffset, wantInProgress, wantEntries] of cases) {
      const u = makeUnstable({ entries, offset, offsetInProgress });
      u.truncateAndAppend(toAppend);
      expect(u.offset).toBe(wantOffset);
      expect(u.offsetInProgress).toBe(wantInProgress);
      expect(u.entries).toEqual(wantEntries);
    }
  });
});
