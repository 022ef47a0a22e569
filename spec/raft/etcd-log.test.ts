/** Port of etcd raft v3.6 log_test.go (raftLog over MemoryStorage). */
import { describe, expect, it } from 'vitest';
import { entrySize } from '../../lib/codec.js';
import { ErrorCode, isReplicaLogError } from '../../lib/errors.js';
import { RaftLog } from '../../lib/raft/log.js';
import { silentLogger } from '../../lib/raft/logger.js';
import { entsSize, type EntryId, type LogSlice } from '../../lib/raft/util.js';
import { MemoryStorage } from '../../lib/memory-storage.js';
import { NO_LIMIT, type Entry } from '../../lib/types.js';
import { index, snapshotAt, termRange } from './helpers.js';

const newLog = (storage: MemoryStorage, maxSize = NO_LIMIT) => new RaftLog(storage, silentLogger, maxSize);

function termOrCode(log: RaftLog, i: number): number | string {
  try {
    return log.term(i);
  } catch (error) {
    if (isReplicaLogError(error)) return error.code;
    throw error;
  }
}

describe('raftLog (log_test.go)', () => {
  it('TestFindConflict', () => {
    const previous = index(1).terms(1, 2, 3);
    const cases: Array<[Entry[], number]> = [
      [[], 0],
      [index(1).terms(1, 2, 3), 0],
      [index(2).terms(2, 3), 0],
      [index(3).terms(3), 0],
      [index(1).terms(1, 2, 3, 4, 4), 4],
      [index(2).terms(2, 3, 4, 5), 4],
      [index(3).terms(3, 4, 4), 4],
      [index(4).terms(4, 4), 4],
      [index(1).terms(4, 4), 1],
      [index(2).terms(1, 4, 4), 2],
      [index(3).terms(1, 2, 4, 4), 3],
    ];
    for (const [entries, want] of cases) {
      const log = newLog(new MemoryStorage());
      log.append(previous);
      expect(log.findConflict(entries)).toBe(want);
    }
  });

  it('TestFindConflictByTerm', async () => {
    const a = index(0).terms(0, 2, 2, 5, 5, 5);
    const b = index(10).terms(3, 3, 3, 4, 4, 4);
    const cases: Array<[Entry[], number, number, number]> = [
      [a, 100, 2, 100],
      [a, 5, 6, 5],
      [a, 5, 5, 5],
      [a, 5, 4, 2],
      [a, 5, 2, 2],
      [a, 5, 1, 0],
      [a, 1, 2, 1],
      [a, 1, 1, 0],
      [a, 0, 0, 0],
      [b, 30, 3, 30],
      [b, 14, 9, 14],
      [b, 14, 4, 14],
      [b, 14, 3, 12],
      [b, 14, 2, 9],
      [b, 11, 5, 11],
      [b, 10, 5, 10],
      [b, 10, 3, 10],
      [b, 10, 2, 9],
      [b, 9, 2, 9],
      [b, 4, 2, 4],
      [b, 0, 0, 0],
    ];
    for (const [entries, i, term, want] of cases) {
      const storage = new MemoryStorage();
      if (entries[0]!.index !== 0) await storage.applySnapshot(snapshotAt(entries[0]!.index, entries[0]!.term));
      const log = newLog(storage);
      log.append(entries.slice(1));
      const [gotIndex, gotTerm] = log.findConflictByTerm(i, term);
      expect(gotIndex).toBe(want);
      expect(gotTerm).toBe(log.zeroTermOnOutOfBounds(gotIndex));
    }
  });

  it('TestIsUpToDate', () => {
    const log = newLog(new MemoryStorage());
    log.append(index(1).terms(1, 2, 3));
    const last = log.lastIndex();
    const cases: Array<[number, number, boolean]> = [
      [last - 1, 4, true],
      [last, 4, true],
      [last + 1, 4, true],
      [last - 1, 2, false],
      [last, 2, false],
      [last + 1, 2, false],
      [last - 1, 3, false],
      [last, 3, true],
      [last + 1, 3, true],
    ];
    for (const [i, term, want] of cases) expect(log.isUpToDate({ term, index: i })).toBe(want);
  });

  it('TestAppend', async () => {
    const previous = index(1).terms(1, 2);
    const cases: Array<[Entry[], number, Entry[], number]> = [
      [[], 2, index(1).terms(1, 2), 3],
      [index(3).terms(2), 3, index(1).terms(1, 2, 2), 3],
      [index(1).terms(2), 1, index(1).terms(2), 1],
      [index(2).terms(3, 3), 3, index(1).terms(1, 3, 3), 2],
    ];
    for (const [entries, wantIndex, wantEntries, wantUnstable] of cases) {
      const storage = new MemoryStorage();
      await storage.append(previous);
      const log = newLog(storage);
      expect(log.append(entries)).toBe(wantIndex);
      expect(log.entries(1, NO_LIMIT)).toEqual(wantEntries);
      expect(log.unstable.offset).toBe(wantUnstable);
    }
  });

  it('TestLogMaybeAppend', () => {
    const previous = index(1).terms(1, 2, 3);
    const lastIndex = 3;
    const lastTerm = 3;
    const commit = 1;
    const id = (term: number, i: number): EntryId => ({ term, index: i });
    // [prev, committed, entries, wantLast (undefined = rejected), wantCommit, wantPanic]
    const cases: Array<[EntryId, number, Entry[], number | undefined, number, boolean]> = [
      [id(lastTerm - 1, lastIndex), lastIndex, index(lastIndex + 1).terms(4), undefined, commit, false],
      [id(lastTerm, lastIndex + 1), lastIndex, index(lastIndex + 2).terms(4), undefined, commit, false],
      [id(lastTerm, lastIndex), lastIndex, [], lastIndex, lastIndex, false],
      [id(lastTerm, lastIndex), lastIndex + 1, [], lastIndex, lastIndex, false],
      [id(lastTerm, lastIndex), lastIndex - 1, [], lastIndex, lastIndex - 1, false],
      [id(lastTerm, lastIndex), 0, [], lastIndex, commit, false],
      [id(0, 0), lastIndex, [], 0, commit, false],
      [id(lastTerm, lastIndex), lastIndex, index(lastIndex + 1).terms(4), lastIndex + 1, lastIndex, false],
      [id(lastTerm, lastIndex), lastIndex + 1, index(lastIndex + 1).terms(4), lastIndex + 1, lastIndex + 1, false],
      [id(lastTerm, lastIndex), lastIndex + 2, index(lastIndex + 1).terms(4), lastIndex + 1, lastIndex + 1, false],
      [id(lastTerm, lastIndex), lastIndex + 2, index(lastIndex + 1).terms(4, 4), lastIndex + 2, lastIndex + 2, false],
      [id(lastTerm - 1, lastIndex - 1), lastIndex, index(lastIndex).terms(4), lastIndex, lastIndex, false],
      [id(lastTerm - 2, lastIndex - 2), lastIndex, index(lastIndex - 1).terms(4), lastIndex - 1, lastIndex - 1, false],
      [id(lastTerm - 3, lastIndex - 3), lastIndex, index(lastIndex - 2).terms(4), lastIndex - 2, lastIndex - 2, true],
      [id(lastTerm - 2, lastIndex - 2), lastIndex, index(lastIndex - 1).terms(4, 4), lastIndex, lastIndex, false],
    ];
    for (const [prev, committed, entries, wantLast, wantCommit, wantPanic] of cases) {
      const log = newLog(new MemoryStorage());
      log.append(previous);
      log.committed = commit;
      const slice: LogSlice = { term: 100, prev, entries };
      if (wantPanic) {
        expect(() => log.maybeAppend(slice, committed)).toThrow(/conflict with committed entry/);
        continue;
      }
      expect(log.maybeAppend(slice, committed)).toBe(wantLast);
      expect(log.committed).toBe(wantCommit);
      if (wantLast !== undefined && entries.length !== 0) {
        expect(log.slice(log.lastIndex() - entries.length + 1, log.lastIndex() + 1, NO_LIMIT)).toEqual(entries);
      }
    }
  });

  it('TestCompactionSideEffects', async () => {
    const lastIndex = 1000;
    const unstableIndex = 750;
    const storage = new MemoryStorage();
    await storage.append(termRange(1, 1, unstableIndex + 1));
    const log = newLog(storage);
    log.append(termRange(unstableIndex + 1, unstableIndex + 1, lastIndex + 1));
    expect(log.maybeCommit(log.lastEntryId())).toBe(true);
    log.appliedTo(log.committed, 0);
    const offset = 500;
    await storage.compact(offset);
    expect(log.lastIndex()).toBe(lastIndex);
    for (let j = offset; j <= log.lastIndex(); j++) expect(log.term(j)).toBe(j);
    for (let j = offset; j <= log.lastIndex(); j++) expect(log.matchTerm({ term: j, index: j })).toBe(true);
    const unstable = log.nextUnstableEnts();
    expect(unstable.length).toBe(250);
    expect(unstable[0]!.index).toBe(751);
    const prev = log.lastIndex();
    log.append([{ type: 0, index: log.lastIndex() + 1, term: log.lastIndex() + 1 }]);
    expect(log.lastIndex()).toBe(prev + 1);
    expect(log.entries(log.lastIndex(), NO_LIMIT).length).toBe(1);
  });

  async function committedFixture(maxSize = NO_LIMIT): Promise<{ log: RaftLog; ents: Entry[] }> {
    const ents = index(4).terms(1, 1, 1);
    const storage = new MemoryStorage();
    await storage.applySnapshot(snapshotAt(3, 1));
    await storage.append(ents.slice(0, 1));
    const log = newLog(storage, maxSize);
    log.append(ents);
    log.stableTo({ term: 1, index: 4 });
    log.maybeCommit({ term: 1, index: 5 });
    return { log, ents };
  }

  // [applied, applying, allowUnstable, paused, snap, wantHasNext, wantEntries(slice of ents)]
  const committedCases: Array<[number, number, boolean, boolean, boolean, boolean, [number, number] | undefined]> = [
    [3, 3, true, false, false, true, [0, 2]],
    [3, 4, true, false, false, true, [1, 2]],
    [3, 5, true, false, false, false, undefined],
    [4, 4, true, false, false, true, [1, 2]],
    [4, 5, true, false, false, false, undefined],
    [5, 5, true, false, false, false, undefined],
    [3, 3, false, false, false, true, [0, 1]],
    [3, 4, false, false, false, false, undefined],
    [3, 5, false, false, false, false, undefined],
    [4, 4, false, false, false, false, undefined],
    [4, 5, false, false, false, false, undefined],
    [5, 5, false, false, false, false, undefined],
    [3, 3, true, true, false, false, undefined],
    [3, 3, true, false, true, false, undefined],
  ];

  it('TestHasNextCommittedEnts and TestNextCommittedEnts', async () => {
    for (const [applied, applying, allowUnstable, paused, snap, wantHasNext, wantRange] of committedCases) {
      const { log, ents } = await committedFixture();
      log.appliedTo(applied, 0);
      log.acceptApplying(applying, 0, allowUnstable);
      log.applyingEntsPaused = paused;
      if (snap) log.restore(snapshotAt(4, 1));
      expect(log.hasNextCommittedEnts(allowUnstable)).toBe(wantHasNext);
      expect(log.nextCommittedEnts(allowUnstable)).toEqual(wantRange === undefined ? [] : ents.slice(...wantRange));
    }
  });

  it('TestAcceptApplying', async () => {
    const maxSize = 100;
    const cases: Array<[number, boolean, number, boolean]> = [
      [3, true, maxSize - 1, true],
      [3, true, maxSize, true],
      [3, true, maxSize + 1, true],
      [4, true, maxSize - 1, true],
      [4, true, maxSize, true],
      [4, true, maxSize + 1, true],
      [5, true, maxSize - 1, false],
      [5, true, maxSize, true],
      [5, true, maxSize + 1, true],
      [3, false, maxSize - 1, true],
      [3, false, maxSize, true],
      [3, false, maxSize + 1, true],
      [4, false, maxSize - 1, false],
      [4, false, maxSize, true],
      [4, false, maxSize + 1, true],
      [5, false, maxSize - 1, false],
      [5, false, maxSize, true],
      [5, false, maxSize + 1, true],
    ];
    for (const [i, allowUnstable, size, wantPaused] of cases) {
      const { log } = await committedFixture(maxSize);
      log.appliedTo(3, 0);
      log.acceptApplying(i, size, allowUnstable);
      expect(log.applyingEntsPaused).toBe(wantPaused);
    }
  });

  it('TestAppliedTo', async () => {
    const maxSize = 100;
    const overshoot = 5;
    const cases: Array<[number, number, number, boolean]> = [
      [4, overshoot - 1, maxSize + 1, true],
      [4, overshoot, maxSize, true],
      [4, overshoot + 1, maxSize - 1, false],
      [5, overshoot - 1, maxSize + 1, true],
      [5, overshoot, maxSize, true],
      [5, overshoot + 1, maxSize - 1, false],
      [4, maxSize + overshoot, 0, false],
      [4, maxSize + overshoot + 1, 0, false],
    ];
    for (const [i, size, wantSize, wantPaused] of cases) {
      const { log } = await committedFixture(maxSize);
      log.appliedTo(3, 0);
      log.acceptApplying(5, maxSize + overshoot, false);
      log.appliedTo(i, size);
      expect(log.applied).toBe(i);
      expect(log.applying).toBe(5);
      expect(log.applyingEntsSize).toBe(wantSize);
      expect(log.applyingEntsPaused).toBe(wantPaused);
    }
  });

  it('TestNextUnstableEnts', async () => {
    const previous = index(1).terms(1, 2);
    const cases: Array<[number, Entry[]]> = [
      [3, []],
      [1, previous],
    ];
    for (const [unstable, want] of cases) {
      const storage = new MemoryStorage();
      await storage.append(previous.slice(0, unstable - 1));
      const log = newLog(storage);
      log.append(previous.slice(unstable - 1));
      const entries = log.nextUnstableEnts();
      if (entries.length > 0) {
        const last = entries[entries.length - 1]!;
        log.stableTo({ term: last.term, index: last.index });
      }
      expect(entries).toEqual(want);
      expect(log.unstable.offset).toBe(previous[previous.length - 1]!.index + 1);
    }
  });

  it('TestCommitTo', () => {
    const cases: Array<[number, number, boolean]> = [
      [3, 3, false],
      [1, 2, false],
      [4, 0, true],
    ];
    for (const [commit, want, wantPanic] of cases) {
      const log = newLog(new MemoryStorage());
      log.append(index(1).terms(1, 2, 3));
      log.committed = 2;
      if (wantPanic) {
        expect(() => log.commitTo(commit)).toThrow(/tocommit\(4\) is out of range/);
      } else {
        log.commitTo(commit);
        expect(log.committed).toBe(want);
      }
    }
  });

  it('TestStableTo', () => {
    const cases: Array<[number, number, number]> = [
      [1, 1, 2],
      [2, 2, 3],
      [2, 1, 1],
      [3, 1, 1],
    ];
    for (const [i, term, want] of cases) {
      const log = newLog(new MemoryStorage());
      log.append(index(1).terms(1, 2));
      log.stableTo({ term, index: i });
      expect(log.unstable.offset).toBe(want);
    }
  });

  it('TestStableToWithSnap', async () => {
    const si = 5;
    const st = 2;
    const cases: Array<[number, number, Entry[], number]> = [
      [si + 1, st, [], si + 1],
      [si, st, [], si + 1],
      [si - 1, st, [], si + 1],
      [si + 1, st + 1, [], si + 1],
      [si, st + 1, [], si + 1],
      [si - 1, st + 1, [], si + 1],
      [si + 1, st, index(si + 1).terms(st), si + 2],
      [si, st, index(si + 1).terms(st), si + 1],
      [si - 1, st, index(si + 1).terms(st), si + 1],
      [si + 1, st + 1, index(si + 1).terms(st), si + 1],
      [si, st + 1, index(si + 1).terms(st), si + 1],
      [si - 1, st + 1, index(si + 1).terms(st), si + 1],
    ];
    for (const [i, term, entries, want] of cases) {
      const storage = new MemoryStorage();
      await storage.applySnapshot(snapshotAt(si, st));
      const log = newLog(storage);
      log.append(entries);
      log.stableTo({ term, index: i });
      expect(log.unstable.offset).toBe(want);
    }
  });

  it('TestCompaction', async () => {
    const cases: Array<[number, number[], number[], boolean]> = [
      [1000, [1001], [-1], false],
      [1000, [300, 500, 800, 900], [700, 500, 200, 100], true],
      [1000, [300, 299], [700, -1], false],
    ];
    for (const [lastIndex, compacts, wantLeft, allowed] of cases) {
      const storage = new MemoryStorage();
      await storage.append(termRange(1, 1, lastIndex + 1));
      const log = newLog(storage);
      log.maybeCommit({ term: 0, index: lastIndex }); // a no-op in Go too
      log.appliedTo(log.committed, 0);
      for (let j = 0; j < compacts.length; j++) {
        try {
          await storage.compact(compacts[j]!);
        } catch {
          expect(allowed).toBe(false);
          continue;
        }
        expect(log.allEntries().length).toBe(wantLeft[j]);
      }
    }
  });

  it('TestLogRestore', async () => {
    const storage = new MemoryStorage();
    await storage.applySnapshot(snapshotAt(1000, 1000));
    const log = newLog(storage);
    expect(log.allEntries().length).toBe(0);
    expect(log.firstIndex()).toBe(1001);
    expect(log.committed).toBe(1000);
    expect(log.unstable.offset).toBe(1001);
    expect(log.term(1000)).toBe(1000);
  });

  it('TestIsOutOfBounds (via slice)', async () => {
    const offset = 100;
    const num = 100;
    const storage = new MemoryStorage();
    await storage.applySnapshot(snapshotAt(offset, 0));
    const log = newLog(storage);
    log.append(termRange(offset + 1, offset + 1, offset + num + 1));
    const first = offset + 1;
    const cases: Array<[number, number, 'panic' | 'compacted' | 'ok']> = [
      [first - 2, first + 1, 'compacted'],
      [first - 1, first + 1, 'compacted'],
      [first, first, 'ok'],
      [first + num / 2, first + num / 2, 'ok'],
      [first + num - 1, first + num - 1, 'ok'],
      [first + num, first + num, 'ok'],
      [first + num, first + num + 1, 'panic'],
      [first + num + 1, first + num + 1, 'panic'],
    ];
    for (const [lo, hi, want] of cases) {
      let outcome: string = 'ok';
      try {
        log.slice(lo, hi, NO_LIMIT);
      } catch (error) {
        outcome = isReplicaLogError(error, ErrorCode.Compacted) ? 'compacted' : 'panic';
      }
      expect(outcome, `[${lo}, ${hi})`).toBe(want);
    }
  });

  it('TestTerm', async () => {
    const offset = 100;
    const num = 100;
    const storage = new MemoryStorage();
    await storage.applySnapshot(snapshotAt(offset, 1));
    const log = newLog(storage);
    log.append(termRange(offset + 1, 1, num));
    expect(termOrCode(log, offset - 1)).toBe(ErrorCode.Compacted);
    expect(termOrCode(log, offset)).toBe(1);
    expect(termOrCode(log, offset + num / 2)).toBe(num / 2);
    expect(termOrCode(log, offset + num - 1)).toBe(num - 1);
    expect(termOrCode(log, offset + num)).toBe(ErrorCode.Unavailable);
  });

  it('TestTermWithUnstableSnapshot', async () => {
    const storageSnap = 100;
    const unstableSnap = storageSnap + 5;
    const storage = new MemoryStorage();
    await storage.applySnapshot(snapshotAt(storageSnap, 1));
    const log = newLog(storage);
    log.restore(snapshotAt(unstableSnap, 1));
    expect(termOrCode(log, storageSnap)).toBe(ErrorCode.Compacted);
    expect(termOrCode(log, storageSnap + 1)).toBe(ErrorCode.Compacted);
    expect(termOrCode(log, unstableSnap - 1)).toBe(ErrorCode.Compacted);
    expect(termOrCode(log, unstableSnap)).toBe(1);
    expect(termOrCode(log, unstableSnap + 1)).toBe(ErrorCode.Unavailable);
  });

  it('TestSlice', async () => {
    const offset = 100;
    const num = 100;
    const last = offset + num;
    const half = offset + num / 2;
    const halfSize = entrySize({ type: 0, index: half, term: half });
    const entries = (from: number, to: number) => termRange(from, from, to);
    const storage = new MemoryStorage();
    await storage.applySnapshot(snapshotAt(offset, 0));
    await storage.append(entries(offset + 1, half));
    const log = newLog(storage);
    log.append(entries(half, last));
    const cases: Array<[number, number, number, Entry[] | 'compacted' | 'panic']> = [
      [offset - 1, offset + 1, NO_LIMIT, 'compacted'],
      [offset, offset + 1, NO_LIMIT, 'compacted'],
      [half, half - 1, NO_LIMIT, 'panic'],
      [last, last + 1, NO_LIMIT, 'panic'],
      [offset + 1, offset + 1, NO_LIMIT, []],
      [offset + 1, half - 1, NO_LIMIT, entries(offset + 1, half - 1)],
      [offset + 1, half, NO_LIMIT, entries(offset + 1, half)],
      [offset + 1, half + 1, NO_LIMIT, entries(offset + 1, half + 1)],
      [offset + 1, last, NO_LIMIT, entries(offset + 1, last)],
      [half - 1, half, NO_LIMIT, entries(half - 1, half)],
      [half - 1, half + 1, NO_LIMIT, entries(half - 1, half + 1)],
      [half - 1, last, NO_LIMIT, entries(half - 1, last)],
      [half, half + 1, NO_LIMIT, entries(half, half + 1)],
      [half, last, NO_LIMIT, entries(half, last)],
      [last - 1, last, NO_LIMIT, entries(last - 1, last)],
      [offset + 1, last, 0, entries(offset + 1, offset + 2)],
      [half - 1, half + 1, 0, entries(half - 1, half)],
      [half, last, 0, entries(half, half + 1)],
      [half + 1, last, 0, entries(half + 1, half + 2)],
      [offset + 1, last, halfSize - 1, entries(offset + 1, offset + 2)],
      [half - 1, half + 1, halfSize - 1, entries(half - 1, half)],
      [half, last, halfSize - 1, entries(half, half + 1)],
      [offset + 1, last, halfSize, entries(offset + 1, offset + 2)],
      [half - 1, half + 1, halfSize, entries(half - 1, half)],
      [half, last, halfSize, entries(half, half + 1)],
      [offset + 1, last, halfSize + 1, entries(offset + 1, offset + 2)],
      [half - 1, half + 1, halfSize + 1, entries(half - 1, half)],
      [half, last, halfSize + 1, entries(half, half + 1)],
      [offset + 1, last, halfSize * 2, entries(offset + 1, offset + 3)],
      [half - 2, half + 1, halfSize * 2, entries(half - 2, half)],
      [half - 1, half + 1, halfSize * 2, entries(half - 1, half + 1)],
      [half, last, halfSize * 2, entries(half, half + 2)],
      [half - 2, half + 1, halfSize * 3 - 1, entries(half - 2, half)],
      [half - 1, half + 2, halfSize * 3, entries(half - 1, half + 2)],
    ];
    for (const [lo, hi, limit, want] of cases) {
      let got: Entry[] | string;
      try {
        got = log.slice(lo, hi, limit);
      } catch (error) {
        got = isReplicaLogError(error, ErrorCode.Compacted) ? 'compacted' : 'panic';
      }
      expect(got, `[${lo}, ${hi}) limit ${limit}`).toEqual(want);
    }
  });

  it('TestScan', async () => {
    const offset = 47;
    const num = 20;
    const last = offset + num;
    const half = offset + num / 2;
    const entries = (from: number, to: number) => termRange(from, from, to);
    const size = entsSize(entries(half, half + 1));
    const storage = new MemoryStorage();
    await storage.applySnapshot(snapshotAt(offset, 0));
    await storage.append(entries(offset + 1, half));
    const log = newLog(storage);
    log.append(entries(half, last));
    for (const pageSize of [0, 1, 10, 100, size, size + 1]) {
      for (let lo = offset + 1; lo < last; lo++) {
        for (let hi = lo; hi <= last; hi++) {
          const got: Entry[] = [];
          log.scan(lo, hi, pageSize, (page) => {
            got.push(...page);
            expect(page.length === 1 || entsSize(page) <= pageSize).toBe(true);
            return true;
          });
          expect(got).toEqual(log.slice(lo, hi, NO_LIMIT));
        }
      }
    }
    let iterations = 0;
    log.scan(offset + 1, half, 0, () => {
      iterations++;
      return iterations !== 2;
    });
    expect(iterations).toBe(2);
    log.scan(offset + 1, offset + 11, size * 2, (page) => {
      expect(page.length).toBe(2);
      expect(entsSize(page)).toBe(size * 2);
      return true;
    });
  });
});
