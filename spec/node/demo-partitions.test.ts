/**
 * `replicalog demo --partitions 10` as a child process (issue 19): ten pre-Raft partitions
 * migrated into a storage, served by three node processes of ten raft groups each; it must run to
 * the end and exit 0 (every check held).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';
import { clusterEntry, ensureBuilt, repository } from './build.js';

let child: ChildProcess | undefined;

beforeAll(ensureBuilt, 120_000);

afterAll(() => {
  // The demo and its node processes share a process group: end them all.
  if (child?.pid !== undefined && child.exitCode === null) {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  removeTempDirs();
});

it('migrates 10 partitions, serves them as 10 raft groups per node, and exits 0', async () => {
  const root = makeTempDir('replicalog-demo-partitions-test-');
  const output: string[] = [];
  child = spawn(process.execPath, [clusterEntry, 'demo', '--partitions', '10', '--dir', join(root, 'cluster')], { cwd: repository, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  const code = await new Promise<number | null>((resolvePromise) => child!.once('exit', (exitCode) => resolvePromise(exitCode)));
  const text = output.join('');
  expect(code, text).toBe(0);
  expect(text).toMatch(/demo passed: \d+ checks/);
  for (const line of ['every entry was backfilled: 200 RAFT files', 'partition 10: every replica holds its migrated state', "a partition does not see another's keys", 'every group quiesced on every node', 'raft messages 0 / 0 / 0']) {
    expect(text).toContain(line);
  }
}, 120_000);
