/**
 * npm run bench:cluster [-- --quick] [-- --runs N] [-- --seconds S] [-- --warmup S] [-- --json] …
 *
 * A 3-node replicalog cluster against a 3-member etcd cluster on the same machine (real
 * processes on 127.0.0.1, temporary data directories removed afterwards), one closed-loop load
 * generator for both, interleaved; plus a 1-node row at C=64. Without an etcd binary it says how
 * to install one and measures replicalog alone. See scripts/bench-cluster-lib.ts.
 */
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { defaultConfig, ETCD_INSTALL_HINT, formatTable, jsonLine, quickConfig, ServerProcesses, runClusterBench, type BenchCase, type ClusterBenchConfig } from './bench-cluster-lib.js';

const USAGE = `usage: npm run bench:cluster -- [options]   (or node dist/scripts/bench-cluster.js [options])

Measures a 3-node replicalog cluster against a 3-member etcd cluster on loopback
(C = 1, 16, 64, and a 1-node row at C = 64): puts/s, p50/p99 latency, ratio, server CPU
seconds per put and device flushes per put. Speed only: never run it as a test.

options:
  --quick                short windows (0.5 s warm-up, 3 s measured), one run
  --runs N               repetitions; each figure is the median (default 3)
  --seconds S            measured window per case (default 10)
  --warmup S             warm-up per case, not counted (default 2)
  --cases LIST           e.g. 3x1,3x16,3x64,1x64 (NODESxCONCURRENCY; the default)
  --value-bytes N        value size (default 1024)
  --root DIR             where the temporary data directories go (default the OS temp dir;
                         use a real disk, not a tmpfs)
  --etcd PATH            the etcd binary (default: etcd on PATH, then /usr/bin/etcd)
  --no-etcd              measure replicalog alone
  --node-args "FLAGS"    more flags for every replicalog node (e.g. "--snapshot-every 100000")
  --peer-tls             mutual TLS between replicalog members (etcd peers stay plain HTTP)
  --json                 also print the whole result as one JSON object on the last line
  -h, --help             this text

${ETCD_INSTALL_HINT}.
`;

class UsageError extends Error {}

function parseNumber(name: string, text: string | undefined, integer: boolean, allowZero = false): number {
  const value = Number(text);
  if (text === undefined || text.trim() === '' || !Number.isFinite(value) || (integer && !Number.isInteger(value)) || value < 0 || (!allowZero && value === 0)) {
    throw new UsageError(`${name} needs a ${allowZero ? 'non-negative' : 'positive'} ${integer ? 'integer' : 'number'} (got ${text ?? 'nothing'})`);
  }
  return value;
}

export function parseCases(text: string): BenchCase[] {
  return text.split(',').map((item) => {
    const match = /^([0-9]+)x([0-9]+)$/.exec(item.trim());
    if (match === null) throw new UsageError(`--cases: "${item}" is not NODESxCONCURRENCY (e.g. 3x16)`);
    return { nodes: Number(match[1]), concurrency: Number(match[2]) };
  });
}

export function parseArguments(argv: readonly string[]): { config: ClusterBenchConfig; json: boolean; help: boolean } {
  const quick = argv.includes('--quick');
  const config = quick ? quickConfig() : defaultConfig();
  let json = false;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i]!;
    const next = () => {
      const value = argv[++i];
      if (value === undefined) throw new UsageError(`${argument} needs a value`);
      return value;
    };
    if (argument === '--quick') continue;
    else if (argument === '--json') json = true;
    else if (argument === '--runs') config.runs = parseNumber('--runs', next(), true);
    else if (argument === '--seconds') config.seconds = parseNumber('--seconds', next(), false);
    else if (argument === '--warmup') config.warmupSeconds = parseNumber('--warmup', next(), false, true);
    else if (argument === '--cases') config.cases = parseCases(next());
    else if (argument === '--value-bytes') config.valueBytes = parseNumber('--value-bytes', next(), true);
    else if (argument === '--root') config.root = resolve(next());
    else if (argument === '--etcd') config.etcdBinary = resolve(next());
    else if (argument === '--no-etcd') config.etcd = 'off';
    else if (argument === '--node-args') config.replicalogExtraArguments = next().split(/\s+/).filter((flag) => flag !== '');
    else if (argument === '--peer-tls') config.replicalogPeerTls = true;
    else if (argument === '--help' || argument === '-h') help = true;
    else throw new UsageError(`unknown option ${argument}`);
  }
  return { config, json, help };
}

async function main(argv: readonly string[]): Promise<number> {
  let parsed: ReturnType<typeof parseArguments>;
  try {
    parsed = parseArguments(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`bench:cluster: ${error.message}\n\n${USAGE}`);
    return 2;
  }
  if (parsed.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const { config, json } = parsed;
  const processes = new ServerProcesses();
  let runDirectory: string | undefined;
  config.log = (line) => process.stderr.write(`${line}\n`);
  config.onRunDirectory = (path) => (runDirectory = path);
  // Whatever ends this process, no server outlives it and no data directory stays behind.
  const cleanUpNow = () => {
    processes.killAllNow();
    if (runDirectory !== undefined) rmSync(runDirectory, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  };
  process.once('exit', cleanUpNow);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      process.stderr.write(`bench:cluster: ${signal}: stopping every server and removing ${runDirectory ?? 'the data directories'}\n`);
      cleanUpNow();
      process.exit(130);
    });
  }
  try {
    const result = await runClusterBench(config, processes);
    if (!result.etcd.available && config.etcd !== 'off') process.stderr.write(`\netcd not found (${result.etcd.reason}): showing replicalog alone.\n${ETCD_INSTALL_HINT}\n`);
    process.stdout.write(`\n${formatTable(result)}\n(${result.wallSeconds.toFixed(0)} s)\n`);
    if (json) process.stdout.write(`${jsonLine(result)}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`bench:cluster: ${(error as Error).message}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
