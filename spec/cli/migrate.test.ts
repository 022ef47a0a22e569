/**
 * `replicalog migrate` as a child process: a pre-Raft WAL (lib/fixture.ts) migrated, --json,
 * progress lines, --dry-run writing nothing, a second run backfilling 0, refusals (gap,
 * locked store), and a migration killed with SIGKILL midway then resumed.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeEntry, decodeRaftEntry, encodeEntry } from '../../lib/codec.js';
import { writePreRaftWal } from '../../lib/fixture.js';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { EntryType } from '../../lib/types.js';
import { entryPath, formatLsn, walPath } from '../../lib/wal/layout.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { closeTestStores, trackStore } from '../helpers/stores.js';
import { BIN, ensureBuilt, REPO_ROOT, runCli, startCli, treeSnapshot } from './harness.js';

beforeAll(ensureBuilt, 180_000);

afterEach(closeTestStores);

interface MigrateJson {
  dir: string;
  status: string;
  backfilled: number;
  dryRun: boolean;
  wouldBackfill?: number;
  refused?: { code: string; lsn?: string }[];
  entries: { index: number; lsn: string; term: number; action: string }[];
}

function fixture(entries: number, options: { firstLsn?: number; seed?: number } = {}): string {
  const dir = makeTempDir('replicalog-migrate-');
  writePreRaftWal({ dir, entries, ...options });
  return dir;
}

function raftFiles(dir: string): string[] {
  return readdirSync(walPath(dir)).filter((name) => existsSync(join(walPath(dir), name, 'RAFT')));
}

/** Every entry's RAFT decodes to {Normal, index = LSN, term} with data RaftEntry{local_path: wal/<LSN>}. */
function expectBackfilled(dir: string, first: number, last: number, termOf: (index: number) => number = () => 0): void {
  for (let index = first; index <= last; index++) {
    const entry = decodeEntry(readFileSync(join(entryPath(dir, index), 'RAFT')));
    expect(entry).toMatchObject({ type: EntryType.Normal, index, term: termOf(index) });
    const raftEntry = decodeRaftEntry(entry.data!);
    expect(new TextDecoder().decode(raftEntry.data!.localPath)).toBe(`wal/${formatLsn(index)}`);
  }
}

describe('migrate', () => {
  it('--json: backfills every entry, lists them, and verify is clean afterwards', async () => {
    const dir = fixture(120, { firstLsn: 5 });
    const result = await runCli(['migrate', dir, '--json']);
    expect(result.stderr).toBe(''); // no progress lines with --json
    expect(result.code).toBe(0);
    const parsed = JSON.parse(result.stdout) as MigrateJson;
    expect(parsed).toMatchObject({ dir, status: 'needs-backfill', backfilled: 120, dryRun: false });
    expect(parsed.entries.map((entry) => entry.index)).toEqual(Array.from({ length: 120 }, (_, offset) => offset + 5));
    expect(parsed.entries.every((entry) => entry.term === 0 && entry.action === 'write RAFT')).toBe(true);
    expectBackfilled(dir, 5, 124);
    const verify = await runCli(['verify', dir, '--json']);
    expect(verify.code).toBe(0);
    const verified = JSON.parse(verify.stdout) as { ok: boolean; notices: { code: string }[] };
    expect(verified.ok).toBe(true);
    expect(verified.notices.map((notice) => notice.code)).not.toContain('NEEDS_MIGRATION');
  });

  it('text: progress lines on stderr when not a TTY, a summary on stdout; a second run backfills 0', async () => {
    const dir = fixture(150);
    const first = await runCli(['migrate', dir]);
    expect(first.code).toBe(0);
    const progress = first.stderr.trimEnd().split('\n');
    expect(progress[0]).toBe('replicalog migrate: 0/150 entries');
    expect(progress[progress.length - 1]).toBe('replicalog migrate: 150/150 entries');
    for (const line of progress) expect(line).toMatch(/^replicalog migrate: \d+\/150 entries$/);
    expect(first.stdout).toMatch(/backfilled 150 entries \(0000000000001\.\.0000000000046\) in [\d.]+ s \(\d+ entries\/s\)/);

    const before = treeSnapshot(join(dir, 'wal'));
    const second = await runCli(['migrate', dir, '--json']);
    expect(second.code).toBe(0);
    expect(JSON.parse(second.stdout)).toMatchObject({ backfilled: 0, entries: [] });
    expect(treeSnapshot(join(dir, 'wal'))).toEqual(before);
    const secondText = await runCli(['migrate', dir]);
    expect(secondText.stdout).toContain('nothing to migrate');
    expect(secondText.stderr).toBe('');
  });

  it('--dry-run writes nothing (the whole tree is byte-for-byte, inode-for-inode the same)', async () => {
    const dir = fixture(80);
    // A store that was opened once has kv/, LOCK.db/ and staging/ too: the dry run must not touch them either.
    const store = await ReplicaLogStore.open({ dir });
    await store.close();
    const before = treeSnapshot(dir);
    const json = await runCli(['migrate', dir, '--dry-run', '--json']);
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as MigrateJson;
    expect(parsed).toMatchObject({ dryRun: true, backfilled: 0, wouldBackfill: 80, refused: [] });
    expect(parsed.entries).toHaveLength(80);
    const text = await runCli(['migrate', dir, '--dry-run']);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('dry run, nothing written');
    expect(text.stdout).toContain('would backfill 80 entries (0000000000001..0000000000028)');
    expect(treeSnapshot(dir)).toEqual(before);
    expect(raftFiles(dir)).toEqual([]);
  });

  it('--dry-run predicts the terms migrate writes (nearest earlier RAFT term, else 0)', async () => {
    const dir = fixture(10);
    // Entry 4 already has a RAFT file with term 2 (a partly Raft-managed log).
    writeFileSync(join(entryPath(dir, 4), 'RAFT'), encodeEntry({ type: EntryType.Normal, term: 2, index: 4 }), { mode: 0o400 });
    const predicted = JSON.parse((await runCli(['migrate', dir, '--dry-run', '--json'])).stdout) as MigrateJson;
    const actual = JSON.parse((await runCli(['migrate', dir, '--json'])).stdout) as MigrateJson;
    const termOf = (index: number) => (index < 4 ? 0 : 2);
    expect(predicted.entries.map(({ index, term }) => [index, term])).toEqual([1, 2, 3, 5, 6, 7, 8, 9, 10].map((index) => [index, termOf(index)]));
    expect(actual.entries.map(({ index, term }) => [index, term])).toEqual(predicted.entries.map(({ index, term }) => [index, term]));
    expect(actual.backfilled).toBe(9);
    expectBackfilled(dir, 5, 10, () => 2);
  });

  it('refuses a corrupt tree (a gap) with exit 1, in a dry run and for real, naming the LSN', async () => {
    const dir = fixture(10);
    rmSync(entryPath(dir, 6), { recursive: true });
    const before = treeSnapshot(dir);
    const dry = await runCli(['migrate', dir, '--dry-run']);
    expect(dry.code).toBe(1);
    expect(dry.stderr).toContain(`replicalog: ${entryPath(dir, 6)}: gap in the WAL`);
    expect(treeSnapshot(dir)).toEqual(before);
    const dryJson = JSON.parse((await runCli(['migrate', dir, '--dry-run', '--json'])).stdout) as MigrateJson;
    expect(dryJson.refused!.map(({ code, lsn }) => [code, lsn])).toEqual([['GAP', formatLsn(6)]]);
    const real = await runCli(['migrate', dir]);
    expect(real.code).toBe(1);
    expect(real.stderr).toMatch(new RegExp(`^replicalog: ${entryPath(dir, 6)}: .*\\[ERR_CORRUPT\\]\\n$`));
    expect(raftFiles(dir)).toEqual([]);
  });

  it('refuses a store open in another process: exit 1, ERR_LOCKED', async () => {
    const dir = fixture(5);
    const store = await ReplicaLogStore.open({ dir });
    trackStore(store);
    const result = await runCli(['migrate', dir]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^replicalog: .*LOCK\.db: .*locked.*\[ERR_LOCKED\]\n$/);
  });

  it('killed with SIGKILL midway, then run again: resumes where it stopped and verify is clean', async () => {
    const total = 1200;
    const dir = fixture(total, { seed: 99 });
    const child = startCli(['migrate', dir]);
    let stderr = '';
    let killedAt = -1;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('close', (code, signal) => resolve({ code, signal })),
    );
    child.stdout!.resume();
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      if (killedAt >= 0) return;
      // Kill on the first progress line that reports durable work (after "0/N").
      const match = /replicalog migrate: ([1-9]\d*)\/\d+ entries/.exec(stderr);
      if (match) {
        killedAt = Number(match[1]);
        child.kill('SIGKILL');
      }
    });
    const { signal } = await exited;
    expect(signal).toBe('SIGKILL');
    const migrated = raftFiles(dir).length;
    expect(migrated).toBeGreaterThanOrEqual(killedAt);
    expect(migrated).toBeLessThan(total);

    // A half-migrated log without hard state is valid: verify reports only notices.
    const midway = JSON.parse((await runCli(['verify', dir, '--json'])).stdout) as { ok: boolean; notices: { code: string; lsn?: string }[] };
    expect(midway.ok).toBe(true);
    expect(midway.notices.find((notice) => notice.code === 'NEEDS_MIGRATION')!.lsn).toBe(formatLsn(migrated + 1));

    const resumed = await runCli(['migrate', dir, '--json'], { timeoutMs: 50_000 });
    expect(resumed.code).toBe(0);
    const parsed = JSON.parse(resumed.stdout) as MigrateJson;
    expect(parsed.backfilled).toBe(total - migrated);
    expect(parsed.entries[0]!.index).toBe(migrated + 1);
    expectBackfilled(dir, 1, total);
    for (const name of readdirSync(walPath(dir))) expect(existsSync(join(walPath(dir), name, 'RAFT.tmp'))).toBe(false);

    const verify = await runCli(['verify', dir, '--json']);
    expect(verify.code).toBe(0);
    const verified = JSON.parse(verify.stdout) as { ok: boolean; problems: unknown[]; notices: { code: string }[] };
    expect(verified).toMatchObject({ ok: true, problems: [] });
    expect(verified.notices.map((notice) => notice.code)).toEqual([]);
  }, 60_000);
});

describe('scripts/make-fixture', () => {
  const run = (args: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, [join(REPO_ROOT, 'dist', 'scripts', 'make-fixture.js'), ...args], (_error, stdout, stderr) =>
        resolve({ code: child.exitCode, stdout, stderr }),
      );
    });

  it('writes a pre-Raft WAL that verify accepts and migrate migrates; bad usage exits 2', async () => {
    const dir = join(makeTempDir('replicalog-make-fixture-'), 'store');
    const made = await run([dir, '--entries', '40', '--seed', '3']);
    expect(made.code).toBe(0);
    expect(made.stdout).toContain('40 entries (1..40)');
    expect(raftFiles(dir)).toEqual([]);
    expect((await runCli(['verify', dir])).code).toBe(0);
    expect(JSON.parse((await runCli(['migrate', dir, '--json'])).stdout)).toMatchObject({ backfilled: 40 });
    expect((await run([dir])).code).toBe(2); // --entries is required
    expect((await run([dir, '--entries', 'many'])).code).toBe(2);
    expect((await run([dir, '--entries', '3'])).code).toBe(1); // wal/ is not empty
  });
});

describe('a tree larger than the descriptor limit (issue 17)', () => {
  it('migrate, inspect and verify run under ulimit -n 256 on 2,000 entries (bounded open files)', async () => {
    const dir = fixture(2000);
    const run = (args: string[]) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const quoted = args.map((arg) => `'${arg.replace(/'/g, "'\\''")}'`).join(' ');
        execFile('sh', ['-c', `ulimit -n 256 && exec '${process.execPath}' '${BIN}' ${quoted}`], { maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
          resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, stdout, stderr });
        });
      });
    // The dry run walks the tree and checks every entry directory's write access.
    const dry = await run(['migrate', dir, '--dry-run', '--json']);
    expect(dry.stderr).toBe('');
    expect(dry.code).toBe(0);
    expect(JSON.parse(dry.stdout)).toMatchObject({ wouldBackfill: 2000, refused: [] });
    const migrated = await run(['migrate', dir, '--json']);
    expect(migrated.stderr).not.toContain('EMFILE');
    expect(migrated.code).toBe(0);
    const migratedJson = JSON.parse(migrated.stdout) as MigrateJson;
    expect(migratedJson).toMatchObject({ backfilled: 2000 });
    // Every RAFT file was read back (32 at a time) for the terms it holds.
    expect(migratedJson.entries.map((entry) => entry.index)).toEqual(Array.from({ length: 2000 }, (_, offset) => offset + 1));
    const inspected = await run(['inspect', dir, '--json', '--entries']);
    expect(inspected.code).toBe(0);
    const inspectedJson = JSON.parse(inspected.stdout) as { lastIndex: number; entries: { raft: string }[] };
    expect(inspectedJson).toMatchObject({ lastIndex: 2000 });
    expect(inspectedJson.entries.filter((entry) => entry.raft === 'ok')).toHaveLength(2000);
    const verified = await run(['verify', dir, '--json']);
    expect(verified.stderr).toBe('');
    expect(verified.code).toBe(0);
    expect(JSON.parse(verified.stdout)).toMatchObject({ ok: true, entries: 2000 });
  }, 120_000);
});

describe('migrate --quiet', () => {
  it('prints no progress, only the summary', async () => {
    const dir = fixture(120);
    const result = await runCli(['migrate', dir, '--quiet']);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(/migrated; Raft has not started yet .*backfilled 120 entries/);
  });
});
