/**
 * Smoke test of the migration bench (scripts/bench-migration.ts) at a tiny size: the real CLI
 * migrates and verifies a pre-Raft tree as child processes, and every figure is a finite positive
 * number. No timing assertions: speed is measured by `npm run bench`, never in a test.
 */
import { existsSync, readdirSync } from 'node:fs';
import { afterEach, beforeAll, expect, it } from 'vitest';
import { formatMigration, formatStorageMigration, measureChild, runMigrationBench, runStorageMigrationBench } from '../scripts/bench-migration.js';
import { ensureBuilt } from './cli/harness.js';
import { makeTempDir, removeTempDirs } from './helpers/temp-dir.js';

beforeAll(ensureBuilt, 120_000);
afterEach(removeTempDirs);

it('migrates and verifies a pre-Raft tree in child processes and reports entries/s and peak RSS for each', async () => {
  const root = makeTempDir('replicalog-bench-migration-');
  const created: string[] = [];
  const result = await runMigrationBench({ root, entries: 120, onRunDirectory: (path) => created.push(path) });
  expect(result.entries).toBe(120);
  expect(result.payloadFiles).toBeGreaterThan(0);
  for (const run of [result.migrate, result.verify]) {
    expect(Number.isFinite(run.seconds) && run.seconds > 0).toBe(true);
    expect(run.entriesPerSecond).toBeCloseTo(120 / run.seconds, 6);
    // A Node process holds at least a few MiB resident; below 1 MiB the figure would be in the wrong unit.
    expect(run.peakRssBytes).toBeGreaterThan(2 ** 20);
    expect(run.peakRssBytes).toBeLessThan(2 ** 34);
  }
  expect(formatMigration(result)).toMatch(/migrate .* entries\/s\s+peak RSS \d+ MiB/);
  // The tree is removed afterwards.
  expect(created).toHaveLength(1);
  expect(existsSync(created[0]!)).toBe(false);
  expect(readdirSync(root)).toEqual([]);
}, 60_000);

it('a child that fails is reported with its exit status and stderr', async () => {
  const root = makeTempDir('replicalog-bench-migration-');
  await expect(measureChild(['verify', `${root}/missing`], `${root}/rss`)).rejects.toThrow(/verify .*missing exited 2: replicalog: .*missing: no such directory/);
}, 30_000);

it('a storage of small partitions: migrate, migrate again and verify in child processes, partitions/s and peak RSS for each', async () => {
  const root = makeTempDir('replicalog-bench-storage-migration-');
  const created: string[] = [];
  const result = await runStorageMigrationBench({ root, partitions: 12, entriesPerPartition: 3, onRunDirectory: (path) => created.push(path) });
  expect(result).toMatchObject({ partitions: 12, entriesPerPartition: 3, entries: 36 });
  for (const run of [result.migrate, result.rerun, result.verify]) {
    expect(Number.isFinite(run.seconds) && run.seconds > 0).toBe(true);
    expect(run.partitionsPerSecond).toBeCloseTo(12 / run.seconds, 6);
    expect(run.entriesPerSecond).toBeCloseTo(36 / run.seconds, 6);
    expect(run.peakRssBytes).toBeGreaterThan(2 ** 20);
    expect(run.peakRssBytes).toBeLessThan(2 ** 34);
  }
  expect(formatStorageMigration(result)).toMatch(/^migrate .* partitions\/s .* entries\/s\s+peak RSS \d+ MiB$/m);
  expect(created).toHaveLength(1);
  expect(existsSync(created[0]!)).toBe(false);
}, 60_000);
