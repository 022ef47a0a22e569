/**
 * `replicalog demo [--nodes 3] [--dir D] [--keep] [--entries 200]`: a bounded, self-checking
 * local cluster of node processes on ReplicaLogStores (lib/node/demo.ts has the script).
 * Exit status 0 only if every check held; 1 when one failed; 2 bad usage.
 */
import { Command, InvalidArgumentError } from 'commander';
import { helpParagraphs } from './help-text.js';
import { runDemo } from '../node/demo.js';
import { runPartitionsDemo } from '../node/demo-partitions.js';
import { DataError, UsageError } from './io.js';

function parseIntegerIn(low: number, high: number): (value: string) => number {
  return (value: string) => {
    if (!/^[0-9]+$/.test(value) || Number(value) < low || Number(value) > high) {
      throw new InvalidArgumentError(`must be an integer from ${low} to ${high}`);
    }
    return Number(value);
  };
}

interface DemoFlags {
  nodes: number;
  dir?: string;
  keep?: boolean;
  entries?: number;
  partitions?: number;
}

export function registerDemoCommand(program: Command): Command {
  return program
    .command('demo')
    .description('a local cluster on ReplicaLogStores: migrate, bootstrap, replicate, crash and restart nodes, verify (npm start)')
    .option('--nodes <n>', 'number of node processes (3 to 7)', parseIntegerIn(3, 7), 3)
    .option('--dir <dir>', 'where the nodes keep their stores (missing or empty; default: a new temporary directory)')
    .option('--keep', 'leave the cluster running at the end and print curl examples')
    .option('--entries <n>', 'entries of the pre-Raft WAL written first (default 200; with --partitions: per partition, default 20)', parseIntegerIn(1, 100_000))
    .option('--partitions <n>', 'the multi-raft walk (issue 19): n pre-Raft partitions migrated into one storage per node, n raft groups per node process', parseIntegerIn(1, 100_000))
    .addHelpText(
      'after',
      helpParagraphs(
        `Steps: write a pre-Raft WAL into node-1, migrate it, bootstrap node 1 as the seed (snapshot of the MANIFESTs' key-value state) and the others empty, start one process per node (loopback ports picked free), wait for a leader and the snapshot catch-up, put keys over HTTP, SIGKILL a follower and restart it, SIGKILL the leader and restart it, stop all, verify every directory and compare the replicas on disk. Takes about 10-20 s.`,
        'With --partitions N: write N pre-Raft partitions into node 1\'s storage, migrate and seed each, join the others empty, start every node with --partitions N (N raft groups over one connection per peer), check each partition\'s migrated state on every replica, write in several partitions through every node, wait until every group quiesces, stop.',
        'Exit status: 0 every check held; 1 a check failed; 2 bad usage.',
      ),
    )
    .action(async (flags: DemoFlags) => {
      let result;
      try {
        if (flags.partitions !== undefined) {
          if (flags.keep === true) throw new RangeError('--keep is not available with --partitions');
          result = await runPartitionsDemo({ partitions: flags.partitions, nodes: flags.nodes, ...(flags.dir === undefined ? {} : { dir: flags.dir }), ...(flags.entries === undefined ? {} : { entries: flags.entries }) });
        } else {
          result = await runDemo({ nodes: flags.nodes, dir: flags.dir, keep: flags.keep === true, ...(flags.entries === undefined ? {} : { entries: flags.entries }) });
        }
      } catch (error) {
        if (error instanceof RangeError) throw new UsageError(error.message, flags.dir);
        throw error;
      }
      if (!result.ok) {
        const failed = result.checks.filter((check) => !check.ok).map((check) => check.name);
        throw new DataError(`demo failed: ${failed.join('; ') || 'see above'}`, result.dir);
      }
    });
}
