/**
 * ReplicaLogStorage's edges (issue 19): one lock per storage directory (a second storage on it,
 * a plain store on it, and a partition opened twice are ERR_LOCKED), partitions isolated by
 * their key prefixes and directories, close() while partitions write, and the two shared
 * pipelines (KvGroupCommit, FileSystemBarrier) merging writes without answering a request with
 * a pass that started before it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ClassicLevel } from 'classic-level';
import { ErrorCode } from '../lib/errors.js';
import { ReplicaLogStore } from '../lib/replica-log-store.js';
import { ReplicaLogStorage } from '../lib/storage.js';
import { partitionRun } from './helpers/partition-entries.js';
import { nodeFileSystem } from '../lib/wal/file-system.js';
import { FileSystemBarrier, KvGroupCommit } from '../lib/wal/kv-group-commit.js';
import { kvPath } from '../lib/wal/layout.js';
import { codeOf } from './helpers/stores.js';
import { makeTempDir, removeTempDirs } from './helpers/temp-dir.js';

const storages: ReplicaLogStorage[] = [];
afterEach(async () => {
  for (const storage of storages.splice(0)) await storage.close().catch(() => {});
  removeTempDirs();
});

async function openStorage(dir: string, options: Partial<Parameters<typeof ReplicaLogStorage.open>[0]> = {}): Promise<ReplicaLogStorage> {
  const storage = await ReplicaLogStorage.open({ dir, ...options });
  storages.push(storage);
  return storage;
}

const run = partitionRun;
const text = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes);

describe('one lock per storage', () => {
  it('a second ReplicaLogStorage on the same directory is ERR_LOCKED while the storage is open, and opens once it is closed', async () => {
    const dir = makeTempDir('replicalog-storage-');
    const storage = await openStorage(dir);
    expect(await codeOf(() => ReplicaLogStorage.open({ dir }))).toBe(ErrorCode.Locked);
    await storage.close();
    const other = await ReplicaLogStorage.open({ dir });
    await other.close();
  });

  it('a plain ReplicaLogStore on the storage directory is refused, open or closed (ERR_INVALID_ARGUMENT: it is a storage)', async () => {
    const dir = makeTempDir('replicalog-storage-');
    const storage = await openStorage(dir);
    expect(await codeOf(() => ReplicaLogStore.open({ dir }))).toBe(ErrorCode.InvalidArgument);
    await storage.close();
    expect(await codeOf(() => ReplicaLogStore.open({ dir }))).toBe(ErrorCode.InvalidArgument);
  });

  it('a partition opened twice is ERR_LOCKED (also while the first open is still running); closed, it opens again', async () => {
    const storage = await openStorage(makeTempDir('replicalog-storage-'));
    const first = storage.openPartition(7);
    expect(await codeOf(() => storage.openPartition(7))).toBe(ErrorCode.Locked);
    const store = await first;
    expect(await codeOf(() => storage.openPartition(7))).toBe(ErrorCode.Locked);
    await store.append(run(7, 1, 2, 1));
    await store.close();
    const again = await storage.openPartition(7);
    expect(again.lastIndex()).toBe(2);
    expect(storage.openPartitions).toBe(1);
  });
});

describe('partitions are isolated', () => {
  it('every partition reads back only its own entries and hard state after a reopen, and KV holds only p/<id>/ keys', async () => {
    const dir = makeTempDir('replicalog-storage-');
    const ids = [0, 1, 2, 255, 256, 70_000];
    let storage = await openStorage(dir);
    const stores = await Promise.all(ids.map((id) => storage.openPartition(id)));
    // All at once: the writes of every partition share KV batches and syncfs passes.
    await Promise.all(
      stores.map((store, position) =>
        Promise.all([store.append(run(ids[position]!, 1, position + 1, position + 1)), store.setHardState({ term: position + 1, vote: 1, commit: position + 1 })]),
      ),
    );
    const stats = storage.stats();
    expect(stats.kvWrites).toBeGreaterThanOrEqual(ids.length);
    expect(stats.kvBatches).toBeLessThan(stats.kvWrites);
    await storage.close();
    storage = await openStorage(dir);
    expect(await storage.listPartitions()).toEqual(ids);
    for (const [position, id] of ids.entries()) {
      const store = await storage.openPartition(id);
      expect(store.lastIndex()).toBe(position + 1);
      expect(store.entries(1, position + 2).map((read) => text(read.data))).toEqual(run(id, 1, position + 1, position + 1).map((written) => text(written.data)));
      expect(store.initialState().hardState).toEqual({ term: position + 1, vote: 1, commit: position + 1 });
      await store.close();
    }
    await storage.close();
    // Every key is under p/<8-byte id>/ of a partition written above.
    const database = new ClassicLevel<Uint8Array, Uint8Array>(kvPath(dir), { keyEncoding: 'view', valueEncoding: 'view' });
    await database.open();
    try {
      const prefixes = new Set<number>();
      for await (const key of database.keys()) {
        expect(text(key.subarray(0, 2))).toBe('p/');
        expect(text(key.subarray(10, 11))).toBe('/');
        prefixes.add(Number(Buffer.from(key.subarray(2, 10)).readBigUInt64BE()));
      }
      expect([...prefixes].sort((a, b) => a - b)).toEqual(ids);
    } finally {
      await database.close();
    }
  });
});

describe('close() while partitions write', () => {
  it('waits for every queued write: each acknowledged one is there after a reopen, later calls are ERR_CLOSED', async () => {
    const dir = makeTempDir('replicalog-storage-');
    const storage = await openStorage(dir);
    const stores = await Promise.all([1, 2, 3].map((id) => storage.openPartition(id)));
    const writes = stores.map((store, position) =>
      Promise.all([store.append(run(position + 1, 1, 3, 1)), store.setHardState({ term: 1, vote: 0, commit: 3 })]).then(
        () => 'ok',
        (error: { code?: string }) => error.code ?? 'uncoded',
      ),
    );
    const closing = storage.close();
    expect(await codeOf(() => storage.openPartition(4))).toBe(ErrorCode.Closed);
    await closing;
    expect(await Promise.all(writes)).toEqual(['ok', 'ok', 'ok']);
    expect(await codeOf(() => stores[0]!.append(run(1, 4, 4, 1)))).toBe(ErrorCode.Closed);
    const reopened = await openStorage(dir);
    for (const id of [1, 2, 3]) {
      const store = await reopened.openPartition(id);
      expect(store.lastIndex()).toBe(3);
      expect(store.initialState().hardState.commit).toBe(3);
    }
  });
});

describe('close() while a partition opens', () => {
  it('waits for the open, then closes that partition too: the database closes cleanly and a reopen finds the partition', async () => {
    const dir = makeTempDir('replicalog-storage-');
    const storage = await openStorage(dir);
    const opening = storage.openPartition(9).then(
      (store) => store,
      (error: { code?: string }) => error.code,
    );
    await storage.close();
    const store = await opening;
    expect(typeof store).toBe('object');
    expect(storage.openPartitions).toBe(0);
    expect(await codeOf(() => (store as ReplicaLogStore).append(run(9, 1, 1, 1)))).toBe(ErrorCode.Closed);
    const reopened = await openStorage(dir);
    expect(await reopened.listPartitions()).toEqual([9]);
  });
});

describe('close() of a partition already closing', () => {
  it('storage.close() waits for a partition whose own close() is still draining its writes (they are acknowledged, not cut off)', async () => {
    const dir = makeTempDir('replicalog-storage-');
    const storage = await openStorage(dir);
    const store = await storage.openPartition(1);
    const writes = [store.append(run(1, 1, 2, 1)), store.setHardState({ term: 1, vote: 1, commit: 2 })].map((write) =>
      write.then(
        () => 'ok',
        (error: { code?: string; message: string }) => `${error.code}: ${error.message}`,
      ),
    );
    const closingPartition = store.close();
    // A second close() of the partition waits for the first, as storage.close() relies on.
    const secondClose = store.close();
    await storage.close();
    expect(await Promise.all(writes)).toEqual(['ok', 'ok']);
    await Promise.all([closingPartition, secondClose]);
    const reopened = await openStorage(dir);
    const again = await reopened.openPartition(1);
    expect(again.lastIndex()).toBe(2);
    expect(again.initialState().hardState).toEqual({ term: 1, vote: 1, commit: 2 });
  });
});

describe('the shared pipelines', () => {
  it('KvGroupCommit: writes of one turn share one synced batch; a write arriving while it syncs goes in the next', async () => {
    const dir = makeTempDir('replicalog-storage-');
    const database = new ClassicLevel<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' });
    await database.open();
    try {
      const batches: number[] = [];
      const batch = database.batch.bind(database) as (...args: unknown[]) => Promise<void>;
      (database as unknown as { batch: unknown }).batch = (operations: unknown[], ...rest: unknown[]) => {
        batches.push(operations.length);
        return batch(operations, ...rest);
      };
      const commit = new KvGroupCommit(database, dir);
      const put = (key: string) => commit.write([{ type: 'put', key: new TextEncoder().encode(key), value: new Uint8Array([1]) }]);
      const first = [put('a'), put('b'), put('c')];
      await Promise.resolve();
      // The batch of a, b, c is now running or about to: d must not be answered by it.
      const late = new Promise<void>((resolve) => setImmediate(() => resolve(put('d'))));
      await Promise.all([...first, late]);
      expect(batches).toEqual([3, 1]);
      expect(commit.stats).toEqual({ passes: 2, requests: 4 });
    } finally {
      await database.close();
    }
  });

  it('FileSystemBarrier: a request made while a pass runs is answered by a later pass, never by the running one', async () => {
    const events: string[] = [];
    let release: (() => void) | undefined;
    let pass = 0;
    const barrier = new FileSystemBarrier(async () => {
      const number = ++pass;
      events.push(`start ${number}`);
      if (number === 1) await new Promise<void>((resolve) => (release = resolve));
      events.push(`end ${number}`);
      return true;
    });
    const early = [barrier.request().then(() => events.push('early a')), barrier.request().then(() => events.push('early b'))];
    while (release === undefined) await new Promise<void>((resolve) => setImmediate(resolve));
    const late = barrier.request().then(() => events.push('late'));
    release();
    await Promise.all([...early, late]);
    // The early requests are answered by pass 1 (a pass may start again before their callbacks run),
    // the late one only once pass 2, which started after it, has ended.
    expect(events.filter((event) => event.startsWith('start') || event.startsWith('end'))).toEqual(['start 1', 'end 1', 'start 2', 'end 2']);
    expect(events.indexOf('early a')).toBeGreaterThan(events.indexOf('end 1'));
    expect(events.indexOf('late')).toBeGreaterThan(events.indexOf('end 2'));
    expect(barrier.stats).toEqual({ passes: 2, requests: 3 });
  });

  it('a failed syncfs pass rejects every partition in it with ERR_IO naming its directory; the others and a reopen work', async () => {
    const dir = makeTempDir('replicalog-storage-');
    let failNext = false;
    const storage = await openStorage(dir, {
      barrierSyncLimit: 0, // every shared pass one syncfs
      fileSystem: {
        ...nodeFileSystem,
        syncFileSystem: async (path) => {
          if (failNext) {
            failNext = false;
            throw Object.assign(new Error(`EIO: injected, syncfs '${path}'`), { code: 'EIO' });
          }
          return true;
        },
      },
    });
    const stores = await Promise.all([1, 2, 3].map((id) => storage.openPartition(id)));
    await Promise.all(stores.map((store, position) => Promise.all([store.append(run(position + 1, 1, 2, 1)), store.setHardState({ term: 1, vote: 0, commit: 2 })])));
    failNext = true;
    const results = await Promise.all(
      stores.slice(0, 2).map((store, position) =>
        store.append(run(position + 1, 3, 4, 1)).then(
          () => undefined,
          (error: { code?: string; message: string }) => error,
        ),
      ),
    );
    for (const [position, error] of results.entries()) {
      expect(error?.code).toBe(ErrorCode.Io);
      expect(error?.message).toContain(stores[position]!.dir);
      expect(stores[position]!.lastIndex()).toBe(2);
      // The failed partition refuses later writes until it is reopened.
      expect(await codeOf(() => stores[position]!.setHardState({ term: 1, vote: 0, commit: 2 }))).toBe(ErrorCode.Io);
    }
    // The partition that was not in the pass goes on.
    await stores[2]!.append(run(3, 3, 4, 1));
    expect(stores[2]!.lastIndex()).toBe(4);
    for (const store of stores.slice(0, 2)) await store.close();
    for (const id of [1, 2]) {
      const store = await storage.openPartition(id);
      expect(store.initialState().hardState.commit).toBe(2);
      expect(store.lastIndex()).toBeGreaterThanOrEqual(2);
      await store.append(run(id, 3, 3, 2));
      expect(store.lastIndex()).toBe(3);
    }
  });
});
