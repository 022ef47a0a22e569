/**
 * `replicalog verify DIR --against OTHER` (issue 14 item 11): two replicas' logs compared entry
 * by entry; a committed difference is a problem (exit 1), a difference in an uncommitted tail a
 * notice, and only the indexes both hold are compared.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ReplicaLogStore } from '../lib/replica-log-store.js';
import { EntryType, type Entry } from '../lib/types.js';
import { compareReplicas } from '../lib/verify-against.js';
import { ensureBuilt, runCli } from './cli/harness.js';
import { makeTempDir, removeTempDirs } from './helpers/temp-dir.js';

const entry = (index: number, term: number, text = `value-${index}`): Entry => ({ index, term, type: EntryType.Normal, data: new TextEncoder().encode(text) });

/** A replica holding `entries` with `commit`, compacted to `compactTo` when given. */
async function replica(entries: Entry[], commit: number, compactTo?: number): Promise<string> {
  const dir = makeTempDir('replicalog-against-');
  const store = await ReplicaLogStore.open({ dir });
  await store.append(entries);
  await store.setHardState({ term: entries.at(-1)!.term, vote: 0, commit });
  if (compactTo !== undefined) await store.compact(compactTo);
  await store.close();
  return dir;
}

const log = (terms: number[]) => terms.map((term, position) => entry(position + 1, term));

beforeAll(ensureBuilt, 120_000);
afterEach(removeTempDirs);

describe('compareReplicas', () => {
  it('finds nothing between equal replicas, also when one is compacted further', async () => {
    const a = await replica(log([1, 1, 2, 2, 2]), 5);
    const b = await replica(log([1, 1, 2, 2, 2]), 5, 3);
    const result = await compareReplicas(a, b);
    expect(result).toMatchObject({ ok: true, differenceCount: 0, compared: { first: 4, last: 5 } });
  });

  it.each([
    { name: 'a committed term', theirs: [1, 1, 3, 3, 3], commit: 5, expected: { index: 3, committed: true, what: 'term 2 vs 3' }, ok: false },
    { name: 'an uncommitted tail', theirs: [1, 1, 2, 3, 3], commit: 3, expected: { index: 4, committed: false, what: 'term 2 vs 3' }, ok: true },
  ])('reports $name at its index', async ({ theirs, commit, expected, ok }) => {
    const a = await replica(log([1, 1, 2, 2, 2]), commit);
    const b = await replica(log(theirs), commit);
    const result = await compareReplicas(a, b);
    expect(result.ok).toBe(ok);
    expect(result.differences[0]).toMatchObject(expected);
  });

  it('reports different data with the same term', async () => {
    const a = await replica([entry(1, 1), entry(2, 1, 'ours')], 2);
    const b = await replica([entry(1, 1), entry(2, 1, 'theirs!')], 2);
    const result = await compareReplicas(a, b);
    expect(result.differences).toEqual([{ index: 2, lsn: '0000000000002', committed: true, what: 'data (4 vs 7 bytes)' }]);
  });
});

describe('replicalog verify --against', () => {
  it('exits 0 for equal replicas and 1 for a committed difference, naming the LSN', async () => {
    const a = await replica(log([1, 1, 2]), 3);
    const same = await replica(log([1, 1, 2]), 3);
    const other = await replica(log([1, 2, 2]), 3);
    const clean = await runCli(['verify', a, '--against', same]);
    expect(clean.code).toBe(0);
    expect(clean.stdout).toContain('the same log (3 entries compared (1..3))');
    const bad = await runCli(['verify', a, '--against', other]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/COMMITTED_DIFFERS\s+0000000000002\s+index 2: term 1 vs 2/);
    const asJson = await runCli(['verify', a, '--against', other, '--json']);
    expect(JSON.parse(asJson.stdout)).toMatchObject({ ok: false, differenceCount: 1 });
  });
});
