/**
 * createSnapshot writes its data file beside the store's write queue (issue 18): appends and
 * hard states made while a large state file is being fsynced are not held behind it, and the
 * snapshot's KV record is queued once the file is durable. close() called meanwhile still lets
 * that snapshot finish.
 */
import { afterEach, expect, it } from 'vitest';
import { ReplicaLogStore } from '../lib/replica-log-store.js';
import { EntryType, type Entry } from '../lib/types.js';
import { nodeFileSystem, type FileSystem } from '../lib/wal/file-system.js';
import { makeTempDir, removeTempDirs } from './helpers/temp-dir.js';

afterEach(removeTempDirs);

const entry = (index: number): Entry => ({ index, term: 1, type: EntryType.Normal, data: new TextEncoder().encode(`${index}`) });
const run = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, k) => entry(from + k));

/** A file system whose fsync of a snapshot's temporary data file waits until `release()`. */
function slowSnapshotFsync(): { fileSystem: FileSystem; release: () => void; reached: Promise<void> } {
  let release!: () => void;
  let reachedNow!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const reached = new Promise<void>((resolve) => (reachedNow = resolve));
  const fileSystem: FileSystem = {
    ...nodeFileSystem,
    async fsync(path) {
      if (path.endsWith('.tmp') && path.includes('snapshot')) {
        reachedNow();
        await gate;
      }
      return nodeFileSystem.fsync(path);
    },
  };
  return { fileSystem, release, reached };
}

it.each([{ journal: false }, { journal: true }])('an append made while the snapshot data file is fsynced completes first (journal: $journal)', async ({ journal }) => {
  const slow = slowSnapshotFsync();
  const store = await ReplicaLogStore.open({ dir: makeTempDir(), fileSystem: slow.fileSystem, journal });
  await Promise.all([store.append(run(1, 10)), store.setHardState({ term: 1, vote: 1, commit: 10 })]);
  const order: string[] = [];
  const snapshot = store.createSnapshot(8, undefined, new Uint8Array(64 * 1024).fill(7)).then((made) => {
    order.push('snapshot');
    return made;
  });
  await slow.reached;
  await Promise.all([store.append(run(11, 12)), store.setHardState({ term: 1, vote: 1, commit: 12 })]);
  order.push('append');
  expect(store.lastIndex()).toBe(12);
  slow.release();
  expect((await snapshot).metadata.index).toBe(8);
  expect(order).toEqual(['append', 'snapshot']);
  expect(store.snapshot().metadata.index).toBe(8);
  await store.close();
});

it('close() while the data file is fsynced: the snapshot is still recorded, and writes after close are refused', async () => {
  const slow = slowSnapshotFsync();
  const dir = makeTempDir();
  const store = await ReplicaLogStore.open({ dir, fileSystem: slow.fileSystem });
  await Promise.all([store.append(run(1, 10)), store.setHardState({ term: 1, vote: 1, commit: 10 })]);
  const snapshot = store.createSnapshot(9, undefined, new Uint8Array([1, 2, 3]));
  await slow.reached;
  const closed = store.close();
  await expect(store.append(run(11, 11))).rejects.toMatchObject({ code: 'ERR_CLOSED' });
  slow.release();
  expect((await snapshot).metadata.index).toBe(9);
  await closed;
  const reopened = await ReplicaLogStore.open({ dir });
  expect(reopened.snapshot().metadata.index).toBe(9);
  expect([...reopened.snapshot().data!]).toEqual([1, 2, 3]);
  await reopened.close();
});
