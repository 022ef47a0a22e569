/**
 * Temporary directories under os.tmpdir() for tests, removed by `removeTempDirs()` (call it in
 * afterEach). Files written by the store are mode 0400 inside 0700 directories, which
 * `rm -rf` removes as the owner.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const created: string[] = [];

export function makeTempDir(prefix = 'replicalog-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  created.push(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const dir of created.splice(0)) rmSync(dir, { recursive: true, force: true });
}
