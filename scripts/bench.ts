/**
 * npm run bench [-- --quick] [-- --json] [-- --root DIR] [-- --migration-only]   (scratch: ./.bench-scratch by default)
 *
 * Measures ReplicaLogStore against the physical limit, the on-disk format's own floor and the
 * sequential Gitaly write path, all in one interleaved run (see scripts/bench-lib.ts), prints a
 * table with every goal's ratio, target and PASS/MISS, and with --json one JSON object on the
 * last line of stdout. --quick (under 3 minutes) measures open at 100 k entries instead of 1 M
 * (open_1m_seconds is then null and "quick": true).
 *
 * Then the migration bench (scripts/bench-migration.ts): `replicalog migrate` and `replicalog
 * verify` as child processes on a 1 M-entry pre-Raft tree (20,000 with --quick), entries/s and
 * peak RSS each; `--migration-only` runs only that part.
 *
 * Then the storage bench (scripts/bench-storage.ts, issue 19): 1,000 and 10,000 partitions in
 * one storage (1,000 with --quick): open, idle memory and descriptors, hard states and appends
 * one partition after another against all at once. `--storage-only` runs only that part.
 */
import { rmdirSync, statfsSync } from 'node:fs';
import { resolve } from 'node:path';
import { formatTable, fullConfig, jsonLine, quickConfig, removeTree, runBench, tinyConfig, type BenchResult } from './bench-lib.js';
import { formatMigration, MIGRATION_ENTRIES, runMigrationBench } from './bench-migration.js';
import { formatStorage, runStorageBench } from './bench-storage.js';

const USAGE = 'usage: node dist/scripts/bench.js [--quick] [--json] [--root DIR] [--reps N] [--migration-only] [--storage-only]\n';

function usage(): never {
  process.stderr.write(USAGE);
  process.exit(2);
}

async function main(argv: readonly string[]): Promise<number> {
  let quick = false;
  let tiny = false;
  let json = false;
  // Scratch space on the disk under test: next to the checkout (npm runs scripts from the
  // package root), not os.tmpdir(), which may be a tmpfs where fsync costs nothing.
  let root = resolve('.bench-scratch');
  let reps: number | undefined;
  let migrationOnly = false;
  let storageOnly = false;
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i]!;
    if (argument === '--quick') quick = true;
    else if (argument === '--tiny') tiny = true; // development: every path at a tiny size, numbers meaningless
    else if (argument === '--json') json = true;
    else if (argument === '--migration-only') migrationOnly = true;
    else if (argument === '--storage-only') storageOnly = true;
    else if (argument === '--root' && argv[i + 1] !== undefined) root = resolve(argv[++i]!);
    else if (argument === '--reps' && /^[0-9]+$/.test(argv[i + 1] ?? '')) reps = Number(argv[++i]);
    else if (argument === '--help' || argument === '-h') {
      process.stdout.write(USAGE);
      return 0;
    } else usage();
  }
  const config = tiny ? tinyConfig(root) : quick ? quickConfig(root) : fullConfig(root);
  if (reps !== undefined) config.reps = Math.max(1, reps);
  config.log = (line) => process.stderr.write(`${line}\n`);
  // Ctrl-C: remove this run's scratch tree (up to ~9 GiB for the 1 M-entry tree) before exiting.
  const migrationEntries = tiny ? MIGRATION_ENTRIES.tiny : quick ? MIGRATION_ENTRIES.quick : MIGRATION_ENTRIES.full;
  // One handler for every scratch directory this run creates (the main run's, then the migration's).
  const scratchDirectories: string[] = [];
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      for (const path of scratchDirectories) {
        process.stderr.write(`bench: interrupted, removing ${path}\n`);
        removeTree(path);
      }
      process.exit(130);
    });
  }
  config.onRunDirectory = (path) => scratchDirectories.push(path);

  // The open tree costs ~8 KiB of blocks and 3 inodes per entry (entry dir, MANIFEST, RAFT); the
  // migration tree ~18 KiB and ~4.5 inodes (with 1.5 payload files per entry on average). The
  // two trees never exist at the same time.
  try {
    const { mkdirSync } = await import('node:fs');
    mkdirSync(root, { recursive: true });
    const stats = statfsSync(root);
    const openBytes = migrationOnly ? 0 : config.openEntries * 10 * 1024;
    const openInodes = migrationOnly ? 0 : config.openEntries * 3 + config.worstIndexEntries * 3;
    const needBytes = Math.max(openBytes, migrationEntries * 18 * 1024);
    const needInodes = Math.max(openInodes, migrationEntries * 5);
    if (stats.bavail * stats.bsize < needBytes * 1.2 || stats.ffree < needInodes * 1.2) {
      process.stderr.write(
        `bench: ${root} has ${(stats.bavail * stats.bsize / 2 ** 30).toFixed(1)} GiB and ${stats.ffree} inodes free; ` +
          `the largest tree (${Math.max(migrationOnly ? 0 : config.openEntries, migrationEntries)} entries) needs ~${(needBytes / 2 ** 30).toFixed(1)} GiB and ${needInodes} inodes\n`,
      );
      return 1;
    }
  } catch (error) {
    process.stderr.write(`bench: cannot use ${root}: ${(error as Error).message}\n`);
    return 1;
  }

  const started = Date.now();
  let result: BenchResult | undefined;
  if (!migrationOnly && !storageOnly) {
    result = await runBench(config);
    process.stdout.write(`${formatTable(result)}\n`);
  }
  let migration: Awaited<ReturnType<typeof runMigrationBench>> | undefined;
  if (!storageOnly) {
    migration = await runMigrationBench({ root, entries: migrationEntries, log: config.log, onRunDirectory: config.onRunDirectory });
    process.stdout.write(`${formatMigration(migration)}\n`);
  }
  let storage: Awaited<ReturnType<typeof runStorageBench>> | undefined;
  if (!migrationOnly) {
    storage = await runStorageBench({ root, partitions: tiny ? [20] : quick ? [1000] : [1000, 10000], log: config.log });
    process.stdout.write(`${formatStorage(storage)}\n`);
  }
  process.stdout.write(`(${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
  if (json) {
    const line = result === undefined ? {} : (JSON.parse(jsonLine(result)) as Record<string, unknown>);
    process.stdout.write(`${JSON.stringify({ ...line, migration, storage })}\n`);
  }
  try {
    rmdirSync(root); // only when empty (another run may share it)
  } catch {
    // not empty or already gone
  }
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
