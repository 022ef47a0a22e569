import { afterEach } from 'vitest';
import { ReplicaLogStore } from '../lib/replica-log-store.js';
import { storageConformance } from './conformance.js';
import { makeTempDir, removeTempDirs } from './helpers/temp-dir.js';

// The suite's own afterEach (inside its describe) closes the stores first; then this one removes their directories.
afterEach(removeTempDirs);

storageConformance('ReplicaLogStore', {
  open: async () => ReplicaLogStore.open({ dir: makeTempDir('replicalog-conformance-') }),
  reopen: async (store) => {
    await store.close();
    return ReplicaLogStore.open({ dir: store.dir });
  },
  close: (store) => store.close(),
  // Every run opens real stores and fsyncs on disk (reopen included): 50 runs, about 1 s on an idle disk.
  modelRuns: 50,
});
