/**
 * `replicalog migrate|inspect|verify` on a storage directory (lib/storage.ts: one lock, one KV,
 * many partitions), as child processes: a storage of pre-Raft partitions
 * (lib/fixture.ts writePreRaftStorage) migrated, inspected and verified; --partition; a
 * migration killed with SIGKILL midway and resumed; stray names; damage named by partition;
 * keys of a partition whose directory is gone; read-only scans; the help texts.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeEntry } from '../../lib/codec.js';
import { writePreRaftStorage } from '../../lib/fixture.js';
import { main } from '../../lib/cli/main.js';
import type { CliIo } from '../../lib/cli/io.js';
import { idRanges, NoticeList, NOTICES_LISTED } from '../../lib/cli/storage-verify.js';
import { EntryBudget, partitionConcurrency } from '../../lib/cli/migrate-storage.js';
import { ReplicaLogStorage } from '../../lib/storage.js';
import { EntryType } from '../../lib/types.js';
import { KvCopy } from '../../lib/verify.js';
import { isStorageDirectory, listStorage, partitionOfStorage, verifyStorage, walkStorage } from '../../lib/verify-storage.js';
import { entryPath, formatLsn, kvPath, walPath } from '../../lib/wal/layout.js';
import { partitionFanOut, partitionPath, partitionsPath } from '../../lib/wal/storage-layout.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';
import { BIN, ensureBuilt, REPO_ROOT, runCli, startCli, treeSnapshot } from './harness.js';

beforeAll(ensureBuilt, 180_000);

const openStorages: ReplicaLogStorage[] = [];
afterEach(async () => {
  for (const storage of openStorages.splice(0)) await storage.close();
  removeTempDirs();
});

interface MigrateStorageJson {
  dir: string;
  storage: string;
  partitions: number;
  migrated: number;
  alreadyMigrated: number;
  bootstrapped: number;
  empty: number;
  refusedPartitions: number;
  backfilled: number;
  entries: number;
  dryRun: boolean;
  wouldBackfill?: number;
  refused: { partition?: number; code: string; path: string; message: string }[];
  results: { partition: number; status: string; action?: string; backfilled?: number; entries?: number; wouldBackfill?: number }[];
}

interface VerifyStorageJson {
  storage: string;
  partitions: number;
  ok: boolean;
  entries: number;
  problems: { code: string; partition?: number; lsn?: string; path: string; message: string }[];
  notices: { code: string; partition?: number; message: string }[];
  noticeCount: number;
  noticeCounts: Record<string, number>;
}

interface InspectStorageJson {
  storage: string;
  partitions: number;
  bootstrapped: number;
  migrated: number;
  needsMigration: number;
  unbootstrapped: number;
  statuses: Record<string, number>;
  retainedEntries: number;
  pendingMigration: number;
  ok: boolean;
  problems: number;
  partitionIds: Record<string, number[]>;
}

function storageFixture(partitions: number, entriesPerPartition: number, options: { name?: string; seed?: number } = {}): string {
  const dir = join(makeTempDir('replicalog-storage-cli-'), 'storage');
  writePreRaftStorage({ dir, partitions, entriesPerPartition, ...options });
  return dir;
}

/** How many entries of partitions 1..partitions (storage name "default") have a RAFT file. */
function raftFileCount(dir: string, partitions: number): number {
  let count = 0;
  for (let id = 1; id <= partitions; id++) {
    const wal = walPath(partitionPath(dir, 'default', id));
    for (const lsn of readdirSync(wal)) if (existsSync(join(wal, lsn, 'RAFT'))) count++;
  }
  return count;
}

/** Every entry of the partition has RAFT = {Normal, index = LSN, term 0}. */
function expectMigrated(dir: string, partitionId: number, entries: number): void {
  const partition = partitionPath(dir, 'default', partitionId);
  for (let index = 1; index <= entries; index++) {
    expect(decodeEntry(readFileSync(join(entryPath(partition, index), 'RAFT')))).toMatchObject({ type: EntryType.Normal, index, term: 0 });
  }
}

const json = <T>(text: string): T => JSON.parse(text) as T;

describe('a storage of pre-Raft partitions', () => {
  it('inspect and verify before, migrate --dry-run, migrate, then inspect and verify again; a second migrate skips every partition', async () => {
    const dir = storageFixture(6, 8);
    const before = treeSnapshot(dir);

    const inspected = await runCli(['inspect', dir, '--json']);
    expect(inspected.code).toBe(0);
    expect(json<InspectStorageJson>(inspected.stdout)).toMatchObject({
      storage: 'default',
      partitions: 6,
      needsMigration: 6,
      migrated: 0,
      statuses: { bootstrapped: 0, 'needs-backfill': 6, unbootstrapped: 0 },
      pendingMigration: 48,
      ok: true,
    });
    const verifiedBefore = await runCli(['verify', dir, '--json']);
    expect(verifiedBefore.code).toBe(0);
    const before_ = json<VerifyStorageJson>(verifiedBefore.stdout);
    expect(before_).toMatchObject({ ok: true, partitions: 6, entries: 48, problems: [] });
    // One KV_ABSENT for the storage (no kv/ yet), one NEEDS_MIGRATION per partition.
    expect(before_.noticeCounts).toEqual({ KV_ABSENT: 1, NEEDS_MIGRATION: 6 });
    expect(before_.notices.filter((notice) => notice.code === 'NEEDS_MIGRATION').map((notice) => notice.partition)).toEqual([1, 2, 3, 4, 5, 6]);
    // The advice names the storage (a partition is migrated through it), never the partition's directory.
    for (const notice of before_.notices.filter((notice) => notice.code === 'NEEDS_MIGRATION')) expect(notice.message).toContain(`run \`replicalog migrate ${dir}\``);

    const dry = await runCli(['migrate', dir, '--dry-run', '--json']);
    expect(dry.code).toBe(0);
    const dryJson = json<MigrateStorageJson>(dry.stdout);
    expect(dryJson).toMatchObject({ dryRun: true, partitions: 6, wouldBackfill: 48, refused: [] });
    expect(dryJson.results.map((result) => [result.partition, result.wouldBackfill])).toEqual([1, 2, 3, 4, 5, 6].map((id) => [id, 8]));
    // Nothing above wrote anything.
    expect(treeSnapshot(dir)).toEqual(before);

    const migrated = await runCli(['migrate', dir, '--json']);
    expect(migrated.stderr).toBe('');
    expect(migrated.code).toBe(0);
    const migratedJson = json<MigrateStorageJson>(migrated.stdout);
    expect(migratedJson).toMatchObject({ storage: 'default', partitions: 6, migrated: 6, alreadyMigrated: 0, backfilled: 48, entries: 48, refused: [] });
    // One summary per partition, never the entries themselves.
    expect(migratedJson.results).toEqual(
      [1, 2, 3, 4, 5, 6].map((partition) => ({ partition, status: 'needs-backfill', action: 'migrated', backfilled: 8, entries: 8 })),
    );
    for (let partition = 1; partition <= 6; partition++) expectMigrated(dir, partition, 8);

    const verified = json<VerifyStorageJson>((await runCli(['verify', dir, '--json'])).stdout);
    expect(verified).toMatchObject({ ok: true, problems: [], entries: 48, noticeCount: 0 });
    const after = json<InspectStorageJson>((await runCli(['inspect', dir, '--json'])).stdout);
    expect(after).toMatchObject({ migrated: 6, needsMigration: 0, pendingMigration: 0, retainedEntries: 48 });
    expect(after.partitionIds.migrated).toEqual([1, 2, 3, 4, 5, 6]);

    const snapshot = treeSnapshot(partitionsPath(dir));
    const again = await runCli(['migrate', dir]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('nothing to migrate; skipped 6 already migrated (1..6)');
    expect(treeSnapshot(partitionsPath(dir))).toEqual(snapshot);
  }, 60_000);

  it('text: one progress bar (lines off a TTY) counting the entries of every partition, and a summary', async () => {
    const dir = storageFixture(5, 20);
    const result = await runCli(['migrate', dir]);
    expect(result.code).toBe(0);
    const lines = result.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe('replicalog migrate: 0/100 entries');
    expect(lines[lines.length - 1]).toBe('replicalog migrate: 100/100 entries');
    for (const line of lines) expect(line).toMatch(/^replicalog migrate: \d+\/100 entries$/);
    const counts = lines.map((line) => Number(/: (\d+)\//.exec(line)![1]));
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
    expect(result.stdout).toMatch(/storage "default", 5 partitions: migrated 5 partitions, backfilled 100 entries in [\d.]+ s/);
  }, 30_000);

  it('--partition ID: migrate, inspect and verify only that partition', async () => {
    const dir = storageFixture(5, 6);
    const migrated = json<MigrateStorageJson>((await runCli(['migrate', dir, '--partition', '3', '--json'])).stdout);
    expect(migrated).toMatchObject({ partitions: 1, migrated: 1, backfilled: 6 });
    expect(migrated.results.map((result) => result.partition)).toEqual([3]);
    expectMigrated(dir, 3, 6);
    expect(raftFileCount(dir, 5)).toBe(6);

    const partition = await runCli(['inspect', dir, '--partition', '3', '--json']);
    expect(partition.code).toBe(0);
    expect(json<Record<string, unknown>>(partition.stdout)).toMatchObject({
      dir: partitionPath(dir, 'default', 3),
      storage: 'default',
      partition: 3,
      status: 'needs-backfill',
      pendingMigration: 0,
      lastIndex: 6,
    });
    const entriesTable = await runCli(['inspect', dir, '--partition', '2', '--entries']);
    expect(entriesTable.stdout).toContain('(storage "default", partition 2)');
    expect(entriesTable.stdout).toMatch(/^INDEX +LSN/m);
    const summary = json<InspectStorageJson>((await runCli(['inspect', dir, '--json'])).stdout);
    expect(summary).toMatchObject({ migrated: 1, needsMigration: 4 });
    expect(summary.partitionIds.migrated).toEqual([3]);
    const verified = json<VerifyStorageJson>((await runCli(['verify', dir, '--partition', '3', '--json'])).stdout);
    expect(verified).toMatchObject({ ok: true, partitions: 1, entries: 6, noticeCount: 0 });
  }, 60_000);

  it.each([
    { args: ['migrate', '--partition', '99'], message: /has no partition 99/ },
    { args: ['inspect', '--partition', '99'], message: /has no partition 99/ },
    { args: ['verify', '--partition', '99'], message: /has no partition 99/ },
    { args: ['inspect', '--entries'], message: /--entries needs --partition ID on a storage/ },
    { args: ['verify', '--against', '/tmp'], message: /--against compares two stores/ },
    { args: ['verify', '--storage-name', 'no/name'], message: /is not a storage name/ },
  ])('$args: bad usage (exit 2)', async ({ args, message }) => {
    const dir = storageFixture(2, 2);
    const before = treeSnapshot(dir);
    const [command, ...rest] = args;
    const result = await runCli([command!, dir, ...rest]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(treeSnapshot(dir)).toEqual(before);
  });

  it('killed with SIGKILL midway, then run again: finishes the rest, skips what was done, verify is clean', async () => {
    const partitions = 40;
    const perPartition = 30;
    const total = partitions * perPartition;
    const dir = storageFixture(partitions, perPartition, { seed: 7 });
    const child = startCli(['migrate', dir]);
    let stderr = '';
    let killedAt = -1;
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('close', (_code, signal) => resolve(signal)));
    child.stdout!.resume();
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      if (killedAt >= 0) return;
      // Half way: more than the 16 partitions migrated at once can hold (16 × 30 < 600), so some
      // partitions are finished and others are not.
      const match = /replicalog migrate: (\d+)\/\d+ entries/g;
      let last = 0;
      for (let found = match.exec(stderr); found !== null; found = match.exec(stderr)) last = Number(found[1]);
      if (last >= total / 2) {
        killedAt = last;
        child.kill('SIGKILL');
      }
    });
    expect(await exited).toBe('SIGKILL');
    const written = raftFileCount(dir, partitions);
    expect(written).toBeGreaterThanOrEqual(killedAt);
    expect(written).toBeLessThan(total);

    // Half migrated: valid, only notices.
    const midway = json<VerifyStorageJson>((await runCli(['verify', dir, '--json'])).stdout);
    expect(midway).toMatchObject({ ok: true, problems: [] });
    expect(midway.noticeCounts.NEEDS_MIGRATION).toBeGreaterThan(0);

    const resumed = await runCli(['migrate', dir, '--json'], { timeoutMs: 60_000 });
    expect(resumed.code).toBe(0);
    const resumedJson = json<MigrateStorageJson>(resumed.stdout);
    expect(resumedJson.backfilled).toBe(total - written);
    expect(resumedJson.alreadyMigrated).toBeGreaterThan(0);
    expect(resumedJson.alreadyMigrated + resumedJson.migrated).toBe(partitions);
    // A partition is skipped exactly when the killed run had finished it.
    for (const result of resumedJson.results) {
      expect(result.action === 'already migrated', `partition ${result.partition}`).toBe(result.backfilled === 0);
    }
    for (let partition = 1; partition <= partitions; partition++) expectMigrated(dir, partition, perPartition);
    expect(raftFileCount(dir, partitions)).toBe(total);
    const verified = json<VerifyStorageJson>((await runCli(['verify', dir, '--json'])).stdout);
    expect(verified).toMatchObject({ ok: true, problems: [], noticeCount: 0, entries: total });
  }, 120_000);

  it('refuses a storage open in another process (ERR_LOCKED, exit 1); inspect and verify still work and write nothing', async () => {
    const dir = storageFixture(3, 4);
    const storage = await ReplicaLogStorage.open({ dir });
    openStorages.push(storage);
    // Not LOCK.db: reading its LOCK file here would drop this process's fcntl lock (closing any
    // descriptor of a file releases the process's locks on it).
    const snapshot = () => [treeSnapshot(partitionsPath(dir)), treeSnapshot(kvPath(dir))];
    const before = snapshot();
    const migrated = await runCli(['migrate', dir]);
    expect(migrated.code, migrated.stdout + migrated.stderr).toBe(1);
    expect(migrated.stderr).toMatch(/LOCK\.db: .*locked.*\[ERR_LOCKED\]\n$/);
    const verified = await runCli(['verify', dir, '--json']);
    expect(verified.code).toBe(0);
    expect(json<VerifyStorageJson>(verified.stdout)).toMatchObject({ ok: true, partitions: 3 });
    expect((await runCli(['inspect', dir])).code).toBe(0);
    expect((await runCli(['inspect', dir, '--partition', '2'])).code).toBe(0);
    expect(snapshot()).toEqual(before);
  }, 60_000);
});

describe('damage in a storage', () => {
  it.each([
    {
      what: 'a stray file in partitions/',
      damage: (dir: string) => writeFileSync(join(partitionsPath(dir), 'notes.txt'), 'x'),
      stray: (dir: string) => join(partitionsPath(dir), 'notes.txt'),
    },
    {
      what: 'a partition filed under the wrong fan-out',
      damage: (dir: string) => {
        const [first, second] = partitionFanOut('default', 7);
        const wrong = first === '00' ? '01' : '00';
        mkdirSync(join(partitionsPath(dir), wrong, second, 'default_7'), { recursive: true });
      },
      stray: (dir: string) => {
        const [first, second] = partitionFanOut('default', 7);
        return join(partitionsPath(dir), first === '00' ? '01' : '00', second, 'default_7');
      },
    },
    {
      what: 'a non-canonical partition name',
      damage: (dir: string) => {
        const [first, second] = partitionFanOut('default', 1);
        mkdirSync(join(partitionsPath(dir), first, second, 'default_01'));
      },
      stray: (dir: string) => {
        const [first, second] = partitionFanOut('default', 1);
        return join(partitionsPath(dir), first, second, 'default_01');
      },
    },
  ])('$what: verify and inspect report STRAY_NAME (exit 1), migrate refuses and writes nothing', async ({ damage, stray }) => {
    const dir = storageFixture(3, 3);
    damage(dir);
    const verified = await runCli(['verify', dir, '--json']);
    expect(verified.code).toBe(1);
    const problems = json<VerifyStorageJson>(verified.stdout).problems;
    expect(problems.map((problem) => [problem.code, problem.path, problem.partition])).toEqual([['STRAY_NAME', stray(dir), undefined]]);
    const text = await runCli(['verify', dir]);
    expect(text.stdout).toMatch(/^STRAY_NAME +storage +- +/m);
    expect(text.stdout).toContain('1 problem (in the storage itself;');
    expect((await runCli(['inspect', dir])).code).toBe(1);
    const before = treeSnapshot(dir);
    const migrated = await runCli(['migrate', dir]);
    expect(migrated.code).toBe(1);
    expect(migrated.stderr).toContain(stray(dir));
    expect(migrated.stderr).toMatch(/\[ERR_CORRUPT\]\n$/);
    expect(treeSnapshot(dir)).toEqual(before);
    expect(raftFileCount(dir, 3)).toBe(0);
  }, 60_000);

  it('a gap in one partition: verify names the partition and the LSN; migrate migrates the others and refuses it (exit 1)', async () => {
    const dir = storageFixture(4, 5);
    rmSync(entryPath(partitionPath(dir, 'default', 2), 3), { recursive: true });
    const verified = await runCli(['verify', dir, '--json']);
    expect(verified.code).toBe(1);
    expect(json<VerifyStorageJson>(verified.stdout).problems.map((problem) => [problem.code, problem.partition, problem.lsn])).toEqual([['GAP', 2, formatLsn(3)]]);
    const text = await runCli(['verify', dir]);
    expect(text.stdout).toMatch(new RegExp(`^GAP +partition 2 +${formatLsn(3)}  gap in the WAL`, 'm'));
    expect(text.stdout).toContain('1 problem (in 1 partition;');
    const inspected = json<InspectStorageJson>((await runCli(['inspect', dir, '--json'])).stdout);
    expect(inspected).toMatchObject({ ok: false, problems: 1 });
    expect(inspected.partitionIds.withProblems).toEqual([2]);

    const dry = await runCli(['migrate', dir, '--dry-run', '--json']);
    expect(dry.code).toBe(1);
    expect(json<MigrateStorageJson>(dry.stdout).refused.map((problem) => [problem.code, problem.partition])).toEqual([['GAP', 2]]);
    const migrated = await runCli(['migrate', dir, '--quiet']);
    expect(migrated.code).toBe(1);
    expect(migrated.stderr).toMatch(/^replicalog: .*: partition 2: .*gap.*restore this replica from a peer .*--partition 2.*\[ERR_CORRUPT\]\n$/);
    expect(migrated.stdout).toContain('migrated 3 partitions');
    expect(migrated.stdout).toContain('REFUSED 1 partition (2)');
    for (const partition of [1, 3, 4]) expectMigrated(dir, partition, 5);
    expect(readdirSync(walPath(partitionPath(dir, 'default', 2))).some((lsn) => existsSync(join(walPath(partitionPath(dir, 'default', 2)), lsn, 'RAFT')))).toBe(false);
  }, 60_000);

  it("keys of a partition whose directory is gone: KV_WITHOUT_PARTITION naming it", async () => {
    const dir = storageFixture(3, 2);
    expect((await runCli(['migrate', dir, '--quiet'])).code).toBe(0);
    const storage = await ReplicaLogStorage.open({ dir });
    for (const id of [2, 3]) {
      const store = await storage.openPartition(id);
      await store.setHardState({ term: 1, vote: 0, commit: 2 });
      await store.close();
    }
    await storage.close();
    rmSync(partitionPath(dir, 'default', 3), { recursive: true });
    const verified = await runCli(['verify', dir, '--json']);
    expect(verified.code).toBe(1);
    const problems = json<VerifyStorageJson>(verified.stdout).problems;
    expect(problems.map((problem) => [problem.code, problem.partition, problem.path])).toEqual([['KV_WITHOUT_PARTITION', 3, kvPath(dir)]]);
    const inspected = json<InspectStorageJson>((await runCli(['inspect', dir, '--json'])).stdout);
    expect(inspected).toMatchObject({ partitions: 2, bootstrapped: 1, migrated: 1, ok: false });
    // migrate skips both: one already migrated, one bootstrapped (Raft runs on it).
    const migrated = await runCli(['migrate', dir]);
    expect(migrated.code).toBe(0);
    expect(migrated.stdout).toContain('nothing to migrate; skipped 1 already migrated (1), 1 bootstrapped (2)');
    const migratedJson = json<MigrateStorageJson>((await runCli(['migrate', dir, '--json'])).stdout);
    expect(migratedJson.results.map((result) => [result.partition, result.status, result.action])).toEqual([
      [1, 'needs-backfill', 'already migrated'],
      [2, 'bootstrapped', 'bootstrapped'],
    ]);
  }, 60_000);

  it('a partition directory given as a store: bad usage naming the storage command, nothing created in it', async () => {
    const dir = storageFixture(2, 2);
    const partition = partitionPath(dir, 'default', 2);
    for (const command of ['migrate', 'inspect', 'verify']) {
      const result = await runCli([command, partition]);
      expect(result.code, command).toBe(2);
      expect(result.stderr).toContain(`run \`replicalog ${command} ${dir} --partition 2\``);
    }
    expect(readdirSync(partition).sort()).toEqual(['staging', 'wal']);
  }, 30_000);
});

describe('verifyStorage (the library call behind verify <storage>)', () => {
  /** A storage of 4 migrated partitions of 5 entries; partition 2 bootstrapped with the given commit. */
  async function migratedStorage(commitOfPartition2: number): Promise<string> {
    const dir = storageFixture(4, 5);
    const storage = await ReplicaLogStorage.open({ dir });
    try {
      for (let id = 1; id <= 4; id++) {
        const store = await storage.openPartition(id);
        await store.backfill();
        if (id === 2) await store.setHardState({ term: 1, vote: 0, commit: Math.min(commitOfPartition2, 5) });
        await store.close();
      }
    } finally {
      await storage.close();
    }
    return dir;
  }

  it.each([
    { what: 'nothing', damage: () => {}, problems: [] },
    {
      what: 'a corrupt RAFT file in partition 3',
      damage: (dir: string) => {
        const raft = join(entryPath(partitionPath(dir, 'default', 3), 4), 'RAFT');
        rmSync(raft);
        writeFileSync(raft, Uint8Array.of(0xff, 0xff, 0xff), { mode: 0o400 });
      },
      problems: [['RAFT_CORRUPT', 3, formatLsn(4)]],
    },
    {
      what: 'the last entry of bootstrapped partition 2 gone (its commit 5 is above the log)',
      damage: (dir: string) => rmSync(entryPath(partitionPath(dir, 'default', 2), 5), { recursive: true }),
      problems: [['COMMIT_ABOVE_LAST', 2, undefined]],
    },
    {
      what: 'an entry directory of partition 1 gone (a gap)',
      damage: (dir: string) => rmSync(entryPath(partitionPath(dir, 'default', 1), 2), { recursive: true }),
      problems: [['GAP', 1, formatLsn(2)]],
    },
    {
      what: 'a stray name in partitions/ and one in wal/ of partition 4',
      damage: (dir: string) => {
        writeFileSync(join(partitionsPath(dir), 'README'), 'x');
        writeFileSync(join(walPath(partitionPath(dir, 'default', 4)), 'tmp'), 'x');
      },
      problems: [
        ['STRAY_NAME', undefined, undefined],
        ['STRAY_NAME', 4, undefined],
      ],
    },
  ])('$what', async ({ damage, problems }) => {
    const dir = await migratedStorage(5);
    damage(dir);
    const result = await verifyStorage(dir);
    expect(result.problems.map((problem) => [problem.code, problem.partition, problem.lsn])).toEqual(problems);
    expect(result.ok).toBe(problems.length === 0);
    expect(result.partitions).toBe(4);
    expect(result.notices).toEqual([]);
  });

  it('each partition reads only its own keys from the shared kv/', async () => {
    const dir = await migratedStorage(5);
    const statuses: [number, string, number | undefined][] = [];
    await walkStorage(dir, {}, ({ partitionId, extent, scan }) => {
      statuses.push([partitionId, extent.status, scan.kv.hardState?.commit]);
    });
    expect(statuses).toEqual([
      [1, 'needs-backfill', undefined],
      [2, 'bootstrapped', 5],
      [3, 'needs-backfill', undefined],
      [4, 'needs-backfill', undefined],
    ]);
  });
});

describe('a storage under a low descriptor limit', () => {
  it('migrate, inspect and verify 60 partitions under ulimit -n 256 (fewer partitions at a time, no EMFILE)', async () => {
    const dir = storageFixture(60, 40);
    const run = (args: string[]) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const quoted = args.map((arg) => `'${arg.replace(/'/g, "'\\''")}'`).join(' ');
        execFile('sh', ['-c', `ulimit -n 256 && exec '${process.execPath}' '${BIN}' ${quoted}`], { maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
          resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, stdout, stderr });
        });
      });
    const migrated = await run(['migrate', dir, '--json']);
    expect(migrated.stderr).toBe('');
    expect(migrated.code).toBe(0);
    expect(json<MigrateStorageJson>(migrated.stdout)).toMatchObject({ migrated: 60, backfilled: 2400 });
    const verified = await run(['verify', dir, '--json']);
    expect(verified.code).toBe(0);
    expect(json<VerifyStorageJson>(verified.stdout)).toMatchObject({ ok: true, entries: 2400 });
    const inspected = await run(['inspect', dir, '--json']);
    expect(inspected.code).toBe(0);
    expect(json<InspectStorageJson>(inspected.stdout)).toMatchObject({ migrated: 60, retainedEntries: 2400 });
  }, 120_000);

  it.each([
    { limit: undefined, concurrency: 4 },
    { limit: 100, concurrency: 1 },
    { limit: 256, concurrency: 4 },
    { limit: 1024, concurrency: 16 },
    { limit: 1_048_576, concurrency: 16 },
  ])('partitionConcurrency($limit) = $concurrency', ({ limit, concurrency }) => {
    expect(partitionConcurrency(limit)).toBe(concurrency);
  });
});

describe('storage helpers', () => {
  it('NoticeList: counts every notice, keeps the first 1,000, prints 5 per code and how many more', () => {
    const notices = new NoticeList();
    for (let partition = 1; partition <= NOTICES_LISTED + 5; partition++) notices.add({ code: 'NEEDS_MIGRATION', partition, message: `p${partition}` });
    notices.add({ code: 'STAGING', partition: 9999, message: 'late' });
    notices.prepend([{ code: 'KV_ABSENT', message: 'no kv' }]);
    expect(notices.count).toBe(NOTICES_LISTED + 7);
    expect(notices.counts).toEqual({ NEEDS_MIGRATION: NOTICES_LISTED + 5, STAGING: 1, KV_ABSENT: 1 });
    expect(notices.listed).toHaveLength(NOTICES_LISTED);
    // The storage's own notice leads the list; the last partitions' fall off it.
    expect(notices.listed[0]!.code).toBe('KV_ABSENT');
    expect(notices.listed[NOTICES_LISTED - 1]!.partition).toBe(NOTICES_LISTED - 1);
    const lines = notices.lines();
    expect(lines.filter((line) => line.startsWith('notice: NEEDS_MIGRATION'))).toHaveLength(5);
    expect(lines).toContain(`notice: … and ${NOTICES_LISTED} more NEEDS_MIGRATION notices (${NOTICES_LISTED + 5} in all; --json lists the first ${NOTICES_LISTED} notices)`);
    expect(lines).toContain('notice: KV_ABSENT            storage           -              no kv');
    // STAGING came after the first 1,000: counted, said in the tally.
    expect(lines).toContain(`notice: … and 1 more STAGING notices (1 in all; --json lists the first ${NOTICES_LISTED} notices)`);
  });

  it('EntryBudget: partitions share an entry budget; one always runs, however large', async () => {
    const budget = new EntryBudget(100);
    const order: string[] = [];
    await budget.admit(60);
    const second = budget.admit(60).then(() => order.push('second'));
    void budget.admit(30).then(() => order.push('small'));
    await new Promise((resolve) => setTimeout(resolve, 10));
    // 60 + 30 fit, 60 + 60 do not.
    expect(order).toEqual(['small']);
    expect(budget.inFlight).toEqual({ entries: 90, partitions: 2 });
    budget.release(60);
    await second;
    expect(budget.inFlight).toEqual({ entries: 90, partitions: 2 });
    budget.release(30);
    budget.release(60);
    await budget.admit(5000); // alone: admitted
    expect(budget.inFlight).toEqual({ entries: 5000, partitions: 1 });
  });

  it.each([
    { ids: [], text: '' },
    { ids: [4], text: '4' },
    { ids: [1, 2, 3, 5, 7, 8], text: '1..3, 5, 7..8' },
    { ids: [1, 3, 5, 7], limit: 2, text: '1, 3, …' },
  ])('idRanges($ids)', ({ ids, limit, text }) => {
    expect(idRanges(ids, limit)).toBe(text);
  });

  it('listStorage detects the storage name; several names need --storage-name', async () => {
    const dir = storageFixture(3, 1, { name: 'gitaly-1' });
    expect(isStorageDirectory(dir)).toBe(true);
    expect(isStorageDirectory(partitionPath(dir, 'gitaly-1', 1))).toBe(false);
    expect(partitionOfStorage(partitionPath(dir, 'gitaly-1', 2))).toEqual({ storageDir: dir, partitionId: 2 });
    expect(partitionOfStorage(dir)).toBeUndefined();
    const listing = await listStorage(dir);
    expect(listing.name).toBe('gitaly-1');
    expect(listing.partitions.map((partition) => partition.partitionId)).toEqual([1, 2, 3]);
    expect(listing.strays).toEqual([]);
    // Named explicitly with another name: every partition is a stray.
    expect((await listStorage(dir, 'default')).strays).toHaveLength(3);
    // The CLI finds the name by itself.
    expect(json<MigrateStorageJson>((await runCli(['migrate', dir, '--json'])).stdout)).toMatchObject({ storage: 'gitaly-1', backfilled: 3 });
    writePreRaftStorageInto(dir, 'other', 9);
    await expect(listStorage(dir)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringMatching(/several storage names \(gitaly-1, other\)/) });
    expect((await listStorage(dir, 'other')).partitions.map((partition) => partition.partitionId)).toEqual([9]);
    const verified = await runCli(['verify', dir, '--storage-name', 'other', '--json']);
    const problems = json<VerifyStorageJson>(verified.stdout).problems;
    expect(problems.map((problem) => problem.code)).toEqual(['STRAY_NAME', 'STRAY_NAME', 'STRAY_NAME']);
  }, 60_000);

  it('KvCopy.partitionIds: one id per partition prefix with keys, other keys counted', async () => {
    const dir = makeTempDir('replicalog-kv-ids-');
    const storage = await ReplicaLogStorage.open({ dir });
    for (const id of [0, 5, 300, 2 ** 40]) {
      const store = await storage.openPartition(id);
      await store.setHardState({ term: 1, vote: 0, commit: 0 });
      await store.setConfState({ voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false });
      await store.close();
    }
    await storage.close();
    const copy = await KvCopy.open(kvPath(dir));
    try {
      expect(await copy.partitionIds()).toEqual({ ids: [0, 5, 300, 2 ** 40], otherKeys: 0 });
      expect((await copy.read(300)).hardState).toEqual({ term: 1, vote: 0, commit: 0 });
      expect((await copy.read(301)).hardState).toBeUndefined();
    } finally {
      await copy.close();
    }
  }, 30_000);
});

/** A second storage name's partition, written beside the first's. */
function writePreRaftStorageInto(dir: string, name: string, partitionId: number): void {
  const scratch = makeTempDir('replicalog-storage-other-');
  writePreRaftStorage({ dir: scratch, partitions: 1, entriesPerPartition: 1, name, firstPartitionId: partitionId });
  const target = partitionPath(dir, name, partitionId);
  mkdirSync(join(target, '..'), { recursive: true });
  // Same file system (both under the OS temp directory): a rename.
  renameSync(partitionPath(scratch, name, partitionId), target);
}

describe('scripts/make-fixture --partitions', () => {
  it('writes a storage of pre-Raft partitions that migrate migrates', async () => {
    const dir = join(makeTempDir('replicalog-make-fixture-storage-'), 'storage');
    const made = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
      const child = execFile(process.execPath, [join(REPO_ROOT, 'dist', 'scripts', 'make-fixture.js'), dir, '--partitions', '4', '--entries', '3', '--first-partition', '10'], (_error, stdout) =>
        resolve({ code: child.exitCode, stdout }),
      );
    });
    expect(made.code).toBe(0);
    expect(made.stdout).toContain('storage "default", 4 partitions (10..13), 12 entries');
    expect((await listStorage(dir)).partitions.map((partition) => partition.partitionId)).toEqual([10, 11, 12, 13]);
    expect(json<MigrateStorageJson>((await runCli(['migrate', dir, '--json'])).stdout)).toMatchObject({ partitions: 4, backfilled: 12 });
  }, 30_000);

  it('is deterministic: the same seed writes the same partitions', () => {
    const a = storageFixture(3, 4, { seed: 5 });
    const b = storageFixture(3, 4, { seed: 5 });
    const contents = (dir: string) => [...treeSnapshot(dir).entries()].map(([path, description]) => `${path} ${/sha=\w+/.exec(description)?.[0] ?? ''} ${/size=\d+/.exec(description)![0]}`);
    expect(contents(a)).toEqual(contents(b));
    const c = storageFixture(3, 4, { seed: 6 });
    expect(contents(c)).not.toEqual(contents(a));
  });
});

describe('help', () => {
  it.each(['migrate', 'inspect', 'verify'])('replicalog %s --help describes storages, --partition and --storage-name', async (command) => {
    let stdout = '';
    const io: CliIo = { stdout: (text) => (stdout += text), stderr: () => {}, progressStream: process.stderr, isTTY: false };
    expect(await main([command, '--help'], io)).toBe(0);
    expect(stdout).toContain('--partition <id>');
    expect(stdout).toContain('--storage-name <name>');
    expect(stdout.replace(/\s+/g, ' ')).toContain('A storage directory (partitions/ and no wal/');
  });
});
