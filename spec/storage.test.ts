/**
 * ReplicaLogStorage (lib/storage.ts): one lock, one KV and one write pipeline for many
 * partitions (issue 19). The storage's contract beyond a single store's (which
 * storage.conformance.test.ts runs on a partition): the layout, isolation between partitions,
 * locking, group commit across partitions, shared syncfs passes, no descriptor per idle
 * partition, and errors.
 */
import { readdirSync, readlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { afterEach, describe, expect, it } from 'vitest';
import { ReplicaLogStorage } from '../lib/storage.js';
import { nodeFileSystem, type FileSystem } from '../lib/wal/file-system.js';
import { partitionPrefix } from '../lib/wal/layout.js';
import type { Entry } from '../lib/types.js';
import { makeTempDir, removeTempDirs } from './helpers/temp-dir.js';
import { codeOf } from './helpers/stores.js';

const opened: ReplicaLogStorage[] = [];
async function openStorage(options: Partial<Parameters<typeof ReplicaLogStorage.open>[0]> = {}): Promise<ReplicaLogStorage> {
  const storage = await ReplicaLogStorage.open({ dir: options.dir ?? makeTempDir('replicalog-storage-'), ...options });
  opened.push(storage);
  return storage;
}

afterEach(async () => {
  for (const storage of opened.splice(0)) await storage.close();
  removeTempDirs();
});

function entry(index: number, term: number, byte: number): Entry {
  return { index, term, type: 0, data: Uint8Array.of(byte, index) };
}

/** Descriptors this process holds now (Linux /proc). */
function openDescriptors(): string[] {
  return readdirSync('/proc/self/fd').map((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      return '';
    }
  });
}

describe('layout', () => {
  // Gitaly's fan-out: <partitions>/<h0h1>/<h2h3>/<name>_<id>, h = hex(sha256("<name>_<id>"));
  // the expected digits are from `echo -n default_1 | sha256sum` (an independent computation).
  it.each([
    ['default', 1, 'partitions/02/e3/default_1'],
    ['default', 42, 'partitions/d1/20/default_42'],
    ['gitaly', 7, 'partitions/ed/9b/gitaly_7'],
  ])('storage %s partition %i lives in %s', async (name, partitionId, relative) => {
    const storage = await openStorage({ name });
    expect(storage.partitionDirectory(partitionId)).toBe(join(storage.dir, relative));
    const store = await storage.openPartition(partitionId);
    expect(store.dir).toBe(join(storage.dir, relative));
    expect(readdirSync(store.dir).sort()).toEqual(['snapshot', 'staging', 'wal'].filter((name) => readdirSync(store.dir).includes(name)).sort());
    // No lock and no database of its own: the storage's.
    expect(readdirSync(store.dir)).not.toContain('LOCK.db');
    expect(readdirSync(store.dir)).not.toContain('kv');
    expect(readdirSync(storage.dir).sort()).toEqual(['LOCK.db', 'kv', 'partitions']);
  });

  it('listPartitions finds every partition, ascending, and only them', async () => {
    const storage = await openStorage();
    const ids = [300, 2, 17, 1, 100_000];
    for (const id of ids) await (await storage.openPartition(id)).close();
    expect(await storage.listPartitions()).toEqual([1, 2, 17, 300, 100_000]);
  });

  it.each([
    ['a file among the fan-out directories', (partitions: string) => writeFileSync(join(partitions, 'README'), 'x')],
    ['a fan-out directory with a bad name', (partitions: string) => mkdirSync(join(partitions, 'zz'))],
    ["another storage's partition", (partitions: string) => mkdirSync(join(partitions, '02', 'e3', 'other_1'), { recursive: true })],
    ['a partition under the wrong fan-out', (partitions: string) => mkdirSync(join(partitions, '00', '00', 'default_1'), { recursive: true })],
    ['a non-canonical id', (partitions: string) => mkdirSync(join(partitions, '02', 'e3', 'default_01'), { recursive: true })],
  ])('listPartitions refuses %s with ERR_CORRUPT naming it', async (_name, damage) => {
    const storage = await openStorage();
    await (await storage.openPartition(5)).close();
    damage(join(storage.dir, 'partitions'));
    const error = (await storage.listPartitions().then(
      () => new Error('listPartitions resolved'),
      (caught: unknown) => caught,
    )) as Error & { code: string };
    expect(error).toMatchObject({ code: 'ERR_CORRUPT' });
    expect(error.message).toContain(join(storage.dir, 'partitions'));
  });
});

describe('partitions are isolated', () => {
  it('each partition reopens with only its own log, hard state and conf state', async () => {
    const dir = makeTempDir('replicalog-storage-');
    const storage = await ReplicaLogStorage.open({ dir });
    const ids = [1, 2, 3];
    const stores = await Promise.all(ids.map((id) => storage.openPartition(id)));
    await Promise.all(
      stores.map(async (store, position) => {
        const term = position + 1;
        await store.append(Array.from({ length: position + 1 }, (_, offset) => entry(offset + 1, term, position)));
        await store.setHardState({ term, vote: position, commit: 1 });
        await store.setConfState({ voters: [position + 1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false });
      }),
    );
    await storage.close();
    const reopened = await openStorage({ dir });
    for (const [position, id] of ids.entries()) {
      const store = await reopened.openPartition(id);
      expect(store.lastIndex()).toBe(position + 1);
      expect(store.hardState()).toEqual({ term: position + 1, vote: position, commit: 1 });
      expect(store.initialState().confState.voters).toEqual([position + 1]);
      expect(store.entries(1, store.lastIndex() + 1, Number.MAX_SAFE_INTEGER).map((e) => e.data)).toEqual(
        Array.from({ length: position + 1 }, (_, index) => Uint8Array.of(position, index + 1)),
      );
    }
  });

  it("a partition's keys are all under its own prefix in the shared KV", async () => {
    const dir = makeTempDir('replicalog-storage-');
    const storage = await ReplicaLogStorage.open({ dir });
    for (const id of [4, 5]) {
      const store = await storage.openPartition(id);
      await store.append([entry(1, 1, id)]);
      await store.setHardState({ term: 1, vote: 1, commit: 1 });
    }
    await storage.close();
    const database = new ClassicLevel<Uint8Array, Uint8Array>(join(dir, 'kv'), { keyEncoding: 'view', valueEncoding: 'view' });
    await database.open();
    const keys: Uint8Array[] = [];
    for await (const key of database.keys()) keys.push(key);
    await database.close();
    const prefixes = [partitionPrefix(4), partitionPrefix(5)].map((prefix) => Buffer.from(prefix).toString('hex'));
    expect(keys.length).toBeGreaterThanOrEqual(4);
    for (const key of keys) expect(prefixes).toContain(Buffer.from(key.subarray(0, 11)).toString('hex'));
    expect(new Set(keys.map((key) => Buffer.from(key.subarray(0, 11)).toString('hex'))).size).toBe(2);
  });
});

describe('locking', () => {
  it('a second storage on the same directory is ERR_LOCKED, and works once the first closes', async () => {
    const storage = await openStorage();
    expect(await codeOf(() => ReplicaLogStorage.open({ dir: storage.dir }))).toBe('ERR_LOCKED');
    await storage.close();
    const again = await openStorage({ dir: storage.dir });
    expect(await again.listPartitions()).toEqual([]);
  });

  it('a partition open twice is ERR_LOCKED (also while its first open runs); after close it opens again', async () => {
    const storage = await openStorage();
    const first = storage.openPartition(9);
    expect(await codeOf(() => storage.openPartition(9))).toBe('ERR_LOCKED');
    const store = await first;
    expect(await codeOf(() => storage.openPartition(9))).toBe('ERR_LOCKED');
    expect(storage.openPartitions).toBe(1);
    await store.close();
    expect(storage.openPartitions).toBe(0);
    const again = await storage.openPartition(9);
    expect(again.lastIndex()).toBe(0);
  });

  it('close() closes every open partition; later calls are ERR_CLOSED', async () => {
    const storage = await ReplicaLogStorage.open({ dir: makeTempDir('replicalog-storage-') });
    const stores = await Promise.all([1, 2, 3].map((id) => storage.openPartition(id)));
    const writes = stores.map((store) => store.append([entry(1, 1, 1)]));
    await storage.close();
    await Promise.all(writes); // queued writes finished before the database closed
    for (const store of stores) expect(await codeOf(() => store.append([entry(2, 1, 1)]))).toBe('ERR_CLOSED');
    expect(await codeOf(() => storage.openPartition(4))).toBe('ERR_CLOSED');
    expect(await codeOf(() => storage.listPartitions())).toBe('ERR_CLOSED');
  });
});

describe('bad arguments', () => {
  it('a storage and a single store refuse each other\'s directory (ERR_INVALID_ARGUMENT), changing nothing', async () => {
    const { ReplicaLogStore } = await import('../lib/replica-log-store.js');
    const storeDir = makeTempDir('replicalog-store-');
    await (await ReplicaLogStore.open({ dir: storeDir })).close();
    const before = readdirSync(storeDir).sort();
    const storageError = (await ReplicaLogStorage.open({ dir: storeDir }).then(() => new Error('opened'), (caught: unknown) => caught)) as Error & { code: string };
    expect(storageError.code).toBe('ERR_INVALID_ARGUMENT');
    expect(storageError.message).toContain('ReplicaLogStore.open');
    expect(readdirSync(storeDir).sort()).toEqual(before);

    const storage = await openStorage();
    await storage.close();
    const storeError = (await ReplicaLogStore.open({ dir: storage.dir }).then(() => new Error('opened'), (caught: unknown) => caught)) as Error & { code: string };
    expect(storeError.code).toBe('ERR_INVALID_ARGUMENT');
    expect(storeError.message).toContain('ReplicaLogStorage.open');
    expect(readdirSync(storage.dir).sort()).toEqual(['LOCK.db', 'kv', 'partitions']);
  });

  it("ReplicaLogStore.open refuses a storage's partition directory (it would get a KV of its own)", async () => {
    const storage = await openStorage();
    const store = await storage.openPartition(3);
    await store.setHardState({ term: 2, vote: 1, commit: 0 });
    await store.close();
    const { ReplicaLogStore } = await import('../lib/replica-log-store.js');
    const error = (await ReplicaLogStore.open({ dir: storage.partitionDirectory(3) }).then(
      () => new Error('opened'),
      (caught: unknown) => caught,
    )) as Error & { code: string };
    expect(error.code).toBe('ERR_INVALID_ARGUMENT');
    expect(error.message).toContain('openPartition');
    expect(readdirSync(storage.partitionDirectory(3))).not.toContain('kv');
  });

  it.each([
    // As ReplicaLogStore.open: a number outside the safe unsigned range is ERR_OUT_OF_RANGE.
    ['a negative partition id', (storage: ReplicaLogStorage) => storage.openPartition(-1), 'ERR_OUT_OF_RANGE'],
    ['a fractional partition id', (storage: ReplicaLogStorage) => storage.openPartition(1.5), 'ERR_OUT_OF_RANGE'],
    ['a bad cache bound', (storage: ReplicaLogStorage) => storage.openPartition(1, { cacheMaxEntries: -3 }), 'ERR_OUT_OF_RANGE'],
  ])('%s is refused with %s', async (_name, action, code) => {
    const storage = await openStorage();
    expect(await codeOf(() => action(storage))).toBe(code);
    expect(storage.openPartitions).toBe(0);
  });

  it.each([
    ['an empty dir', { dir: '' }],
    ['a storage name with a slash', { name: 'a/b' }],
    ['a storage name that is empty', { name: '' }],
    ['unknown append barriers', { appendBarriers: 'sometimes' as 'per-file' }],
  ])('open refuses %s with ERR_INVALID_ARGUMENT', async (_name, options) => {
    expect(await codeOf(() => ReplicaLogStorage.open({ dir: makeTempDir('replicalog-storage-'), ...options }))).toBe('ERR_INVALID_ARGUMENT');
  });
});

describe('the shared write pipeline', () => {
  it('hard states written by many partitions at once share synced KV batches, and all are durable', async () => {
    const dir = makeTempDir('replicalog-storage-');
    const storage = await ReplicaLogStorage.open({ dir });
    const count = 200;
    const stores = await Promise.all(Array.from({ length: count }, (_, position) => storage.openPartition(position + 1)));
    const before = storage.stats();
    await Promise.all(stores.map((store, position) => store.setHardState({ term: 5, vote: position, commit: 0 })));
    const after = storage.stats();
    expect(after.kvWrites - before.kvWrites).toBe(count);
    // Every write joined one of very few batches (the first may start before the rest arrive).
    expect(after.kvBatches - before.kvBatches).toBeLessThanOrEqual(3);
    await storage.close();
    const reopened = await openStorage({ dir });
    for (const position of [0, 99, 199]) expect((await reopened.openPartition(position + 1)).hardState()).toEqual({ term: 5, vote: position, commit: 0 });
  });

  it('appends of many partitions share barrier passes, answered by one syncfs when they are many; all durable', async () => {
    let syncs = 0;
    const counting: FileSystem = {
      ...nodeFileSystem,
      syncFileSystem: async (path) => {
        syncs++;
        return nodeFileSystem.syncFileSystem!(path);
      },
    };
    expect(nodeFileSystem.syncFileSystem).toBeDefined();
    const dir = makeTempDir('replicalog-storage-');
    const storage = await ReplicaLogStorage.open({ dir, fileSystem: counting });
    const count = 50;
    const stores = await Promise.all(Array.from({ length: count }, (_, position) => storage.openPartition(position + 1)));
    // Opening them shared passes too (each partition's directory once: fewer paths than the limit).
    const opened = storage.stats();
    expect(opened.barrierRequests).toBe(count);
    expect(opened.fileSystemSyncs).toBe(0);
    expect(syncs).toBe(0);
    await Promise.all(stores.map((store, position) => store.append([entry(1, 1, position), entry(2, 1, position)])));
    const stats = storage.stats();
    // Two barriers per append (staged data before the renames, the renames before the ack).
    expect(stats.barrierRequests - opened.barrierRequests).toBe(2 * count);
    expect(stats.barrierPasses - opened.barrierPasses).toBeLessThanOrEqual(6);
    // 50 partitions x 4 staged paths, then x 2 directories: more than the per-file limit, so syncfs.
    expect(syncs).toBeGreaterThanOrEqual(2);
    expect(stats.fileSystemSyncs).toBe(syncs);
    await storage.close();
    const reopened = await openStorage({ dir });
    for (const position of [0, 49]) {
      const store = await reopened.openPartition(position + 1);
      expect(store.entries(1, 3, Number.MAX_SAFE_INTEGER).map((e) => e.data)).toEqual([Uint8Array.of(position, 1), Uint8Array.of(position, 2)]);
    }
  });

  it('a lone append is made durable by fsyncs of its own paths, not by a syncfs', async () => {
    let syncs = 0;
    const fsynced: string[] = [];
    const counting: FileSystem = {
      ...nodeFileSystem,
      fsync: async (path) => {
        fsynced.push(path);
        return nodeFileSystem.fsync(path);
      },
      syncFileSystem: async () => (syncs++, true),
    };
    const storage = await openStorage({ fileSystem: counting });
    const store = await storage.openPartition(1);
    // The open's pass: the partition directory (its wal/ and staging/ names).
    expect(storage.stats()).toMatchObject({ barrierPasses: 1, barrierRequests: 1, barrierFsyncs: 1 });
    fsynced.length = 0;
    await store.append([entry(1, 1, 1)]);
    expect(syncs).toBe(0);
    const relative = fsynced.map((path) => path.slice(store.dir.length + 1)).sort();
    expect(relative).toEqual(['staging', 'staging/0000000000001', 'staging/0000000000001/RAFT', 'wal'].sort());
    expect(storage.stats()).toMatchObject({ barrierPasses: 3, barrierRequests: 3, barrierFsyncs: 5, fileSystemSyncs: 0 });
  });

  it("per-file barriers fsync each partition's entries and never call syncfs", async () => {
    let syncs = 0;
    const counting: FileSystem = { ...nodeFileSystem, syncFileSystem: async () => (syncs++, true) };
    const storage = await openStorage({ fileSystem: counting, appendBarriers: 'per-file' });
    const stores = await Promise.all([1, 2, 3].map((id) => storage.openPartition(id)));
    await Promise.all(stores.map((store) => store.append([entry(1, 1, 1)])));
    expect(syncs).toBe(0);
    expect(stores.map((store) => store.lastIndex())).toEqual([1, 1, 1]);
  });

  it('a failed shared KV batch fails every partition in it with ERR_IO, and nothing of it is visible', async () => {
    const storage = await openStorage();
    const stores = await Promise.all([1, 2, 3].map((id) => storage.openPartition(id)));
    await Promise.all(stores.map((store) => store.setHardState({ term: 1, vote: 0, commit: 0 })));
    // The database's batch fails once (as an I/O error would), for whichever partitions share it.
    const database = (storage as unknown as { database: { batch: (...args: unknown[]) => Promise<void> } }).database;
    const batch = database.batch.bind(database);
    database.batch = async () => {
      database.batch = batch;
      throw Object.assign(new Error('injected EIO'), { code: 'EIO' });
    };
    const results = await Promise.allSettled(stores.map((store) => store.setHardState({ term: 2, vote: 0, commit: 0 })));
    expect(results.map((result) => result.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect(results.map((result) => (result as PromiseRejectedResult).reason.code)).toEqual(['ERR_IO', 'ERR_IO', 'ERR_IO']);
    expect(stores.map((store) => store.hardState().term)).toEqual([1, 1, 1]);
  });
});

describe('resources', () => {
  it('an idle partition holds no descriptor: 300 open partitions hold as many as none', async () => {
    const storage = await openStorage();
    const baseline = openDescriptors().filter((target) => target.startsWith(storage.dir));
    expect(baseline.length).toBeGreaterThan(0); // the lock and the KV database are the storage's
    const stores = [];
    for (let id = 1; id <= 300; id++) {
      const store = await storage.openPartition(id);
      await store.append([entry(1, 1, 1)]);
      await store.setHardState({ term: 1, vote: 1, commit: 1 });
      stores.push(store);
    }
    const held = openDescriptors().filter((target) => target.startsWith(storage.dir));
    expect(held.filter((target) => target.includes('/partitions/'))).toEqual([]);
    expect(held.length).toBeLessThanOrEqual(baseline.length + 2); // LevelDB may roll its log file
    expect(stores.length).toBe(300);
  });
});
