/**
 * The conformance suite's own contract (issue 17): any modelRuns >= 1 works (a fixed sequence
 * reaches every write's successful path), a bad value is refused with a clear coded error, and
 * TempDirs removes what it made.
 */
import { existsSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MemoryStorage } from '../lib/memory-storage.js';
import { storageConformance, TempDirs } from './conformance.js';

storageConformance('MemoryStorage with modelRuns 1', { open: async () => new MemoryStorage(), modelRuns: 1 });

describe('storageConformance options', () => {
  it.each([0, -1, 1.5, Number.NaN, 2 ** 53])('refuses modelRuns %s with ERR_INVALID_ARGUMENT before defining anything', (modelRuns) => {
    expect(() => storageConformance('Bad', { open: async () => new MemoryStorage(), modelRuns })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining('modelRuns must be an integer >= 1') }),
    );
  });

  it('TempDirs removes every directory it made, read-only files included', () => {
    const dirs = new TempDirs();
    const made = [dirs.make(), dirs.make('replicalog-other-')];
    writeFileSync(join(made[0]!, 'RAFT'), 'x');
    chmodSync(join(made[0]!, 'RAFT'), 0o400);
    expect(made.every((dir) => existsSync(dir))).toBe(true);
    dirs.removeAll();
    expect(made.filter((dir) => existsSync(dir))).toEqual([]);
  });
});
