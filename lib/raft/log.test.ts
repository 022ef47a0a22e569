import { describe, expect, it } from 'vitest';
import { MemoryStorage } from '../memory-storage.js';
import { EntryType, type Storage } from '../types.js';
import { RaftLog, hasErrorCode, isOutOfBoundsError } from './log.js';
import { silentLogger } from './logger.js';

describe('RaftLog storage errors', () => {
  it('recognises sentinels by their code, whatever the error class', () => {
    const foreign = Object.assign(new Error('compacted elsewhere'), { code: 'ERR_COMPACTED' });
    expect(hasErrorCode(foreign, 'ERR_COMPACTED')).toBe(true);
    expect(isOutOfBoundsError(foreign)).toBe(true);
    expect(isOutOfBoundsError(new Error('plain'))).toBe(false);
    expect(isOutOfBoundsError(undefined)).toBe(false);
  });

  it('treats a foreign ERR_COMPACTED from term() as "no match" and rethrows anything else', async () => {
    const inner = new MemoryStorage();
    await inner.append([{ type: EntryType.Normal, term: 1, index: 1 }]);
    let failure: Error = Object.assign(new Error('gone'), { code: 'ERR_COMPACTED' });
    const storage: Storage = {
      initialState: () => inner.initialState(),
      entries: (lo, hi, maxSize) => inner.entries(lo, hi, maxSize),
      term: () => {
        throw failure;
      },
      firstIndex: () => inner.firstIndex(),
      lastIndex: () => inner.lastIndex(),
      snapshot: () => inner.snapshot(),
    };
    const log = new RaftLog(storage, silentLogger);
    expect(log.matchTerm({ term: 1, index: 1 })).toBe(false);
    failure = new Error('EIO: disk gone');
    expect(() => log.matchTerm({ term: 1, index: 1 })).toThrow('EIO: disk gone');
  });
});
