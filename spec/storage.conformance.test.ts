/**
 * The conformance suite against a partition of a ReplicaLogStorage (lib/storage.ts): the same
 * contract as a store opened alone, with the storage's shared KV, group commit and shared
 * syncfs barriers. Each case's partition has a neighbour in the same storage that holds its own
 * log and hard state: a reopen must find both, and the neighbour's data never leaks in.
 */
import { existsSync } from 'node:fs';
import { expect, it } from 'vitest';
import { ReplicaLogStorage } from '../lib/storage.js';
import type { ReplicaLogStore } from '../lib/replica-log-store.js';
import { storageConformance } from './conformance.js';

const PARTITION = 7;
const NEIGHBOUR = 8;
const directories: string[] = [];
const storages = new Map<ReplicaLogStore, ReplicaLogStorage>();
let neighboursChecked = 0;

async function openWithNeighbour(dir: string, fresh: boolean, journal: boolean): Promise<ReplicaLogStore> {
  const storage = await ReplicaLogStorage.open({ dir, journal });
  const neighbour = await storage.openPartition(NEIGHBOUR);
  if (fresh) {
    await neighbour.append([{ index: 1, term: 3, type: 0, data: Uint8Array.of(8, 8) }]);
    await neighbour.setHardState({ term: 3, vote: 2, commit: 1 });
  } else {
    // The neighbour is exactly what it was: nothing of the partition under test reached it.
    expect(neighbour.lastIndex()).toBe(1);
    expect(neighbour.hardState()).toEqual({ term: 3, vote: 2, commit: 1 });
    expect(neighbour.entries(1, 2, Number.MAX_SAFE_INTEGER)[0]!.data).toEqual(Uint8Array.of(8, 8));
    neighboursChecked++;
  }
  await neighbour.close();
  const store = await storage.openPartition(PARTITION);
  storages.set(store, storage);
  return store;
}

async function closeBoth(store: ReplicaLogStore): Promise<string> {
  const storage = storages.get(store)!;
  storages.delete(store);
  await store.close();
  await storage.close();
  return storage.dir;
}

// Plain, and journal mode (records made durable through the storage's shared barrier).
for (const journal of [false, true]) {
  storageConformance(`ReplicaLogStorage partition${journal ? ' (journal mode)' : ''}`, {
    open: async ({ tempDir }) => {
      const dir = tempDir('replicalog-storage-conformance-');
      directories.push(dir);
      return openWithNeighbour(dir, true, journal);
    },
    reopen: async (store) => openWithNeighbour(await closeBoth(store), false, journal),
    close: async (store) => {
      await closeBoth(store);
    },
    modelRuns: 50,
  });
}

it('the suite removed every temporary directory, and reopens found the neighbour intact', () => {
  expect(directories.length).toBeGreaterThan(100);
  expect(neighboursChecked).toBeGreaterThan(2);
  expect(directories.filter((dir) => existsSync(dir))).toEqual([]);
});
