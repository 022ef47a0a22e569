/**
 * The measurements behind `npm run bench` (scripts/bench.ts) and spec/bench-smoke.test.ts.
 *
 * Every write measurement is a ratio taken in ONE run against a baseline measured in the same
 * run, interleaved (rep 1: A B C …, rep 2: A B C …, …) so that a noisy neighbour or a drifting
 * disk hits every case alike; each figure is the median of its repetitions.
 *
 *   raw1 / raw16        write(B × 1 KiB) + fdatasync appended to one file: the physical limit
 *   level1/16/256       classic-level batch of B puts with { sync: true }
 *   floor256            the format's floor: B entry directories (mkdir + MANIFEST + RAFT staged in
 *                       staging/, renamed into wal/) without any fsync, synchronous calls
 *   seq16               the format written one entry at a time with file fsyncs, the entry
 *                       directory's fsync and wal/'s fsync (the sequential Gitaly path),
 *                       synchronous calls (the fastest way to run that chain)
 *   append1/16/256      ReplicaLogStore.append of B entries (resolved = durable)
 *   entries/term        cached Storage reads of ReplicaLogStore vs MemoryStorage (ns per call)
 *   open / open_scan    ReplicaLogStore.open of an N-entry tree (the ordinary reopen, with kv/ as
 *                       the store left it at close, i.e. with its checkpoint; and the first open,
 *                       which reads every RAFT file) vs reading the same RAFT bytes from one
 *                       length-prefixed file (raw_read; raw_read_decode also decodes each)
 *   index bytes         heap + array-buffer growth of an open store (cache disabled) ÷ N
 *
 * Nothing here edits lib/: the trees for open are written with lib/wal/layout.ts names and
 * lib/codec.ts's encodeEntry, exactly as the store would lay them out.
 */
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  cpSync,
  fdatasyncSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
  writevSync,
} from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ClassicLevel } from 'classic-level';
import { decodeEntry, encodeEntry, encodeHardState } from '../lib/codec.js';
import { MemoryStorage } from '../lib/memory-storage.js';
import { ReplicaLogStore } from '../lib/replica-log-store.js';
import { EntryType, type Entry } from '../lib/types.js';
import {
  DIRECTORY_MODE,
  FILE_MODE,
  formatLsn,
  KEY_HARD_STATE,
  KEY_LOG_ANCHOR,
  kvKey,
  kvPath,
  MANIFEST_FILE,
  RAFT_FILE,
  stagingPath,
  walPath,
} from '../lib/wal/layout.js';

// ---------------------------------------------------------------------------------------------
// Configuration

export interface BenchConfig {
  /** A scratch directory (created if missing); everything the bench writes goes below it and is removed. */
  root: string;
  /** Interleaved repetitions (≥ 3 for a real run). */
  reps: number;
  /** Each write case runs at least this long per repetition … */
  minMs: number;
  /** … and at least this many units (batches) per repetition. */
  minUnits: number;
  /** Payload bytes per entry. */
  payloadBytes: number;
  /** Entries in the open/raw-read tree. */
  openEntries: number;
  /** Entries in the worst-case index tree (a new term at every entry). */
  worstIndexEntries: number;
  /** Entries in the store/MemoryStorage used for the cached read cases (≤ the cache bound). */
  readEntries: number;
  /** Entries per read call (entries(lo, lo + readSpan)). */
  readSpan: number;
  /** Run the read cases at least this long per repetition. */
  readMinMs: number;
  /** Batch sizes of the store's append cases (must hold 1, 16 and 256 for the ratios). */
  appendBatches: number[];
  /** Batch sizes of the classic-level cases. */
  levelBatches: number[];
  /** Batch size of the format-floor case. */
  floorBatch: number;
  /** Entries per unit of the sequential Gitaly case. */
  sequentialBatch: number;
  quick: boolean;
  /** Flush the file system (`sync -f`) before every sample, untimed (off in the smoke test: it can be slow on a busy disk). */
  settle: boolean;
  /** Told the scratch directory of this run as soon as it exists (bench.ts removes it on Ctrl-C). */
  onRunDirectory?: (path: string) => void;
  /** Progress lines go here (stderr by default; the smoke test silences it). */
  log?: (line: string) => void;
}

export function quickConfig(root: string): BenchConfig {
  return {
    root,
    reps: 3,
    minMs: 400,
    minUnits: 4,
    payloadBytes: 1024,
    openEntries: 100_000,
    worstIndexEntries: 10_000,
    readEntries: 1024,
    readSpan: 64,
    readMinMs: 200,
    appendBatches: [1, 16, 256],
    levelBatches: [1, 16, 256],
    floorBatch: 256,
    sequentialBatch: 16,
    quick: true,
    settle: true,
  };
}

export function fullConfig(root: string): BenchConfig {
  return { ...quickConfig(root), reps: 5, minMs: 1500, minUnits: 8, openEntries: 1_000_000, worstIndexEntries: 100_000, readMinMs: 500, quick: false };
}

/** The smallest run that still exercises every path (spec/bench-smoke.test.ts). */
export function tinyConfig(root: string): BenchConfig {
  return {
    ...quickConfig(root),
    reps: 1,
    minMs: 1,
    minUnits: 1,
    openEntries: 300,
    worstIndexEntries: 200,
    readEntries: 128,
    readSpan: 16,
    readMinMs: 5,
    settle: false,
  };
}

// ---------------------------------------------------------------------------------------------
// Results

export type Unit = 'entries/s' | 'ns/call' | 's' | 'bytes/entry';

export interface Measurement {
  name: string;
  description: string;
  unit: Unit;
  samples: number[];
  median: number;
}

/** Appends kept in flight by the concurrent case (append1x16). */
export const CONCURRENT_CALLERS = 16;

export const RATIO_NAMES = [
  'append1_over_raw1',
  'append16_over_append1',
  'append256_over_append16',
  'append16_over_sequential16',
  'append_over_format_floor',
  'entries_over_memory',
  'term_over_memory',
  'open_over_raw_read',
] as const;
export type RatioName = (typeof RATIO_NAMES)[number];

export interface Target {
  /** 'min': the value must be ≥ bound; 'max': ≤ bound. */
  kind: 'min' | 'max';
  bound: number;
}

export const TARGETS: Record<RatioName | 'open_1m_seconds' | 'index_bytes_per_entry', Target> = {
  append1_over_raw1: { kind: 'min', bound: 0.25 },
  append16_over_append1: { kind: 'min', bound: 3 },
  append256_over_append16: { kind: 'min', bound: 1.0 },
  append16_over_sequential16: { kind: 'min', bound: 4 },
  append_over_format_floor: { kind: 'min', bound: 0.5 },
  entries_over_memory: { kind: 'max', bound: 2 },
  term_over_memory: { kind: 'max', bound: 2 },
  open_over_raw_read: { kind: 'max', bound: 15 },
  open_1m_seconds: { kind: 'max', bound: 15 },
  index_bytes_per_entry: { kind: 'max', bound: 32 },
};

export interface BenchResult {
  ratios: Record<RatioName, number>;
  open_1m_seconds: number | null;
  /** Seconds to open the tree actually measured (openEntries entries): the ordinary reopen. */
  open_seconds: number;
  /** The same tree's first open (no checkpoint: every RAFT file read). */
  open_scan_seconds: number;
  /** What the store reported about each open (openStats), when it reports it. */
  open_states: Record<string, string>;
  open_entries: number;
  index_bytes_per_entry: number;
  /** The same with a new term at every entry (TermRuns' worst case). */
  index_bytes_per_entry_worst: number;
  /** Not a target: 16 concurrent one-entry appends (coalesced) over append1 (one at a time). */
  coalesced16_over_append1: number;
  quick: boolean;
  machine: Record<string, unknown>;
  measurements: Record<string, { median: number; unit: Unit; samples: number[] }>;
  descriptions: Record<string, string>;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export function meets(target: Target, value: number | null): boolean {
  if (value === null || !Number.isFinite(value)) return false;
  return target.kind === 'min' ? value >= target.bound : value <= target.bound;
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** A deterministic payload (not all zeros, so nothing can compress it away). */
export function payload(bytes: number, seed = 1): Uint8Array {
  const data = new Uint8Array(bytes);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < bytes; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    data[i] = state & 0xff;
  }
  return data;
}

function makeEntry(index: number, term: number, data: Uint8Array): Entry {
  return { type: EntryType.Normal, term, index, data };
}

/** fsync of a path (a directory or a file) with synchronous calls. */
export function fsyncPath(path: string): void {
  const descriptor = openSync(path, 'r');
  try {
    fsyncSync(descriptor);
  } finally {
    closeSync(descriptor);
  }
}

/** Creates a new file (mode 0400) holding `bytes` and fsyncs it, with synchronous calls. */
export function createSynced(path: string, bytes: Uint8Array): void {
  const descriptor = openSync(path, 'wx', FILE_MODE);
  try {
    let written = 0;
    while (written < bytes.length) written += writeSync(descriptor, bytes, written, bytes.length - written);
    fsyncSync(descriptor);
  } finally {
    closeSync(descriptor);
  }
}

/** The V8 collector, made callable without --expose-gc on the command line. */
let collector: (() => void) | undefined;
export function forceGc(): void {
  if (collector === undefined) {
    setFlagsFromString('--expose-gc');
    collector = runInNewContext('gc') as () => void;
  }
  collector();
  collector();
}

function retainedBytes(): number {
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

/**
 * Runs `unit` (which does some entries' worth of work and returns how many) until both
 * `minMs` elapsed and `minUnits` units ran; returns entries per second.
 */
async function throughput(config: BenchConfig, unit: () => number | Promise<number>): Promise<number> {
  let entries = 0;
  let units = 0;
  const start = performance.now();
  let elapsed = 0;
  while (units < config.minUnits || elapsed < config.minMs) {
    entries += await unit();
    units++;
    elapsed = performance.now() - start;
  }
  return entries / (elapsed / 1000);
}

/** Calls `call` until `minMs` elapsed (checking the clock every 64 calls); ns per call. */
function nsPerCall(minMs: number, call: (i: number) => unknown): number {
  let calls = 0;
  let sink = 0;
  const start = performance.now();
  let elapsed = 0;
  do {
    for (let k = 0; k < 64; k++) {
      if (call(calls++) === undefined) sink++;
    }
    elapsed = performance.now() - start;
  } while (elapsed < minMs);
  if (sink === -1) process.stdout.write(''); // keeps the results alive
  return (elapsed * 1e6) / calls;
}

// ---------------------------------------------------------------------------------------------
// Cases: each is set up once, run once per repetition (interleaved), torn down at the end.

export interface BenchCase {
  name: string;
  description: string;
  unit: Unit;
  setup(): Promise<void>;
  /** One sample. */
  run(): Promise<number>;
  /** Run once before the first repetition, sample discarded (JIT warm-up of the read cases). */
  warmUp?: boolean;
  teardown(): Promise<void>;
}

/** write(B × payload) + fdatasync appended to one file (synchronous calls: the physical limit). */
export function rawAppendCase(config: BenchConfig, batch: number): BenchCase {
  const path = join(config.root, `raw-${batch}.log`);
  const data = payload(config.payloadBytes);
  const buffers = Array.from({ length: batch }, () => data);
  let descriptor = -1;
  return {
    name: `raw${batch}`,
    description: `write ${batch} x ${config.payloadBytes} B + fdatasync, one file`,
    unit: 'entries/s',
    async setup() {
      descriptor = openSync(path, 'a');
    },
    async run() {
      return throughput(config, () => {
        writevSync(descriptor, buffers);
        fdatasyncSync(descriptor);
        return batch;
      });
    },
    async teardown() {
      if (descriptor >= 0) closeSync(descriptor);
      rmSync(path, { force: true });
    },
  };
}

/**
 * classic-level batch of B puts, { sync: true }. The database is opened before and closed after
 * each sample (untimed): LevelDB's close waits for its background compaction, which would
 * otherwise run on during the next case and slow it down.
 */
export function levelBatchCase(config: BenchConfig, batch: number): BenchCase {
  const location = join(config.root, `level-${batch}`);
  const value = payload(config.payloadBytes);
  let next = 0;
  return {
    name: `level${batch}`,
    description: `classic-level sync batch of ${batch} puts`,
    unit: 'entries/s',
    async setup() {},
    async run() {
      const db = new ClassicLevel<Uint8Array, Uint8Array>(location, { keyEncoding: 'view', valueEncoding: 'view' });
      await db.open();
      try {
        return await throughput(config, async () => {
          const operations = [];
          for (let k = 0; k < batch; k++) {
            const key = new Uint8Array(8);
            new DataView(key.buffer).setBigUint64(0, BigInt(++next), false);
            operations.push({ type: 'put' as const, key, value });
          }
          await db.batch(operations, { sync: true });
          return batch;
        });
      } finally {
        await db.close();
      }
    },
    async teardown() {
      rmSync(location, { recursive: true, force: true });
    },
  };
}

/** A scratch store-like tree (wal/ + staging/) for the format cases. */
function formatTree(config: BenchConfig, name: string): { dir: string; wal: string; staging: string } {
  const dir = join(config.root, name);
  const wal = walPath(dir);
  const staging = stagingPath(dir);
  mkdirSync(wal, { recursive: true, mode: DIRECTORY_MODE });
  mkdirSync(staging, { recursive: true, mode: DIRECTORY_MODE });
  return { dir, wal, staging };
}

/** Empties wal/ between repetitions (untimed), so its size does not grow across cases. */
function resetTree(tree: { wal: string }): void {
  rmSync(tree.wal, { recursive: true, force: true });
  mkdirSync(tree.wal, { mode: DIRECTORY_MODE });
}

/** The format floor: B entry directories (mkdir + MANIFEST + RAFT), renamed into wal/, no fsync. */
export function formatFloorCase(config: BenchConfig, batch: number): BenchCase {
  const data = payload(config.payloadBytes);
  const empty = new Uint8Array(0);
  let tree: ReturnType<typeof formatTree> | undefined;
  let next = 0;
  return {
    name: `floor${batch}`,
    description: `format floor: ${batch} entry dirs, no fsync`,
    unit: 'entries/s',
    async setup() {
      tree = formatTree(config, `floor-${batch}`);
    },
    async run() {
      const { wal, staging } = tree!;
      // Staged straight into staging/ (LSN names are unique there): no per-batch mkdtemp + rm,
      // the cheapest way to create the entries before publishing them. wal/ is emptied after
      // the sample (untimed; the next settle flushes the deletions).
      const sample = await throughput(config, () => {
        for (let k = 0; k < batch; k++) {
          const index = ++next;
          const directory = join(staging, formatLsn(index));
          mkdirSync(directory, { mode: DIRECTORY_MODE });
          writeFileSync(join(directory, MANIFEST_FILE), empty, { mode: FILE_MODE, flag: 'wx' });
          writeFileSync(join(directory, RAFT_FILE), encodeEntry(makeEntry(index, 1, data)), { mode: FILE_MODE, flag: 'wx' });
        }
        for (let index = next - batch + 1; index <= next; index++) {
          const name = formatLsn(index);
          renameSync(join(staging, name), join(wal, name));
        }
        return batch;
      });
      resetTree(tree!);
      return sample;
    },
    async teardown() {
      if (tree !== undefined) rmSync(tree.dir, { recursive: true, force: true });
    },
  };
}

/**
 * The sequential Gitaly path: one entry at a time, MANIFEST and RAFT written and fsynced, the
 * entry directory fsynced, renamed into wal/, wal/ fsynced. Synchronous calls.
 */
export function sequentialCase(config: BenchConfig, batch: number): BenchCase {
  const data = payload(config.payloadBytes);
  let tree: ReturnType<typeof formatTree> | undefined;
  let next = 0;
  return {
    name: `seq${batch}`,
    description: `sequential Gitaly path, ${batch} entries one at a time (file+dir+wal fsync)`,
    unit: 'entries/s',
    async setup() {
      tree = formatTree(config, `sequential-${batch}`);
    },
    async run() {
      const { wal, staging } = tree!;
      const sample = await throughput(config, () => {
        for (let k = 0; k < batch; k++) {
          const index = ++next;
          const name = formatLsn(index);
          const directory = join(staging, name);
          mkdirSync(directory, { mode: DIRECTORY_MODE });
          createSynced(join(directory, MANIFEST_FILE), new Uint8Array(0));
          createSynced(join(directory, RAFT_FILE), encodeEntry(makeEntry(index, 1, data)));
          fsyncPath(directory);
          renameSync(directory, join(wal, name));
          fsyncPath(wal);
        }
        return batch;
      });
      resetTree(tree!);
      return sample;
    },
    async teardown() {
      if (tree !== undefined) rmSync(tree.dir, { recursive: true, force: true });
    },
  };
}

/**
 * ReplicaLogStore.append of B entries per call, `callers` calls kept in flight at once (each
 * resolved promise = durable). With callers > 1 each caller takes the next index
 * synchronously, as a Raft leader's proposals would, and the store coalesces the calls that
 * arrive during a flush into the next one (write groups): append1x16 is not a target of the
 * issue, it shows what coalescing buys over append1 (one call at a time).
 */
export function appendCase(config: BenchConfig, batch: number, callers = 1): BenchCase {
  const name = callers === 1 ? `append${batch}` : `append${batch}x${callers}`;
  const dir = join(config.root, name);
  const data = payload(config.payloadBytes);
  let store: ReplicaLogStore | undefined;
  return {
    name,
    description:
      callers === 1
        ? `ReplicaLogStore.append, ${batch} entries per call`
        : `ReplicaLogStore.append, ${batch} entry per call, ${callers} calls in flight (write groups)`,
    unit: 'entries/s',
    async setup() {
      store = await ReplicaLogStore.open({ dir });
    },
    async run() {
      const target = store!;
      return throughput(config, async () => {
        const first = target.lastIndex() + 1;
        const calls = Array.from({ length: callers }, (_, call) => {
          const entries: Entry[] = [];
          for (let k = 0; k < batch; k++) entries.push(makeEntry(first + call * batch + k, 1, data));
          return target.append(entries);
        });
        await Promise.all(calls);
        return batch * callers;
      });
    },
    async teardown() {
      await store?.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Terms of the read cases: a new term every 100 entries (a few runs to search). */
function readTerm(index: number): number {
  return 1 + Math.floor(index / 100);
}

/** Fills a store and a MemoryStorage with the same `count` entries. */
async function fillReadStores(
  config: BenchConfig,
  dir: string,
  cacheMaxEntries?: number,
): Promise<{ store: ReplicaLogStore; memory: MemoryStorage }> {
  const data = payload(config.payloadBytes);
  const entries: Entry[] = [];
  for (let index = 1; index <= config.readEntries; index++) entries.push(makeEntry(index, readTerm(index), data));
  let store = await ReplicaLogStore.open({ dir });
  for (let start = 0; start < entries.length; start += 256) await store.append(entries.slice(start, start + 256));
  if (cacheMaxEntries !== undefined) {
    await store.close();
    store = await ReplicaLogStore.open({ dir, cacheMaxEntries });
  }
  const memory = new MemoryStorage();
  await memory.append(entries);
  return { store, memory };
}

/** Storage reads on a filled store or a MemoryStorage: ns per call. */
export function readCases(config: BenchConfig): BenchCase[] {
  const dir = join(config.root, 'read-store');
  const uncachedDir = join(config.root, 'read-store-uncached');
  let stores: { store: ReplicaLogStore; memory: MemoryStorage } | undefined;
  let uncached: ReplicaLogStore | undefined;
  const span = Math.min(config.readSpan, config.readEntries);
  const positions = config.readEntries - span + 1;
  const entriesOf = (storage: { entries(lo: number, hi: number): Entry[] }) => () =>
    nsPerCall(config.readMinMs, (i) => {
      const lo = 1 + (i % positions);
      return storage.entries(lo, lo + span);
    });
  // A stride coprime with the size walks every index in a scattered order.
  const termOf = (storage: { term(i: number): number }) => () =>
    nsPerCall(config.readMinMs, (i) => storage.term(1 + ((i * 7919) % config.readEntries)));
  const make = (name: string, description: string, measure: () => () => number): BenchCase => ({
    name,
    description,
    unit: 'ns/call',
    warmUp: true,
    async setup() {},
    async run() {
      return measure()();
    },
    async teardown() {},
  });
  return [
    {
      ...make('entries_store', `ReplicaLogStore.entries, ${span} cached entries`, () => entriesOf(stores!.store)),
      async setup() {
        stores = await fillReadStores(config, dir);
      },
      async teardown() {
        await stores?.store.close();
        rmSync(dir, { recursive: true, force: true });
      },
    },
    make('entries_memory', `MemoryStorage.entries, ${span} entries`, () => entriesOf(stores!.memory)),
    make('term_store', 'ReplicaLogStore.term (cached index)', () => termOf(stores!.store)),
    make('term_memory', 'MemoryStorage.term', () => termOf(stores!.memory)),
    {
      ...make('entries_store_uncached', `ReplicaLogStore.entries, ${span} entries, cache off (RAFT files)`, () => entriesOf(uncached!)),
      async setup() {
        uncached = (await fillReadStores(config, uncachedDir, 0)).store;
      },
      async teardown() {
        await uncached?.close();
        rmSync(uncachedDir, { recursive: true, force: true });
      },
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// Open: a tree written directly (same layout and codec as the store), and the same RAFT bytes
// in one length-prefixed file.

export interface TreeOptions {
  dir: string;
  entries: number;
  payloadBytes: number;
  /** Term of entry `index` (non-decreasing). */
  term(index: number): number;
  /** Also write every RAFT record, u32-LE length-prefixed, to this file. */
  rawFile?: string;
}

/**
 * Writes `<dir>/wal/<LSN>/{MANIFEST,RAFT}` for indexes 1..entries plus a hard state and a log
 * anchor in `<dir>/kv` (what a bootstrapped store leaves), with synchronous calls and no fsync.
 */
export async function buildTree(options: TreeOptions): Promise<void> {
  const { dir, entries } = options;
  const wal = walPath(dir);
  mkdirSync(wal, { recursive: true, mode: DIRECTORY_MODE });
  mkdirSync(stagingPath(dir), { recursive: true, mode: DIRECTORY_MODE });
  const data = payload(options.payloadBytes);
  const empty = new Uint8Array(0);
  let raw = -1;
  const chunk = Buffer.allocUnsafe(8 << 20);
  let used = 0;
  const flush = () => {
    let written = 0;
    while (written < used) written += writeSync(raw, chunk, written, used - written);
    used = 0;
  };
  if (options.rawFile !== undefined) raw = openSync(options.rawFile, 'w');
  let lastTerm = 0;
  try {
    for (let index = 1; index <= entries; index++) {
      lastTerm = options.term(index);
      const bytes = encodeEntry(makeEntry(index, lastTerm, data));
      const directory = join(wal, formatLsn(index));
      mkdirSync(directory, { mode: DIRECTORY_MODE });
      writeFileSync(join(directory, MANIFEST_FILE), empty, { mode: FILE_MODE, flag: 'wx' });
      writeFileSync(join(directory, RAFT_FILE), bytes, { mode: FILE_MODE, flag: 'wx' });
      if (raw >= 0) {
        if (used + 4 + bytes.length > chunk.length) flush();
        chunk.writeUInt32LE(bytes.length, used);
        chunk.set(bytes, used + 4);
        used += 4 + bytes.length;
      }
    }
    if (raw >= 0) flush();
  } finally {
    if (raw >= 0) closeSync(raw);
  }
  const database = new ClassicLevel<Uint8Array, Uint8Array>(kvPath(dir), { keyEncoding: 'view', valueEncoding: 'view' });
  await database.open();
  try {
    const anchor = new Uint8Array(16); // index 0, term 0: nothing compacted
    await database.batch(
      [
        { type: 'put', key: kvKey(undefined, KEY_HARD_STATE), value: encodeHardState({ term: lastTerm, vote: 1, commit: entries }) },
        { type: 'put', key: kvKey(undefined, KEY_LOG_ANCHOR), value: anchor },
      ],
      { sync: true },
    );
  } finally {
    await database.close();
  }
}

/**
 * Reads a length-prefixed RAFT file in 4 MiB chunks; counts the records (and decodes each one
 * when `decode`). Returns the record count.
 */
export function readRawFile(path: string, decode: boolean): number {
  const descriptor = openSync(path, 'r');
  const size = statSync(path).size;
  const chunk = Buffer.allocUnsafe(4 << 20);
  let records = 0;
  let carried = 0; // bytes of an unfinished record at the start of `chunk`
  let offset = 0;
  try {
    while (offset < size) {
      const read = readSync(descriptor, chunk, carried, chunk.length - carried, offset);
      if (read === 0) break;
      offset += read;
      const end = carried + read;
      let position = 0;
      while (position + 4 <= end) {
        const length = chunk.readUInt32LE(position);
        if (position + 4 + length > end) break;
        if (decode) decodeEntry(chunk.subarray(position + 4, position + 4 + length));
        records++;
        position += 4 + length;
      }
      carried = end - position;
      chunk.copy(chunk, 0, position, end);
    }
  } finally {
    closeSync(descriptor);
  }
  return records;
}

/** How the store says open() built its index (ReplicaLogStore.openStats, when the store has it). */
function openState(store: ReplicaLogStore): string {
  const stats = (store as unknown as { openStats?: { checkpoint?: string; scanned?: number } }).openStats;
  return stats?.checkpoint === undefined ? 'full scan (no checkpoint support)' : `checkpoint ${stats.checkpoint}, ${stats.scanned} RAFT files read`;
}

/**
 * open() of an N-entry tree in its two states, each measured from a saved copy of kv/ (copied
 * in, untimed, before every sample; LevelDB of a few keys):
 *   open       the ordinary reopen: kv/ as the store left it after one open + close (with a
 *              store that writes a checkpoint at close, it holds one)
 *   open_scan  the first open of the tree: kv/ with only the hard state and the anchor, so the
 *              store reads every RAFT file
 */
export function openCases(config: BenchConfig): { cases: BenchCase[]; teardown(): Promise<void>; states: Record<string, string> } {
  const dir = join(config.root, 'open-tree');
  const rawFile = join(config.root, 'open-raw.log');
  const worstDir = join(config.root, 'open-tree-worst');
  const kv = kvPath(dir);
  const kvFirst = join(config.root, 'open-kv-first');
  const kvReopen = join(config.root, 'open-kv-reopen');
  const n = config.openEntries;
  const log = config.log ?? (() => {});
  const states: Record<string, string> = {};
  let built = false;
  const useKv = (copy: string) => {
    rmSync(kv, { recursive: true, force: true });
    cpSync(copy, kv, { recursive: true });
  };
  const checkCount = (store: ReplicaLogStore, expected: number) => {
    if (store.lastIndex() !== expected || store.firstIndex() !== 1) {
      throw new Error(`open: expected 1..${expected}, got ${store.firstIndex()}..${store.lastIndex()}`);
    }
  };
  const ensureBuilt = async () => {
    if (built) return;
    built = true;
    let started = performance.now();
    await buildTree({ dir, entries: n, payloadBytes: config.payloadBytes, term: (index) => 1 + Math.floor(index / 1000), rawFile });
    await buildTree({ dir: worstDir, entries: config.worstIndexEntries, payloadBytes: config.payloadBytes, term: (index) => index });
    log(`built ${n} + ${config.worstIndexEntries} entry trees in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    cpSync(kv, kvFirst, { recursive: true });
    started = performance.now();
    const store = await ReplicaLogStore.open({ dir });
    checkCount(store, n);
    states.first_open = openState(store);
    await store.close();
    cpSync(kv, kvReopen, { recursive: true });
    log(`first open + close (untimed, ${states.first_open}) in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  };
  const timedOpen = (copy: string, state: string) => async () => {
    useKv(copy);
    const started = performance.now();
    const store = await ReplicaLogStore.open({ dir });
    const seconds = (performance.now() - started) / 1000;
    checkCount(store, n);
    states[state] = openState(store);
    await store.close();
    return seconds;
  };
  const indexBytes = (treeDir: string, entries: number, copy?: string) => async () => {
    if (copy !== undefined) useKv(copy);
    forceGc();
    const before = retainedBytes();
    const store = await ReplicaLogStore.open({ dir: treeDir, cacheMaxEntries: 0 });
    forceGc();
    const after = retainedBytes();
    checkCount(store, entries);
    await store.close();
    return Math.max(after - before, 1) / entries;
  };
  const rawRead = (decode: boolean) => async () => {
    const started = performance.now();
    const records = readRawFile(rawFile, decode);
    const seconds = (performance.now() - started) / 1000;
    if (records !== n) throw new Error(`raw read: ${records} records, expected ${n}`);
    return seconds;
  };
  const plain = (name: string, description: string, unit: Unit, run: () => Promise<number>): BenchCase => ({
    name,
    description,
    unit,
    setup: ensureBuilt,
    run,
    async teardown() {},
  });
  const cases: BenchCase[] = [
    plain('open', `ReplicaLogStore.open, ${n} entries, reopen (kv as the store left it at close)`, 's', timedOpen(kvReopen, 'open')),
    plain('open_scan', `ReplicaLogStore.open, ${n} entries, first open (every RAFT file read)`, 's', timedOpen(kvFirst, 'open_scan')),
    plain('raw_read', `read the same ${n} RAFT records from one file`, 's', rawRead(false)),
    plain('raw_read_decode', 'the same, each record decoded', 's', rawRead(true)),
    plain(
      'index_bytes',
      `heap growth of an open store (cache off) / entry, ${n} entries, term every 1000`,
      'bytes/entry',
      indexBytes(dir, n, kvReopen),
    ),
    plain(
      'index_bytes_worst',
      `the same, ${config.worstIndexEntries} entries, a new term at each (first open)`,
      'bytes/entry',
      indexBytes(worstDir, config.worstIndexEntries),
    ),
  ];
  return {
    cases,
    states,
    async teardown() {
      removeTree(dir);
      removeTree(worstDir);
      removeTree(kvFirst);
      removeTree(kvReopen);
      rmSync(rawFile, { force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The run

function fileSystemOf(path: string): string {
  try {
    const mounts = readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .map((line) => line.split(' '))
      .filter((fields) => fields.length >= 3);
    let best: string[] | undefined;
    for (const fields of mounts) {
      const point = fields[1]!;
      if ((path === point || path.startsWith(point.endsWith('/') ? point : `${point}/`)) && (best === undefined || point.length > best[1]!.length)) {
        best = fields;
      }
    }
    return best === undefined ? 'unknown' : `${best[2]} (${best[0]} on ${best[1]}, ${best[3]})`;
  } catch {
    return 'unknown';
  }
}

export function machineInfo(root: string): Record<string, unknown> {
  const cpu = cpus();
  return {
    node: process.version,
    platform: `${process.platform} ${release()}`,
    cpu: cpu[0]?.model ?? 'unknown',
    cpus: cpu.length,
    memory_gib: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    filesystem: fileSystemOf(resolve(root)),
    uv_threadpool_size: process.env.UV_THREADPOOL_SIZE ?? '4 (default)',
    loadavg_start: loadavg().map((value) => Math.round(value * 100) / 100),
    date: new Date().toISOString(),
  };
}

/** Removes a (possibly huge) tree: `rm -rf` is several times faster than fs.rmSync on 10^6 entries. */
export function removeTree(path: string): void {
  const result = spawnSync('rm', ['-rf', '--', path], { stdio: 'ignore' });
  if (result.status !== 0) rmSync(path, { recursive: true, force: true });
}

/**
 * Between two samples (untimed): flush the file system's dirty data (`sync -f`, i.e. syncfs) so
 * the writeback a case left behind (the format floor writes without fsync) is not charged to
 * the next case.
 */
function settle(root: string): void {
  spawnSync('sync', ['-f', root], { stdio: 'ignore', timeout: 60_000 });
}

/** Runs every case set up front, `reps` interleaved repetitions, then tears down. */
async function runInterleaved(config: BenchConfig, cases: BenchCase[], measurements: Map<string, Measurement>): Promise<void> {
  const log = config.log ?? (() => {});
  try {
    for (const benchCase of cases) await benchCase.setup();
    for (const benchCase of cases) if (benchCase.warmUp === true) await benchCase.run();
    for (let rep = 1; rep <= config.reps; rep++) {
      for (const benchCase of cases) {
        if (config.settle) settle(config.root);
        const value = await benchCase.run();
        let measurement = measurements.get(benchCase.name);
        if (measurement === undefined) {
          measurement = { name: benchCase.name, description: benchCase.description, unit: benchCase.unit, samples: [], median: Number.NaN };
          measurements.set(benchCase.name, measurement);
        }
        measurement.samples.push(value);
        measurement.median = median(measurement.samples);
      }
      log(`  rep ${rep}/${config.reps}: ${cases.map((c) => `${c.name}=${formatValue(measurements.get(c.name)!.samples.at(-1)!, c.unit)}`).join(' ')}`);
    }
  } finally {
    for (const benchCase of cases) await benchCase.teardown().catch(() => {});
  }
}

export async function runBench(config: BenchConfig): Promise<BenchResult> {
  const log = config.log ?? (() => {});
  mkdirSync(config.root, { recursive: true });
  const root = mkdtempSync(join(config.root, 'run-'));
  config.onRunDirectory?.(root);
  const scoped: BenchConfig = { ...config, root };
  const machine = machineInfo(root);
  const measurements = new Map<string, Measurement>();
  let openStates: Record<string, string> = {};
  try {
    log('write cases…');
    await runInterleaved(
      scoped,
      [
        rawAppendCase(scoped, 1),
        rawAppendCase(scoped, 16),
        ...scoped.levelBatches.map((batch) => levelBatchCase(scoped, batch)),
        formatFloorCase(scoped, scoped.floorBatch),
        sequentialCase(scoped, scoped.sequentialBatch),
        ...scoped.appendBatches.map((batch) => appendCase(scoped, batch)),
        appendCase(scoped, 1, CONCURRENT_CALLERS),
      ],
      measurements,
    );
    log('read cases…');
    await runInterleaved(scoped, readCases(scoped), measurements);
    log(`open cases (${scoped.openEntries} entries)…`);
    const open = openCases(scoped);
    try {
      await runInterleaved(scoped, open.cases, measurements);
    } finally {
      await open.teardown();
    }
    openStates = open.states;
  } finally {
    removeTree(root);
    try {
      rmdirSync(config.root); // only when empty (another run may share it)
    } catch {
      // not empty or already gone
    }
  }
  machine.loadavg_end = loadavg().map((value) => Math.round(value * 100) / 100);

  const m = (name: string): number => {
    const measurement = measurements.get(name);
    if (measurement === undefined) throw new Error(`bench: no measurement ${name}`);
    return measurement.median;
  };
  const ratios: Record<RatioName, number> = {
    append1_over_raw1: m('append1') / m('raw1'),
    append16_over_append1: m('append16') / m('append1'),
    append256_over_append16: m('append256') / m('append16'),
    append16_over_sequential16: m('append16') / m(`seq${scoped.sequentialBatch}`),
    append_over_format_floor: m('append256') / m(`floor${scoped.floorBatch}`),
    entries_over_memory: m('entries_store') / m('entries_memory'),
    term_over_memory: m('term_store') / m('term_memory'),
    open_over_raw_read: m('open') / m('raw_read'),
  };
  const result: BenchResult = {
    ratios,
    open_1m_seconds: scoped.openEntries === 1_000_000 ? m('open') : null,
    open_seconds: m('open'),
    open_scan_seconds: m('open_scan'),
    open_states: openStates,
    open_entries: scoped.openEntries,
    index_bytes_per_entry: m('index_bytes'),
    index_bytes_per_entry_worst: m('index_bytes_worst'),
    coalesced16_over_append1: m(`append1x${CONCURRENT_CALLERS}`) / m('append1'),
    quick: scoped.quick,
    machine,
    measurements: Object.fromEntries(
      [...measurements.values()].map((measurement) => [measurement.name, { median: measurement.median, unit: measurement.unit, samples: measurement.samples }]),
    ),
    descriptions: Object.fromEntries([...measurements.values()].map((measurement) => [measurement.name, measurement.description])),
  };
  return result;
}

// ---------------------------------------------------------------------------------------------
// Output

export function formatValue(value: number, unit: Unit): string {
  if (!Number.isFinite(value)) return String(value);
  switch (unit) {
    case 'entries/s':
      return `${Math.round(value)}/s`;
    case 'ns/call':
      return `${value.toFixed(0)}ns`;
    case 's':
      return `${value.toFixed(3)}s`;
    case 'bytes/entry':
      return `${value.toFixed(1)}B`;
  }
}

function pad(text: string, width: number, right = false): string {
  return right ? text.padStart(width) : text.padEnd(width);
}

export function formatTable(result: BenchResult): string {
  const lines: string[] = [];
  const descriptions = result.descriptions;
  lines.push(`replicalog bench${result.quick ? ' (--quick: open measured at ' + result.open_entries + ' entries)' : ''}`);
  lines.push(`machine: ${JSON.stringify(result.machine)}`);
  lines.push('');
  lines.push(`${pad('case', 24)} ${pad('median', 14, true)} ${pad('unit', 12)} samples / what`);
  for (const [name, measurement] of Object.entries(result.measurements)) {
    const samples = measurement.samples.map((value) => formatValue(value, measurement.unit)).join(' ');
    lines.push(
      `${pad(name, 24)} ${pad(formatValue(measurement.median, measurement.unit), 14, true)} ${pad(measurement.unit, 12)} [${samples}] ${descriptions[name] ?? ''}`,
    );
  }
  lines.push(`open states: ${JSON.stringify(result.open_states)}`);
  lines.push('');
  lines.push(`${pad('ratio / goal', 28)} ${pad('value', 10, true)} ${pad('target', 10)} verdict`);
  const row = (name: keyof typeof TARGETS, value: number | null, note = '') => {
    const target = TARGETS[name];
    const shown = value === null ? 'n/a' : value.toFixed(value >= 100 ? 0 : 3);
    const verdict = value === null ? `n/a${note}` : `${meets(target, value) ? 'PASS' : 'MISS'}${note}`;
    lines.push(`${pad(name, 28)} ${pad(shown, 10, true)} ${pad(`${target.kind === 'min' ? '>=' : '<='} ${target.bound}`, 10)} ${verdict}`);
  };
  for (const name of RATIO_NAMES) {
    const note =
      name === 'open_over_raw_read'
        ? ` (reopen${result.quick ? ` at ${result.open_entries}` : ''}; first open/full scan: ${(result.open_scan_seconds / result.measurements.raw_read!.median).toFixed(1)})`
        : '';
    row(name, result.ratios[name], note);
  }
  row(
    'open_1m_seconds',
    result.open_1m_seconds,
    result.open_1m_seconds === null
      ? ` (--quick: reopen ${result.open_seconds.toFixed(2)} s, first open ${result.open_scan_seconds.toFixed(2)} s at ${result.open_entries})`
      : ` (first open/full scan: ${result.open_scan_seconds.toFixed(1)} s)`,
  );
  row('index_bytes_per_entry', result.index_bytes_per_entry, ` (worst case, a term per entry: ${result.index_bytes_per_entry_worst.toFixed(1)})`);
  lines.push(`${pad('coalesced16_over_append1', 28)} ${pad(result.coalesced16_over_append1.toFixed(3), 10, true)} ${pad('(no target)', 10)} 16 one-entry appends in flight, coalesced into write groups`);
  return lines.join('\n');
}

export function jsonLine(result: BenchResult): string {
  const summary: Record<string, unknown> = {
    ratios: result.ratios,
    open_1m_seconds: result.open_1m_seconds,
    index_bytes_per_entry: result.index_bytes_per_entry,
    machine: result.machine,
    quick: result.quick,
    open_seconds: result.open_seconds,
    open_scan_seconds: result.open_scan_seconds,
    open_states: result.open_states,
    open_entries: result.open_entries,
    index_bytes_per_entry_worst: result.index_bytes_per_entry_worst,
    coalesced16_over_append1: result.coalesced16_over_append1,
    targets: TARGETS,
    pass: Object.fromEntries([
      ...RATIO_NAMES.map((name) => [name, meets(TARGETS[name], result.ratios[name])]),
      ['open_1m_seconds', result.open_1m_seconds === null ? null : meets(TARGETS.open_1m_seconds, result.open_1m_seconds)],
      ['index_bytes_per_entry', meets(TARGETS.index_bytes_per_entry, result.index_bytes_per_entry)],
    ]),
    measurements: result.measurements,
  };
  return JSON.stringify(summary);
}

