/**
 * npm run bench:multiraft [-- --groups 1,10000] [-- --seconds 10] [-- --no-quiesce-too] [-- --json] [-- --root DIR]
 *
 * The idle cost of a multi-raft cluster (issue 19): three `replicalog node --partitions G`
 * processes on loopback (each on a storage of G partitions, bootstrapped by the node: node 1
 * seeds every group, the others join), waited on until every group has a leader and (with
 * quiescence) every group is quiesced on every node; then, over `--seconds` of idleness, per node:
 * the process CPU time (utime + stime from /proc/<pid>/stat) as a share of one core, the raft
 * messages and GroupBatch frames sent per second, and the RSS. The same with G = 1 for
 * comparison; with --no-quiesce-too also G groups that never quiesce (what quiescence saves).
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { httpCall, NodeProcess, nodeEntryPath, sleep, waitUntil } from '../lib/node/local-cluster.js';
import type { ReplicaNodeStatus } from '../lib/node/node.js';
import { freePorts } from '../lib/node/ports.js';

export interface MultiRaftCase {
  groups: number;
  quiesce: boolean;
}

export interface MultiRaftNodeFigures {
  id: number;
  /** CPU time over the window / the window (1.0 = one core busy). */
  cpuShare: number;
  messagesPerSecond: number;
  framesPerSecond: number;
  rssMiB: number;
  leading: number;
  quiesced: number;
}

export interface MultiRaftResult extends MultiRaftCase {
  /** Seconds from the processes' start to every group led (and quiesced, with quiescence). */
  settleSeconds: number;
  seconds: number;
  nodes: MultiRaftNodeFigures[];
}

const CLOCK_TICKS_PER_SECOND = 100;

/** utime + stime of a process, in seconds (Linux /proc). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

function rssMiB(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match === null ? 0 : Number(match[1]) / 1024;
}

export async function runMultiRaftCase(benchCase: MultiRaftCase, options: { seconds: number; root: string; tickMs: number; log: (line: string) => void }): Promise<MultiRaftResult> {
  const dir = await mkdtemp(join(options.root, 'replicalog-bench-multiraft-'));
  const ids = [1, 2, 3];
  const processes = new Map<number, NodeProcess>();
  const stopAll = () => {
    for (const node of processes.values()) node.kill('SIGKILL');
  };
  process.once('exit', stopAll);
  try {
    const ports = await freePorts(6);
    const peers = ids.map((id, index) => `${id}=127.0.0.1:${ports[index]}`).join(',');
    const entry = nodeEntryPath();
    for (const [index, id] of ids.entries()) {
      processes.set(
        id,
        new NodeProcess({
          id,
          dir: join(dir, `node-${id}`),
          httpPort: ports[3 + index]!,
          peers,
          entry,
          clusterId: 'bench-multiraft',
          tickMs: options.tickMs,
          snapshotEvery: 10_000,
          keepEntries: 5_000,
          extraArguments: ['--partitions', String(benchCase.groups), '--bootstrap', ...(benchCase.quiesce ? [] : ['--no-quiesce'])],
        }),
      );
    }
    const started = Date.now();
    for (const node of processes.values()) node.start();
    const startTimeoutMs = 60_000 + benchCase.groups * 60;
    for (const node of processes.values()) await node.waitReady(startTimeoutMs);
    options.log(`  ${benchCase.groups} groups${benchCase.quiesce ? '' : ' (no quiescence)'}: started in ${((Date.now() - started) / 1000).toFixed(1)} s; waiting for leaders${benchCase.quiesce ? ' and quiescence' : ''}`);
    // A generous timeout: groups that never quiesce keep a node busy (that is what is measured).
    const statusOf = async (node: NodeProcess): Promise<ReplicaNodeStatus | undefined> => {
      if (!node.running) return undefined;
      const answer = await httpCall(node.httpPort, 'GET', '/status', undefined, 30_000).catch(() => undefined);
      return answer?.status === 200 ? (answer.body as ReplicaNodeStatus) : undefined;
    };
    const statuses = async () => Promise.all(ids.map((id) => statusOf(processes.get(id)!)));
    const settled = await waitUntil(startTimeoutMs, async () => {
      const all = await statuses();
      if (all.some((status) => status === undefined || status.groups.withoutLeader !== 0)) return undefined;
      if (all.reduce((sum, status) => sum + status!.groups.leading, 0) !== benchCase.groups) return undefined;
      if (benchCase.quiesce && all.some((status) => status!.groups.quiesced !== benchCase.groups)) return undefined;
      return all as ReplicaNodeStatus[];
    });
    if (settled === undefined) {
      const all = await statuses();
      throw new Error(`the cluster did not settle: ${JSON.stringify(all.map((status) => status?.groups))}\n${[...processes.values()].map((node) => node.logTail(5)).join('\n')}`);
    }
    const settleSeconds = (Date.now() - started) / 1000;
    // Let the last elections' traffic drain before measuring.
    await sleep(2000);
    const before = await statuses();
    if (before.some((status) => status === undefined)) throw new Error('a node did not answer /status before the window');
    const cpuBefore = ids.map((id) => cpuSeconds(processes.get(id)!.pid!));
    const windowStart = performance.now();
    await sleep(options.seconds * 1000);
    const cpuAfter = ids.map((id) => cpuSeconds(processes.get(id)!.pid!));
    const windowSeconds = (performance.now() - windowStart) / 1000;
    const after = await statuses();
    if (after.some((status) => status === undefined)) throw new Error('a node did not answer /status after the window');
    const nodes = ids.map((id, index): MultiRaftNodeFigures => {
      const was = before[index]!.transport.groupBatches;
      const now = after[index]!.transport.groupBatches;
      return {
        id,
        cpuShare: (cpuAfter[index]! - cpuBefore[index]!) / windowSeconds,
        messagesPerSecond: (now.messagesSent - was.messagesSent) / windowSeconds,
        framesPerSecond: (now.framesSent - was.framesSent) / windowSeconds,
        rssMiB: rssMiB(processes.get(id)!.pid!),
        leading: after[index]!.groups.leading,
        quiesced: after[index]!.groups.quiesced,
      };
    });
    return { ...benchCase, settleSeconds, seconds: windowSeconds, nodes };
  } finally {
    for (const node of processes.values()) node.kill('SIGTERM');
    await Promise.all([...processes.values()].map((node) => node.waitExit(30_000)));
    stopAll();
    process.off('exit', stopAll);
    await rm(dir, { recursive: true, force: true });
  }
}

export function formatMultiRaft(results: readonly MultiRaftResult[]): string {
  const lines = [
    '| groups | quiescence | settle (s) | CPU per node (% of a core) | raft messages/s per node | frames/s per node | RSS per node (MiB) |',
    '|---:|---|---:|---|---|---|---|',
  ];
  const each = (result: MultiRaftResult, read: (node: MultiRaftNodeFigures) => number, digits: number) =>
    result.nodes.map((node) => read(node).toFixed(digits)).join(' / ');
  for (const result of results) {
    lines.push(
      `| ${result.groups.toLocaleString('en-US')} | ${result.quiesce ? 'on' : 'off'} | ${result.settleSeconds.toFixed(1)} | ${each(result, (node) => node.cpuShare * 100, 1)} | ` +
        `${each(result, (node) => node.messagesPerSecond, 0)} | ${each(result, (node) => node.framesPerSecond, 1)} | ${each(result, (node) => node.rssMiB, 0)} |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  let groups = [1, 10_000];
  let seconds = 10;
  let root = tmpdir();
  let json = false;
  let noQuiesceToo = false;
  for (let index = 0; index < args.length; index++) {
    const argument = args[index];
    const value = () => {
      const next = args[++index];
      if (next === undefined) throw new Error(`${argument} needs a value`);
      return next;
    };
    if (argument === '--groups') groups = value().split(',').map(Number);
    else if (argument === '--seconds') seconds = Number(value());
    else if (argument === '--root') root = resolve(value());
    else if (argument === '--json') json = true;
    else if (argument === '--no-quiesce-too') noQuiesceToo = true;
    else throw new Error(`unknown argument ${argument}\nusage: node dist/scripts/bench-multiraft.js [--groups 1,10000] [--seconds 10] [--no-quiesce-too] [--json] [--root DIR]`);
  }
  if (groups.some((count) => !Number.isSafeInteger(count) || count < 1) || !(seconds > 0)) throw new Error('--groups takes positive integers, --seconds a positive number');
  const cases: MultiRaftCase[] = groups.map((count) => ({ groups: count, quiesce: true }));
  if (noQuiesceToo) for (const count of groups) if (count > 1) cases.push({ groups: count, quiesce: false });
  const log = (line: string) => process.stderr.write(`${line}\n`);
  log(`bench:multiraft: 3 nodes on loopback, tick 100 ms, idle window ${seconds} s; cases: ${cases.map((benchCase) => `${benchCase.groups}${benchCase.quiesce ? '' : ' (no quiescence)'}`).join(', ')}`);
  const results: MultiRaftResult[] = [];
  for (const benchCase of cases) {
    const result = await runMultiRaftCase(benchCase, { seconds, root, tickMs: 100, log });
    results.push(result);
    log(formatMultiRaft([result]).split('\n')[2]!);
    if (json) process.stdout.write(JSON.stringify(result) + '\n');
  }
  if (!json) process.stdout.write(formatMultiRaft(results) + '\n');
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname)) {
  main().catch((error: unknown) => {
    process.stderr.write(`bench:multiraft: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  });
}
