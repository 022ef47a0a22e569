/**
 * `replicalog inspect` on a damaged tree (issue 17): exit 1, the problems named, verify pointed
 * at, and advice that fits (restore from a peer), never "run replicalog migrate".
 */
import { rmSync, writeFileSync } from 'node:fs';
import { afterEach, beforeAll, expect, it } from 'vitest';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { EntryType } from '../../lib/types.js';
import { entryPath } from '../../lib/wal/layout.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';
import { ensureBuilt, runCli } from './harness.js';

beforeAll(ensureBuilt, 120_000);
afterEach(removeTempDirs);

it('a gap: exit 1, the problem and verify named, advice to restore from a peer (text and JSON)', async () => {
  const dir = makeTempDir('replicalog-inspect-');
  const store = await ReplicaLogStore.open({ dir });
  await store.append([1, 2, 3].map((index) => ({ index, term: 1, type: EntryType.Normal, data: new Uint8Array([index]) })));
  await store.setHardState({ term: 1, vote: 0, commit: 3 });
  await store.close();
  rmSync(entryPath(dir, 2), { recursive: true });
  const text = await runCli(['inspect', dir]);
  expect(text.code).toBe(1);
  expect(text.stdout).toMatch(/PROBLEMS\s+1 \(first: GAP at 0000000000002\): run `replicalog verify .*`.*restore this replica from a peer/);
  expect(text.stdout).not.toContain('replicalog migrate');
  const asJson = await runCli(['inspect', dir, '--json']);
  expect(asJson.code).toBe(1);
  expect(JSON.parse(asJson.stdout)).toMatchObject({ ok: false, problems: [{ code: 'GAP', lsn: '0000000000002' }] });
});

it('a healthy store: exit 0 and ok', async () => {
  const dir = makeTempDir('replicalog-inspect-');
  const store = await ReplicaLogStore.open({ dir });
  await store.append([{ index: 1, term: 1, type: EntryType.Normal, data: new Uint8Array([1]) }]);
  await store.close();
  const result = await runCli(['inspect', dir, '--json']);
  expect(result.code).toBe(0);
  expect(JSON.parse(result.stdout)).toMatchObject({ ok: true, problems: [], retainedEntries: 1 });
  expect((await runCli(['inspect', dir])).stdout).toContain('(1 entry retained)');
});

it('--json errors are JSON on stdout: {"error": {code, message, path}}', async () => {
  const missing = `${makeTempDir('replicalog-inspect-')}/nothing-here`;
  const result = await runCli(['inspect', missing, '--json']);
  expect(result.code).toBe(2);
  expect(result.stderr).toBe('');
  const parsed = JSON.parse(result.stdout) as { error: { code: string; message: string; path: string | null } };
  expect(parsed.error.message).toContain('no such directory');
  expect(parsed.error.path).toBe(missing);
  expect(typeof parsed.error.code).toBe('string');
});

it('verify lists problems lowest index first', async () => {
  const dir = makeTempDir('replicalog-inspect-');
  const store = await ReplicaLogStore.open({ dir });
  await store.append([1, 2, 3, 4].map((index) => ({ index, term: 1, type: EntryType.Normal, data: new Uint8Array([index]) })));
  await store.setHardState({ term: 1, vote: 0, commit: 4 });
  await store.close();
  for (const index of [4, 2]) {
    const raft = `${entryPath(dir, index)}/RAFT`;
    rmSync(raft);
    writeFileSync(raft, Uint8Array.of(0xff, 0xff), { mode: 0o400 });
  }
  const result = await runCli(['verify', dir, '--json']);
  expect(result.code).toBe(1);
  const indexes = (JSON.parse(result.stdout) as { problems: { index?: number }[] }).problems.map((problem) => problem.index);
  expect(indexes).toEqual([...indexes].sort((a, b) => (a ?? -1) - (b ?? -1)));
  expect(indexes).toContain(2);
  expect(indexes).toContain(4);
});
