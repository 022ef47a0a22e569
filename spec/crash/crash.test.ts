/**
 * Kill tests with real processes (issue priority 1): a child process (scripts/crash-driver.ts,
 * compiled by ./build-driver.ts) drives the store with a seeded sequence of writes and is
 * SIGKILLed at every named crash point (several occurrences each), at seeded random moments
 * over several generations on the same directory, during the recovery that follows a kill, and
 * during backfill. The checks are scripts/crash.ts's: every acknowledged write is there byte
 * for byte (replayed on MemoryStorage), the write in flight is before / after (or, for an
 * append, a contiguous prefix: the store's documented behaviour, counted), verifyTree finds
 * nothing open does not repair, and the store writes again. More seeds: npm run crash.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CRASH_POINTS } from '../../lib/wal/log-manager.js';
import {
  backfillSeed,
  crashPointSeed,
  killAllChildren,
  newTotals,
  randomKillSeed,
  type SeedOptions,
  type Totals,
} from '../../scripts/crash.js';
import { buildDriver, type BuiltDriver } from './build-driver.js';

/** CI seeds: each gives ~30-45 kills (write path + recovery) and 3 random-moment generations. */
const SEEDS = [1, 2, 3, 4, 5, 6, 7];
const OPS = 16;

let built: BuiltDriver;
let root: string;
let made = 0;
const totals: Totals = newTotals();

function options(seed: number, allowPrefix = true): SeedOptions {
  return {
    driver: built.driver,
    seed,
    ops: OPS,
    occurrencesPerPoint: 2,
    randomGenerations: 3,
    recoveryKills: true,
    // Even seeds: a checkpoint in KV with nearly every hard state and at close (lib: "Checkpoint").
    ...(seed % 2 === 0 ? { checkpointInterval: 1 } : {}),
    // Seed 6: journal mode (lib/wal/journal.ts), its record and checkpoint kill points included.
    ...(seed % 6 === 0 ? { journal: true } : {}),
    check: { allowPrefix },
    tempDir: () => join(root, `${seed}-${made++}`),
  };
}

/** At most two seeds at a time: each one is a chain of short child processes. */
let slots = 2;
const waiting: (() => void)[] = [];
async function withSlot<T>(run: () => Promise<T>): Promise<T> {
  while (slots === 0) await new Promise<void>((resolve) => waiting.push(resolve));
  slots--;
  try {
    return await run();
  } finally {
    slots++;
    waiting.shift()?.();
  }
}

beforeAll(() => {
  built = buildDriver();
  root = mkdtempSync(join(tmpdir(), 'replicalog-crash-'));
});

afterAll(() => {
  killAllChildren();
  built?.remove();
  if (root !== undefined) rmSync(root, { recursive: true, force: true });
});

describe('SIGKILL at every crash point, at random moments and during recovery', () => {
  it.concurrent.each(SEEDS)(
    'seed %i: every acknowledged write survives, the write in flight is all or nothing (or a batch prefix)',
    async (seed) => {
      await withSlot(async () => {
        const before = totals.kills;
        await crashPointSeed(options(seed), totals);
        await randomKillSeed(options(seed), totals, 40);
        expect(totals.kills - before).toBeGreaterThan(20);
      });
    },
    400_000,
  );

  it.concurrent('backfill of a pre-Raft fixture killed at each backfill step and at random moments resumes to the uninterrupted result', async () => {
    await withSlot(async () => {
      const before = totals.backfillKills;
      await backfillSeed(options(11), totals, 10);
      expect(totals.backfillKills - before).toBeGreaterThanOrEqual(9);
    });
  }, 400_000);
});

describe('totals', () => {
  it('at least 200 kills survived, every crash point killed at least once, no acknowledged write lost', () => {
    // Printed for the report / CI log.
    console.log(`crash totals: ${JSON.stringify(totals)}`);
    expect(totals.kills).toBeGreaterThanOrEqual(200);
    expect(totals.lost).toBe(0);
    const notKilled = CRASH_POINTS.filter((point) => (totals.killedAt[point] ?? 0) === 0);
    expect(notKilled).toEqual([]);
    // Both outcomes of an interrupted write occur (the kills land before and after the commit point).
    expect(totals.variants.before).toBeGreaterThan(0);
    expect(totals.variants.after).toBeGreaterThan(0);
    // The reopen after a kill took terms from a checkpoint in KV (even seeds) and scanned without one.
    expect(totals.checkpoint.used).toBeGreaterThan(0);
    expect(totals.checkpoint.absent).toBeGreaterThan(0);
  });
});

describe('strict atomicity (the issue\'s rule: an unacknowledged write is never half-visible)', () => {
  // STORE DESIGN GAP (reported): an append is not atomic across a crash. log-manager.ts
  // publishStaged renames a batch's entries into wal/ one by one (step 4) and truncateTail
  // renames the old tail out one by one (step 3); a SIGKILL between two renames leaves a batch
  // prefix, or an old tail cut short, visible after the reopen. Raft tolerates both (the lost
  // entries were unacknowledged or about to be overwritten), but the issue asks for
  // all-or-nothing. Remove `.fails` once appends are atomic (e.g. a KV intent naming the staged
  // batch, rolled forward at open).
  it.fails('kills between the renames of a batch or of a truncated tail leave nothing half-visible', async () => {
    const strictTotals = newTotals();
    try {
      for (const seed of [1, 2]) await crashPointSeed({ ...options(seed, false), recoveryKills: false }, strictTotals);
    } catch (error) {
      // Only the known gap counts as the expected failure; anything else makes this test pass,
      // which it.fails reports as a failure (with the message below).
      if (/half-visible/.test((error as Error).message)) throw error;
      console.error(`strict kill test failed for another reason: ${(error as Error).message}`);
    }
  }, 120_000);
});
