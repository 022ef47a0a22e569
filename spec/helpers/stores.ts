/**
 * ReplicaLogStores opened by a test and closed after it: `afterEach(closeTestStores)` closes
 * every store opened through openTestStore (or handed to trackStore) — a second close does
 * nothing, so a test may close one itself — then removes the temporary directories.
 */
import { ReplicaLogStore, type ReplicaLogStoreOptions } from '../../lib/replica-log-store.js';
import { makeTempDir, removeTempDirs } from './temp-dir.js';

/** Options as the tests pass them (a given db is always a byte-typed ClassicLevel here). */
export type TestStoreOptions = Partial<ReplicaLogStoreOptions<Uint8Array, Uint8Array>>;

const opened: ReplicaLogStore[] = [];

/** Registers a store opened elsewhere for closeTestStores. */
export function trackStore(store: ReplicaLogStore): ReplicaLogStore {
  opened.push(store);
  return store;
}

/** Opens a store in `options.dir`, or in a fresh temporary directory. */
export async function openTestStore(options: TestStoreOptions = {}): Promise<ReplicaLogStore> {
  return trackStore(await ReplicaLogStore.open({ dir: options.dir ?? makeTempDir(), ...options }));
}

/** Closes `store` and opens its directory (and partition) again. */
export async function reopenTestStore(store: ReplicaLogStore, options: TestStoreOptions = {}): Promise<ReplicaLogStore> {
  await store.close();
  return openTestStore({ dir: store.dir, partitionId: store.partitionId, ...options });
}

export async function closeTestStores(): Promise<void> {
  for (const store of opened.splice(0)) await store.close();
  removeTempDirs();
}

/** 'ok' when `action` resolves, else the rejection's code (`uncoded: …` for an Error without one). */
export async function codeOf(action: () => unknown): Promise<string> {
  try {
    await action();
    return 'ok';
  } catch (error) {
    return (error as { code?: string }).code ?? `uncoded: ${(error as Error).message}`;
  }
}
