/**
 * ReplicaLogStore's open() checkpoint (KV raft/log_checkpoint; replica-log-store.ts header
 * "Checkpoint"): open() takes the terms of the retained entries <= V from it and reads RAFT
 * files only for the tail past V, with exactly the observable state of a full scan; a missing,
 * undecodable or inconsistent record falls back to the full scan. The whole conformance suite
 * also runs with a checkpoint written at every hard state and every close.
 */
import { chmodSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeEntry } from '../lib/codec.js';
import { ErrorCode } from '../lib/errors.js';
import { ReplicaLogStore } from '../lib/replica-log-store.js';
import { MemoryStorage } from '../lib/memory-storage.js';
import { EntryType, type Entry, type WritableStorage } from '../lib/types.js';
import { verifyTree } from '../lib/verify.js';
import { nodeFileSystem, type FileSystem } from '../lib/wal/file-system.js';
import { entryPath, formatLsn, kvKey, KEY_LOG_CHECKPOINT } from '../lib/wal/layout.js';
import { decodeCheckpoint, encodeCheckpoint, type LogCheckpoint } from '../lib/wal/raft-state.js';
import { observe, storageConformance } from './conformance.js';
import { makeTempDir } from './helpers/temp-dir.js';
import { closeTestStores, codeOf, openTestStore, type TestStoreOptions } from './helpers/stores.js';
import { seededRandom } from '../lib/seeded-random.js';

afterEach(closeTestStores);

type TestOptions = TestStoreOptions;
const open = openTestStore;

/** Closes `store` and opens it again (checkpointInterval 100 unless given), recording which RAFT files the open reads. */
async function reopen(store: ReplicaLogStore, options: TestOptions = {}): Promise<{ store: ReplicaLogStore; reads: number[] }> {
  await store.close();
  const reads: number[] = [];
  const fileSystem: FileSystem = {
    ...nodeFileSystem,
    readFileSync(path) {
      const match = /wal\/([0-9a-z]{13})\/RAFT$/.exec(path);
      if (match) reads.push(parseInt(match[1]!, 36));
      return nodeFileSystem.readFileSync(path);
    },
  };
  // The tests' interval (100) unless told otherwise.
  const again = await open({ dir: store.dir, partitionId: store.partitionId, fileSystem, checkpointInterval: 100, ...options });
  return { store: again, reads: [...reads] };
}

const entry = (index: number, term: number): Entry => ({
  type: EntryType.Normal,
  term,
  index,
  data: new TextEncoder().encode(`e${index}`),
});

/** Entries from..to with a term change every `every` indexes (term = 1 + floor((i-1)/every)). */
function run(from: number, to: number, every = 40, termOffset = 0): Entry[] {
  const entries: Entry[] = [];
  for (let index = from; index <= to; index++) entries.push(entry(index, termOffset + 1 + Math.floor((index - 1) / every)));
  return entries;
}

async function appendInBatches(store: ReplicaLogStore, entries: Entry[], size = 256): Promise<void> {
  for (let start = 0; start < entries.length; start += size) await store.append(entries.slice(start, start + size));
}

async function withKv<T>(dir: string, action: (database: ClassicLevel<Uint8Array, Uint8Array>) => Promise<T>): Promise<T> {
  const database = new ClassicLevel<Uint8Array, Uint8Array>(join(dir, 'kv'), { keyEncoding: 'view', valueEncoding: 'view' });
  await database.open();
  try {
    return await action(database);
  } finally {
    await database.close();
  }
}

async function savedCheckpoint(dir: string): Promise<LogCheckpoint | undefined> {
  return withKv(dir, async (database) => {
    const bytes = await database.get(kvKey(undefined, KEY_LOG_CHECKPOINT));
    return bytes === undefined ? undefined : decodeCheckpoint(bytes);
  });
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, offset) => from + offset);

/** A store with entries 1..300 (a term change every 40), commit 250, checkpoint V = 250 from setHardState. */
async function checkpointed(options: TestOptions = {}): Promise<ReplicaLogStore> {
  const store = await open({ checkpointInterval: 100, ...options });
  await appendInBatches(store, run(1, 300));
  await store.setHardState({ term: 8, vote: 1, commit: 90 }); // 90 < interval: no checkpoint yet
  await store.setHardState({ term: 8, vote: 1, commit: 250 }); // this batch carries V = 250
  return store;
}

describe('open() from the checkpoint', () => {
  it('reads RAFT files only past V and shows exactly the state of a full scan', async () => {
    let store = await checkpointed();
    const before = observe(store);
    let reads: number[];
    ({ store, reads } = await reopen(store));
    expect(store.openStats).toEqual({ scanned: 50, fromCheckpoint: 250, checkpoint: 'used' });
    // The checkpoint is cross-checked against the RAFT files at the first index and at V first.
    expect(reads).toEqual([1, 250, ...range(251, 300)]);
    expect(observe(store)).toEqual(before);
    // The same tree without the record: a full scan, the same state.
    await store.close();
    await withKv(store.dir, (database) => database.del(kvKey(undefined, KEY_LOG_CHECKPOINT)));
    ({ store, reads } = await reopen(store));
    expect(store.openStats).toEqual({ scanned: 300, fromCheckpoint: 0, checkpoint: 'absent' });
    expect(reads).toEqual(range(1, 300));
    expect(observe(store)).toEqual(before);
  });

  it('is written in the hard state batch: V is that commit, the runs are the terms of 1..V', async () => {
    const store = await checkpointed();
    await store.close(); // commit 250 = V: close has nothing to add
    expect(await savedCheckpoint(store.dir)).toEqual({
      verifiedThrough: 250,
      starts: [1, 41, 81, 121, 161, 201, 241],
      terms: [1, 2, 3, 4, 5, 6, 7],
    });
  });

  it('close() writes one when it covers >= 1024 new committed entries (default interval)', async () => {
    let store = await open();
    await appendInBatches(store, run(1, 1100, 300));
    await store.setHardState({ term: 4, vote: 0, commit: 1050 }); // below the 4096 interval
    const before = observe(store);
    ({ store } = await reopen(store));
    expect(store.openStats).toEqual({ scanned: 50, fromCheckpoint: 1050, checkpoint: 'used' });
    expect(observe(store)).toEqual(before);
  });

  it('a small store gets none (the full scan is cheap), nor one without hard state', async () => {
    let store = await open();
    await store.append(run(1, 20));
    await store.setHardState({ term: 1, vote: 0, commit: 20 });
    ({ store } = await reopen(store));
    expect(store.openStats.checkpoint).toBe('absent');
    // No hard state (invariant C3): never a checkpoint, whatever the interval.
    let fresh = await open({ checkpointInterval: 1 });
    await appendInBatches(fresh, run(1, 50));
    ({ store: fresh } = await reopen(fresh, { checkpointInterval: 1 }));
    expect(fresh.openStats.checkpoint).toBe('absent');
    await fresh.close();
    expect(await savedCheckpoint(fresh.dir)).toBeUndefined();
  });

  it('with a partition id the record is under the partition prefix', async () => {
    const shared = new ClassicLevel<Uint8Array, Uint8Array>(join(makeTempDir(), 'kv'), { keyEncoding: 'view', valueEncoding: 'view' });
    await shared.open();
    try {
      let store = await checkpointed({ partitionId: 7, db: shared });
      ({ store } = await reopen(store, { db: shared }));
      expect(store.openStats.fromCheckpoint).toBe(250);
      expect(await shared.get(kvKey(7, KEY_LOG_CHECKPOINT))).toBeDefined();
      expect(await shared.get(kvKey(undefined, KEY_LOG_CHECKPOINT))).toBeUndefined();
      await store.close();
    } finally {
      await shared.close();
    }
  });
});

describe('a checkpoint older than later writes is stale at worst, never wrong', () => {
  it('compaction below V: entries compacted since are skipped', async () => {
    let store = await checkpointed();
    await store.compact(100);
    const before = observe(store);
    let reads: number[];
    ({ store, reads } = await reopen(store));
    expect(store.openStats).toEqual({ scanned: 50, fromCheckpoint: 150, checkpoint: 'used' });
    expect(reads).toEqual([101, 250, ...range(251, 300)]);
    expect(observe(store)).toEqual(before);
  });

  it('compaction above V: stale, a full scan of what is left', async () => {
    let store = await checkpointed();
    await store.compact(280);
    const before = observe(store);
    ({ store } = await reopen(store));
    expect(store.openStats).toMatchObject({ scanned: 20, fromCheckpoint: 0, checkpoint: 'stale' });
    expect(observe(store)).toEqual(before);
  });

  it('a truncating append of the uncommitted tail, then more appends', async () => {
    let store = await checkpointed();
    // Replace 260..300 (above the commit 250) by a new leader's entries of term 20, and go on.
    await store.append(run(260, 320, 1000, 19));
    await store.append(run(321, 330, 1000, 20));
    expect(store.term(259)).toBe(7);
    expect(store.term(260)).toBe(20);
    const before = observe(store);
    let reads: number[];
    ({ store, reads } = await reopen(store));
    expect(store.openStats).toEqual({ scanned: 80, fromCheckpoint: 250, checkpoint: 'used' });
    expect(reads).toEqual([1, 250, ...range(251, 330)]);
    expect(observe(store)).toEqual(before);
  });

  it('applySnapshot drops the record with the entries it describes', async () => {
    let store = await checkpointed();
    await store.applySnapshot({ metadata: { index: 300, term: 8, confState: { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } } });
    await store.append(run(301, 340, 1000, 8));
    const before = observe(store);
    ({ store } = await reopen(store, { checkpointInterval: 10 }));
    expect(store.openStats).toEqual({ scanned: 40, fromCheckpoint: 0, checkpoint: 'absent' });
    expect(observe(store)).toEqual(before);
    // A new commit far enough past the snapshot writes a fresh one covering only the new log.
    await store.setHardState({ term: 9, vote: 1, commit: 340 });
    const committed = observe(store);
    await store.close();
    expect(await savedCheckpoint(store.dir)).toEqual({ verifiedThrough: 340, starts: [301], terms: [9] });
    store = await open({ dir: store.dir });
    expect(store.openStats).toEqual({ scanned: 0, fromCheckpoint: 40, checkpoint: 'used' });
    expect(observe(store)).toEqual(committed);
    expect(store.term(300)).toBe(8);
    expect(store.term(340)).toBe(9);
  });

  it('a checkpoint whose V the log has moved past, then a new one at a higher commit', async () => {
    let store = await checkpointed();
    await appendInBatches(store, run(301, 600));
    await store.setHardState({ term: 15, vote: 1, commit: 320 }); // 70 past V: not yet
    ({ store } = await reopen(store));
    expect(store.openStats).toEqual({ scanned: 350, fromCheckpoint: 250, checkpoint: 'used' });
    await store.setHardState({ term: 15, vote: 1, commit: 590 });
    const before = observe(store);
    ({ store } = await reopen(store));
    expect(store.openStats).toEqual({ scanned: 10, fromCheckpoint: 590, checkpoint: 'used' });
    expect(observe(store)).toEqual(before);
  });
});

describe('a bad record falls back to the full scan', () => {
  const cases: { name: string; value: (commit: number, last: number) => Uint8Array }[] = [
    { name: 'garbage bytes', value: () => Uint8Array.of(0xde, 0xad, 0xbe, 0xef) },
    { name: 'an unknown version', value: () => Uint8Array.of(2, ...encodeCheckpoint({ verifiedThrough: 10, starts: [1], terms: [1] }).subarray(1)) },
    { name: 'a truncated run', value: () => encodeCheckpoint({ verifiedThrough: 100, starts: [1, 41], terms: [1, 2] }).subarray(0, 40) },
    { name: 'V above the last index', value: (_, last) => encodeCheckpoint({ verifiedThrough: last + 5, starts: [1], terms: [1] }) },
    { name: 'V above the commit', value: (commit) => encodeCheckpoint({ verifiedThrough: commit + 5, starts: [1], terms: [1] }) },
    { name: 'runs not covering the first index', value: () => encodeCheckpoint({ verifiedThrough: 100, starts: [2], terms: [1] }) },
    { name: 'decreasing terms', value: () => encodeCheckpoint({ verifiedThrough: 100, starts: [1, 41], terms: [2, 1] }) },
    { name: 'runs out of order', value: () => encodeCheckpoint({ verifiedThrough: 100, starts: [41, 1], terms: [1, 2] }) },
    { name: 'a run starting above V', value: () => encodeCheckpoint({ verifiedThrough: 100, starts: [1, 141], terms: [1, 2] }) },
    { name: 'no runs', value: () => encodeCheckpoint({ verifiedThrough: 100, starts: [], terms: [] }) },
  ];
  it.each(cases)('$name', async ({ value }) => {
    let store = await checkpointed();
    const before = observe(store);
    await store.close();
    await withKv(store.dir, (database) => database.put(kvKey(undefined, KEY_LOG_CHECKPOINT), value(250, 300)));
    let reads: number[];
    ({ store, reads } = await reopen(store));
    expect(store.openStats).toMatchObject({ scanned: 300, fromCheckpoint: 0, checkpoint: 'invalid' });
    expect(store.openStats.reason).toMatch(/\S/);
    expect(reads).toEqual(range(1, 300));
    expect(observe(store)).toEqual(before);
  });

  it('a record without a hard state is ignored', async () => {
    let store = await open();
    await store.append(run(1, 30));
    await store.close();
    await withKv(store.dir, (database) =>
      database.put(kvKey(undefined, KEY_LOG_CHECKPOINT), encodeCheckpoint({ verifiedThrough: 30, starts: [1], terms: [1] })),
    );
    ({ store } = await reopen(store));
    expect(store.openStats).toMatchObject({ scanned: 30, fromCheckpoint: 0, checkpoint: 'invalid' });
    expect(store.status).toBe('needs-backfill');
  });
});

describe('what open() checks with a checkpoint', () => {
  function damage(dir: string, index: number, bytes: Uint8Array): void {
    const path = join(entryPath(dir, index), 'RAFT');
    chmodSync(path, 0o600);
    rmSync(path);
    writeFileSync(path, bytes, { mode: 0o400 });
  }

  it('a RAFT file damaged at or below V is not found by open(); reading it is ERR_CORRUPT, and verify finds it', async () => {
    let store = await checkpointed();
    await store.close();
    damage(store.dir, 100, Uint8Array.of(0xff, 0xff, 0xff));
    ({ store } = await reopen(store));
    expect(store.openStats.checkpoint).toBe('used');
    expect(store.term(100)).toBe(3); // from the checkpoint
    expect(() => store.entries(100, 101)).toThrow(expect.objectContaining({ code: ErrorCode.Corrupt }));
    expect(store.entries(101, 103).map((e) => e.index)).toEqual([101, 102]);
    await store.close();
    const result = await verifyTree(store.dir);
    expect(result.ok).toBe(false);
    expect(result.problems.map((problem) => problem.code)).toContain('RAFT_CORRUPT');
  });

  it('a RAFT file below V that decodes to another term: entries() refuses it (ERR_CORRUPT), term() keeps the checkpoint term', async () => {
    let store = await checkpointed();
    await store.close();
    damage(store.dir, 100, encodeEntry(entry(100, 5)));
    ({ store } = await reopen(store));
    expect(store.term(100)).toBe(3);
    expect(() => store.entries(99, 101)).toThrow(expect.objectContaining({ code: ErrorCode.Corrupt }));
  });

  it('a RAFT file missing at or below V is not found by open() either; reading it is ERR_CORRUPT', async () => {
    let store = await checkpointed();
    await store.close();
    rmSync(join(entryPath(store.dir, 50), 'RAFT'), { force: true });
    ({ store } = await reopen(store));
    expect(store.openStats.checkpoint).toBe('used');
    expect(store.pendingBackfill).toBe(0);
    expect(() => store.entries(50, 51)).toThrow(expect.objectContaining({ code: ErrorCode.Corrupt }));
  });

  it('a RAFT file damaged in the tail past V is ERR_CORRUPT at open', async () => {
    const store = await checkpointed();
    await store.close();
    damage(store.dir, 270, Uint8Array.of(0xff, 0xff, 0xff));
    await expect(ReplicaLogStore.open({ dir: store.dir })).rejects.toMatchObject({
      code: ErrorCode.Corrupt,
      path: entryPath(store.dir, 270),
    });
  });

  it('an entry directory missing at or below V is still a gap (the names are always listed)', async () => {
    const store = await checkpointed();
    await store.close();
    rmSync(entryPath(store.dir, 120), { recursive: true, force: true });
    await expect(ReplicaLogStore.open({ dir: store.dir })).rejects.toMatchObject({
      code: ErrorCode.Corrupt,
      message: expect.stringContaining(formatLsn(120)),
    });
  });
});

describe('random histories against MemoryStorage, reopening often', () => {
  /** An integer below `below` from lib/seeded-random.ts (the same stream as before), so a failure replays. */
  function generator(seed: number): (below: number) => number {
    const next = seededRandom(seed);
    return (below) => Math.floor(next() * below);
  }

  it('appends, truncations of the uncommitted tail, commits, compactions and snapshots: every reopen equals the model', async () => {
    const opens: Record<string, number> = {};
    for (let seed = 1; seed <= 16; seed++) {
      const random = generator(seed);
      const interval = 1 + random(6);
      const model = new MemoryStorage();
      let store = await open({ checkpointInterval: interval });
      for (let step = 0; step < 40; step++) {
        const choice = random(20);
        const last = model.lastIndex();
        const saved = model.initialState().hardState;
        let action: (target: WritableStorage) => Promise<unknown>;
        if (choice < 9) {
          // Mostly extends the log; sometimes rewrites its last entries (refused at or below the commit).
          const from = Math.max(model.firstIndex(), last + 1 - (random(3) === 0 ? random(4) : 0));
          const previous = from - 1 >= model.firstIndex() - 1 ? model.term(from - 1) : 0;
          const term = previous + random(2) + (from <= last ? 1 : 0);
          const entries = Array.from({ length: 1 + random(6) }, (_, offset) => entry(from + offset, term));
          action = (target) => target.append(entries);
        } else if (choice < 15) {
          const commit = saved.commit + random(last - saved.commit + 1);
          const hardState = { term: Math.max(saved.term, model.term(last)), vote: 1, commit };
          action = (target) => target.setHardState(hardState);
        } else if (choice < 17) {
          const index = model.firstIndex() - 1 + random(last - model.firstIndex() + 2);
          action = (target) => target.compact(index);
        } else if (choice < 18) {
          const index = Math.max(saved.commit, last) + random(3);
          const snapshot = { metadata: { index, term: model.term(last) + 1, confState: { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } } };
          action = (target) => target.applySnapshot(snapshot);
        } else {
          const before = observe(store);
          ({ store } = await reopen(store, { checkpointInterval: interval }));
          const stats = store.openStats;
          opens[stats.checkpoint] = (opens[stats.checkpoint] ?? 0) + 1;
          expect(stats.checkpoint, stats.reason).not.toBe('invalid');
          expect(stats.scanned + stats.fromCheckpoint).toBe(store.lastIndex() - store.firstIndex() + 1);
          expect(observe(store)).toEqual(before);
          continue;
        }
        const expected = await codeOf(() => action(model));
        expect(await codeOf(() => action(store)), `seed ${seed} step ${step}`).toBe(expected);
        expect(observe(store)).toEqual(observe(model));
      }
    }
    expect(opens.used ?? 0).toBeGreaterThan(10);
  });
});

// Everything again with a checkpoint in every hard state batch and at every close: after each
// reopen the state must equal the model's, and a record written by the store is never refused.
storageConformance('ReplicaLogStore with a checkpoint at every commit', {
  open: async ({ tempDir }) => ReplicaLogStore.open({ dir: tempDir('replicalog-checkpoint-'), checkpointInterval: 1 }),
  reopen: async (store) => {
    await store.close();
    const again = await ReplicaLogStore.open({ dir: store.dir, checkpointInterval: 1 });
    expect(again.openStats.checkpoint).not.toBe('invalid');
    return again;
  },
  close: (store) => store.close(),
  modelRuns: 30,
});

