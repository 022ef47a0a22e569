/**
 * The storage bench (issue 19): many partitions in one ReplicaLogStorage.
 *
 *   npm run bench:storage [-- --partitions 1000,10000] [-- --root DIR] [-- --json]
 *   (also a part of `npm run bench`)
 *
 * For each N: create N partitions; hard states and one-entry appends written one partition
 * after another (what a store per partition pays) against all N at once (what the storage's
 * group commit and shared barriers make of them), per partition; then a fresh child process,
 * run under `ulimit -n 1024`, reopens the storage and every partition and reports the open time
 * per partition, the idle RSS and heap per partition (after a GC) and the descriptors held.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ReplicaLogStorage } from '../lib/storage.js';
import type { ReplicaLogStore } from '../lib/replica-log-store.js';
import type { Entry } from '../lib/types.js';

export interface StorageBenchCase {
  partitions: number;
  createMsPerPartition: number;
  hardStateSequentialMs: number;
  hardStateConcurrentMs: number;
  /** sequential / concurrent, per partition (issue 19's goal: >= 10 at 10,000). */
  hardStateGain: number;
  kvBatchesConcurrent: number;
  appendSequentialMs: number;
  appendConcurrentMs: number;
  appendGain: number;
  barrierPassesConcurrent: number;
  fileSystemSyncsConcurrent: number;
  /** From the child process (ulimit -n 1024). */
  reopenMsPerPartition: number;
  idleRssKiBPerPartition: number;
  idleHeapKiBPerPartition: number;
  descriptorsHeld: number;
  descriptorLimit: number;
}

const SEQUENTIAL_SAMPLE = 500;

function entry(index: number, term: number): Entry {
  return { index, term, type: 0, data: new Uint8Array(1024).fill(index & 0xff) };
}

async function timed(action: () => Promise<unknown>): Promise<number> {
  const started = process.hrtime.bigint();
  await action();
  return Number(process.hrtime.bigint() - started) / 1e6;
}

export async function runStorageCase(root: string, partitions: number, log: (line: string) => void): Promise<StorageBenchCase> {
  const dir = join(root, `storage-${partitions}-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  try {
    const storage = await ReplicaLogStorage.open({ dir });
    const stores: ReplicaLogStore[] = [];
    const createMs = await timed(async () => {
      for (let id = 1; id <= partitions; id++) stores.push(await storage.openPartition(id));
    });
    log(`storage N=${partitions}: created in ${(createMs / 1000).toFixed(1)} s`);
    const sample = stores.slice(0, Math.min(SEQUENTIAL_SAMPLE, partitions));

    // Hard states: term 1 one after another over the sample, then term 2 on all N at once.
    const hardStateSequential = (await timed(async () => {
      for (const store of sample) await store.setHardState({ term: 1, vote: 1, commit: 0 });
    })) / sample.length;
    const kvBefore = storage.stats().kvBatches;
    const hardStateConcurrent = (await timed(() => Promise.all(stores.map((store) => store.setHardState({ term: 2, vote: 1, commit: 0 }))))) / partitions;
    const kvBatches = storage.stats().kvBatches - kvBefore;

    // Appends of one 1 KiB entry: index 1 one after another over the sample, then index 2 on
    // the sample and index 1 on the rest, all at once.
    const appendSequential = (await timed(async () => {
      for (const store of sample) await store.append([entry(1, 2)]);
    })) / sample.length;
    const before = storage.stats();
    const appendConcurrent = (await timed(() => Promise.all(stores.map((store) => store.append([entry(store.lastIndex() + 1, 2)]))))) / partitions;
    const after = storage.stats();
    log(
      `storage N=${partitions}: hard state ${hardStateSequential.toFixed(3)} ms one by one, ${hardStateConcurrent.toFixed(4)} ms at once (${kvBatches} batches); ` +
        `append ${appendSequential.toFixed(3)} / ${appendConcurrent.toFixed(4)} ms (${after.barrierPasses - before.barrierPasses} passes, ${after.fileSystemSyncs - before.fileSystemSyncs} syncfs)`,
    );
    await storage.close();

    const child = measureReopen(dir, partitions);
    log(`storage N=${partitions}: reopen ${child.reopenMsPerPartition.toFixed(3)} ms/partition, idle ${child.idleRssKiBPerPartition.toFixed(1)} KiB RSS/partition, ${child.descriptorsHeld} descriptors (limit ${child.descriptorLimit})`);
    return {
      partitions,
      createMsPerPartition: createMs / partitions,
      hardStateSequentialMs: hardStateSequential,
      hardStateConcurrentMs: hardStateConcurrent,
      hardStateGain: hardStateSequential / hardStateConcurrent,
      kvBatchesConcurrent: kvBatches,
      appendSequentialMs: appendSequential,
      appendConcurrentMs: appendConcurrent,
      appendGain: appendSequential / appendConcurrent,
      barrierPassesConcurrent: after.barrierPasses - before.barrierPasses,
      fileSystemSyncsConcurrent: after.fileSystemSyncs - before.fileSystemSyncs,
      ...child,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

type ChildFigures = Pick<StorageBenchCase, 'reopenMsPerPartition' | 'idleRssKiBPerPartition' | 'idleHeapKiBPerPartition' | 'descriptorsHeld' | 'descriptorLimit'>;

/** Reopens the storage in a fresh process under `ulimit -n 1024` (the common default). */
function measureReopen(dir: string, partitions: number): ChildFigures {
  // Under vitest this module is the .ts source: the child runs the build (npm run build first).
  const self = fileURLToPath(import.meta.url);
  const script = self.endsWith('.ts') ? resolve(self, '../../dist/scripts/bench-storage.js') : self;
  const result = spawnSync('sh', ['-c', `ulimit -n 1024 && exec "${process.execPath}" --expose-gc "${script}" --child "${dir}" ${partitions}`], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  const lastLine = result.stdout.trim().split('\n').pop() ?? '';
  if (result.status !== 0 || !lastLine.startsWith('{')) {
    throw new Error(`bench-storage child failed (status ${result.status}): ${result.stderr.trim() || result.stdout.trim()}`);
  }
  return JSON.parse(lastLine) as ChildFigures;
}

async function child(dir: string, partitions: number): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('the child needs --expose-gc');
  const storage = await ReplicaLogStorage.open({ dir });
  const ids = await storage.listPartitions();
  if (ids.length !== partitions) throw new Error(`expected ${partitions} partitions, found ${ids.length}`);
  gc();
  const before = process.memoryUsage();
  const stores: ReplicaLogStore[] = [];
  const reopenMs = await timed(async () => {
    for (const id of ids) stores.push(await storage.openPartition(id));
  });
  gc();
  gc();
  const after = process.memoryUsage();
  const descriptorsHeld = readdirSync('/proc/self/fd').length;
  const descriptorLimit = Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim());
  const figures: ChildFigures = {
    reopenMsPerPartition: reopenMs / partitions,
    idleRssKiBPerPartition: (after.rss - before.rss) / 1024 / partitions,
    idleHeapKiBPerPartition: (after.heapUsed + after.external - before.heapUsed - before.external) / 1024 / partitions,
    descriptorsHeld,
    descriptorLimit,
  };
  if (stores.length !== partitions) throw new Error('not every partition opened');
  await storage.close();
  process.stdout.write(`${JSON.stringify(figures)}\n`);
}

export function formatStorage(cases: readonly StorageBenchCase[]): string {
  const lines = [
    'Storage: N partitions in one ReplicaLogStorage (per partition; "one by one" over up to 500 partitions)',
    '| N | create ms | hard state one by one / at once ms | gain | KV batches | append one by one / at once ms | gain | passes / syncfs | reopen ms | idle RSS KiB | heap KiB | fds (limit) |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const c of cases) {
    lines.push(
      `| ${c.partitions.toLocaleString('en-US')} | ${c.createMsPerPartition.toFixed(2)} | ${c.hardStateSequentialMs.toFixed(3)} / ${c.hardStateConcurrentMs.toFixed(4)} | ${c.hardStateGain.toFixed(1)}x | ${c.kvBatchesConcurrent} | ` +
        `${c.appendSequentialMs.toFixed(3)} / ${c.appendConcurrentMs.toFixed(4)} | ${c.appendGain.toFixed(1)}x | ${c.barrierPassesConcurrent} / ${c.fileSystemSyncsConcurrent} | ` +
        `${c.reopenMsPerPartition.toFixed(3)} | ${c.idleRssKiBPerPartition.toFixed(1)} | ${c.idleHeapKiBPerPartition.toFixed(1)} | ${c.descriptorsHeld} (${c.descriptorLimit}) |`,
    );
  }
  return lines.join('\n');
}

export async function runStorageBench(options: { root: string; partitions: readonly number[]; log: (line: string) => void }): Promise<StorageBenchCase[]> {
  const cases: StorageBenchCase[] = [];
  for (const partitions of options.partitions) cases.push(await runStorageCase(options.root, partitions, options.log));
  return cases;
}

async function main(argv: readonly string[]): Promise<number> {
  if (argv[0] === '--child') {
    await child(argv[1]!, Number(argv[2]));
    return 0;
  }
  let partitions = [1000, 10000];
  let root = resolve('.bench-scratch');
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i]!;
    if (argument === '--partitions' && /^[0-9]+(,[0-9]+)*$/.test(argv[i + 1] ?? '')) partitions = argv[++i]!.split(',').map(Number);
    else if (argument === '--root' && argv[i + 1] !== undefined) root = resolve(argv[++i]!);
    else if (argument === '--json') json = true;
    else {
      process.stdout.write('usage: npm run bench:storage [-- --partitions 1000,10000] [-- --root DIR] [-- --json]\n');
      return argument === '--help' || argument === '-h' ? 0 : 2;
    }
  }
  const cases = await runStorageBench({ root, partitions, log: (line) => process.stderr.write(`${line}\n`) });
  process.stdout.write(`${formatStorage(cases)}\n`);
  if (json) process.stdout.write(`${JSON.stringify({ storage: cases })}\n`);
  return 0;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
