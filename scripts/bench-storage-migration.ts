/**
 * npm run bench:migration [-- --partitions 1000,10000] [-- --entries 4] [-- --root DIR] [-- --json]
 *
 * `replicalog migrate` and `replicalog verify` on a storage of many small pre-Raft partitions
 * (scripts/bench-migration.ts runStorageMigrationBench), as child processes: wall time,
 * partitions/s, entries/s and peak RSS, for each partition count. Scratch: ./.bench-scratch.
 */
import { resolve } from 'node:path';
import { formatStorageMigration, runStorageMigrationBench, STORAGE_PARTITIONS, type StorageMigrationBenchResult } from './bench-migration.js';
import { removeTree } from './bench-lib.js';

const USAGE = 'usage: node dist/scripts/bench-storage-migration.js [--partitions N,M] [--entries K] [--root DIR] [--json]\n';

async function run(argv: readonly string[]): Promise<number> {
  let partitionCounts: number[] = [...STORAGE_PARTITIONS.full];
  let entriesPerPartition = 4;
  let root = resolve('.bench-scratch');
  let asJson = false;
  for (let position = 0; position < argv.length; position++) {
    const argument = argv[position]!;
    const value = () => {
      const next = argv[++position];
      if (next === undefined) throw new Error(`${argument} needs a value`);
      return next;
    };
    const count = (text: string) => {
      if (!/^[1-9][0-9]*$/.test(text)) throw new Error(`${argument}: ${JSON.stringify(text)} is not a positive integer`);
      return Number(text);
    };
    try {
      if (argument === '--partitions') partitionCounts = value().split(',').map(count);
      else if (argument === '--entries') entriesPerPartition = count(value());
      else if (argument === '--root') root = resolve(value());
      else if (argument === '--json') asJson = true;
      else throw new Error(`unknown argument ${argument}`);
    } catch (error) {
      process.stderr.write(`bench-storage-migration: ${(error as Error).message}\n${USAGE}`);
      return 2;
    }
  }
  // Ctrl-C: remove the storage being measured.
  let current: string | undefined;
  process.once('SIGINT', () => {
    if (current !== undefined) removeTree(current);
    process.exit(130);
  });
  const results: StorageMigrationBenchResult[] = [];
  for (const partitions of partitionCounts) {
    const result = await runStorageMigrationBench({
      root,
      partitions,
      entriesPerPartition,
      log: (line) => process.stderr.write(`${line}\n`),
      onRunDirectory: (path) => (current = path),
    });
    current = undefined;
    results.push(result);
    process.stdout.write(`${formatStorageMigration(result)}\n`);
  }
  if (asJson) process.stdout.write(`${JSON.stringify({ storageMigration: results })}\n`);
  return 0;
}

process.exitCode = await run(process.argv.slice(2));
