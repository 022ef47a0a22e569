/**
 * Runs the real `replicalog` binary (node bin/replicalog.js) as a child process. The shim
 * imports dist/, so `ensureBuilt()` (call it in beforeAll) runs the build once when
 * dist/lib/cli/main.js is missing or older than any TypeScript source; a lock directory keeps
 * two test files (vitest runs them in parallel) from building at the same time.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = join(REPO_ROOT, 'bin', 'replicalog.js');
const BUILT_MAIN = join(REPO_ROOT, 'dist', 'lib', 'cli', 'main.js');
const BUILD_LOCK = join(REPO_ROOT, '.tmp', 'cli-test-build.lock');

function newestSource(directory: string): number {
  let newest = 0;
  for (const name of readdirSync(directory)) {
    const path = join(directory, name);
    const stat = statSync(path);
    if (stat.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (name.endsWith('.ts') && !name.endsWith('.test.ts')) newest = Math.max(newest, stat.mtimeMs);
  }
  return newest;
}

function isStale(): boolean {
  if (!existsSync(BUILT_MAIN)) return true;
  const sources = Math.max(newestSource(join(REPO_ROOT, 'lib')), newestSource(join(REPO_ROOT, 'scripts')));
  return statSync(BUILT_MAIN).mtimeMs < sources;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function ensureBuilt(): Promise<void> {
  if (!isStale()) return;
  mkdirSync(join(REPO_ROOT, '.tmp'), { recursive: true });
  for (;;) {
    try {
      mkdirSync(BUILD_LOCK);
      break;
    } catch {
      // Another test file is building; a lock older than 2 minutes is from a killed run.
      try {
        if (Date.now() - statSync(BUILD_LOCK).mtimeMs > 120_000) rmSync(BUILD_LOCK, { recursive: true, force: true });
      } catch {
        // gone meanwhile
      }
      await sleep(200);
    }
  }
  try {
    if (!isStale()) return;
    // tsc exits non-zero on type errors elsewhere in the tree but still emits; the check below
    // is what matters.
    await new Promise<void>((resolve) => {
      execFile(process.execPath, [join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: REPO_ROOT }, () =>
        resolve(),
      );
    });
    if (!existsSync(BUILT_MAIN)) throw new Error(`the build did not produce ${BUILT_MAIN}`);
  } finally {
    rmSync(BUILD_LOCK, { recursive: true, force: true });
  }
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: readonly string[], options: { timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 25_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Starts the CLI and returns the child (for the kill test). */
export function startCli(args: readonly string[]): ChildProcess {
  return spawn(process.execPath, [BIN, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * Everything observable about a tree except access times: per path its type, mode, size,
 * inode, link count, mtime and (for files) a content hash. Two equal snapshots mean nothing
 * was written, created, removed or renamed.
 */
export function treeSnapshot(root: string): Map<string, string> {
  const result = new Map<string, string>();
  const walk = (path: string) => {
    const stat = lstatSync(path);
    const kind = stat.isDirectory() ? 'dir' : stat.isFile() ? 'file' : 'other';
    let description = `${kind} mode=${(stat.mode & 0o7777).toString(8)} size=${stat.size} ino=${stat.ino} nlink=${stat.nlink} mtime=${stat.mtimeMs} ctime=${stat.ctimeMs}`;
    if (stat.isFile()) description += ` sha=${createHash('sha256').update(readFileSync(path)).digest('hex')}`;
    result.set(relative(root, path) || '.', description);
    if (stat.isDirectory()) for (const name of readdirSync(path)) walk(join(path, name));
  };
  walk(root);
  return result;
}
