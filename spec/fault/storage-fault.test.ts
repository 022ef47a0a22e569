/**
 * Faults in a storage's shared pipelines (issue 19): a fault (EIO, ENOSPC, a batch applied then
 * reported failed) in a synced KV batch that several partitions' writes share, or in a syncfs
 * pass several partitions' appends share, through the seeded fault layer (./fault-fs.ts):
 *   - every partition whose write was in it rejects with ERR_IO, naming the database or the
 *     partition's directory; its reads show the state before (or, for a batch applied after
 *     all, before or after) and its later writes are refused until it is reopened;
 *   - nothing acknowledged changes; a partition whose write was not in it is acknowledged
 *     and goes on writing;
 *   - reopened through the same storage, each failed partition lands on before or after (or a
 *     batch prefix) and writes again; so does every partition after the storage is reopened.
 * The seeded part draws the partitions' writes (scripts/crash-driver.ts nextOp) and the fault;
 * FAULT_SEED=n runs one seed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { ClassicLevel } from 'classic-level';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../lib/errors.js';
import type { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { ReplicaLogStorage } from '../../lib/storage.js';
import { EntryType, type Entry } from '../../lib/types.js';
import { nodeFileSystem, type FileSystem } from '../../lib/wal/file-system.js';
import { kvPath } from '../../lib/wal/layout.js';
import { applyOp, nextOp, observeStore, Random, type Observation, type Op } from '../../scripts/crash-driver.js';
import { modelFromObservation, replay } from '../../scripts/crash.js';
import { FaultInjector, faultFileSystem, injectKvFaults, type FaultKind, type FaultOperation } from './fault-fs.js';

const dirs: string[] = [];
const storages: ReplicaLogStorage[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'replicalog-storage-fault-'));
  dirs.push(dir);
  return dir;
}
afterEach(async () => {
  for (const storage of storages.splice(0)) await storage.close().catch(() => {});
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** The syncfs under the fault layer: nothing to flush for a test without power cuts (and no `sync -f` process per pass). */
const quietFileSystem: FileSystem = { ...nodeFileSystem, syncFileSystem: async () => true };

/** A storage whose file system (syncfs included) and shared KV database fail what `injector` plans. */
async function openFaultyStorage(dir: string, injector: FaultInjector, barrierSyncLimit?: number): Promise<ReplicaLogStorage> {
  const storage = await ReplicaLogStorage.open({
    dir,
    fileSystem: faultFileSystem(injector, quietFileSystem, { syncFileSystem: true }),
    ...(barrierSyncLimit === undefined ? {} : { barrierSyncLimit }),
  });
  storages.push(storage);
  // The storage's one database (private): its batches are the shared ones.
  injectKvFaults((storage as unknown as { database: ClassicLevel<Uint8Array, Uint8Array> }).database, injector);
  return storage;
}

const entry = (partition: number, index: number, term: number): Entry => ({ index, term, type: EntryType.Normal, data: new TextEncoder().encode(`p${partition}:${index}@${term}`) });
const run = (partition: number, from: number, to: number, term: number) => Array.from({ length: to - from + 1 }, (_, k) => entry(partition, from + k, term));

async function outcome(write: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await write;
    return { code: 'ok', message: '' };
  } catch (error) {
    return { code: String((error as { code?: unknown }).code ?? 'uncoded'), message: (error as Error).message };
  }
}

describe('a fault in a shared KV batch or syncfs pass', () => {
  const cases: { name: string; operation: FaultOperation; kind: FaultKind; occurrence: number; write: 'hard state' | 'append' }[] = [
    { name: 'EIO in the KV batch of three hard states', operation: 'kvBatch', kind: 'EIO', occurrence: 1, write: 'hard state' },
    { name: 'ENOSPC in the KV batch of three hard states', operation: 'kvBatch', kind: 'ENOSPC', occurrence: 1, write: 'hard state' },
    { name: 'the KV batch of three hard states applied, then reported failed (EIO)', operation: 'kvBatch', kind: 'applied-then-EIO', occurrence: 1, write: 'hard state' },
    { name: 'EIO in the first syncfs pass of three appends (before their renames)', operation: 'syncFileSystem', kind: 'EIO', occurrence: 1, write: 'append' },
    { name: 'ENOSPC in the first syncfs pass of three appends', operation: 'syncFileSystem', kind: 'ENOSPC', occurrence: 1, write: 'append' },
    { name: 'EIO in the second syncfs pass of three appends (after their renames)', operation: 'syncFileSystem', kind: 'EIO', occurrence: 2, write: 'append' },
  ];

  it.each(cases)('$name: the partitions in it fail with ERR_IO, nothing acknowledged changes, the others and a reopen work', async (testCase) => {
    const dir = tempDir();
    const injector = new FaultInjector();
    // Every shared pass one syncfs (barrierSyncLimit 0): the cases fault the syncfs passes.
    let storage = await openFaultyStorage(dir, injector, 0);
    const ids = [1, 2, 3, 4];
    const stores = new Map<number, ReplicaLogStore>();
    for (const id of ids) {
      const store = await storage.openPartition(id);
      await Promise.all([store.append(run(id, 1, 2, id)), store.setHardState({ term: id, vote: 1, commit: 2 })]);
      stores.set(id, store);
    }
    const acknowledged = new Map([...stores].map(([id, store]) => [id, observeStore(store)]));
    // Partitions 1..3 write at once; partition 4 stays idle (not in the faulty pass).
    const batchesBefore = storage.stats().kvBatches;
    injector.arm({ operation: testCase.operation, kind: testCase.kind, occurrence: testCase.occurrence });
    const results = await Promise.all(
      [1, 2, 3].map((id) => outcome(testCase.write === 'hard state' ? stores.get(id)!.setHardState({ term: id + 10, vote: 1, commit: 2 }) : stores.get(id)!.append(run(id, 3, 4, id)))),
    );
    injector.disarm();
    expect(injector.fired.length).toBe(1);
    const failed = [1, 2, 3].filter((_, position) => results[position]!.code !== 'ok');
    if (testCase.write === 'hard state') {
      // The three hard states went in ONE batch: all three fail with it.
      expect(storage.stats().kvBatches - batchesBefore).toBe(1);
      expect(failed).toEqual([1, 2, 3]);
    } else {
      // The partitions whose barrier request the failed pass answered (at least the first).
      expect(failed.length).toBeGreaterThan(0);
    }
    for (const [position, id] of [1, 2, 3].entries()) {
      const result = results[position]!;
      const store = stores.get(id)!;
      if (result.code === 'ok') {
        expect(store.lastIndex()).toBe(4);
        continue;
      }
      expect(result.code).toBe(ErrorCode.Io);
      // A clear error: it names the shared database or the partition's own directory, and the cause.
      expect(result.message).toContain(testCase.write === 'hard state' ? kvPath(dir) : store.dir);
      expect(result.message).toMatch(testCase.kind === 'ENOSPC' ? /ENOSPC/ : /EIO/);
      // Reads show what was acknowledged; the partition refuses writes until it is reopened.
      expect(observeStore(store)).toEqual(acknowledged.get(id));
      expect((await outcome(store.setConfState({ voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false }))).code).toBe(ErrorCode.Io);
      await store.close();
      const reopened = await storage.openPartition(id);
      const state = observeStore(reopened);
      if (testCase.write === 'hard state') {
        // Before, or (the batch was applied after all) after: never anything else.
        const after = testCase.kind === 'applied-then-EIO' ? id + 10 : id;
        expect(state.hardState.term).toBe(after);
        expect({ ...state, hardState: acknowledged.get(id)!.hardState }).toEqual(acknowledged.get(id));
      } else {
        // The acknowledged log 1..2 is intact; 3..4 (never acknowledged) may or may not be there.
        expect(state.first).toBe(1);
        expect([2, 3, 4]).toContain(state.last);
        expect(state.hardState).toEqual(acknowledged.get(id)!.hardState);
      }
      await reopened.append(run(id, state.last + 1, state.last + 1, id));
      stores.set(id, reopened);
    }
    // The idle partition was never touched and writes on.
    expect(observeStore(stores.get(4)!)).toEqual(acknowledged.get(4));
    await stores.get(4)!.append(run(4, 3, 3, 4));
    const final = new Map([...stores].map(([id, store]) => [id, observeStore(store)]));
    await storage.close();
    storage = await openFaultyStorage(dir, injector, 0);
    for (const id of ids) expect(observeStore(await storage.openPartition(id))).toEqual(final.get(id));
  });
});

/** The faults a step may meet (one at a time, in the shared pipelines). */
const SHARED_FAULTS: { operation: FaultOperation; kinds: FaultKind[] }[] = [
  { operation: 'kvBatch', kinds: ['EIO', 'ENOSPC', 'applied-then-EIO'] },
  { operation: 'syncFileSystem', kinds: ['EIO', 'ENOSPC'] },
];

const totals = { faults: 0, failedWrites: 0 };
afterAll(() => {
  process.stdout.write(`storage faults: ${totals.faults} faults fired in shared passes, ${totals.failedWrites} partition writes failed by them, every one reopened to before/after\n`);
});

const SEEDS = process.env.FAULT_SEED !== undefined ? [Number(process.env.FAULT_SEED)] : [1, 2, 3, 4, 5, 6];

describe('seeded faults in the shared pipelines while partitions write at once', () => {
  it.each(SEEDS)('seed %i: every partition ends each step as its model (acknowledged) or before/after (failed, then reopened)', async (seed) => {
    const random = new Random(seed * 104_729);
    const injector = new FaultInjector();
    const dir = tempDir();
    const adoptRoot = tempDir();
    let storage = await openFaultyStorage(dir, injector);
    const ids = Array.from({ length: random.int(2, 4) }, (_, k) => k + 1);
    const stores = new Map<number, ReplicaLogStore>();
    for (const id of ids) stores.set(id, await storage.openPartition(id));
    const models = new Map<number, Observation>([...stores].map(([id, store]) => [id, observeStore(store)]));
    let fired = 0;
    let failures = 0;
    for (let step = 0; step < 12; step++) {
      const where = `seed ${seed} step ${step} (FAULT_SEED=${seed})`;
      const ops = new Map<number, Op>([...stores].map(([id, store]) => [id, nextOp(random, store, join(adoptRoot, `p${id}`))]));
      if (random.chance(0.7)) {
        const fault = random.pick(SHARED_FAULTS);
        injector.arm({ operation: fault.operation, kind: random.pick(fault.kinds), occurrence: random.int(1, 2) });
      }
      const firedBefore = injector.fired.length;
      const codes = new Map(await Promise.all([...ops].map(async ([id, op]) => [id, await applyOp(stores.get(id)!, op)] as const)));
      injector.disarm();
      if (injector.fired.length > firedBefore) fired++;
      for (const [id, op] of ops) {
        const before = models.get(id)!;
        const model = modelFromObservation(before);
        const modelCode = await applyOp(model, op);
        const code = codes.get(id)!;
        const store = stores.get(id)!;
        if (code === modelCode) {
          const got = observeStore(store);
          if (!isDeepStrictEqual(got, observeStore(model))) throw new Error(`${where}: partition ${id}: ${op.kind} ${code} but its state differs from the model`);
          models.set(id, got);
          continue;
        }
        // Only a fault in a shared pass may fail a write the model accepts, and only with ERR_IO.
        if (code !== ErrorCode.Io || modelCode !== 'ok' || injector.fired.length === firedBefore) {
          throw new Error(`${where}: partition ${id}: ${op.kind} gave ${code}, the model ${modelCode}`);
        }
        failures++;
        const { variants } = await replay(before, [{ t: 'begin', n: 0, op }]);
        const visible = observeStore(store);
        const shown = variants.find((variant) => isDeepStrictEqual(variant.observation, visible));
        if (shown === undefined || shown.name.startsWith('prefix')) throw new Error(`${where}: partition ${id}: reads after the failure show neither before nor after`);
        await store.close();
        const reopened = await storage.openPartition(id);
        const landed = variants.find((variant) => isDeepStrictEqual(variant.observation, observeStore(reopened)));
        if (landed === undefined) throw new Error(`${where}: partition ${id}: after its reopen the state is neither before, after nor a batch prefix`);
        stores.set(id, reopened);
        models.set(id, observeStore(reopened));
      }
    }
    expect(fired).toBeGreaterThan(0);
    expect(failures).toBeGreaterThan(0);
    totals.faults += fired;
    totals.failedWrites += failures;
    await storage.close();
    storage = await openFaultyStorage(dir, injector);
    for (const id of ids) {
      const store = await storage.openPartition(id);
      expect(observeStore(store)).toEqual(models.get(id));
      const last = store.lastIndex();
      await store.append([{ type: EntryType.Normal, term: Math.max(store.term(last), store.initialState().hardState.term), index: last + 1 }]);
    }
  });
});
