/**
 * The README's Ready loops are examples/single-node.ts and examples/three-nodes.ts, run here.
 * One node: a fresh store is bootstrapped, elects itself, applies proposals; a restart (no
 * bootstrap) reads the log back and applies a new proposal after the old ones. Three nodes in
 * one process: a leader is elected, and every node applies the proposals in order and holds the
 * same log on disk. The README shows both files verbatim (checked here).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { runSingleNode } from '../examples/single-node.js';
import { runThreeNodes } from '../examples/three-nodes.js';
import { ReplicaLogStore } from '../lib/replica-log-store.js';
import { EntryType } from '../lib/types.js';
import { compareReplicas } from '../lib/verify-against.js';
import { REPO_ROOT } from './cli/harness.js';
import { makeTempDir, removeTempDirs } from './helpers/temp-dir.js';

afterAll(removeTempDirs);

it('the single-node Ready loop bootstraps once, applies proposals, and restarts without bootstrapping', async () => {
  const dir = makeTempDir('replicalog-example-');
  expect(await runSingleNode(dir, ['a', 'b'])).toEqual(['a', 'b']);
  // Restart without bootstrap: this state machine starts empty (applied 0), so raft hands out
  // every committed entry again, in order, and the new proposal follows (a real state machine
  // restores from its snapshot and passes `applied` to RawNode).
  const again = await runSingleNode(dir, ['c']);
  expect(again).toEqual(['a', 'b', 'c']);
  const store = await ReplicaLogStore.open({ dir });
  expect(store.initialState().hardState.commit).toBeGreaterThanOrEqual(4);
  await store.close();
});

it('the README shows examples/single-node.ts verbatim', () => {
  const example = readFileSync(join(REPO_ROOT, 'examples', 'single-node.ts'), 'utf8').replace("from '../index.js'", "from 'replicalog'");
  expect(readFileSync(join(REPO_ROOT, 'README.md'), 'utf8')).toContain(example.trimEnd());
});

it('three nodes in one process elect a leader and all apply the same proposals in the same order', async () => {
  const dirs = [makeTempDir('replicalog-example-1-'), makeTempDir('replicalog-example-2-'), makeTempDir('replicalog-example-3-')];
  const values = ['x', 'y', 'z'];
  const { leader, applied } = await runThreeNodes(dirs, values);
  expect([1, 2, 3]).toContain(leader);
  expect([...applied.keys()].sort()).toEqual([1, 2, 3]);
  for (const [id, list] of applied) expect(list, `node ${id}`).toEqual(values);
  // On disk: the three logs hold the same entries (term for term, data for data), and each
  // replica's saved commit covers the proposals (bootstrap 1..3, the leader's empty entry, x y z).
  for (const other of dirs.slice(1)) {
    const comparison = await compareReplicas(dirs[0]!, other);
    expect(comparison.differences).toEqual([]);
    expect(comparison.ok).toBe(true);
  }
  for (const dir of dirs) {
    const store = await ReplicaLogStore.open({ dir });
    const data = store.entries(store.firstIndex(), store.lastIndex() + 1).flatMap((entry) => (entry.type === EntryType.Normal && entry.data?.length ? [new TextDecoder().decode(entry.data)] : []));
    expect(data, dir).toEqual(values);
    expect(store.initialState().confState.voters).toEqual([1, 2, 3]);
    await store.close();
  }
}, 30_000);

it('the README shows examples/three-nodes.ts verbatim', () => {
  const example = readFileSync(join(REPO_ROOT, 'examples', 'three-nodes.ts'), 'utf8').replace("from '../index.js'", "from 'replicalog'");
  expect(readFileSync(join(REPO_ROOT, 'README.md'), 'utf8')).toContain(example.trimEnd());
});
