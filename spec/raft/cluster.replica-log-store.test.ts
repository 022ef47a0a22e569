/** The multi-node RawNode suite over the on-disk ReplicaLogStore (one directory per node). */
import { afterEach, describe, expect, it } from 'vitest';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import type { WritableStorage } from '../../lib/types.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';
import { defineClusterTests } from './cluster-suite.js';
import { runSimulationSeeds } from './simulation.js';
import type { StoreFactory } from './network.js';

const dirs = new Map<WritableStorage, string>();

const factory: StoreFactory = {
  async create() {
    const dir = makeTempDir('replicalog-raft-');
    const store = await ReplicaLogStore.open({ dir });
    dirs.set(store, dir);
    return store;
  },
  async reopen(_id, store) {
    const dir = dirs.get(store)!;
    await (store as ReplicaLogStore).close();
    const reopened = await ReplicaLogStore.open({ dir });
    dirs.delete(store);
    dirs.set(reopened, dir);
    return reopened;
  },
  async close(_id, store) {
    await (store as ReplicaLogStore).close();
    dirs.delete(store);
  },
};

afterEach(() => removeTempDirs());

defineClusterTests('ReplicaLogStore', factory);

describe('randomised raft simulation over ReplicaLogStore', () => {
  // Disk-bound: a few short seeds here; run more with runSimulationSeeds from a script.
  it('holds safety for 3 seeds', async () => {
    const results = await runSimulationSeeds(1, 3, { factory, steps: 300 });
    expect(results.length).toBe(3);
  }, 60_000);
});
