/**
 * Fault injection (issue priority 2): a seeded fault layer (./fault-fs.ts) fails one chosen
 * file-system or KV operation during a write — EIO / ENOSPC / EROFS, short writes, a KV batch
 * applied and then reported failed. For every fault:
 *   - the write rejects with ERR_IO (a coded error);
 *   - reads go on and show the state before the write or after it (never between), and what
 *     reads showed is durable (a reopen never goes back behind it);
 *   - every later write is refused with ERR_IO until the store is reopened;
 *   - after a reopen the state is before or after (or, for an append, a contiguous batch
 *     prefix: the store's documented behaviour) and the store writes again.
 * Faults during open reject with a coded error and release the lock. Every failure message
 * names its seed and step; FAULT_SEED=n runs one seed (a seed replays exactly: the fault layer
 * serialises the file-system calls).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { ClassicLevel } from 'classic-level';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, isReplicaLogError } from '../../lib/errors.js';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { EntryType } from '../../lib/types.js';
import { verifyTree } from '../../lib/verify.js';
import { applyOp, codeOfError, nextOp, observeStore, Random, type Op } from '../../scripts/crash-driver.js';
import { modelFromObservation, replay } from '../../scripts/crash.js';
import { FaultInjector, faultFileSystem, injectKvFaults, type FaultKind, type FaultOperation, type FaultPlan } from './fault-fs.js';

type Database = ClassicLevel<Uint8Array, Uint8Array>;

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'replicalog-fault-'));
  dirs.push(dir);
  return dir;
}
const handles: { store?: ReplicaLogStore; db?: Database }[] = [];
afterEach(async () => {
  for (const handle of handles.splice(0)) {
    await handle.store?.close().catch(() => {});
    await handle.db?.close().catch(() => {});
  }
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Opens `dir` with the fault layer on the WAL and on a KV database at <dir>/kv (where the store keeps it). */
async function openFaulty(dir: string, injector: FaultInjector, cacheMaxEntries?: number, checkpointInterval?: number, journal = false): Promise<{ store: ReplicaLogStore; db: Database }> {
  const db = injectKvFaults(new ClassicLevel<Uint8Array, Uint8Array>(join(dir, 'kv'), { keyEncoding: 'view', valueEncoding: 'view' }), injector);
  await db.open();
  const handle: { store?: ReplicaLogStore; db?: Database } = { db };
  handles.push(handle);
  try {
    handle.store = await ReplicaLogStore.open({
      dir,
      db,
      fileSystem: faultFileSystem(injector),
      ...(cacheMaxEntries === undefined ? {} : { cacheMaxEntries }),
      ...(checkpointInterval === undefined ? {} : { checkpointInterval }),
      ...(journal ? { journal: true, journalCheckpointDelayMs: 600_000 } : {}),
    });
  } catch (error) {
    await db.close();
    throw error;
  }
  return { store: handle.store, db };
}

async function closeBoth(store: ReplicaLogStore, db: Database): Promise<void> {
  await store.close();
  await db.close();
}

/** The faults a write may meet, with the kinds each operation can fail with. */
const WRITE_FAULTS: { operation: FaultOperation; kinds: FaultKind[] }[] = [
  { operation: 'writeFile', kinds: ['EIO', 'ENOSPC', 'short-write'] },
  { operation: 'fsync', kinds: ['EIO'] },
  { operation: 'rename', kinds: ['EIO', 'ENOSPC'] },
  { operation: 'mkdir', kinds: ['ENOSPC', 'EROFS'] },
  { operation: 'mkdtemp', kinds: ['ENOSPC'] },
  { operation: 'remove', kinds: ['EIO'] },
  { operation: 'stat', kinds: ['EIO'] },
  { operation: 'readdir', kinds: ['EIO'] },
  { operation: 'kvBatch', kinds: ['EIO', 'ENOSPC', 'applied-then-EIO'] },
];

interface SeedReport {
  steps: number;
  faultsFired: number;
  rejected: number;
  reopenedTo: Record<string, number>;
}

const grand = { seeds: 0, steps: 0, faultsFired: 0, rejected: 0, openFaults: 0, readsShowedAfter: 0, reopenedTo: {} as Record<string, number> };

/** One seeded run: `steps` writes, 70% of them with one fault armed. */
async function faultSeed(seed: number, steps: number): Promise<SeedReport> {
  const random = new Random(seed);
  const injector = new FaultInjector();
  const dir = tempDir();
  // Even seeds: checkpoints in KV with nearly every hard state and at close.
  const interval = seed % 2 === 0 ? 1 : undefined;
  let { store, db } = await openFaulty(dir, injector, undefined, interval);
  const report: SeedReport = { steps: 0, faultsFired: 0, rejected: 0, reopenedTo: {} };
  let model = observeStore(store);
  const adoptRoot = tempDir(); // insertLogEntry stages its directories here (same file system)
  for (let step = 0; step < steps; step++) {
    const where = `seed ${seed} step ${step} (replay: FAULT_SEED=${seed} npx vitest run spec/fault)`;
    const op = nextOp(random, store, adoptRoot);
    const before = observeStore(store);
    if (!isDeepStrictEqual(before, model)) throw new Error(`${where}: the store drifted from the model before ${op.kind}`);
    let plan: FaultPlan | undefined;
    if (random.chance(0.7)) {
      const fault = random.pick(WRITE_FAULTS);
      plan = { operation: fault.operation, kind: random.pick(fault.kinds), occurrence: random.int(1, 2) };
      injector.arm(plan);
    }
    const fired = injector.fired.length;
    const code = await applyOp(store, op);
    injector.disarm();
    const faulted = injector.fired.length > fired;
    const { variants } = await replay(before, [{ t: 'begin', n: 0, op }]);
    const expectedModel = modelFromObservation(before);
    const modelCode = await applyOp(expectedModel, op);
    const what = `${where}: ${op.kind}${plan ? ` with ${plan.kind} on ${plan.operation}#${plan.occurrence}${faulted ? ` (fired at ${injector.fired[injector.fired.length - 1]!.at})` : ' (not reached)'}` : ''}`;
    report.steps++;
    if (!faulted || code === 'ok') {
      // No fault, or one the store tolerates (e.g. removing a batch directory after publishing).
      if (code !== modelCode) throw new Error(`${what}: store ${code}, model ${modelCode}`);
      const got = observeStore(store);
      if (!isDeepStrictEqual(got, observeStore(expectedModel))) throw new Error(`${what}: state differs from the model after ${code}`);
      model = got;
      if (faulted) report.faultsFired++;
      continue;
    }
    report.faultsFired++;
    report.rejected++;
    if (code !== ErrorCode.Io) throw new Error(`${what}: rejected with ${code}, expected ${ErrorCode.Io}`);
    if (modelCode !== 'ok') throw new Error(`${what}: the model refuses this write (${modelCode}) but the store failed with I/O instead`);
    // Reads go on and show before or after.
    const visible = observeStore(store);
    const shown = variants.find((variant) => isDeepStrictEqual(variant.observation, visible));
    if (shown === undefined || shown.name.startsWith('prefix')) throw new Error(`${what}: reads after the failure show neither the state before nor after`);
    // "after" only once the write's commit point (the KV record of compact / snapshots) is durable.
    if (shown.name === 'after') grand.readsShowedAfter++;
    // Poisoned: every write refused with ERR_IO until reopened.
    const probe: Op = { kind: 'setConfState', confState: { voters: [9], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } };
    const probeCode = await applyOp(store, probe);
    const firedAt = injector.fired[injector.fired.length - 1]!;
    if (probeCode === 'ok' && firedAt.operation === 'stat' && op.kind === 'insertLogEntry' && shown.name === 'before') {
      // insertLogEntry's checks of the caller's directory (stat, before anything is written)
      // failed: nothing changed, so the store rightly stays writable.
      const withProbe = modelFromObservation(before);
      await applyOp(withProbe, probe);
      if (!isDeepStrictEqual(observeStore(store), observeStore(withProbe))) throw new Error(`${what}: state differs after the probe write`);
      model = observeStore(store);
      report.reopenedTo['not poisoned (read-only check failed)'] = (report.reopenedTo['not poisoned (read-only check failed)'] ?? 0) + 1;
      continue;
    }
    if (probeCode !== ErrorCode.Io) throw new Error(`${what}: a write after the failure gave ${probeCode}, expected ${ErrorCode.Io} until reopened`);
    if (!isDeepStrictEqual(observeStore(store), visible)) throw new Error(`${what}: the refused write changed the state`);
    await closeBoth(store, db);
    // Sometimes the reopen itself meets a fault first: a coded error, the lock released.
    if (random.chance(0.3)) {
      const fault = random.pick<{ operation: FaultOperation; kind: FaultKind }>([
        { operation: 'readdir', kind: 'EIO' },
        { operation: 'remove', kind: 'EIO' },
        { operation: 'rename', kind: 'EIO' },
        { operation: 'fsync', kind: 'EIO' },
        { operation: 'mkdtemp', kind: 'ENOSPC' },
        { operation: 'readFileSync', kind: 'EIO' },
        { operation: 'kvGetMany', kind: 'EIO' },
        { operation: 'kvBatch', kind: 'EIO' },
      ]);
      injector.arm({ ...fault, occurrence: 1 });
      try {
        ({ store, db } = await openFaulty(dir, injector, undefined, interval));
        injector.disarm();
        await closeBoth(store, db);
      } catch (error) {
        injector.disarm();
        if (!isReplicaLogError(error)) throw new Error(`${what}: a fault during the reopen gave an uncoded error: ${String(error)}`);
        grand.openFaults++;
      }
    }
    ({ store, db } = await openFaulty(dir, injector, undefined, interval));
    const reopened = observeStore(store);
    const landed = variants.find((variant) => isDeepStrictEqual(variant.observation, reopened));
    if (landed === undefined) throw new Error(`${what}: after the reopen the state is neither before, after nor a batch prefix`);
    if (shown.name === 'after' && landed.name !== 'after') throw new Error(`${what}: reads showed the write, but after the reopen it is gone (${landed.name})`);
    const bucket = landed.name.startsWith('prefix') ? 'prefix' : landed.name;
    report.reopenedTo[bucket] = (report.reopenedTo[bucket] ?? 0) + 1;
    model = reopened;
  }
  // The store still writes, and the tree verifies.
  const last = store.lastIndex();
  const finalCode = await applyOp(store, { kind: 'append', entries: [{ type: EntryType.Normal, term: Math.max(store.term(last), store.initialState().hardState.term), index: last + 1, data: null }] });
  if (finalCode !== 'ok') throw new Error(`seed ${seed}: the store does not write at the end: ${finalCode}`);
  await closeBoth(store, db);
  // A batch directory whose removal failed (tolerated while running) is removed by the next open.
  ({ store, db } = await openFaulty(dir, injector, undefined, interval));
  await closeBoth(store, db);
  const verified = await verifyTree(dir);
  const problems = verified.problems;
  if (problems.length > 0) throw new Error(`seed ${seed}: verifyTree at the end: ${problems.map((problem) => problem.message).join('; ')}`);
  return report;
}

const SEEDS = process.env.FAULT_SEED !== undefined ? [Number(process.env.FAULT_SEED)] : Array.from({ length: 16 }, (_, k) => k + 1);

describe('seeded faults during writes', () => {
  it.each(SEEDS)('seed %i: a failed write rejects with ERR_IO, reads show before/after, writes are refused until reopen, the reopen lands on before/after', async (seed) => {
    const report = await faultSeed(seed, 40);
    grand.seeds++;
    grand.steps += report.steps;
    grand.faultsFired += report.faultsFired;
    grand.rejected += report.rejected;
    for (const [name, times] of Object.entries(report.reopenedTo)) grand.reopenedTo[name] = (grand.reopenedTo[name] ?? 0) + times;
    expect(report.faultsFired).toBeGreaterThan(0);
  });

  it('the seeds together fire at least 120 faults and reopen to both outcomes', () => {
    console.log(`fault totals: ${JSON.stringify(grand)}`);
    if (process.env.FAULT_SEED !== undefined) return;
    expect(grand.faultsFired).toBeGreaterThanOrEqual(120);
    expect(grand.reopenedTo.before).toBeGreaterThan(0);
    expect(grand.reopenedTo.after).toBeGreaterThan(0);
  });

  it('a seed replays exactly: the same faults fire at the same paths', async () => {
    const runs: string[][] = [];
    for (let run = 0; run < 2; run++) {
      const injector = new FaultInjector();
      const random = new Random(77);
      const dir = tempDir();
      const { store, db } = await openFaulty(dir, injector);
      for (let step = 0; step < 15; step++) {
        const op = nextOp(random, store);
        injector.arm({ operation: 'fsync', kind: 'EIO', occurrence: random.int(1, 6) });
        await applyOp(store, op);
        injector.disarm();
        if (injector.fired.length > 0) break;
      }
      runs.push(injector.fired.map((fault) => fault.at.replace(dir, '<dir>').replace(/batch-\w+/, 'batch-X')));
      await closeBoth(store, db);
    }
    expect(runs[0]!.length).toBe(1);
    expect(runs[1]).toEqual(runs[0]);
  });
});

describe('faults during backfill of a pre-Raft log', () => {
  const faults: { operation: FaultOperation; kind: FaultKind; occurrence: number }[] = [
    { operation: 'remove', kind: 'EIO', occurrence: 3 },
    { operation: 'writeFile', kind: 'short-write', occurrence: 5 },
    { operation: 'writeFile', kind: 'ENOSPC', occurrence: 17 },
    { operation: 'fsync', kind: 'EIO', occurrence: 1 },
    { operation: 'fsync', kind: 'EIO', occurrence: 30 },
    { operation: 'rename', kind: 'EIO', occurrence: 9 },
  ];
  it.each(faults)('$kind on $operation#$occurrence: backfill rejects ERR_IO, the store refuses writes, a reopen resumes to the uninterrupted result', async (fault) => {
    const { writePreRaftWal } = await import('../../lib/fixture.js');
    const reference = tempDir();
    writePreRaftWal({ dir: reference, entries: 20, seed: 3 });
    const clean = await ReplicaLogStore.open({ dir: reference });
    await clean.backfill();
    const expected = observeStore(clean);
    await clean.close();

    const dir = tempDir();
    writePreRaftWal({ dir, entries: 20, seed: 3 });
    const injector = new FaultInjector();
    let { store, db } = await openFaulty(dir, injector);
    injector.arm(fault);
    const error = await store.backfill().catch((caught: unknown) => caught);
    expect(injector.fired).toHaveLength(1);
    expect(codeOfError(error)).toBe(ErrorCode.Io);
    expect(store.pendingBackfill).toBeGreaterThan(0);
    expect(await applyOp(store, { kind: 'setConfState', confState: { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } })).toBe(ErrorCode.Io);
    await closeBoth(store, db);
    ({ store, db } = await openFaulty(dir, injector));
    expect(store.pendingBackfill).toBeGreaterThan(0);
    await store.backfill();
    expect(observeStore(store)).toEqual(expected);
    await closeBoth(store, db);
    expect((await verifyTree(dir)).ok).toBe(true);
  });
});

describe('targeted faults', () => {
  const entry = (index: number, term: number, data = 'x') => ({ type: EntryType.Normal, term, index, data: new TextEncoder().encode(data) });

  it('a failed KV batch that was in fact applied: reads show before, the reopen shows after (never behind what reads showed)', async () => {
    const injector = new FaultInjector();
    const dir = tempDir();
    let { store, db } = await openFaulty(dir, injector);
    await store.append([entry(1, 1), entry(2, 1)]);
    await store.setHardState({ term: 1, vote: 1, commit: 1 });
    injector.arm({ operation: 'kvBatch', kind: 'applied-then-EIO', occurrence: 1 });
    const error = await store.setHardState({ term: 2, vote: 2, commit: 2 }).catch((caught: unknown) => caught);
    expect(codeOfError(error)).toBe(ErrorCode.Io);
    expect(store.initialState().hardState).toEqual({ term: 1, vote: 1, commit: 1 });
    await closeBoth(store, db);
    ({ store, db } = await openFaulty(dir, injector));
    expect(store.initialState().hardState).toEqual({ term: 2, vote: 2, commit: 2 });
  });

  it('a read fault (EIO on a RAFT file, cache miss) throws ERR_IO from entries() and does not poison writes', async () => {
    const injector = new FaultInjector();
    const dir = tempDir();
    const { store } = await openFaulty(dir, injector, 0);
    await store.append([entry(1, 1, 'a'), entry(2, 1, 'b')]);
    injector.arm({ operation: 'readFileSync', kind: 'EIO', occurrence: 1 });
    let caught: unknown;
    try {
      store.entries(1, 3);
    } catch (error) {
      caught = error;
    }
    expect([codeOfError(caught), isReplicaLogError(caught)]).toEqual([ErrorCode.Io, true]);
    expect(store.entries(1, 3).map((e) => new TextDecoder().decode(e.data))).toEqual(['a', 'b']);
    await store.append([entry(3, 1, 'c')]);
    expect(store.lastIndex()).toBe(3);
  });

  it.each([
    { operation: 'writeAt' as const, kind: 'EIO' as const },
    { operation: 'syncData' as const, kind: 'EIO' as const },
    { operation: 'writeAt' as const, kind: 'ENOSPC' as const },
  ])("journal mode: $kind on a segment record's $operation rejects with ERR_IO naming the segment, refuses later writes, and the reopen keeps every acknowledged group", async (fault) => {
    const injector = new FaultInjector();
    const dir = tempDir();
    let { store, db } = await openFaulty(dir, injector, undefined, undefined, true);
    await Promise.all([store.append([entry(1, 1), entry(2, 1)]), store.setHardState({ term: 1, vote: 1, commit: 2 })]);
    injector.arm({ operation: fault.operation, kind: fault.kind, occurrence: 1 });
    const error = await store.append([entry(3, 1)]).catch((caught: unknown) => caught);
    expect(codeOfError(error)).toBe(ErrorCode.Io);
    expect((error as Error).message).toMatch(/journal\/00000000000000000001\.seg/);
    expect(injector.fired.map((fired) => fired.operation)).toEqual([fault.operation]);
    expect(codeOfError(await store.append([entry(3, 1)]).catch((caught: unknown) => caught))).toBe(ErrorCode.Io);
    await closeBoth(store, db);
    ({ store, db } = await openFaulty(dir, injector, undefined, undefined, true));
    // The failed group was never acknowledged: before (2) or, its bytes having reached the file, after (3).
    expect([2, 3]).toContain(store.lastIndex());
    expect(store.initialState().hardState).toEqual({ term: 1, vote: 1, commit: 2 });
    expect(store.entries(1, 3).map((item) => item.index)).toEqual([1, 2]);
    await store.append([entry(store.lastIndex() + 1, 1)]);
    await closeBoth(store, db);
  });

  const openFaults: { operation: FaultOperation; kind: FaultKind; path?: RegExp }[] = [
    { operation: 'kvGetMany', kind: 'EIO' },
    { operation: 'readdir', kind: 'EIO' },
    { operation: 'readFileSync', kind: 'EIO', path: /RAFT$/ },
    { operation: 'mkdir', kind: 'EROFS' },
    { operation: 'stat', kind: 'EIO' },
    { operation: 'remove', kind: 'EIO' },
  ];
  it.each(openFaults)('a fault during open ($kind on $operation) rejects with a coded error and releases the lock', async (fault) => {
    const injector = new FaultInjector();
    const dir = tempDir();
    let { store, db } = await openFaulty(dir, injector);
    await store.append([entry(1, 1), entry(2, 1)]);
    await store.setHardState({ term: 1, vote: 0, commit: 1 });
    await store.createSnapshot(1, undefined, Uint8Array.of(1));
    await closeBoth(store, db);
    // Something for open to clean up, so that remove/mkdir/stat are on its path.
    rmSync(join(dir, 'staging'), { recursive: true, force: true });
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(dir, 'staging', 'batch-leftover'), { recursive: true });
    if (fault.operation === 'mkdir') rmSync(join(dir, 'staging'), { recursive: true, force: true });
    injector.arm({ ...fault, occurrence: 1 });
    const error = await openFaulty(dir, injector).then(
      async (opened) => {
        await closeBoth(opened.store, opened.db);
        return undefined;
      },
      (caught: unknown) => caught,
    );
    injector.disarm();
    expect(injector.fired.length).toBe(1);
    expect(isReplicaLogError(error)).toBe(true);
    expect(codeOfError(error)).toBe(ErrorCode.Io);
    ({ store, db } = await openFaulty(dir, injector));
    expect([store.firstIndex(), store.lastIndex(), store.snapshot().metadata.index]).toEqual([1, 2, 1]);
  });
});

afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
