/**
 * The conformance suite against a store in journal mode (lib/wal/journal.ts): write groups go
 * to journal records and reach wal/ with later checkpoints. The reopen cases also reopen
 * WITHOUT the journal option: a store must read what journal mode wrote either way.
 */
import { existsSync } from 'node:fs';
import { expect, it } from 'vitest';
import { ReplicaLogStore } from '../lib/replica-log-store.js';
import { storageConformance } from './conformance.js';

const directories: string[] = [];
let reopened = 0;

storageConformance('ReplicaLogStore (journal mode)', {
  open: async ({ tempDir }) => {
    const dir = tempDir('replicalog-journal-conformance-');
    directories.push(dir);
    return ReplicaLogStore.open({ dir, journal: true });
  },
  reopen: async (store) => {
    await store.close();
    // Alternate: journal mode again, then plain mode.
    return ReplicaLogStore.open({ dir: store.dir, journal: reopened++ % 2 === 0 });
  },
  close: (store) => store.close(),
  modelRuns: 50,
});

it('the suite removed every temporary directory it handed out, and reopened both ways', () => {
  expect(directories.length).toBeGreaterThan(50);
  expect(reopened).toBeGreaterThan(2);
  expect(directories.filter((dir) => existsSync(dir))).toEqual([]);
});
