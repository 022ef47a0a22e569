/**
 * Recycling of compacted entry directories (journal mode, issue 18; log-manager.ts): a journal
 * store's compaction leaves its directories in wal/ (at or below the durable anchor) and the
 * next checkpoints reuse them (same inodes: nothing allocated or freed), each renamed once
 * within wal/ to its new index; what it writes is exactly what a new directory would hold.
 * Both ways of writing are covered: the entry writer thread (the default file system) and the
 * main thread (any other FileSystem, as tests inject).
 */
import { chmodSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeEntry, encodeEntry } from '../lib/codec.js';
import { ReplicaLogStore, type ReplicaLogStoreOptions } from '../lib/replica-log-store.js';
import { EntryType, type Entry } from '../lib/types.js';
import { verifyTree } from '../lib/verify.js';
import { nodeFileSystem } from '../lib/wal/file-system.js';
import { entryPath, formatLsn, MANIFEST_FILE, RAFT_FILE } from '../lib/wal/layout.js';
import { makeTempDir, removeTempDirs } from './helpers/temp-dir.js';

afterEach(removeTempDirs);

const entry = (index: number, term: number): Entry => ({ index, term, type: EntryType.Normal, data: new TextEncoder().encode(`${index}@${term}`) });
const run = (from: number, to: number, term: number) => Array.from({ length: to - from + 1 }, (_, k) => entry(from + k, term));
const voters = { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };

const stagings: { staging: string; options: Partial<ReplicaLogStoreOptions> }[] = [
  { staging: 'the entry writer thread', options: {} },
  { staging: 'the main thread (an injected FileSystem)', options: { fileSystem: { ...nodeFileSystem } } },
];

/**
 * A journal store holding 1..20 (committed), compacted to 10: directories 1..10 wait for reuse.
 * `writtenBeforeOpen`: 1..20 were written by an earlier opening (the store then reused them only
 * after listing each, as anything it did not publish itself), and 21 by this one (its
 * checkpoint's syncfs lets it recycle); otherwise all by this one.
 */
async function compactedStore(options: Partial<ReplicaLogStoreOptions>, writtenBeforeOpen = false): Promise<{ store: ReplicaLogStore; inodes: Map<number, number> }> {
  const dir = makeTempDir('replicalog-recycle-');
  let store = await ReplicaLogStore.open({ dir, journal: true, journalCheckpointDelayMs: 600_000, ...options });
  await Promise.all([store.append(run(1, 20, 1)), store.setHardState({ term: 1, vote: 1, commit: 20 })]);
  // A drain (setConfState waits for the journal): 1..20 are in wal/ now, and syncfs has worked.
  await store.setConfState(voters);
  if (writtenBeforeOpen) {
    await store.close();
    store = await ReplicaLogStore.open({ dir, journal: true, journalCheckpointDelayMs: 600_000, ...options });
    await checkpointed(store, 21, 21);
  }
  const inodes = new Map(run(1, 10, 1).map(({ index }) => [index, statSync(entryPath(dir, index)).ino]));
  await store.compact(10);
  // The compaction's directories leave wal/ behind the queue; a drained write waits for them.
  await store.setConfState(voters);
  return { store, inodes };
}

/** A write group, then a drain (setConfState): one checkpoint writes the group into wal/. */
async function checkpointed(store: ReplicaLogStore, from: number, to: number): Promise<void> {
  await Promise.all([store.append(run(from, to, 1)), store.setHardState({ term: 1, vote: 1, commit: to })]);
  await store.setConfState(voters);
}

function expectEntryOnDisk(dir: string, index: number): void {
  const directory = entryPath(dir, index);
  expect(readdirSync(directory).sort()).toEqual([MANIFEST_FILE, RAFT_FILE]);
  expect(statSync(join(directory, MANIFEST_FILE)).size).toBe(0);
  for (const name of [MANIFEST_FILE, RAFT_FILE]) expect(statSync(join(directory, name)).mode & 0o777).toBe(0o400);
  const decoded = decodeEntry(readFileSync(join(directory, RAFT_FILE)));
  expect([decoded.index, decoded.term, new TextDecoder().decode(decoded.data)]).toEqual([index, 1, `${index}@1`]);
}

const walNames = (dir: string) => readdirSync(join(dir, 'wal')).sort();
const lsns = (from: number, to: number) => run(from, to, 1).map(({ index }) => formatLsn(index));

describe.each(stagings)('recycling, staged by $staging', ({ options }) => {
  it('the compacted directories stay in wal/, and the next checkpoints reuse the oldest of them', async () => {
    const { store, inodes } = await compactedStore(options);
    expect(store.stats()).toMatchObject({ entriesRecycled: 0, recyclePoolSize: 10 });
    // Compacted, not moved: 1..10 are at or below the anchor, waiting in wal/.
    expect(walNames(store.dir)).toEqual(lsns(1, 20));
    // Checkpoint 1: 21..23 go into the directories that held 1..3 (the same inodes).
    await checkpointed(store, 21, 23);
    expect(store.stats()).toMatchObject({ entriesRecycled: 3, recyclePoolSize: 7 });
    for (let index = 21; index <= 23; index++) {
      expect(statSync(entryPath(store.dir, index)).ino).toBe(inodes.get(index - 20));
      expectEntryOnDisk(store.dir, index);
    }
    expect(walNames(store.dir)).toEqual(lsns(4, 23));
    // A checkpoint larger than the pool: 7 reused, the other 5 created.
    await checkpointed(store, 24, 35);
    expect(store.stats()).toMatchObject({ entriesRecycled: 10, recyclePoolSize: 0 });
    for (let index = 24; index <= 35; index++) expectEntryOnDisk(store.dir, index);
    expect(walNames(store.dir)).toEqual(lsns(11, 35));
    expect(readdirSync(join(store.dir, 'staging'))).toEqual([]);
    const dir = store.dir;
    await store.close();
    const reopened = await ReplicaLogStore.open({ dir, journal: true });
    expect(reopened.entries(11, 36, Number.MAX_SAFE_INTEGER).map((item) => new TextDecoder().decode(item.data))).toEqual(run(11, 35, 1).map((item) => `${item.index}@1`));
    await reopened.close();
    expect((await verifyTree(dir)).problems).toEqual([]);
  });

  it('a reused directory that held a MANIFEST with content (a Gitaly entry) gets an empty one, with mode 0400', async () => {
    // Written before this opening: the store does not know what each directory holds.
    const { store } = await compactedStore(options, true);
    // Directory 1 (compacted, waiting in wal/) had a Gitaly log entry.
    const manifest = join(entryPath(store.dir, 1), MANIFEST_FILE);
    chmodSync(manifest, 0o600);
    writeFileSync(manifest, 'a gitaly.LogEntry');
    chmodSync(manifest, 0o644);
    await checkpointed(store, 22, 22);
    expect(store.stats().entriesRecycled).toBe(1);
    expectEntryOnDisk(store.dir, 22);
    await store.close();
  });

  it.each([
    { what: 'shorter than the old one (the old bytes past it are cut)', oldData: 'x'.repeat(200), newData: 'y' },
    { what: 'longer than the old one', oldData: 'x', newData: 'y'.repeat(200) },
  ])('a reused RAFT $what holds exactly the new entry', async ({ oldData, newData }) => {
    const dir = makeTempDir('replicalog-recycle-');
    const store = await ReplicaLogStore.open({ dir, journal: true, journalCheckpointDelayMs: 600_000, ...options });
    const withData = (from: number, to: number, data: string) => run(from, to, 1).map((item) => ({ ...item, data: new TextEncoder().encode(data) }));
    await Promise.all([store.append(withData(1, 4, oldData)), store.setHardState({ term: 1, vote: 1, commit: 4 })]);
    await store.setConfState(voters);
    const inode = statSync(entryPath(dir, 1)).ino;
    await store.compact(2);
    await store.setConfState(voters);
    await Promise.all([store.append(withData(5, 5, newData)), store.setHardState({ term: 1, vote: 1, commit: 5 })]);
    await store.setConfState(voters); // 5 reuses the directory that held 1
    expect(store.stats().entriesRecycled).toBe(1);
    expect(statSync(entryPath(dir, 5)).ino).toBe(inode);
    expect(Buffer.from(readFileSync(join(entryPath(dir, 5), RAFT_FILE))).equals(Buffer.from(encodeEntry(withData(5, 5, newData)[0]!)))).toBe(true);
    await store.close();
  });

  it('a directory holding anything but MANIFEST and RAFT is not reused: removed, and a new one is made', async () => {
    const { store, inodes } = await compactedStore(options, true);
    writeFileSync(join(entryPath(store.dir, 1), 'payload'), 'a packfile');
    await checkpointed(store, 22, 23);
    // 22 skipped the directory with the payload (it is removed) and was created (the file system
    // may hand it the inode just freed, so only the count tells); 23 reused the next one.
    expect(store.stats().entriesRecycled).toBe(1);
    expect(walNames(store.dir)).not.toContain(formatLsn(1));
    expect(statSync(entryPath(store.dir, 23)).ino).toBe(inodes.get(2));
    for (const index of [22, 23]) expectEntryOnDisk(store.dir, index);
    await store.close();
  });
});

it('a direct checkpoint renames a reused directory once, within wal/, and a new one not at all; a compaction renames nothing', async () => {
  const renames: string[] = [];
  let dir = '';
  const fileSystem = {
    ...nodeFileSystem,
    rename: async (from: string, to: string) => {
      renames.push(`${relative(dir, from)} -> ${relative(dir, to)}`);
      return nodeFileSystem.rename(from, to);
    },
  };
  const { store } = await compactedStore({ fileSystem });
  dir = store.dir;
  renames.length = 0; // the first checkpoint's (staged: syncfs had not run yet)
  await checkpointed(store, 21, 23);
  expect(store.stats()).toMatchObject({ entriesRecycled: 3 });
  expect(renames).toEqual(run(21, 23, 1).map(({ index }) => `wal/${formatLsn(index - 20)} -> wal/${formatLsn(index)}`));
  renames.length = 0;
  await store.compact(15);
  await store.setConfState(voters);
  expect(renames).toEqual([]);
  // 4..10 reused (the first compaction's), then 11..12 (the second's), oldest first.
  await checkpointed(store, 24, 32);
  expect(renames).toEqual(run(24, 32, 1).map(({ index }) => `wal/${formatLsn(index - 20)} -> wal/${formatLsn(index)}`));
  await store.close();
  expect((await verifyTree(dir)).problems).toEqual([]);
});

it('a directory this store published is reused without listing it or reading its MANIFEST; one written before the open is listed first', async () => {
  for (const writtenBeforeOpen of [false, true]) {
    const calls: string[] = [];
    let dir = '';
    const record = (call: string, path: string) => calls.push(`${call} ${relative(dir, path)}`);
    const fileSystem = {
      ...nodeFileSystem,
      readdir: async (path: string) => (record('readdir', path), nodeFileSystem.readdir(path)),
      stat: async (path: string) => (record('stat', path), nodeFileSystem.stat(path)),
      overwriteFile: async (path: string, data: Uint8Array, mode: number) => (record('overwrite', path), nodeFileSystem.overwriteFile!(path, data, mode)),
    };
    const { store } = await compactedStore({ fileSystem }, writtenBeforeOpen);
    dir = store.dir;
    const first = writtenBeforeOpen ? 22 : 21;
    calls.length = 0;
    await checkpointed(store, first, first); // reuses the directory that held 1
    const old = `wal/${formatLsn(1)}`;
    const onTheReusedDirectory = calls.filter((call) => call.includes(old));
    expect(onTheReusedDirectory, `written before the open: ${writtenBeforeOpen}`).toEqual(
      writtenBeforeOpen ? [`readdir ${old}`, `overwrite ${old}/RAFT`, `stat ${old}/MANIFEST`] : [`overwrite ${old}/RAFT`],
    );
    expectEntryOnDisk(dir, first);
    await store.close();
    expect((await verifyTree(dir)).problems).toEqual([]);
  }
});

it('close() removes the directories still waiting for reuse: a closed store holds its log only, for verify', async () => {
  const { store } = await compactedStore({});
  expect(store.stats().recyclePoolSize).toBe(10);
  const dir = store.dir;
  expect(walNames(dir)).toEqual(lsns(1, 20));
  await store.close();
  expect(walNames(dir)).toEqual(lsns(11, 20));
  expect(readdirSync(join(dir, 'staging'))).toEqual([]);
  expect((await verifyTree(dir)).problems).toEqual([]);
});

it('a store without the journal deletes what it compacts (no pool)', async () => {
  const dir = makeTempDir('replicalog-recycle-');
  const store = await ReplicaLogStore.open({ dir });
  await Promise.all([store.append(run(1, 20, 1)), store.setHardState({ term: 1, vote: 1, commit: 20 })]);
  await store.compact(10);
  await store.append(run(21, 22, 1));
  expect(store.stats()).toMatchObject({ entriesRecycled: 0, recyclePoolSize: 0 });
  expect(readdirSync(join(dir, 'staging'))).toEqual([]);
  await store.close();
});
