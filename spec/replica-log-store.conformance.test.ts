import { existsSync } from 'node:fs';
import { expect, it } from 'vitest';
import { ReplicaLogStore } from '../lib/replica-log-store.js';
import { storageConformance } from './conformance.js';

// Every directory the suite handed out; the suite removes each after its case (issue 17).
const directories: string[] = [];

storageConformance('ReplicaLogStore', {
  open: async ({ tempDir }) => {
    const dir = tempDir('replicalog-conformance-');
    directories.push(dir);
    return ReplicaLogStore.open({ dir });
  },
  reopen: async (store) => {
    await store.close();
    return ReplicaLogStore.open({ dir: store.dir });
  },
  close: (store) => store.close(),
  // Every run opens real stores and fsyncs on disk (reopen included): 50 runs, about 1 s on an idle disk.
  modelRuns: 50,
});

// Runs after the suite (vitest runs a file's tests in order).
it('the suite removed every temporary directory it handed out', () => {
  expect(directories.length).toBeGreaterThan(50);
  expect(directories.filter((dir) => existsSync(dir))).toEqual([]);
});
