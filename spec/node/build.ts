/**
 * The node tests that start processes need the build (dist/). ensureBuilt() runs
 * `npx tsc -p tsconfig.build.json` when dist/lib/node/cli-entry.js is missing or older than the
 * node sources; test files running in parallel take turns through a lock directory.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const repository = resolve(import.meta.dirname, '../..');
export const clusterEntry = join(repository, 'dist/lib/node/cli-entry.js');

function newestSource(): number {
  const files = [
    ...readdirSync(join(repository, 'lib/node')).map((name) => join(repository, 'lib/node', name)),
    join(repository, 'lib/cli/node-command.ts'),
    join(repository, 'lib/cli/demo-command.ts'),
  ];
  return Math.max(...files.filter((file) => file.endsWith('.ts')).map((file) => statSync(file).mtimeMs));
}

const isStale = () => !existsSync(clusterEntry) || statSync(clusterEntry).mtimeMs < newestSource();

export async function ensureBuilt(): Promise<void> {
  const lock = join(repository, 'dist', '.node-tests-build.lock');
  mkdirSync(join(repository, 'dist'), { recursive: true });
  const deadline = Date.now() + 110_000;
  while (isStale()) {
    let locked = false;
    try {
      mkdirSync(lock);
      locked = true;
    } catch {
      // another test file is building: wait for it
    }
    if (locked) {
      try {
        if (isStale()) execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: repository, stdio: 'ignore' });
      } catch {
        // tsc exits non-zero on type errors elsewhere in the tree but still emits
      } finally {
        rmSync(lock, { recursive: true, force: true });
      }
      if (isStale()) throw new Error(`the build did not produce ${clusterEntry}`);
      return;
    }
    if (Date.now() > deadline) throw new Error('timed out waiting for another build');
    await new Promise((resolvePromise) => setTimeout(resolvePromise, 200));
  }
}
