/**
 * Kill tests with real processes: runs scripts/crash-driver in child processes, SIGKILLs them
 * (a) at every named crash point of the write path (several occurrences of each), (b) at seeded
 * random moments over several generations on the same directory, (c) while the next open is
 * still recovering from such a kill, and (d) during backfill of a pre-Raft fixture. After every
 * kill the parent reopens the directory and checks:
 *
 *   - every acknowledged write is there, byte for byte: the acknowledged operations are
 *     replayed on a MemoryStorage model and the whole observable state must be equal;
 *   - the operation in flight is either fully absent ("before") or fully present ("after") —
 *     or, for an append (or a Ready op's entries, its hard state not yet written), a contiguous
 *     prefix of its batch ("prefix"), which the store's write path documents (log-manager.ts
 *     step 4) and raft tolerates; the caller decides whether prefix states are allowed, and
 *     they are counted separately;
 *   - verifyTree reports nothing but what open repairs (staging / compaction leftovers) before
 *     the reopen, and nothing at all after it;
 *   - the store accepts writes again.
 *
 *   node dist/scripts/crash.js --seeds 20 [--first-seed 1] [--ops 24] [--strict] [--partitions N]
 *
 * --partitions N: each seed drives a ReplicaLogStorage whose partitions 1..N write at once
 * (issue 19), killed at every crash point, at random moments and during the recovery that
 * follows (no backfill); every partition is checked on its own after the storage is reopened.
 *
 * The vitest suite (spec/crash) runs a fixed set of seeds through the same functions.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { writePreRaftWal } from '../lib/fixture.js';
import { MemoryStorage } from '../lib/memory-storage.js';
import { ReplicaLogStore } from '../lib/replica-log-store.js';
import { ReplicaLogStorage } from '../lib/storage.js';
import { EntryType, type Entry } from '../lib/types.js';
import { verifyTree } from '../lib/verify.js';
import { kvPath } from '../lib/wal/layout.js';
import { CRASH_POINTS, type CrashPointName } from '../lib/wal/log-manager.js';
import { DEFAULT_STORAGE_NAME, partitionPath } from '../lib/wal/storage-layout.js';
import { applyOp, observeStore, Random, toEntry, type DriverConfig, type Observation, type Op } from './crash-driver.js';

// ---------------------------------------------------------------------------------------------
// Child processes

export interface ChildRun {
  lines: Record<string, unknown>[];
  signal: NodeJS.Signals | null;
  exitCode: number | null;
  stderr: string;
  /** ms from "ready" to exit */
  elapsed: number;
}

const running = new Set<ChildProcess>();

/** SIGKILLs every child still running (afterAll / process exit). */
export function killAllChildren(): void {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
}

/**
 * Runs the driver with `config`; with `killAfterMs`, SIGKILLs it that long after it reports
 * "ready" (when `onReady` is called). A child that runs longer than `timeoutMs` is killed.
 */
export function runChild(driver: string, config: DriverConfig, killAfterMs?: number, timeoutMs = 20_000, onReady?: () => void): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [driver, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    let stdout = '';
    let stderr = '';
    let readyAt: number | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const hang = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
      if (readyAt === undefined && stdout.includes('"t":"ready"')) {
        readyAt = performance.now();
        if (killAfterMs !== undefined) killTimer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
        onReady?.();
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (exitCode, signal) => {
      running.delete(child);
      clearTimeout(hang);
      if (killTimer !== undefined) clearTimeout(killTimer);
      const lines = stdout
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      resolve({ lines, signal, exitCode, stderr, elapsed: readyAt === undefined ? 0 : performance.now() - readyAt });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The model

/** A MemoryStorage whose state is exactly `observation` (its fields are set directly). */
export function modelFromObservation(observation: Observation): MemoryStorage {
  const model = new MemoryStorage();
  const anchorTerm = observation.probes[1];
  if (typeof anchorTerm !== 'number') throw new Error(`observation has no anchor term: ${JSON.stringify(observation.probes)}`);
  const entries = typeof observation.entries === 'string' ? [] : observation.entries.map(toEntry).map((entry) => Object.freeze(entry));
  const snapshot = observation.snapshot;
  if (typeof snapshot === 'string') throw new Error(`observation has no snapshot: ${snapshot}`);
  const fields = model as unknown as Record<string, unknown>;
  fields.log = [Object.freeze({ type: EntryType.Normal, term: anchorTerm, index: observation.first - 1 }), ...entries];
  fields.savedHardState = { ...observation.hardState };
  fields.savedConfState = structuredClone(observation.confState);
  const saved: { metadata: object; data?: Uint8Array } = {
    metadata: { index: snapshot.index, term: snapshot.term, confState: structuredClone(snapshot.confState) },
  };
  if (snapshot.data !== null) saved.data = new Uint8Array(Buffer.from(snapshot.data, 'hex'));
  fields.savedSnapshot = saved;
  return model;
}

/** The observation with the log cut after `last` (a truncating append that lost its new entries). */
function cutObservation(observation: Observation, last: number): Observation {
  const entries = typeof observation.entries === 'string' ? [] : observation.entries.filter((entry) => entry.index <= last);
  return observeStore(modelFromObservation({ ...observation, last, entries }));
}

export interface Variant {
  name: string;
  observation: Observation;
}

export interface ReplayResult {
  /** What may be on disk: before, after, prefix k of the in-flight append. */
  variants: Variant[];
  acknowledged: number;
  refused: number;
  inFlight: Op | undefined;
}

/**
 * Replays the child's completed operations on a model starting at `base` (each must end as it
 * ended in the child: acknowledged ↔ the model accepts, refused ↔ the model refuses with the
 * same code) and returns the states the directory may be in.
 */
export async function replay(base: Observation, lines: Record<string, unknown>[]): Promise<ReplayResult> {
  const model = modelFromObservation(base);
  const begun = new Map<number, Op>();
  let acknowledged = 0;
  let refused = 0;
  let inFlight: Op | undefined;
  for (const line of lines) {
    if (line.t === 'begin') {
      begun.set(line.n as number, line.op as Op);
      inFlight = line.op as Op;
    } else if (line.t === 'ack' || line.t === 'rej') {
      const op = begun.get(line.n as number)!;
      inFlight = undefined;
      const code = await applyOp(model, op);
      const expected = line.t === 'ack' ? 'ok' : (line.code as string);
      if (code !== expected) {
        throw new Error(`operation ${String(line.n)} ${JSON.stringify(op).slice(0, 300)} ended ${expected} in the store but ${code} in the model`);
      }
      if (line.t === 'ack') acknowledged++;
      else refused++;
    }
  }
  const before = observeStore(model);
  const variants: Variant[] = [{ name: 'before', observation: before }];
  if (inFlight !== undefined) {
    const after = modelFromObservation(before);
    const code = await applyOp(after, inFlight);
    // A Ready op is two calls: either may have been refused and the other still written.
    if (code === 'ok' || (inFlight.kind === 'ready' && code !== 'ok')) {
      variants.push({ name: 'after', observation: observeStore(after) });
      const appendedOk = inFlight.kind !== 'ready' || code === 'ok' || code.startsWith('ok+');
      const appended =
        inFlight.kind === 'append' || (inFlight.kind === 'ready' && appendedOk)
          ? inFlight.entries
          : inFlight.kind === 'insertLogEntry'
            ? [inFlight.entry]
            : undefined;
      if (appended !== undefined) {
        const batch = appended.filter((entry) => entry.index >= before.first);
        // A Ready's group writes its entries before its hard state: all of them without the
        // hard state is one more state a kill can leave.
        const longest = inFlight.kind === 'ready' && code === 'ok' ? batch.length : batch.length - 1;
        for (let k = 1; k <= longest; k++) {
          const prefix = modelFromObservation(before);
          await applyOp(prefix, { kind: 'append', entries: batch.slice(0, k) });
          variants.push({ name: `prefix ${k}/${batch.length}`, observation: observeStore(prefix) });
        }
        // A truncating append renames the old tail out newest first: a kill leaves the old log
        // cut anywhere from its last entry down to the batch's first index.
        if (batch.length > 0 && batch[0]!.index <= before.last) {
          for (let last = batch[0]!.index - 1; last < before.last; last++) {
            variants.push({ name: `prefix 0/${batch.length} (old tail cut after ${last})`, observation: cutObservation(before, last) });
          }
        }
      }
    }
  }
  return { variants, acknowledged, refused, inFlight };
}

// ---------------------------------------------------------------------------------------------
// Checking a crashed directory

/** verifyTree problems a crash may leave and open repairs. */
const REPAIRED_AT_OPEN = new Set(['STAGING_LEFTOVER', 'COMPACTION_LEFTOVER']);

export interface CheckOptions {
  /** Accept a prefix of an in-flight append batch (the store's documented behaviour). */
  allowPrefix: boolean;
  /** Append one entry after the check (the store accepts writes again). */
  writeAfter?: boolean;
}

export interface CheckResult {
  variant: string;
  /** The state after the check (including the write it made), the base of the next generation. */
  observation: Observation;
  /** How the reopen built its term index (ReplicaLogStore.openStats.checkpoint). */
  checkpoint: string;
}

function brief(observation: Observation): string {
  const entries = typeof observation.entries === 'string' ? observation.entries : observation.entries.map((e) => `${e.index}/${e.term}`).join(',');
  const snapshot = typeof observation.snapshot === 'string' ? observation.snapshot : `${observation.snapshot.index}/${observation.snapshot.term}`;
  return `first ${observation.first} last ${observation.last} probes ${JSON.stringify(observation.probes)} entries [${entries}] hs ${JSON.stringify(observation.hardState)} snap ${snapshot}`;
}

/** Reopens `dir` after a kill and checks it against `variants` (see the module comment). */
export async function checkCrashedDirectory(dir: string, variants: Variant[], options: CheckOptions): Promise<CheckResult> {
  const beforeOpen = await verifyTree(dir);
  const unrepairable = beforeOpen.problems.filter((problem) => !REPAIRED_AT_OPEN.has(problem.code));
  if (unrepairable.length > 0) {
    throw new Error(`verifyTree after the kill: ${unrepairable.map((problem) => `${problem.code} ${problem.message}`).join('; ')}`);
  }
  const store = await ReplicaLogStore.open({ dir });
  const checkpoint = store.openStats.checkpoint;
  let observation: Observation;
  let variant: Variant | undefined;
  try {
    const got = observeStore(store);
    variant = variants.find((candidate) => isDeepStrictEqual(candidate.observation, got));
    if (variant === undefined) {
      throw new Error(
        `reopened state matches none of ${variants.map((v) => v.name).join(', ')}:\n  got      ${brief(got)}\n` +
          variants.map((v) => `  ${v.name.padEnd(8)} ${brief(v.observation)}`).join('\n'),
      );
    }
    if (!options.allowPrefix && variant.name.startsWith('prefix')) {
      throw new Error(`an unacknowledged append is half-visible after the kill (${variant.name}): ${brief(got)}`);
    }
    observation = got;
    if (options.writeAfter !== false) {
      const model = modelFromObservation(got);
      const last = store.lastIndex();
      const op: Op = { kind: 'append', entries: [{ type: EntryType.Normal, term: Math.max(store.term(last), store.initialState().hardState.term), index: last + 1, data: 'c0ffee' }] };
      const [storeCode, modelCode] = [await applyOp(store, op), await applyOp(model, op)];
      if (storeCode !== 'ok' || modelCode !== 'ok') throw new Error(`the store does not accept writes after the kill: store ${storeCode}, model ${modelCode}`);
      observation = observeStore(store);
      if (!isDeepStrictEqual(observation, observeStore(model))) throw new Error('after the post-kill append the store differs from the model');
    }
  } finally {
    await store.close();
  }
  const afterOpen = await verifyTree(dir);
  const problems = afterOpen.problems;
  if (problems.length > 0) throw new Error(`verifyTree after the reopen: ${problems.map((problem) => `${problem.code} ${problem.message}`).join('; ')}`);
  return { variant: variant.name, observation, checkpoint };
}

/**
 * verifyTree of partition `partition` of the storage in `dir` (closed): verify reads `<dir>/kv`,
 * so the partition is verified with a copy of the storage's KV beside it, removed after.
 * Undefined when the partition has no directory.
 */
async function verifyPartition(dir: string, partition: number): Promise<Awaited<ReturnType<typeof verifyTree>> | undefined> {
  const partitionDir = partitionPath(dir, DEFAULT_STORAGE_NAME, partition);
  if (!existsSync(partitionDir)) return undefined;
  const copy = kvPath(partitionDir);
  try {
    if (existsSync(kvPath(dir))) cpSync(kvPath(dir), copy, { recursive: true });
    return await verifyTree(partitionDir, { partitionId: partition });
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
}

/**
 * Reopens the storage in `dir` after a kill through ReplicaLogStorage and checks every
 * partition against its own variants (as checkCrashedDirectory does for one store): verify
 * before the reopen finds nothing open does not repair, the storage lists no other partition,
 * each partition opens to one of its variants (and writes again), verify after finds nothing.
 */
export async function checkCrashedStorage(dir: string, variants: Map<number, Variant[]>, options: CheckOptions): Promise<Map<number, CheckResult>> {
  const partitions = [...variants.keys()];
  for (const partition of partitions) {
    const problems = ((await verifyPartition(dir, partition))?.problems ?? []).filter((problem) => !REPAIRED_AT_OPEN.has(problem.code));
    if (problems.length > 0) throw new Error(`partition ${partition}: verifyTree after the kill: ${problems.map((problem) => `${problem.code} ${problem.message}`).join('; ')}`);
  }
  const results = new Map<number, CheckResult>();
  const storage = await ReplicaLogStorage.open({ dir });
  try {
    const stray = (await storage.listPartitions()).filter((partition) => !variants.has(partition));
    if (stray.length > 0) throw new Error(`the storage lists partitions no driver wrote: ${stray.join(', ')}`);
    for (const partition of partitions) {
      const store = await storage.openPartition(partition);
      try {
        const got = observeStore(store);
        const candidates = variants.get(partition)!;
        const variant = candidates.find((candidate) => isDeepStrictEqual(candidate.observation, got));
        if (variant === undefined) {
          throw new Error(
            `partition ${partition}: reopened state matches none of ${candidates.map((v) => v.name).join(', ')}:\n  got      ${brief(got)}\n` +
              candidates.map((v) => `  ${v.name.padEnd(8)} ${brief(v.observation)}`).join('\n'),
          );
        }
        if (!options.allowPrefix && variant.name.startsWith('prefix')) {
          throw new Error(`partition ${partition}: an unacknowledged append is half-visible after the kill (${variant.name}): ${brief(got)}`);
        }
        let observation = got;
        if (options.writeAfter !== false) {
          const model = modelFromObservation(got);
          const last = store.lastIndex();
          const op: Op = { kind: 'append', entries: [{ type: EntryType.Normal, term: Math.max(store.term(last), store.initialState().hardState.term), index: last + 1, data: 'c0ffee' }] };
          const [storeCode, modelCode] = [await applyOp(store, op), await applyOp(model, op)];
          if (storeCode !== 'ok' || modelCode !== 'ok') throw new Error(`partition ${partition}: does not accept writes after the kill: store ${storeCode}, model ${modelCode}`);
          observation = observeStore(store);
          if (!isDeepStrictEqual(observation, observeStore(model))) throw new Error(`partition ${partition}: after the post-kill append the store differs from the model`);
        }
        results.set(partition, { variant: variant.name, observation, checkpoint: store.openStats.checkpoint });
      } finally {
        await store.close();
      }
    }
  } finally {
    await storage.close();
  }
  for (const partition of partitions) {
    const problems = (await verifyPartition(dir, partition))?.problems ?? [];
    if (problems.length > 0) throw new Error(`partition ${partition}: verifyTree after the reopen: ${problems.map((problem) => `${problem.code} ${problem.message}`).join('; ')}`);
  }
  return results;
}

/** A storage run's lines of partition `partition` (its begin/ack/rej lines), as replay reads a store's. */
export function linesOfPartition(lines: Record<string, unknown>[], partition: number): Record<string, unknown>[] {
  return lines.filter((line) => line.p === partition);
}

// ---------------------------------------------------------------------------------------------
// Scenarios

export interface Totals {
  kills: number;
  crashPointKills: number;
  randomKills: number;
  recoveryKills: number;
  backfillKills: number;
  /** child runs that finished before a random kill landed */
  missedKills: number;
  acknowledged: number;
  variants: Record<string, number>;
  /** crash points reached per name, over all count runs */
  pointsReached: Record<string, number>;
  /** kills per crash point name (write path, recovery and backfill) */
  killedAt: Record<string, number>;
  /** reopens after a kill by how open() built its index: used / absent / stale / invalid checkpoint */
  checkpoint: Record<string, number>;
  /** acknowledged writes missing after a reopen: always 0, or a check throws */
  lost: number;
}

export function newTotals(): Totals {
  return { kills: 0, crashPointKills: 0, randomKills: 0, recoveryKills: 0, backfillKills: 0, missedKills: 0, acknowledged: 0, variants: {}, pointsReached: {}, killedAt: {}, checkpoint: {}, lost: 0 };
}

export interface SeedOptions {
  driver: string;
  seed: number;
  ops: number;
  /** kills per crash point name (occurrences spread over the run) */
  occurrencesPerPoint: number;
  randomGenerations: number;
  /** crash points reached during the recovery that follows a kill get their own kills */
  recoveryKills: boolean;
  check: CheckOptions;
  /** Driver children open the store with this checkpointInterval (small: checkpoints in KV all the time). */
  checkpointInterval?: number;
  /** Driver children open the store in journal mode (reopens by the checker stay plain: a journal is replayed either way). */
  journal?: boolean;
  /** A storage of this many partitions writing at once instead of one store (the checks run per partition). */
  partitions?: number;
  /** A fresh temporary directory (removed by the caller). */
  tempDir(): string;
}

/** The driver configuration of a seed's `ops` children. */
function opsConfig(options: SeedOptions, dir: string, seed: number, ops: number): DriverConfig {
  const config: DriverConfig = { dir, seed, ops, mode: 'ops' };
  if (options.checkpointInterval !== undefined) config.checkpointInterval = options.checkpointInterval;
  if (options.journal === true) config.journal = true;
  if (options.partitions !== undefined) config.partitions = options.partitions;
  return config;
}

/** The partitions of a storage seed (1..N), or [0] standing for the one store. */
function partitionIds(options: SeedOptions): number[] {
  return options.partitions === undefined ? [0] : Array.from({ length: options.partitions }, (_, k) => k + 1);
}

/**
 * Replays a run's lines on the models (`bases`, one per partition: key 0 for a store) and checks
 * the directory against the variants. Returns the variants reached, the observations after the
 * check (the next generation's bases) and what the replay counted.
 */
async function checkRun(
  options: SeedOptions,
  dir: string,
  lines: Record<string, unknown>[],
  bases: Map<number, Observation>,
  check: CheckOptions,
): Promise<{ acknowledged: number; results: Map<number, CheckResult>; variants: Variant[] | Map<number, Variant[]> }> {
  if (options.partitions === undefined) {
    const replayed = await replay(bases.get(0)!, lines);
    return { acknowledged: replayed.acknowledged, results: new Map([[0, await checkCrashedDirectory(dir, replayed.variants, check)]]), variants: replayed.variants };
  }
  let acknowledged = 0;
  const variants = new Map<number, Variant[]>();
  for (const [partition, base] of bases) {
    const replayed = await replay(base, linesOfPartition(lines, partition));
    acknowledged += replayed.acknowledged;
    variants.set(partition, replayed.variants);
  }
  return { acknowledged, results: await checkCrashedStorage(dir, variants, check), variants };
}

const emptyBases = (options: SeedOptions): Map<number, Observation> => new Map(partitionIds(options).map((partition) => [partition, emptyObservation()]));

function count(record: Record<string, number>, key: string, by = 1): void {
  record[key] = (record[key] ?? 0) + by;
}

function fail(seed: number, what: string, error: unknown): never {
  throw new Error(`seed ${seed} (${what}): ${(error as Error).message}\n  replay: node dist/scripts/crash.js --first-seed ${seed} --seeds 1`, { cause: error });
}

const emptyObservation = (): Observation => observeStore(new MemoryStorage());

function expectKilled(run: ChildRun, what: string): void {
  if (run.signal !== 'SIGKILL') {
    const error = run.lines.find((line) => line.t === 'error');
    throw new Error(`${what}: the child was not killed (exit ${run.exitCode}${error ? `, ${String(error.message)}` : ''}; ${run.stderr.slice(0, 500)})`);
  }
}

function recordCheck(totals: Totals, result: CheckResult | Map<number, CheckResult>): void {
  totals.kills++;
  for (const one of result instanceof Map ? result.values() : [result]) {
    count(totals.variants, one.variant.startsWith('prefix 0') ? 'old tail partly truncated' : one.variant.startsWith('prefix') ? 'batch prefix' : one.variant);
    count(totals.checkpoint, one.checkpoint);
  }
}

/**
 * Kills during the recovery (open) of a crashed directory `crashed`, which must open to one of
 * `variants` (a storage: each partition to one of its own).
 */
async function killDuringRecovery(options: SeedOptions, totals: Totals, crashed: string, variants: Variant[] | Map<number, Variant[]>): Promise<void> {
  const probe = options.tempDir();
  cpSync(crashed, probe, { recursive: true });
  const counting = await runChild(options.driver, opsConfig(options, probe, options.seed, 0));
  const done = counting.lines.find((line) => line.t === 'done');
  if (done === undefined) throw new Error(`recovery count run failed: ${counting.stderr.slice(0, 500)}`);
  for (const [point, times] of Object.entries(done.counts as Record<string, number>)) {
    for (const occurrence of new Set([1, times])) {
      const dir = options.tempDir();
      cpSync(crashed, dir, { recursive: true });
      const run = await runChild(options.driver, { ...opsConfig(options, dir, options.seed, 0), kill: { point: point as CrashPointName, occurrence } });
      expectKilled(run, `recovery kill at ${point}#${occurrence}`);
      const result = variants instanceof Map ? await checkCrashedStorage(dir, variants, options.check) : await checkCrashedDirectory(dir, variants, options.check);
      recordCheck(totals, result);
      totals.recoveryKills++;
      count(totals.killedAt, point);
    }
  }
}

/** (a) + (c): a count run, then one child per (crash point, occurrence), each on a fresh directory. */
export async function crashPointSeed(options: SeedOptions, totals: Totals): Promise<void> {
  const { seed } = options;
  const countDir = options.tempDir();
  const counting = await runChild(options.driver, opsConfig(options, countDir, seed, options.ops));
  const done = counting.lines.find((line) => line.t === 'done');
  if (done === undefined) fail(seed, 'count run', new Error(`the driver did not finish: ${counting.stderr.slice(0, 1000)}`));
  // The uninterrupted run itself must match the model.
  try {
    await checkRun(options, countDir, counting.lines, emptyBases(options), { ...options.check, writeAfter: false });
  } catch (error) {
    fail(seed, 'uninterrupted run', error);
  }
  const counts = done.counts as Record<string, number>;
  const random = new Random(seed ^ 0x5eed);
  for (const point of CRASH_POINTS) {
    const times = counts[point] ?? 0;
    count(totals.pointsReached, point, times);
    if (times === 0) continue;
    const occurrences = new Set<number>([1]);
    while (occurrences.size < Math.min(times, options.occurrencesPerPoint)) occurrences.add(random.int(1, times));
    for (const occurrence of [...occurrences].sort((a, b) => a - b)) {
      const what = `kill at ${point}#${occurrence}`;
      try {
        const dir = options.tempDir();
        const run = await runChild(options.driver, { ...opsConfig(options, dir, seed, options.ops), kill: { point, occurrence } });
        expectKilled(run, what);
        const interesting = point === 'between-kv-and-wal' || point === 'before-prefix-rename' || point === 'before-prefix-fsync' || point === 'before-intent-clear';
        let recoveryCopy: string | undefined;
        if (options.recoveryKills && interesting) {
          recoveryCopy = options.tempDir();
          cpSync(dir, recoveryCopy, { recursive: true });
        }
        const checked = await checkRun(options, dir, run.lines, emptyBases(options), options.check);
        totals.acknowledged += checked.acknowledged;
        recordCheck(totals, checked.results);
        totals.crashPointKills++;
        count(totals.killedAt, point);
        if (recoveryCopy !== undefined) await killDuringRecovery(options, totals, recoveryCopy, checked.variants);
      } catch (error) {
        fail(seed, what, error);
      }
    }
  }
}

/** (b): `randomGenerations` children on the same directory, each SIGKILLed at a seeded random moment. */
export async function randomKillSeed(options: SeedOptions, totals: Totals, expectedRunMs: number): Promise<void> {
  const { seed } = options;
  const random = new Random(seed * 7919 + 1);
  const dir = options.tempDir();
  let bases = emptyBases(options);
  for (let generation = 0; generation < options.randomGenerations; generation++) {
    const what = `random kill, generation ${generation}`;
    try {
      const delay = random.next() * expectedRunMs;
      const run = await runChild(options.driver, opsConfig(options, dir, seed * 1000 + generation, options.ops), delay);
      if (run.signal !== 'SIGKILL') {
        if (run.exitCode !== 0) throw new Error(`the driver failed: ${run.stderr.slice(0, 1000)}`);
        totals.missedKills++;
      }
      const checked = await checkRun(options, dir, run.lines, bases, options.check);
      totals.acknowledged += checked.acknowledged;
      if (run.signal === 'SIGKILL') {
        recordCheck(totals, checked.results);
        totals.randomKills++;
      }
      bases = new Map([...checked.results].map(([partition, result]) => [partition, result.observation]));
    } catch (error) {
      fail(seed, what, error);
    }
  }
}

/** (d): backfill of a pre-Raft fixture, killed at every backfill crash point and at random moments. */
export async function backfillSeed(options: SeedOptions, totals: Totals, fixtureEntries: number): Promise<void> {
  const { seed } = options;
  // The reference: the same fixture backfilled without interruption, in this process.
  const referenceDir = options.tempDir();
  writePreRaftWal({ dir: referenceDir, entries: fixtureEntries, seed, payloadFilesPerEntry: 1 });
  const reference = await ReplicaLogStore.open({ dir: referenceDir });
  await reference.backfill();
  const expected = observeStore(reference);
  await reference.close();

  const random = new Random(seed + 17);
  const targets: { point: CrashPointName; occurrence: number }[] = [];
  for (const point of ['backfill-after-temp-write', 'backfill-before-rename', 'backfill-after-rename'] as const) {
    for (const occurrence of new Set([1, random.int(1, fixtureEntries), fixtureEntries])) targets.push({ point, occurrence });
  }
  for (const kill of [...targets, undefined, undefined]) {
    const what = kill === undefined ? 'backfill, random kill' : `backfill, kill at ${kill.point}#${kill.occurrence}`;
    try {
      const dir = options.tempDir();
      const config: DriverConfig = { dir, seed, ops: 0, mode: 'backfill', fixtureEntries };
      if (kill !== undefined) config.kill = kill;
      const run = await runChild(options.driver, config, kill === undefined ? random.next() * 30 : undefined);
      if (kill !== undefined) expectKilled(run, what);
      if (run.signal !== 'SIGKILL') {
        totals.missedKills++;
        continue;
      }
      const progress = run.lines.filter((line) => line.t === 'progress').map((line) => line.done as number);
      const done = progress.length === 0 ? 0 : Math.max(...progress);
      const finished = run.lines.some((line) => line.t === 'ack');
      const beforeOpen = await verifyTree(dir);
      const bad = beforeOpen.problems.filter((problem) => !REPAIRED_AT_OPEN.has(problem.code));
      if (bad.length > 0) throw new Error(`verifyTree after the kill: ${bad.map((problem) => `${problem.code} ${problem.message}`).join('; ')}`);
      const store = await ReplicaLogStore.open({ dir });
      try {
        const pending = store.pendingBackfill;
        const ready = run.lines.some((line) => line.t === 'ready');
        // Entries reported durable stay backfilled; those in flight (backfill rewrites a chunk of
        // entries at a time) may or may not be.
        const most = !ready ? fixtureEntries : finished ? 0 : fixtureEntries - done;
        if (pending > most || (!ready && pending !== fixtureEntries)) {
          throw new Error(`${pending} entries pending backfill after the kill, expected at most ${most} (${done} reported durable)`);
        }
        await store.backfill();
        const got = observeStore(store);
        if (!isDeepStrictEqual(got, expected)) throw new Error(`after finishing the backfill the log differs from an uninterrupted backfill:\n  got      ${brief(got)}\n  expected ${brief(expected)}`);
        const last = store.lastIndex();
        await store.append([{ type: EntryType.Normal, term: store.term(last), index: last + 1 } satisfies Entry]);
      } finally {
        await store.close();
      }
      const afterOpen = await verifyTree(dir);
      if (!afterOpen.ok) throw new Error(`verifyTree after the backfill: ${afterOpen.problems.map((problem) => `${problem.code} ${problem.message}`).join('; ')}`);
      totals.kills++;
      totals.backfillKills++;
      count(totals.variants, 'backfill');
      if (kill !== undefined) count(totals.killedAt, kill.point);
    } catch (error) {
      fail(seed, what, error);
    }
  }
}

/** The driver next to this module (dist/scripts/crash-driver.js when run from dist). */
export function defaultDriverPath(): string {
  return join(dirname(fileURLToPath(import.meta.url)), 'crash-driver.js');
}

// ---------------------------------------------------------------------------------------------
// CLI

function parseArguments(argv: string[]): Record<string, string> {
  const options: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i]!;
    if (!argument.startsWith('--')) throw new Error(`unexpected argument ${argument}`);
    const name = argument.slice(2);
    if (name === 'strict' || name === 'help') options[name] = 'true';
    else options[name] = argv[++i] ?? '';
  }
  return options;
}

async function main(): Promise<void> {
  const args = parseArguments(process.argv.slice(2));
  if (args.help) {
    process.stdout.write('usage: node dist/scripts/crash.js [--seeds N] [--first-seed S] [--ops N] [--occurrences K] [--generations G] [--strict] [--partitions N]\n');
    return;
  }
  const seeds = Number(args.seeds ?? 20);
  const firstSeed = Number(args['first-seed'] ?? 1);
  const ops = Number(args.ops ?? 24);
  const root = mkdtempSync(join(tmpdir(), 'replicalog-crash-'));
  let made = 0;
  const totals = newTotals();
  const started = performance.now();
  const failures: string[] = [];
  process.on('exit', killAllChildren);
  try {
    for (let seed = firstSeed; seed < firstSeed + seeds; seed++) {
      const seedRoot = join(root, String(seed));
      const options: SeedOptions = {
        driver: defaultDriverPath(),
        seed,
        ops,
        occurrencesPerPoint: Number(args.occurrences ?? 3),
        randomGenerations: Number(args.generations ?? 4),
        recoveryKills: true,
        ...(seed % 2 === 0 ? { checkpointInterval: 1 } : {}),
        ...(seed % 3 === 0 ? { journal: true } : {}),
        ...(args.partitions === undefined ? {} : { partitions: Number(args.partitions) }),
        check: { allowPrefix: args.strict !== 'true' },
        tempDir: () => {
          const dir = join(seedRoot, String(made++));
          return dir;
        },
      };
      try {
        await crashPointSeed(options, totals);
        await randomKillSeed(options, totals, 60);
        if (seed % 4 === 1 && options.partitions === undefined) await backfillSeed(options, totals, 12);
      } catch (error) {
        failures.push((error as Error).message);
        process.stderr.write(`FAIL ${(error as Error).message}\n`);
      }
      rmSync(seedRoot, { recursive: true, force: true });
      process.stderr.write(`seed ${seed}: ${totals.kills} kills so far\n`);
    }
  } finally {
    killAllChildren();
    rmSync(root, { recursive: true, force: true });
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  process.stdout.write(`${JSON.stringify({ seeds, ...totals, failures: failures.length, seconds: Number(seconds) }, null, 2)}\n`);
  process.stdout.write(
    `${totals.kills} kills survived (${totals.crashPointKills} at crash points, ${totals.randomKills} random, ${totals.recoveryKills} during recovery, ${totals.backfillKills} during backfill), ` +
      `${totals.acknowledged} acknowledged writes checked, ${totals.lost} lost, ${failures.length} failures, ${seconds} s\n`,
  );
  if (failures.length > 0) process.exitCode = 1;
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (invokedDirectly) {
  main().catch((error: unknown) => {
    process.stderr.write(`${String((error as Error)?.stack ?? error)}\n`);
    process.exitCode = 2;
  });
}

