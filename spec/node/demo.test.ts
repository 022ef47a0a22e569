/**
 * `replicalog demo` as a child process: it must run to the end and exit 0 (every check held).
 * Needs the build (dist/): built here when missing or older than the node sources.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { clusterEntry as entry, ensureBuilt, repository } from './build.js';

const bin = join(repository, 'bin/replicalog.js');
const root = mkdtempSync(join(tmpdir(), 'replicalog-demo-test-'));
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
  rmSync(root, { recursive: true, force: true });
});

/** The main binary once it has the demo wired in; the stand-alone entry point until then. */
function demoCommand(): string[] {
  try {
    const help = execFileSync(process.execPath, [bin, 'demo', '--help'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    if (help.includes('--keep')) return [bin, 'demo'];
  } catch {
    // not wired yet
  }
  return [entry, 'demo'];
}

it('runs the whole demo and exits 0', async () => {
  const output: string[] = [];
  child = spawn(process.execPath, [...demoCommand(), '--dir', join(root, 'cluster')], { cwd: repository, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  const code = await new Promise<number | null>((resolvePromise) => child!.once('exit', (exitCode) => resolvePromise(exitCode)));
  const text = output.join('');
  expect(text, text).toMatch(/All \d+ checks passed/);
  expect(code, text).toBe(0);
  for (const step of ['[1/8]', '[4/8]', '[6/8]', '[7/8]', '[8/8]']) expect(text).toContain(step);
  expect(text).toContain('no acknowledged put was lost');
}, 90_000);
