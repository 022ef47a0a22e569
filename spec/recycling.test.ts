/**
 * Recycling of compacted entry directories (journal mode, issue 18; log-manager.ts): a journal
 * checkpoint reuses the directories a compaction moved out of wal/ (same inodes: nothing
 * allocated or freed), but only once their move out is durable; what it writes is exactly what
 * a new directory would hold. Both ways of staging are covered: the entry writer thread (the
 * default file system) and the main thread (any other FileSystem, as tests inject).
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

describe.each(stagings)('recycling, staged by $staging', ({ options }) => {
  it('the first checkpoint after a compaction reuses nothing (the move out is not durable yet); the next one reuses the oldest directories', async () => {
    const { store, inodes } = await compactedStore(options);
    expect(store.stats()).toMatchObject({ entriesRecycled: 0, recyclePoolSize: 10 });
    // Checkpoint 1: its syncfs comes after its staging, so it is the first to cover the move out.
    await checkpointed(store, 21, 23);
    expect(store.stats()).toMatchObject({ entriesRecycled: 0, recyclePoolSize: 10 });
    // Checkpoint 2: 24..28 go into the directories that held 1..5 (the same inodes).
    await checkpointed(store, 24, 28);
    expect(store.stats()).toMatchObject({ entriesRecycled: 5, recyclePoolSize: 5 });
    for (let index = 24; index <= 28; index++) {
      expect(statSync(entryPath(store.dir, index)).ino).toBe(inodes.get(index - 23));
      expectEntryOnDisk(store.dir, index);
    }
    expectEntryOnDisk(store.dir, 21);
    // A checkpoint larger than the pool: 5 reused, the other 7 created.
    await checkpointed(store, 29, 40);
    expect(store.stats()).toMatchObject({ entriesRecycled: 10, recyclePoolSize: 0 });
    for (let index = 29; index <= 40; index++) expectEntryOnDisk(store.dir, index);
    // The batch directory the compaction left is gone once every directory in it was reused.
    expect(readdirSync(join(store.dir, 'staging'))).toEqual([]);
    const dir = store.dir;
    await store.close();
    const reopened = await ReplicaLogStore.open({ dir, journal: true });
    expect(reopened.entries(11, 41, Number.MAX_SAFE_INTEGER).map((item) => new TextDecoder().decode(item.data))).toEqual(run(11, 40, 1).map((item) => `${item.index}@1`));
    await reopened.close();
    expect((await verifyTree(dir)).problems).toEqual([]);
  });

  it('a reused directory that held a MANIFEST with content (a Gitaly entry) gets an empty one, with mode 0400', async () => {
    // Written before this opening: the store does not know what each directory holds.
    const { store } = await compactedStore(options, true);
    // Directory 1 (now in staging/, the compaction's trash) had a Gitaly log entry.
    const [batch] = readdirSync(join(store.dir, 'staging'));
    const manifest = join(store.dir, 'staging', batch!, `old-${readdirSync(join(store.dir, 'staging', batch!)).sort()[0]!.slice(4)}`, MANIFEST_FILE);
    chmodSync(manifest, 0o600);
    writeFileSync(manifest, 'a gitaly.LogEntry');
    chmodSync(manifest, 0o644);
    await checkpointed(store, 22, 22);
    await checkpointed(store, 23, 23);
    expect(store.stats().entriesRecycled).toBe(1);
    expectEntryOnDisk(store.dir, 23);
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
    await store.setConfState(voters); // this checkpoint's syncfs covers the move out
    await Promise.all([store.append(withData(6, 6, newData)), store.setHardState({ term: 1, vote: 1, commit: 6 })]);
    await store.setConfState(voters); // 6 reuses the directory that held 1
    expect(store.stats().entriesRecycled).toBe(1);
    expect(statSync(entryPath(dir, 6)).ino).toBe(inode);
    expect(Buffer.from(readFileSync(join(entryPath(dir, 6), RAFT_FILE))).equals(Buffer.from(encodeEntry(withData(6, 6, newData)[0]!)))).toBe(true);
    await store.close();
  });

  it('a directory holding anything but MANIFEST and RAFT is not reused: removed, and a new one is made', async () => {
    const { store, inodes } = await compactedStore(options, true);
    const [batch] = readdirSync(join(store.dir, 'staging'));
    const oldest = readdirSync(join(store.dir, 'staging', batch!)).sort()[0]!;
    writeFileSync(join(store.dir, 'staging', batch!, oldest, 'payload'), 'a packfile');
    await checkpointed(store, 22, 22);
    await checkpointed(store, 23, 24);
    // 23 skipped the directory with the payload (it is removed) and was created (the file system
    // may hand it the inode just freed, so only the count tells); 24 reused the next one.
    expect(store.stats().entriesRecycled).toBe(1);
    expect(readdirSync(join(store.dir, 'staging', batch!))).not.toContain(oldest);
    expect(statSync(entryPath(store.dir, 24)).ino).toBe(inodes.get(2));
    for (const index of [23, 24]) expectEntryOnDisk(store.dir, index);
    await store.close();
  });
});

it('a reused directory goes from its compaction batch straight into wal/: one rename per entry, none through staging/<LSN>', async () => {
  const renames: string[] = [];
  let dir = '';
  const fileSystem = {
    ...nodeFileSystem,
    rename: async (from: string, to: string) => {
      renames.push(`${relative(dir, from).replace(/batch-[^/]+/, 'batch-*')} -> ${relative(dir, to)}`);
      return nodeFileSystem.rename(from, to);
    },
  };
  const { store } = await compactedStore({ fileSystem });
  dir = store.dir;
  await checkpointed(store, 21, 23);
  renames.length = 0;
  // Checkpoint 2 reuses the directories of 1..5 for 24..28 (the first test above).
  await checkpointed(store, 24, 28);
  expect(store.stats()).toMatchObject({ entriesRecycled: 5 });
  expect(renames).toEqual(run(24, 28, 1).map(({ index }) => `staging/batch-*/old-${formatLsn(index - 23)} -> wal/${formatLsn(index)}`));
  await store.close();
  expect((await verifyTree(dir)).problems).toEqual([]);
});

it('a directory this store published is reused without listing it or reading its MANIFEST; one written before the open is listed first', async () => {
  for (const writtenBeforeOpen of [false, true]) {
    const calls: string[] = [];
    let dir = '';
    const record = (call: string, path: string) => calls.push(`${call} ${relative(dir, path).replace(/batch-[^/]+/, 'batch-*')}`);
    const fileSystem = {
      ...nodeFileSystem,
      readdir: async (path: string) => (record('readdir', path), nodeFileSystem.readdir(path)),
      stat: async (path: string) => (record('stat', path), nodeFileSystem.stat(path)),
      overwriteFile: async (path: string, data: Uint8Array, mode: number) => (record('overwrite', path), nodeFileSystem.overwriteFile!(path, data, mode)),
    };
    const { store } = await compactedStore({ fileSystem }, writtenBeforeOpen);
    dir = store.dir;
    const first = writtenBeforeOpen ? 22 : 21;
    await checkpointed(store, first, first);
    calls.length = 0;
    await checkpointed(store, first + 1, first + 1); // reuses the directory that held 1
    const old = `staging/batch-*/old-${formatLsn(1)}`;
    const onTheReusedDirectory = calls.filter((call) => call.includes(old));
    expect(onTheReusedDirectory, `written before the open: ${writtenBeforeOpen}`).toEqual(
      writtenBeforeOpen ? [`readdir ${old}`, `overwrite ${old}/RAFT`, `stat ${old}/MANIFEST`] : [`overwrite ${old}/RAFT`],
    );
    expectEntryOnDisk(dir, first + 1);
    await store.close();
    expect((await verifyTree(dir)).problems).toEqual([]);
  }
});

it('close() deletes the directories still waiting for reuse: a closed store has no staging/ leftover for verify', async () => {
  const { store } = await compactedStore({});
  await checkpointed(store, 21, 21);
  expect(store.stats().recyclePoolSize).toBe(10);
  const dir = store.dir;
  await store.close();
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
