/**
 * Kill tests of a storage (issue 19): a driver process (scripts/crash-driver.ts with
 * `partitions`) opens a ReplicaLogStorage and has partitions 1..3 run their own seeded write
 * sequences at once, so their hard states share KV batches and their appends share syncfs
 * passes; it is SIGKILLed at every named crash point (the occurrence counted over every
 * partition, so the kill lands while the others are mid-write) and at seeded random moments
 * over several generations on the same storage (seed 1 in journal mode), and (seed 2) while it
 * reopens the storage after such a kill. After each kill the storage is reopened through
 * ReplicaLogStorage and every partition is checked on its own (scripts/crash.ts
 * checkCrashedStorage): every write acknowledged to it is there byte for byte, its write in
 * flight is before / after / a batch prefix, it holds nothing of another partition, verify
 * finds nothing after the reopen, and it writes again. More seeds: npm run crash -- --partitions 3.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crashPointSeed, killAllChildren, newTotals, randomKillSeed, type SeedOptions, type Totals } from '../../scripts/crash.js';
import { buildDriver, type BuiltDriver } from './build-driver.js';

const PARTITIONS = 3;
const OPS = 10;

let built: BuiltDriver;
let root: string;
let made = 0;
const totals: Totals = newTotals();

function options(seed: number): SeedOptions {
  return {
    driver: built.driver,
    seed,
    ops: OPS,
    occurrencesPerPoint: 2,
    randomGenerations: 3,
    // Seed 2 also kills the driver while it reopens the storage after a kill (its partitions' repairs).
    recoveryKills: seed === 2,
    partitions: PARTITIONS,
    // Seed 1: journal mode (each partition's records; its checkpoints share the syncfs passes).
    // Seed 2: a checkpoint in KV with nearly every hard state (shared batches carry them too).
    ...(seed === 1 ? { journal: true } : { checkpointInterval: 1 }),
    check: { allowPrefix: true },
    tempDir: () => join(root, `${seed}-${made++}`),
  };
}

beforeAll(() => {
  built = buildDriver();
  root = mkdtempSync(join(tmpdir(), 'replicalog-crash-storage-'));
});

afterAll(() => {
  killAllChildren();
  built?.remove();
  if (root !== undefined) rmSync(root, { recursive: true, force: true });
});

describe('SIGKILL of a storage whose partitions write at once', () => {
  // The two seeds at once (each is a chain of short child processes): one per core.
  it.concurrent.each([1, 2])(
    'seed %i: every partition keeps every write acknowledged to it, its write in flight is all or nothing (or a batch prefix)',
    async (seed) => {
      const before = totals.kills;
      const acknowledged = totals.acknowledged;
      await crashPointSeed(options(seed), totals);
      await randomKillSeed(options(seed), totals, 60);
      expect(totals.kills - before).toBeGreaterThan(15);
      if (seed === 2) expect(totals.recoveryKills).toBeGreaterThan(0);
      expect(totals.acknowledged - acknowledged).toBeGreaterThan(50);
    },
    400_000,
  );

  it('totals: kills at the write path\'s crash points, both outcomes of an interrupted write, nothing lost', () => {
    console.log(`storage crash totals: ${JSON.stringify(totals)}`);
    expect(totals.lost).toBe(0);
    for (const point of ['before-rename', 'before-wal-fsync', 'before-kv-write', 'after-wal-fsync', 'after-journal-fsync']) expect(totals.killedAt[point] ?? 0).toBeGreaterThan(0);
    expect(totals.variants.before).toBeGreaterThan(0);
    expect(totals.variants.after).toBeGreaterThan(0);
  });
});
