/**
 * Smoke test of the bench (scripts/bench-lib.ts) at a tiny size: every measurement must be a
 * finite positive number and the JSON line must carry every key. No timing assertions: speed is
 * measured by `npm run bench`, never in a test.
 */
import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { jsonLine, formatTable, RATIO_NAMES, runBench, tinyConfig } from '../scripts/bench-lib.js';
import { makeTempDir, removeTempDirs } from './helpers/temp-dir.js';

afterEach(() => removeTempDirs());

describe('bench (tiny)', () => {
  it('produces a finite positive number for every measurement and a complete JSON line', async () => {
    const config = tinyConfig(makeTempDir('replicalog-bench-'));
    const result = await runBench(config);

    const expected = [
      'raw1', 'raw16', 'level1', 'level16', 'level256', 'floor256', 'seq16', 'append1', 'append16', 'append256', 'append1x16',
      'entries_store', 'entries_memory', 'term_store', 'term_memory', 'entries_store_uncached',
      'open', 'open_scan', 'raw_read', 'raw_read_decode', 'index_bytes', 'index_bytes_worst',
    ];
    expect(Object.keys(result.measurements).sort()).toEqual([...expected].sort());
    for (const [name, measurement] of Object.entries(result.measurements)) {
      expect(measurement.samples.length, name).toBe(config.reps);
      for (const value of [measurement.median, ...measurement.samples]) {
        expect(Number.isFinite(value) && value > 0, `${name}: ${value}`).toBe(true);
      }
    }

    const line = jsonLine(result);
    expect(line).not.toContain('\n');
    const json = JSON.parse(line) as Record<string, unknown>;
    for (const key of ['ratios', 'open_1m_seconds', 'index_bytes_per_entry', 'machine', 'quick']) expect(json, key).toHaveProperty(key);
    const ratios = json.ratios as Record<string, unknown>;
    expect(Object.keys(ratios).sort()).toEqual([...RATIO_NAMES].sort());
    for (const name of RATIO_NAMES) {
      const value = ratios[name];
      expect(typeof value === 'number' && Number.isFinite(value) && value > 0, `${name}: ${String(value)}`).toBe(true);
    }
    expect(json.open_1m_seconds).toBeNull(); // not a 1 M-entry run
    expect(json.quick).toBe(true);
    const indexBytes = json.index_bytes_per_entry;
    expect(typeof indexBytes === 'number' && Number.isFinite(indexBytes) && indexBytes > 0).toBe(true);
    expect(typeof (json.machine as Record<string, unknown>).node).toBe('string');
    expect(json.coalesced16_over_append1).toBe(result.measurements.append1x16!.median / result.measurements.append1!.median);

    // The scratch root is removed once empty (no stray .bench-scratch left in a checkout).
    expect(existsSync(config.root)).toBe(false);

    const table = formatTable(result);
    for (const name of RATIO_NAMES) expect(table).toMatch(new RegExp(`${name}\\s.*(PASS|MISS)`));
  }, 20_000);
});

describe('storage bench (tiny)', () => {
  it('measures every figure for a small storage, in a child process under ulimit -n 1024', async () => {
    const { runStorageBench, formatStorage } = await import('../scripts/bench-storage.js');
    const lines: string[] = [];
    const [result] = await runStorageBench({ root: makeTempDir('replicalog-bench-storage-'), partitions: [12], log: (line) => lines.push(line) });
    expect(result!.partitions).toBe(12);
    for (const [name, value] of Object.entries(result!)) {
      // A GC can shrink memory below the baseline; 12 partitions' barriers are fsyncs, not syncfs.
      if (['idleRssKiBPerPartition', 'idleHeapKiBPerPartition', 'fileSystemSyncsConcurrent'].includes(name)) expect(Number.isFinite(value) && value >= -1024, name).toBe(true);
      else expect(Number.isFinite(value) && value > 0, `${name}: ${value}`).toBe(true);
    }
    expect(result!.descriptorLimit).toBe(1024);
    expect(result!.kvBatchesConcurrent).toBeLessThan(12); // the concurrent hard states shared batches
    expect(formatStorage([result!])).toContain('| 12 |');
    expect(lines.length).toBe(3);
  }, 60_000);
});
