/**
 * Writes a pre-Raft WAL fixture (lib/fixture.ts):
 *   node dist/scripts/make-fixture.js <dir> --entries N [--seed S] [--payload-files K] [--no-keys] [--first-lsn L]
 * or a storage of pre-Raft partitions (writePreRaftStorage; --entries is then per partition):
 *   node dist/scripts/make-fixture.js <dir> --partitions P --entries N [--first-partition ID] [--storage-name NAME] [--seed S] [--payload-files K]
 * Exit 0 on success, 1 if it cannot be written, 2 on bad usage.
 */
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { writePreRaftStorage, writePreRaftWal } from '../lib/fixture.js';

function count(value: string): number {
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(Number(value))) throw new InvalidArgumentError('must be a non-negative integer');
  return Number(value);
}

async function run(argv: readonly string[]): Promise<number> {
  const program = new Command('make-fixture')
    .description('write a realistic pre-Raft Gitaly WAL (MANIFEST + hard-linked payload files, no RAFT, no hard state)')
    .argument('<dir>', 'store directory to create (its wal/ must be missing or empty)')
    .requiredOption('--entries <n>', 'number of entries', count)
    .option('--seed <s>', 'PRNG seed: the same seed writes the same tree', count, 1)
    .option('--payload-files <k>', 'payload files per entry', count, 2)
    .option('--no-keys', 'no set_key/delete_key operations')
    .option('--first-lsn <l>', 'LSN of the first entry (above 1: a log whose prefix was pruned)', count, 1)
    .option('--partitions <p>', 'write a storage of P pre-Raft partitions instead (--entries per partition)', count)
    .option('--first-partition <id>', 'with --partitions: id of the first partition', count, 1)
    .option('--storage-name <name>', 'with --partitions: the storage name in partition directory names', 'default')
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`make-fixture: ${text.replace(/^error: /, '')}`) });
  try {
    program.parse([...argv], { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    throw error;
  }
  const options = program.opts<{
    entries: number;
    seed: number;
    payloadFiles: number;
    keys: boolean;
    firstLsn: number;
    partitions?: number;
    firstPartition: number;
    storageName: string;
  }>();
  const dir = program.args[0]!;
  const started = Date.now();
  try {
    if (options.partitions !== undefined) {
      const summary = writePreRaftStorage({
        dir,
        partitions: options.partitions,
        entriesPerPartition: options.entries,
        firstPartitionId: options.firstPartition,
        name: options.storageName,
        seed: options.seed,
        payloadFilesPerEntry: options.payloadFiles,
      });
      process.stdout.write(
        `${dir}: storage ${JSON.stringify(summary.name)}, ${summary.partitions} partitions (${summary.firstPartitionId}..${summary.lastPartitionId}), ` +
          `${summary.entries} entries, ${summary.payloadFiles} payload files in ${Date.now() - started} ms\n`,
      );
      return 0;
    }
    const summary = writePreRaftWal({
      dir,
      entries: options.entries,
      seed: options.seed,
      payloadFilesPerEntry: options.payloadFiles,
      withKeys: options.keys,
      firstLsn: options.firstLsn,
    });
    process.stdout.write(
      `${dir}: ${summary.entries} entries (${summary.firstIndex}..${summary.lastIndex}), ${summary.payloadFiles} payload files in ${Date.now() - started} ms\n`,
    );
    return 0;
  } catch (error) {
    process.stderr.write(`make-fixture: ${dir}: ${(error as Error).message}\n`);
    return 1;
  }
}

process.exitCode = await run(process.argv.slice(2));
