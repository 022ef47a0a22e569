/**
 * The `replicalog` command line as a child process (node bin/replicalog.js): help, usage
 * errors and exit codes, the error line format, tour/demo, verify and inspect. migrate is in
 * migrate.test.ts.
 */
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encodeEntry } from '../../lib/codec.js';
import { writePreRaftWal } from '../../lib/fixture.js';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { EntryType, type Entry } from '../../lib/types.js';
import { entryPath, formatLsn, stagingPath, walPath } from '../../lib/wal/layout.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { closeTestStores, trackStore } from '../helpers/stores.js';
import { ensureBuilt, runCli, treeSnapshot } from './harness.js';

beforeAll(ensureBuilt, 180_000);

afterEach(closeTestStores);

const utf8 = (text: string) => new TextEncoder().encode(text);

/** Entries 1..5 (terms 1,1,2,2,3), hard state, conf state and a snapshot at 3. */
async function bootstrappedStore(): Promise<string> {
  const dir = makeTempDir('replicalog-cli-');
  const store = await ReplicaLogStore.open({ dir });
  const entries: Entry[] = [1, 1, 2, 2, 3].map((term, offset) => ({ type: EntryType.Normal, term, index: offset + 1, data: utf8(`e${offset}`) }));
  await store.append(entries);
  await store.setHardState({ term: 3, vote: 2, commit: 4 });
  const confState = { voters: [1, 2, 3], learners: [4], votersOutgoing: [], learnersNext: [], autoLeave: false };
  await store.setConfState(confState);
  await store.createSnapshot(3, confState, utf8('snapshot-data'));
  await store.close();
  return dir;
}

describe('--help', () => {
  const cases: { args: string[]; usage: string; mentions: string[] }[] = [
    { args: ['--help'], usage: 'Usage: replicalog', mentions: ['migrate', 'inspect', 'verify', 'Exit status'] },
    { args: ['-h'], usage: 'Usage: replicalog', mentions: ['migrate'] },
    { args: ['migrate', '--help'], usage: 'Usage: replicalog migrate', mentions: ['--dry-run', '--json', 'backfill()', 'Exit status'] },
    { args: ['inspect', '--help'], usage: 'Usage: replicalog inspect', mentions: ['--entries', '--json', 'point-in-time', 'never takes its lock'] },
    { args: ['verify', '--help'], usage: 'Usage: replicalog verify', mentions: ['--json', 'RAFT_MISSING', 'NEEDS_MIGRATION', 'Exit status'] },
    { args: ['tour', '--help'], usage: 'Usage: replicalog tour', mentions: [] },
    { args: ['demo', '--help'], usage: 'Usage: replicalog demo', mentions: ['--nodes', '--keep'] },
    { args: ['node', '--help'], usage: 'Usage: replicalog node', mentions: ['--id', '--peers'] },
    { args: ['help', 'verify'], usage: 'Usage: replicalog verify', mentions: [] },
    { args: ['verify', 'some-dir', '--help'], usage: 'Usage: replicalog verify', mentions: [] },
  ];
  it.each(cases)('replicalog $args prints usage to stdout and exits 0', async ({ args, usage, mentions }) => {
    const result = await runCli(args);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(usage);
    for (const text of mentions) expect(result.stdout).toContain(text);
  });

  it('--version prints the package version', async () => {
    const result = await runCli(['--version']);
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe('0.1.0');
  });
});

describe('bad usage exits 2 with a message on stderr', () => {
  const file = () => {
    const dir = makeTempDir('replicalog-cli-');
    writeFileSync(join(dir, 'plain-file'), 'x');
    return join(dir, 'plain-file');
  };
  const cases: { name: string; args: () => string[]; stderr: RegExp }[] = [
    { name: 'no command', args: () => [], stderr: /Usage: replicalog/ },
    { name: 'unknown command', args: () => ['frobnicate'], stderr: /^replicalog: unknown command 'frobnicate'/ },
    { name: 'missing <dir>', args: () => ['verify'], stderr: /^replicalog: missing required argument 'dir'/ },
    { name: 'unknown option', args: () => ['inspect', '--bogus', makeTempDir()], stderr: /^replicalog: unknown option '--bogus'/ },
    { name: 'too many arguments', args: () => ['verify', makeTempDir(), 'extra'], stderr: /too many arguments/ },
    { name: 'bad --partition', args: () => ['verify', '--partition', 'x', makeTempDir()], stderr: /--partition <id>.*non-negative integer/ },
    { name: 'a directory that does not exist', args: () => ['inspect', '/nonexistent/replicalog-store'], stderr: /^replicalog: \/nonexistent\/replicalog-store: no such directory\n$/ },
    { name: 'a file instead of a directory', args: () => ['verify', file()], stderr: /^replicalog: .*plain-file: not a directory\n$/ },
    { name: 'migrate on a directory without wal/', args: () => ['migrate', makeTempDir()], stderr: /^replicalog: .*: not a replicalog or Gitaly state directory .*wal does not exist\)\n$/ },
    { name: 'demo with too few nodes', args: () => ['demo', '--nodes', '1'], stderr: /^replicalog: option '--nodes <n>' argument '1' is invalid/ },
  ];
  it.each(cases)('$name', async ({ args, stderr }) => {
    const result = await runCli(args());
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(stderr);
    expect(result.stderr).not.toMatch(/^\s+at /m);
  });
});

describe('error line', () => {
  it('is one line naming the path and the cause, without a stack unless --debug', async () => {
    const dir = await bootstrappedStore();
    rmSync(entryPath(dir, 3), { recursive: true }); // a gap: the store refuses to open
    const plain = await runCli(['migrate', dir]);
    expect(plain.code).toBe(1);
    expect(plain.stdout).toBe('');
    const lines = plain.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^replicalog: ${entryPath(dir, 3)}: gap in the WAL: .* \\[ERR_CORRUPT\\]$`));

    const debug = await runCli(['--debug', 'migrate', dir]);
    expect(debug.code).toBe(1);
    expect(debug.stderr.split('\n')[0]).toBe(lines[0]);
    expect(debug.stderr).toMatch(/^\s+at /m);
    const debugAfter = await runCli(['migrate', dir, '--debug']);
    expect(debugAfter.stderr).toMatch(/^\s+at /m);
  });
});

describe('tour', () => {
  it('prints the version, one line per command and a pointer to the README; exits 0', async () => {
    const result = await runCli(['tour']);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    expect(result.stdout).toContain('replicalog 0.1.0');
    for (const command of ['migrate <dir>', 'inspect <dir>', 'verify  <dir>', 'demo']) expect(result.stdout).toContain(`replicalog ${command}`);
    expect(result.stdout).toContain('README.md');
  });
});

describe('verify', () => {
  it('a clean store: exit 0, "ok" in text, {ok: true, problems: []} in JSON', async () => {
    const dir = await bootstrappedStore();
    const text = await runCli(['verify', dir]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`${dir}: ok (5 entries checked)`);
    const result = await runCli(['verify', dir, '--json']);
    expect(result.code).toBe(0);
    const parsed = JSON.parse(result.stdout) as { ok: boolean; problems: unknown[] };
    expect(parsed).toMatchObject({ ok: true, problems: [] });
  });

  it('a pre-Raft WAL: exit 0 with a NEEDS_MIGRATION notice', async () => {
    const dir = makeTempDir('replicalog-cli-');
    writePreRaftWal({ dir, entries: 12 });
    const result = await runCli(['verify', dir]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/notice: NEEDS_MIGRATION +0000000000001 +no RAFT file in 12 entries/);
  });

  const damages: { name: string; damage: (dir: string) => void; code: string; lsn?: number }[] = [
    { name: 'missing RAFT', damage: (dir) => rmSync(join(entryPath(dir, 2), 'RAFT')), code: 'RAFT_MISSING', lsn: 2 },
    { name: 'zero-length RAFT', damage: (dir) => writeRaft(dir, 4, new Uint8Array(0)), code: 'RAFT_EMPTY', lsn: 4 },
    { name: 'garbage RAFT', damage: (dir) => writeRaft(dir, 5, Uint8Array.of(0xff, 0xff, 0xff)), code: 'RAFT_CORRUPT', lsn: 5 },
    { name: 'RAFT index ≠ LSN', damage: (dir) => writeRaft(dir, 4, encodeEntry({ type: EntryType.Normal, term: 2, index: 40 })), code: 'RAFT_INDEX_MISMATCH', lsn: 4 },
    { name: 'undecodable MANIFEST', damage: (dir) => replace(join(entryPath(dir, 1), 'MANIFEST'), Uint8Array.of(0x52, 0x7f)), code: 'MANIFEST_CORRUPT', lsn: 1 },
    { name: 'gap', damage: (dir) => rmSync(entryPath(dir, 4), { recursive: true }), code: 'GAP', lsn: 4 },
    { name: 'stray name', damage: (dir) => writeFileSync(join(walPath(dir), 'README'), ''), code: 'STRAY_NAME' },
    { name: 'wrong mode', damage: (dir) => chmodSync(entryPath(dir, 3), 0o777), code: 'BAD_MODE', lsn: 3 },
    { name: 'commit above last index', damage: (dir) => {
        rmSync(entryPath(dir, 5), { recursive: true });
        rmSync(entryPath(dir, 4), { recursive: true });
      }, code: 'COMMIT_ABOVE_LAST' },
    { name: 'staging leftover', damage: (dir) => mkdirSync(join(stagingPath(dir), 'batch-x')), code: 'STAGING_LEFTOVER' },
  ];
  it.each(damages)('$name: exit 1, the problem names its LSN directory (text and JSON)', async ({ damage, code, lsn }) => {
    const dir = await bootstrappedStore();
    damage(dir);
    const result = await runCli(['verify', dir, '--json']);
    expect(result.code).toBe(1);
    const parsed = JSON.parse(result.stdout) as { ok: boolean; problems: { code: string; lsn?: string; path?: string }[] };
    expect(parsed.ok).toBe(false);
    expect(parsed.problems.map((problem) => [problem.code, problem.lsn])).toEqual([[code, lsn === undefined ? undefined : formatLsn(lsn)]]);
    if (lsn !== undefined) expect(parsed.problems[0]!.path).toContain(entryPath(dir, lsn));
    const text = await runCli(['verify', dir]);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain(code);
    if (lsn !== undefined) expect(text.stdout).toContain(formatLsn(lsn));
    expect(text.stdout).toContain(`${dir}: 1 problem`);
  });
});

function replace(path: string, bytes: Uint8Array): void {
  rmSync(path, { force: true });
  writeFileSync(path, bytes, { mode: 0o400 });
}

function writeRaft(dir: string, index: number, bytes: Uint8Array): void {
  replace(join(entryPath(dir, index), 'RAFT'), bytes);
}

describe('inspect', () => {
  interface InspectJson {
    status: string;
    firstIndex: number;
    lastIndex: number;
    hardState: { term: number; vote: number; commit: number };
    confState: { voters: number[]; learners: number[] };
    snapshot: { index: number; term: number; dataFile: string | null; dataSize: number | null };
    pendingMigration: number;
    kv: { pointInTime: boolean; note: string };
    entries?: { index: number; lsn: string; type: string | null; term: number | null; raftSize: number | null; manifestSize: number | null; operations: number | null }[];
  }

  it('--json reports status, indexes, hard/conf state and snapshot; writes nothing', async () => {
    const dir = await bootstrappedStore();
    const before = treeSnapshot(dir);
    const result = await runCli(['inspect', dir, '--json']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const parsed = JSON.parse(result.stdout) as InspectJson;
    expect(parsed).toMatchObject({
      status: 'bootstrapped',
      firstIndex: 1,
      lastIndex: 5,
      hardState: { term: 3, vote: 2, commit: 4 },
      confState: { voters: [1, 2, 3], learners: [4] },
      snapshot: { index: 3, term: 2, dataSize: 13 },
      pendingMigration: 0,
      kv: { pointInTime: true },
    });
    expect(parsed.entries).toBeUndefined();
    expect(treeSnapshot(dir)).toEqual(before);
  });

  it('--entries --json has one row per entry', async () => {
    const dir = await bootstrappedStore();
    const parsed = JSON.parse((await runCli(['inspect', dir, '--entries', '--json'])).stdout) as InspectJson;
    expect(parsed.entries!.map((row) => [row.index, row.lsn, row.type, row.term, row.operations])).toEqual(
      [1, 1, 2, 2, 3].map((term, offset) => [offset + 1, formatLsn(offset + 1), 'Normal', term, 0]),
    );
    expect(parsed.entries![0]!.raftSize).toBe(encodeEntry({ type: EntryType.Normal, term: 1, index: 1, data: utf8('e0') }).length);
    expect(parsed.entries![0]!.manifestSize).toBe(0);
  });

  it('text output: labelled lines and, with --entries, a table', async () => {
    const dir = await bootstrappedStore();
    const result = await runCli(['inspect', dir, '--entries']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/status +bootstrapped/);
    expect(result.stdout).toMatch(/first index +1\n/);
    expect(result.stdout).toMatch(/last index +5 \(5 entries retained\)/);
    expect(result.stdout).toMatch(/hard state +term 3, vote 2, commit 4/);
    expect(result.stdout).toMatch(/conf state +voters \[1,2,3\], learners \[4\]/);
    expect(result.stdout).toMatch(/snapshot +index 3, term 2/);
    expect(result.stdout).toContain('point-in-time copy');
    expect(result.stdout).toMatch(/INDEX +LSN +TYPE +TERM +RAFT +MANIFEST +OPS +PAYLOAD/);
    expect(result.stdout).toMatch(/\n +5 +0000000000005 +Normal +3 +\d+B +0B +0 +0\n/);
  });

  it('works while the store is open (locked) in another process, without taking the lock', async () => {
    const dir = await bootstrappedStore();
    const store = await ReplicaLogStore.open({ dir });
    trackStore(store);
    await store.append([{ type: EntryType.Normal, term: 3, index: 6 }]);
    await store.setHardState({ term: 3, vote: 2, commit: 6 });
    const result = await runCli(['inspect', dir, '--json']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const parsed = JSON.parse(result.stdout) as InspectJson;
    expect(parsed).toMatchObject({ status: 'bootstrapped', lastIndex: 6, hardState: { commit: 6 } });
    expect(parsed.kv.note).toContain('point-in-time');
    // The store still works: inspect took no lock and changed nothing.
    await store.append([{ type: EntryType.Normal, term: 3, index: 7 }]);
    expect(store.lastIndex()).toBe(7);
    const verify = await runCli(['verify', dir, '--json']);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true });
  });

  it('--partition reads the keys under the p/<id>/ prefix', async () => {
    const dir = makeTempDir('replicalog-cli-');
    const store = await ReplicaLogStore.open({ dir, partitionId: 7 });
    await store.append([{ type: EntryType.Normal, term: 2, index: 1 }]);
    await store.setHardState({ term: 2, vote: 1, commit: 1 });
    await store.close();
    const unprefixed = JSON.parse((await runCli(['inspect', dir, '--json'])).stdout) as InspectJson;
    expect(unprefixed).toMatchObject({ status: 'needs-backfill', hardState: { term: 0, commit: 0 } });
    const prefixed = JSON.parse((await runCli(['inspect', dir, '--json', '--partition', '7'])).stdout) as InspectJson;
    expect(prefixed).toMatchObject({ status: 'bootstrapped', hardState: { term: 2, vote: 1, commit: 1 } });
  });

  it('a pre-Raft WAL: needs-backfill with the count of entries to migrate', async () => {
    const dir = makeTempDir('replicalog-cli-');
    writePreRaftWal({ dir, entries: 25, firstLsn: 11 });
    const parsed = JSON.parse((await runCli(['inspect', dir, '--json', '--entries'])).stdout) as InspectJson;
    expect(parsed).toMatchObject({ status: 'needs-backfill', firstIndex: 11, lastIndex: 35, pendingMigration: 25, hardState: { term: 0, vote: 0, commit: 0 } });
    expect(parsed.entries!.every((row) => row.term === null && row.operations !== null)).toBe(true);
  });
});
