/**
 * The README's Ready loop is examples/single-node.ts, run here: a fresh store is bootstrapped,
 * elects itself, applies proposals; a restart (no bootstrap) reads the log back and applies a new
 * proposal after the old ones. The README shows the file verbatim (checked here).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { runSingleNode } from '../examples/single-node.js';
import { ReplicaLogStore } from '../lib/replica-log-store.js';
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
