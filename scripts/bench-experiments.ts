/**
 * Prototypes of the group-commit designs proposed in the bench report, run against the same
 * baselines in one interleaved run (nothing in lib/ is changed; these write the same format
 * with the same durability: RAFT and MANIFEST fsynced, the entry directory fsynced, renamed
 * into wal/, ONE fsync of wal/ per batch):
 *
 *   store            ReplicaLogStore.append as it is (libuv pool, per-entry chains of ≤ 8)
 *   phased-sync      create every staged entry first (synchronous mkdir/open/write, fds kept
 *                    open), then fsync all files, then all directories, rename, fsync wal/ —
 *                    synchronous calls in the calling thread, one after the other
 *   phased-pool      the same create phase, then every fsync at once through the libuv pool on
 *                    the kept descriptors (fs.fsync(fd): one pool hop each, no open/close)
 *   …-nobatchdir     staged straight into staging/ (no mkdtemp + recursive rm per call)
 *   phased-syncfs    the same create phase, then ONE `sync -f` (syncfs) per phase instead of
 *                    per-file fsyncs (an upper bound for "one barrier per batch")
 *   phased-workers   the same create phase, then the fsyncs split over K worker threads that
 *                    call fsyncSync on the (process-wide) descriptors
 *
 *   node dist/scripts/bench-experiments.js [--reps 3] [--ms 400] [--workers 4] [--batches 1,16,256]
 *   UV_THREADPOOL_SIZE=16 node dist/scripts/bench-experiments.js …   (a bigger pool)
 */
import { closeSync, fsync, fsyncSync, mkdirSync, mkdtempSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { encodeEntry } from '../lib/codec.js';
import { ReplicaLogStore } from '../lib/replica-log-store.js';
import { EntryType, type Entry } from '../lib/types.js';
import { DIRECTORY_MODE, FILE_MODE, formatLsn, MANIFEST_FILE, RAFT_FILE, stagingPath, walPath } from '../lib/wal/layout.js';
import { median, payload, rawAppendCase, sequentialCase, type BenchConfig, quickConfig } from './bench-lib.js';

type Fsyncer = (fds: number[]) => Promise<void>;

function poolFsync(fd: number): Promise<void> {
  return new Promise((done, fail) => fsync(fd, (error) => (error ? fail(error) : done())));
}

const poolFsyncer: Fsyncer = async (fds) => {
  await Promise.all(fds.map(poolFsync));
};

const syncFsyncer: Fsyncer = async (fds) => {
  for (const fd of fds) fsyncSync(fd);
};

/**
 * ONE syncfs(2) of the whole file system instead of a fsync per file (coreutils `sync -f`, as
 * Node has no syncfs): shows what a single barrier per batch would give. Not a proposal as is
 * (it flushes every tenant's dirty data, and a process spawn costs ~1–2 ms).
 */
function syncfsFsyncer(path: string): Fsyncer {
  return async (fds) => {
    if (fds.length === 0) return;
    const result = spawnSync('sync', ['-f', path], { stdio: 'ignore' });
    if (result.status !== 0) throw new Error(`sync -f ${path} failed`);
  };
}

/** K workers, each fsyncing its share of the descriptors with fsyncSync. */
class WorkerFsyncer {
  private readonly workers: Worker[];
  private pending = new Map<number, () => void>();
  private nextId = 0;

  constructor(count: number) {
    const code = `
      const { parentPort } = require('node:worker_threads');
      const { fsyncSync } = require('node:fs');
      parentPort.on('message', ({ id, fds }) => {
        let error = null;
        for (const fd of fds) { try { fsyncSync(fd); } catch (e) { error = String(e); } }
        parentPort.postMessage({ id, error });
      });`;
    this.workers = Array.from({ length: count }, () => {
      const worker = new Worker(code, { eval: true });
      worker.on('message', ({ id, error }: { id: number; error: string | null }) => {
        if (error !== null) throw new Error(error);
        const done = this.pending.get(id);
        this.pending.delete(id);
        done?.();
      });
      return worker;
    });
  }

  fsyncAll: Fsyncer = async (fds) => {
    const shares: number[][] = this.workers.map(() => []);
    fds.forEach((fd, position) => shares[position % shares.length]!.push(fd));
    await Promise.all(
      shares
        .map((share, k) => ({ share, worker: this.workers[k]! }))
        .filter(({ share }) => share.length > 0)
        .map(
          ({ share, worker }) =>
            new Promise<void>((done) => {
              const id = this.nextId++;
              this.pending.set(id, done);
              worker.postMessage({ id, fds: share });
            }),
        ),
    );
  };

  async close(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }
}

/** Writes `entries` as staged entry directories and publishes them, fsyncing with `fsyncer`. */
async function phasedGroupCommit(wal: string, staging: string, entries: Entry[], fsyncer: Fsyncer, batchDirectory = true): Promise<void> {
  // Without a batch directory the entries are staged straight into staging/ (their LSN names
  // are unique there: the queue serialises writes), saving a mkdtemp and a recursive rm per call.
  const batch = batchDirectory ? mkdtempSync(join(staging, 'batch-')) : staging;
  const files: number[] = [];
  const directories: number[] = [];
  try {
    for (const entry of entries) {
      const directory = join(batch, formatLsn(entry.index));
      mkdirSync(directory, { mode: DIRECTORY_MODE });
      files.push(openSync(join(directory, MANIFEST_FILE), 'wx', FILE_MODE));
      const raft = openSync(join(directory, RAFT_FILE), 'wx', FILE_MODE);
      files.push(raft);
      const bytes = encodeEntry(entry);
      let written = 0;
      while (written < bytes.length) written += writeSync(raft, bytes, written, bytes.length - written);
    }
    await fsyncer(files);
    for (const entry of entries) directories.push(openSync(join(batch, formatLsn(entry.index)), 'r'));
    await fsyncer(directories);
  } finally {
    for (const fd of [...files, ...directories]) closeSync(fd);
  }
  for (const entry of entries) renameSync(join(batch, formatLsn(entry.index)), join(wal, formatLsn(entry.index)));
  const walFd = openSync(wal, 'r');
  try {
    await fsyncer([walFd]);
  } finally {
    closeSync(walFd);
  }
  if (batchDirectory) rmSync(batch, { recursive: true, force: true });
}

async function main(argv: string[]): Promise<void> {
  const option = (name: string, fallback: string) => {
    const at = argv.indexOf(name);
    return at >= 0 && argv[at + 1] !== undefined ? argv[at + 1]! : fallback;
  };
  const base = resolve(option('--root', '.bench-scratch'));
  mkdirSync(base, { recursive: true });
  const root = mkdtempSync(join(base, 'experiments-'));
  const config: BenchConfig = { ...quickConfig(root), minMs: Number(option('--ms', '400')), reps: Number(option('--reps', '3')) };
  const batches = option('--batches', '1,16,256').split(',').map(Number);
  const workerCount = Number(option('--workers', '4'));
  const workers = new WorkerFsyncer(workerCount);
  const data = payload(config.payloadBytes);
  const samples = new Map<string, number[]>();
  const push = (name: string, value: number) => samples.set(name, [...(samples.get(name) ?? []), value]);

  const raw1 = rawAppendCase(config, 1);
  const seq16 = sequentialCase(config, 16);
  await raw1.setup();
  await seq16.setup();
  const stores = new Map<number, ReplicaLogStore>();
  for (const batch of batches) stores.set(batch, await ReplicaLogStore.open({ dir: join(root, `store-${batch}`) }));
  const trees = new Map<string, { wal: string; staging: string; next: number }>();
  const treeFor = (name: string) => {
    let tree = trees.get(name);
    if (tree === undefined) {
      const dir = join(root, name);
      tree = { wal: walPath(dir), staging: stagingPath(dir), next: 1 };
      mkdirSync(tree.wal, { recursive: true });
      mkdirSync(tree.staging, { recursive: true });
      trees.set(name, tree);
    }
    return tree;
  };
  const timed = async (unit: () => Promise<number>): Promise<number> => {
    let entries = 0;
    let units = 0;
    const started = performance.now();
    while (units < 3 || performance.now() - started < config.minMs) {
      entries += await unit();
      units++;
    }
    return entries / ((performance.now() - started) / 1000);
  };
  const variants: [string, Fsyncer, boolean][] = [
    ['phased-sync', syncFsyncer, true],
    ['phased-sync-nobatchdir', syncFsyncer, false],
    ['phased-pool', poolFsyncer, true],
    ['phased-pool-nobatchdir', poolFsyncer, false],
    [`phased-workers${workerCount}`, workers.fsyncAll, true],
    ['phased-syncfs', syncfsFsyncer(root), false],
  ];
  try {
    for (let rep = 0; rep < config.reps; rep++) {
      push('raw1', await raw1.run());
      push('seq16', await seq16.run());
      for (const batch of batches) {
        const store = stores.get(batch)!;
        push(`store B=${batch}`, await timed(async () => {
          const first = store.lastIndex() + 1;
          await store.append(Array.from({ length: batch }, (_, k) => ({ type: EntryType.Normal, term: 1, index: first + k, data })));
          return batch;
        }));
        for (const [name, fsyncer, batchDirectory] of variants) {
          const tree = treeFor(`${name}-${batch}`);
          push(`${name} B=${batch}`, await timed(async () => {
            const entries: Entry[] = Array.from({ length: batch }, () => ({ type: EntryType.Normal, term: 1, index: tree.next++, data }));
            await phasedGroupCommit(tree.wal, tree.staging, entries, fsyncer, batchDirectory);
            return batch;
          }));
        }
      }
      process.stderr.write(`rep ${rep + 1}/${config.reps} done\n`);
    }
  } finally {
    await raw1.teardown();
    await seq16.teardown();
    for (const store of stores.values()) await store.close();
    await workers.close();
    rmSync(root, { recursive: true, force: true });
  }
  const raw = median(samples.get('raw1')!);
  const seq = median(samples.get('seq16')!);
  process.stdout.write(`UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'}, ${workerCount} workers, ${config.reps} reps, medians\n`);
  process.stdout.write(`${'variant'.padEnd(26)} ${'entries/s'.padStart(10)} ${'/raw1'.padStart(7)} ${'/seq16'.padStart(7)}  samples\n`);
  for (const [name, values] of samples) {
    const value = median(values);
    process.stdout.write(
      `${name.padEnd(26)} ${value.toFixed(0).padStart(10)} ${(value / raw).toFixed(3).padStart(7)} ${(value / seq).toFixed(2).padStart(7)}  [${values.map((v) => v.toFixed(0)).join(' ')}]\n`,
    );
  }
}

await main(process.argv.slice(2));
