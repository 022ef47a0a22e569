/**
 * `replicalog demo [--nodes 3] [--dir D] [--keep] [--entries 200]`: a bounded, self-checking
 * local cluster of node processes on ReplicaLogStores (lib/node/demo.ts has the script).
 * Exit status 0 only if every check held; 1 when one failed; 2 bad usage.
 */
import { Command, InvalidArgumentError } from 'commander';
import { helpParagraphs } from './help-text.js';
import { runDemo } from '../node/demo.js';
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
  entries: number;
}

export function registerDemoCommand(program: Command): Command {
  return program
    .command('demo')
    .description('a local cluster on ReplicaLogStores: migrate, bootstrap, replicate, crash and restart nodes, verify (npm start)')
    .option('--nodes <n>', 'number of node processes (3 to 7)', parseIntegerIn(3, 7), 3)
    .option('--dir <dir>', 'where the nodes keep their stores (missing or empty; default: a new temporary directory)')
    .option('--keep', 'leave the cluster running at the end and print curl examples')
    .option('--entries <n>', 'entries of the pre-Raft WAL written first', parseIntegerIn(1, 100_000), 200)
    .addHelpText(
      'after',
      helpParagraphs(
        `Steps: write a pre-Raft WAL into node-1, migrate it, bootstrap node 1 as the seed (snapshot of the MANIFESTs' key-value state) and the others empty, start one process per node (loopback ports picked free), wait for a leader and the snapshot catch-up, put keys over HTTP, SIGKILL a follower and restart it, SIGKILL the leader and restart it, stop all, verify every directory and compare the replicas on disk. Takes about 10-20 s.`,
        'Exit status: 0 every check held; 1 a check failed; 2 bad usage.',
      ),
    )
    .action(async (flags: DemoFlags) => {
      let result;
      try {
        result = await runDemo({ nodes: flags.nodes, dir: flags.dir, keep: flags.keep === true, entries: flags.entries });
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
