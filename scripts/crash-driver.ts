/**
 * Crash-test driver: a child process that drives a ReplicaLogStore with a seeded sequence of
 * writes and reports, on stdout, one JSON line per step, each written synchronously
 * (fs.writeSync(1, …)) so that a SIGKILL can never lose a line that was reported:
 *
 *   {"t":"ready"}                                   the store is open
 *   {"t":"begin","n":k,"op":{…}}                     operation k is about to be called
 *   {"t":"ack","n":k}                                its promise resolved (durable)
 *   {"t":"rej","n":k,"code":"ERR_…"}                 its promise rejected with this code
 *   {"t":"progress","done":d,"total":t}              backfill: d entries durable
 *   {"t":"done","counts":{point: times}}             finished (crash points passed, per name)
 *
 * insertLogEntry ops stage their directories in `<dir>.adopt/` (a sibling on the same file system).
 *
 * With `partitions` (issue 19), `dir` is a ReplicaLogStorage and partitions 1..N each run their
 * own seeded sequence of `ops` operations, all at once (their writes share KV batches and syncfs
 * passes); every begin/ack/rej line then carries the partition as "p" (`n` counts per
 * partition), and the crash point's occurrence counts over every partition.
 *
 * Usage: node dist/scripts/crash-driver.js '<json config>' (see DriverConfig). With `kill`,
 * the crashPoint hook SIGKILLs this process the `occurrence`-th time `point` is passed.
 *
 * This module also exports what the parent (scripts/crash.ts, spec/crash, spec/fault) shares
 * with it: the seeded PRNG, the operation generator (which reads the store it drives, so it
 * continues any state), the op ⇄ JSON mapping, applying an op to any WritableStorage, and the
 * observation of a store's whole readable state.
 */
import { mkdirSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { encodeLogEntry } from '../lib/codec.js';
import { writePreRaftWal } from '../lib/fixture.js';
import { ReplicaLogStore } from '../lib/replica-log-store.js';
import { ReplicaLogStorage } from '../lib/storage.js';
import { EntryType, type ConfState, type Entry, type HardState, type Snapshot, type WritableStorage } from '../lib/types.js';
import type { CrashPointName } from '../lib/wal/log-manager.js';
import { seededRandom } from '../lib/seeded-random.js';

// ---------------------------------------------------------------------------------------------
// PRNG

/** lib/seeded-random.ts with integer helpers; the same seed gives the same stream. */
export class Random {
  private readonly source: () => number;
  constructor(seed: number) {
    this.source = seededRandom(seed);
  }
  next(): number {
    return this.source();
  }
  /** An integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
  bytes(length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) out[i] = Math.floor(this.next() * 256);
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Operations as plain JSON (bytes as hex; null = absent)

export interface JsonEntry {
  type: number;
  term: number;
  index: number;
  data: string | null;
}
export interface JsonSnapshot {
  index: number;
  term: number;
  confState: ConfState;
  data: string | null;
}
export type Op =
  | { kind: 'append'; entries: JsonEntry[] }
  | { kind: 'setHardState'; hardState: HardState }
  /**
   * What a Ready loop does: append(entries) and setHardState(hardState) called in one tick,
   * without awaiting the first (ReplicaLogStore flushes them as one write group). Its code is
   * the two calls' code when they agree ('ok', or ERR_IO when the group's write failed), else
   * `<append code>+<hard state code>`. The generator only makes valid ones.
   */
  | { kind: 'ready'; entries: JsonEntry[]; hardState: HardState }
  | { kind: 'setConfState'; confState: ConfState }
  | { kind: 'compact'; index: number }
  | { kind: 'createSnapshot'; index: number; confState: ConfState | null; data: string | null }
  | { kind: 'applySnapshot'; snapshot: JsonSnapshot }
  /** ReplicaLogStore.insertLogEntry of a staged directory (MANIFEST + one payload file); append([entry]) on a model. */
  | { kind: 'insertLogEntry'; entry: JsonEntry; stagedDir: string };

export const toHex = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
export const fromHex = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex, 'hex'));

export function toEntry(json: JsonEntry): Entry {
  const entry: Entry = { type: json.type as EntryType, term: json.term, index: json.index };
  if (json.data !== null) entry.data = fromHex(json.data);
  return entry;
}

/** The code of a rejection ('ok' when it resolved). */
export function codeOfError(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : `uncoded: ${String((error as Error)?.message ?? error)}`;
}

/** Runs `op` against any WritableStorage; resolves to 'ok' or the rejection's code. */
export async function applyOp(storage: WritableStorage, op: Op): Promise<string> {
  try {
    switch (op.kind) {
      case 'append':
        await storage.append(op.entries.map(toEntry));
        break;
      case 'setHardState':
        await storage.setHardState({ ...op.hardState });
        break;
      case 'ready': {
        const settle = (write: Promise<void>) => write.then(() => 'ok', codeOfError);
        const codes = await Promise.all([settle(storage.append(op.entries.map(toEntry))), settle(storage.setHardState({ ...op.hardState }))]);
        return codes[0] === codes[1] ? codes[0]! : codes.join('+');
      }
      case 'setConfState':
        await storage.setConfState(structuredClone(op.confState));
        break;
      case 'compact':
        await storage.compact(op.index);
        break;
      case 'createSnapshot':
        await storage.createSnapshot(
          op.index,
          op.confState === null ? undefined : structuredClone(op.confState),
          op.data === null ? undefined : fromHex(op.data),
        );
        break;
      case 'insertLogEntry': {
        const insert = (storage as Partial<Pick<ReplicaLogStore, 'insertLogEntry'>>).insertLogEntry;
        if (insert === undefined) {
          await storage.append([toEntry(op.entry)]);
          break;
        }
        stageEntryDirectory(op.stagedDir, op.entry.index);
        await insert.call(storage, toEntry(op.entry), op.stagedDir);
        break;
      }
      case 'applySnapshot': {
        const snapshot: Snapshot = {
          metadata: { index: op.snapshot.index, term: op.snapshot.term, confState: structuredClone(op.snapshot.confState) },
        };
        if (op.snapshot.data !== null) snapshot.data = fromHex(op.snapshot.data);
        await storage.applySnapshot(snapshot);
        break;
      }
    }
    return 'ok';
  } catch (error) {
    return codeOfError(error);
  }
}

/**
 * A directory as Gitaly stages one for insertLogEntry: a MANIFEST linking payload file `1`
 * (0400) into a repository, on the same file system as the store.
 */
export function stageEntryDirectory(path: string, index: number): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  const manifest = encodeLogEntry({
    relativePath: '@hashed/ab/cd/abcd.git',
    referenceTransactions: [],
    operations: [{ createHardLink: { sourcePath: new TextEncoder().encode('1'), sourceInStorage: false, destinationPath: new TextEncoder().encode(`objects/pack/pack-${index}.pack`) } }],
  });
  writeFileSync(join(path, 'MANIFEST'), manifest, { mode: 0o400 });
  writeFileSync(join(path, '1'), `payload of ${index}`, { mode: 0o400 });
}

// ---------------------------------------------------------------------------------------------
// The generator: mostly valid raft-like writes (so the write path is exercised), a few refused ones

function randomConfState(random: Random): ConfState {
  const ids = (max: number) => Array.from({ length: random.int(0, max) }, () => random.int(1, 7));
  return { voters: ids(3), learners: ids(2), votersOutgoing: random.chance(0.2) ? ids(2) : [], learnersNext: [], autoLeave: random.chance(0.1) };
}

function randomData(random: Random): string | null {
  const roll = random.next();
  if (roll < 0.15) return null;
  if (roll < 0.25) return '';
  if (roll < 0.3) return toHex(random.bytes(random.int(1000, 5000)));
  return toHex(random.bytes(random.int(1, 48)));
}

/**
 * The next operation for `store` (read through the Storage API, so the generator continues
 * whatever state the store is in). Raft discipline: compaction and snapshots only at or below
 * the commit where raft would do them; applySnapshot at or above the commit.
 */
export function nextOp(random: Random, store: WritableStorage, adoptRoot?: string): Op {
  const first = store.firstIndex();
  const last = store.lastIndex();
  const hardState = store.initialState().hardState;
  const snapshotIndex = store.snapshot().metadata.index;
  const lastTerm = store.term(last);
  const topTerm = Math.max(lastTerm, hardState.term);
  const entries = (start: number, count: number, term: number): JsonEntry[] =>
    Array.from({ length: count }, (_, k) => ({
      type: random.chance(0.9) ? EntryType.Normal : random.pick([EntryType.ConfChange, EntryType.ConfChangeV2]),
      term,
      index: start + k,
      data: randomData(random),
    }));
  for (;;) {
    const roll = random.next();
    if (roll < 0.24) return { kind: 'append', entries: entries(last + 1, random.int(1, 6), topTerm + (random.chance(0.15) ? 1 : 0)) };
    if (roll < 0.36) {
      // A Ready: new entries and a hard state committing some of the log (now and then all of
      // it, new entries included, which is only valid because the append comes first).
      const count = random.int(1, 6);
      const term = topTerm + (random.chance(0.15) ? 1 : 0);
      const commit = random.int(hardState.commit, last + (random.chance(0.3) ? count : 0));
      const vote = term === hardState.term && hardState.vote !== 0 ? hardState.vote : random.int(0, 3);
      return { kind: 'ready', entries: entries(last + 1, count, term), hardState: { term, vote, commit } };
    }
    if (roll < 0.48) {
      const low = Math.max(hardState.commit + 1, first);
      if (low > last) continue;
      const start = random.int(low, last);
      return { kind: 'append', entries: entries(start, random.int(1, 4), topTerm + 1) };
    }
    if (roll < 0.62) {
      const commit = random.int(hardState.commit, Math.max(hardState.commit, last));
      const term = topTerm + (random.chance(0.3) ? 1 : 0);
      // One vote per term (a changed vote within the term is refused: kept for the refusals below).
      const vote = term === hardState.term && hardState.vote !== 0 ? hardState.vote : random.int(0, 3);
      return { kind: 'setHardState', hardState: { term, vote, commit } };
    }
    if (roll < 0.7) {
      const low = first;
      const high = Math.min(hardState.commit, last);
      if (low > high) continue;
      return { kind: 'compact', index: random.int(low, high) };
    }
    if (roll < 0.78) {
      const low = Math.max(snapshotIndex + 1, first - 1);
      const high = Math.min(last, hardState.commit);
      if (low > high) continue;
      return {
        kind: 'createSnapshot',
        index: random.int(low, high),
        confState: random.chance(0.5) ? randomConfState(random) : null,
        data: random.chance(0.6) ? toHex(random.bytes(random.int(0, 64))) : null,
      };
    }
    if (roll < 0.83) {
      const index = Math.max(hardState.commit, snapshotIndex + 1, last + random.int(-2, 3), 1);
      return {
        kind: 'applySnapshot',
        snapshot: { index, term: topTerm + random.int(0, 1), confState: randomConfState(random), data: random.chance(0.6) ? toHex(random.bytes(random.int(0, 64))) : null },
      };
    }
    if (roll < 0.92) {
      if (adoptRoot !== undefined && random.chance(0.5)) {
        const low = Math.max(hardState.commit + 1, first);
        const index = low <= last && random.chance(0.3) ? random.int(low, last) : last + 1;
        const entry: JsonEntry = { type: EntryType.Normal, term: index <= last ? topTerm + 1 : topTerm, index, data: randomData(random) };
        return { kind: 'insertLogEntry', entry, stagedDir: join(adoptRoot, `staged-${toHex(random.bytes(6))}`) };
      }
      return { kind: 'setConfState', confState: randomConfState(random) };
    }
    // Refused operations (the store and the model must refuse them with the same code).
    const bad = random.int(0, 4);
    if (bad === 4 && hardState.vote !== 0) return { kind: 'setHardState', hardState: { ...hardState, vote: hardState.vote + 1 } };
    if (bad === 0) return { kind: 'append', entries: entries(last + 2, 1, topTerm) };
    if (bad === 1 && hardState.commit > 0) return { kind: 'setHardState', hardState: { ...hardState, commit: hardState.commit - 1 } };
    if (bad === 2) return { kind: 'compact', index: last + 1 };
    if (bad === 3 && lastTerm > 0) return { kind: 'append', entries: entries(last + 1, 1, lastTerm - 1) };
  }
}

// ---------------------------------------------------------------------------------------------
// Observation: everything a restarted raft can read, as plain JSON

export interface Observation {
  first: number;
  last: number;
  /** term(first-2) (ERR_COMPACTED unless first is 1) and term(first-1), term(last+1) codes. */
  probes: (number | string)[];
  entries: JsonEntry[] | string;
  hardState: HardState;
  confState: ConfState;
  snapshot: JsonSnapshot | string;
}

function attempt<T>(read: () => T): T | string {
  try {
    return read();
  } catch (error) {
    return codeOfError(error);
  }
}

export function entryToJson(entry: Entry): JsonEntry {
  return { type: entry.type, term: entry.term, index: entry.index, data: entry.data === undefined ? null : toHex(entry.data) };
}

export function observeStore(store: WritableStorage): Observation {
  const first = store.firstIndex();
  const last = store.lastIndex();
  const { hardState, confState } = store.initialState();
  const entries = attempt(() => store.entries(first, last + 1).map(entryToJson));
  const snapshot = attempt(() => {
    const s = store.snapshot();
    return { index: s.metadata.index, term: s.metadata.term, confState: s.metadata.confState, data: s.data === undefined ? null : toHex(s.data) };
  });
  const probes = [first - 2, first - 1, last + 1].map((index) => (index < 0 ? 'n/a' : attempt(() => store.term(index))));
  return { first, last, probes, entries, hardState: { ...hardState }, confState, snapshot };
}

// ---------------------------------------------------------------------------------------------
// The child process

export interface DriverConfig {
  dir: string;
  seed: number;
  /** Number of operations to run ('ops' mode). */
  ops: number;
  /** 'ops': seeded writes; 'backfill': writes a pre-Raft fixture when wal/ is empty, then backfill(). */
  mode: 'ops' | 'backfill';
  /** SIGKILL this process the occurrence-th time the named crash point is passed (1-based). */
  kill?: { point: CrashPointName; occurrence: number };
  /** backfill mode: entries of the fixture. */
  fixtureEntries?: number;
  /** The store's checkpointInterval (small values make setHardState and close() write checkpoints). */
  checkpointInterval?: number;
  /** Open the store in journal mode (lib/wal/journal.ts). */
  journal?: boolean;
  /** 'ops' mode on a storage: partitions 1..partitions write at once (see the module comment). */
  partitions?: number;
}

/** The seed of partition `partition`'s operations in a storage run of seed `seed`. */
export function partitionSeed(seed: number, partition: number): number {
  return seed * 1009 + partition;
}

/** Where partition `partition` of the storage in `dir` stages insertLogEntry's directories. */
export function partitionAdoptRoot(dir: string, partition: number): string {
  return join(`${dir}.adopt`, `p${partition}`);
}

function report(line: object): void {
  writeSync(1, `${JSON.stringify(line)}\n`);
}

async function main(config: DriverConfig): Promise<void> {
  const counts: Record<string, number> = {};
  const crashPoint = (name: CrashPointName) => {
    counts[name] = (counts[name] ?? 0) + 1;
    if (config.kill !== undefined && config.kill.point === name && counts[name] === config.kill.occurrence) {
      process.kill(process.pid, 'SIGKILL');
    }
  };
  if (config.partitions !== undefined) return runStorage(config, crashPoint, counts);
  if (config.mode === 'backfill') {
    const { readdirSync, existsSync } = await import('node:fs');
    const wal = `${config.dir}/wal`;
    if (!existsSync(wal) || readdirSync(wal).length === 0) {
      writePreRaftWal({ dir: config.dir, entries: config.fixtureEntries ?? 20, seed: config.seed, payloadFilesPerEntry: 1 });
    }
  }
  const store = await ReplicaLogStore.open({
    dir: config.dir,
    crashPoint,
    ...(config.checkpointInterval === undefined ? {} : { checkpointInterval: config.checkpointInterval }),
    ...(config.journal === true ? { journal: true } : {}),
  });
  report({ t: 'ready' });
  if (config.mode === 'backfill') {
    report({ t: 'begin', n: 0, op: { kind: 'backfill' } });
    const { backfilled } = await store.backfill({ onProgress: (done, total) => report({ t: 'progress', done, total }) });
    report({ t: 'ack', n: 0, backfilled });
  } else {
    const random = new Random(config.seed);
    for (let n = 0; n < config.ops; n++) {
      const op = nextOp(random, store, `${config.dir}.adopt`);
      report({ t: 'begin', n, op });
      const code = await applyOp(store, op);
      report(code === 'ok' ? { t: 'ack', n } : { t: 'rej', n, code });
    }
  }
  await store.close();
  report({ t: 'done', counts });
}

/** 'ops' mode on a storage: every partition's sequence at once. */
async function runStorage(config: DriverConfig, crashPoint: (name: CrashPointName) => void, counts: Record<string, number>): Promise<void> {
  const storage = await ReplicaLogStorage.open({
    dir: config.dir,
    crashPoint,
    ...(config.checkpointInterval === undefined ? {} : { checkpointInterval: config.checkpointInterval }),
    ...(config.journal === true ? { journal: true } : {}),
  });
  const ids = Array.from({ length: config.partitions ?? 0 }, (_, k) => k + 1);
  const stores = await Promise.all(ids.map((id) => storage.openPartition(id)));
  report({ t: 'ready' });
  await Promise.all(
    stores.map(async (store, position) => {
      const p = ids[position]!;
      const random = new Random(partitionSeed(config.seed, p));
      for (let n = 0; n < config.ops; n++) {
        const op = nextOp(random, store, partitionAdoptRoot(config.dir, p));
        report({ t: 'begin', p, n, op });
        const code = await applyOp(store, op);
        report(code === 'ok' ? { t: 'ack', p, n } : { t: 'rej', p, n, code });
      }
    }),
  );
  await storage.close();
  report({ t: 'done', counts });
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (invokedDirectly) {
  main(JSON.parse(process.argv[2] ?? '{}') as DriverConfig).catch((error: unknown) => {
    report({ t: 'error', code: codeOfError(error), message: String((error as Error)?.stack ?? error) });
    process.exitCode = 3;
  });
}
