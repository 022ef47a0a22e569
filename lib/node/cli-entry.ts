/**
 * A stand-alone entry point for the cluster commands: `node dist/lib/node/cli-entry.js node …`
 * and `… demo …`. The demo starts its node processes through it, so it works whether or not the
 * main `replicalog` program (lib/cli/main.ts) registers these commands.
 */
import { Command, CommanderError } from 'commander';
import { registerDemoCommand } from '../cli/demo-command.js';
import { exitCodeOf, formatErrorLine } from '../cli/io.js';
import { registerNodeCommand } from '../cli/node-command.js';

export async function runClusterCli(argv: readonly string[]): Promise<number> {
  // As in main.ts: --debug is accepted anywhere and removed before parsing.
  const debug = argv.includes('--debug');
  const args = argv.filter((argument) => argument !== '--debug');
  const program = new Command('replicalog').exitOverride();
  registerNodeCommand(program);
  registerDemoCommand(program);
  for (const command of program.commands) command.exitOverride();
  try {
    await program.parseAsync(args, { from: 'user' });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    process.stderr.write(formatErrorLine(error) + '\n');
    if (debug) process.stderr.write(`${(error as Error).stack ?? ''}\n`);
    return exitCodeOf(error);
  }
}

// `… --help | head`: a closed pipe is not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
  });
}
process.exitCode = await runClusterCli(process.argv.slice(2));
