/**
 * Progress while a large tree is read (issue 17): "scanning N/M entries…" lines on stderr from
 * 10,000 entries when stderr is not a terminal, none with --quiet, --no-progress or --json, and
 * stdout unchanged by them.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writePreRaftWal } from '../../lib/fixture.js';
import { SCAN_PROGRESS_MINIMUM } from '../../lib/cli/progress.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';
import { ensureBuilt, runCli } from './harness.js';

const ENTRIES = SCAN_PROGRESS_MINIMUM + 1;
let dir = '';

beforeAll(async () => {
  await ensureBuilt();
  dir = join(makeTempDir('replicalog-progress-'), 'store');
  writePreRaftWal({ dir, entries: ENTRIES, payloadFilesPerEntry: 0 });
}, 180_000);
afterAll(removeTempDirs);

describe.each(['verify', 'inspect'])('%s on a large tree', (command) => {
  it('prints "scanning N/M entries…" lines on stderr (about one per 10 %), ending at M/M', async () => {
    const result = await runCli([command, dir], { timeoutMs: 60_000 });
    expect(result.code).toBe(0);
    const lines = result.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe(`replicalog ${command}: scanning 0/${ENTRIES} entries…`);
    expect(lines[lines.length - 1]).toBe(`replicalog ${command}: scanning ${ENTRIES}/${ENTRIES} entries`);
    expect(lines.length).toBeGreaterThanOrEqual(3);
    expect(lines.length).toBeLessThanOrEqual(13);
    for (const line of lines) expect(line).toMatch(new RegExp(`^replicalog ${command}: scanning \\d+/${ENTRIES} entries…?$`));
  }, 60_000);

  it.each([['--quiet'], ['--no-progress'], ['--json']])('%s: nothing on stderr, the same report on stdout', async (flag) => {
    const plain = await runCli([command, dir, ...(flag === '--json' ? ['--json', '--quiet'] : [])], { timeoutMs: 60_000 });
    const result = await runCli([command, dir, flag], { timeoutMs: 60_000 });
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    // inspect's report names the KV copy, never the time: the same text either way.
    expect(result.stdout).toBe(plain.stdout);
  }, 60_000);
});

it('a tree below the threshold scans without progress', async () => {
  const small = join(makeTempDir('replicalog-progress-'), 'store');
  writePreRaftWal({ dir: small, entries: 50 });
  const result = await runCli(['verify', small]);
  expect(result.code).toBe(0);
  expect(result.stderr).toBe('');
});
