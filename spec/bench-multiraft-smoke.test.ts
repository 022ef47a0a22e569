/**
 * Smoke test of `npm run bench:multiraft` (scripts/bench-multiraft.ts) in a tiny configuration:
 * 3 nodes with 4 groups, a 1 s idle window. It checks that the harness produces a well-formed
 * result (every group led and quiesced, figures present) and leaves no directory behind. No
 * timing assertions: speed is measured by the benchmark, never in a test.
 */
import { readdirSync } from 'node:fs';
import { afterEach, beforeAll, expect, it } from 'vitest';
import { formatMultiRaft, runMultiRaftCase } from '../scripts/bench-multiraft.js';
import { makeTempDir, removeTempDirs } from './helpers/temp-dir.js';
import { ensureBuilt } from './node/build.js';

beforeAll(async () => {
  await ensureBuilt();
}, 120_000);
afterEach(() => removeTempDirs());

it('measures a quiesced 3-node cluster of 4 groups and cleans up', async () => {
  const root = makeTempDir('replicalog-bench-multiraft-smoke-');
  const result = await runMultiRaftCase({ groups: 4, quiesce: true }, { seconds: 1, root, tickMs: 50, log: () => undefined });
  expect(result.groups).toBe(4);
  expect(result.nodes.map((node) => node.id)).toEqual([1, 2, 3]);
  expect(result.nodes.reduce((sum, node) => sum + node.leading, 0)).toBe(4);
  for (const node of result.nodes) {
    expect(node.quiesced).toBe(4);
    expect(node.messagesPerSecond).toBe(0);
    expect(node.framesPerSecond).toBeGreaterThan(0);
    expect(node.cpuShare).toBeGreaterThanOrEqual(0);
    expect(node.rssMiB).toBeGreaterThan(0);
  }
  expect(formatMultiRaft([result])).toContain('| 4 | on |');
  expect(readdirSync(root)).toEqual([]);
}, 120_000);
