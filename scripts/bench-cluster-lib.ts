/**
 * The pieces of `npm run bench:cluster` (scripts/bench-cluster.ts): replicalog and etcd clusters
 * of real processes on loopback, one closed-loop load generator for both, and the per-put costs
 * read from /proc (server CPU) and the block layer (device flushes).
 *
 * Every process started here is registered in a ServerProcesses set, which the caller stops in a
 * `finally` (and synchronously on exit or a signal). Every loop is bounded in count and in time.
 * Only 127.0.0.1 is used. The flags given to each server are in `replicalogNodeArguments` and
 * `etcdArguments`, and nowhere else.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, realpathSync, rmSync, statfsSync, statSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { cpus, platform, release, tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { freePorts } from '../lib/node/ports.js';
import { createClusterCertificates } from '../lib/transport/index.js';

// ---------------------------------------------------------------------------- configuration

export type SystemName = 'replicalog' | 'etcd';

export interface BenchCase {
  nodes: number;
  concurrency: number;
}

export interface ClusterBenchConfig {
  /** Where the run's temporary directory is made (default os.tmpdir()). */
  root: string;
  cases: BenchCase[];
  /** Repetitions; the table shows the median of each figure. */
  runs: number;
  warmupSeconds: number;
  seconds: number;
  valueBytes: number;
  /** 'auto': use etcd when the binary is found; 'off': replicalog alone. */
  etcd: 'auto' | 'off';
  /** The etcd binary (default: `etcd` on PATH, then /usr/bin/etcd). */
  etcdBinary?: string;
  /** More flags for every `replicalog node` (e.g. `--snapshot-every 100000`). */
  replicalogExtraArguments: string[];
  /** Mutual TLS between replicalog members (certificates made with openssl). */
  replicalogPeerTls: boolean;
  /** Per-request timeout. */
  requestTimeoutMs: number;
  /** Upper bound of requests per load worker per measurement (a second bound besides time). */
  maxRequestsPerWorker: number;
  log: (line: string) => void;
  /** Told the run's temporary directory as soon as it exists (signal handlers remove it). */
  onRunDirectory?: (path: string) => void;
}

export const DEFAULT_CASES: BenchCase[] = [
  { nodes: 3, concurrency: 1 },
  { nodes: 3, concurrency: 16 },
  { nodes: 3, concurrency: 64 },
  { nodes: 1, concurrency: 64 },
];

export function defaultConfig(): ClusterBenchConfig {
  return {
    root: tmpdir(),
    cases: DEFAULT_CASES.map((benchCase) => ({ ...benchCase })),
    runs: 3,
    warmupSeconds: 2,
    seconds: 10,
    valueBytes: 1024,
    etcd: 'auto',
    replicalogExtraArguments: [],
    replicalogPeerTls: false,
    requestTimeoutMs: 10_000,
    maxRequestsPerWorker: 1_000_000,
    log: () => {},
  };
}

/** --quick: short windows, one repetition. */
export function quickConfig(): ClusterBenchConfig {
  return { ...defaultConfig(), runs: 1, warmupSeconds: 0.5, seconds: 3 };
}

// ---------------------------------------------------------------------------- server flags (the one place)

export interface ReplicalogNodeSpec {
  id: number;
  dir: string;
  /** `ID=127.0.0.1:PORT,…` of every member. */
  peers: string;
  httpPort: number;
  clusterId: string;
  tls?: { cert: string; key: string; ca: string };
}

/**
 * The command line of one `replicalog node` (after the program). `--bootstrap` seeds an empty
 * store on the lowest id and joins the others. The node's own defaults otherwise (tick 100 ms,
 * journal mode, a snapshot every 10,000 entries): the benchmark measures what a user gets.
 */
export function replicalogNodeArguments(spec: ReplicalogNodeSpec, extra: readonly string[]): string[] {
  return [
    'node',
    '--id', String(spec.id),
    '--dir', spec.dir,
    '--peers', spec.peers,
    '--http-port', String(spec.httpPort),
    '--cluster-id', spec.clusterId,
    '--bootstrap',
    ...(spec.tls === undefined ? [] : ['--peer-cert', spec.tls.cert, '--peer-key', spec.tls.key, '--peer-ca', spec.tls.ca]),
    ...extra,
  ];
}

export interface EtcdMemberSpec {
  name: string;
  dir: string;
  clientPort: number;
  peerPort: number;
  /** `name=http://127.0.0.1:PORT,…` of every member. */
  initialCluster: string;
  token: string;
}

/** The command line of one etcd member: loopback only, etcd's own defaults otherwise. */
export function etcdArguments(spec: EtcdMemberSpec): string[] {
  const client = `http://127.0.0.1:${spec.clientPort}`;
  const peer = `http://127.0.0.1:${spec.peerPort}`;
  return [
    '--name', spec.name,
    '--data-dir', spec.dir,
    '--listen-client-urls', client,
    '--advertise-client-urls', client,
    '--listen-peer-urls', peer,
    '--initial-advertise-peer-urls', peer,
    '--initial-cluster', spec.initialCluster,
    '--initial-cluster-state', 'new',
    '--initial-cluster-token', spec.token,
    '--logger', 'zap',
    '--log-outputs', 'stderr',
    '--log-level', 'warn',
  ];
}

// ---------------------------------------------------------------------------- processes

export const sleep = (ms: number) => new Promise<void>((resolvePromise) => setTimeout(resolvePromise, ms));

/** A server process whose output goes to `<logPath>`. */
export class ServerProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;

  constructor(
    readonly name: string,
    command: string,
    args: readonly string[],
    readonly logPath: string,
  ) {
    const logFd = openSync(logPath, 'a');
    try {
      this.child = spawn(command, args, { stdio: ['ignore', logFd, logFd] });
    } finally {
      closeSync(logFd); // the child holds its own copy
    }
    const child = this.child;
    this.exited = new Promise((resolvePromise) => {
      if (child.exitCode !== null || child.signalCode !== null) resolvePromise();
      child.once('exit', () => resolvePromise());
      child.once('error', () => resolvePromise());
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.pid !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  logTail(lines = 12): string {
    try {
      return readFileSync(this.logPath, 'utf8').trimEnd().split('\n').slice(-lines).map((line) => `    | ${line}`).join('\n');
    } catch {
      return '    (no log)';
    }
  }
}

/** Every server process of a run: stopped together, also synchronously from an exit handler. */
export class ServerProcesses {
  private readonly all = new Set<ServerProcess>();
  /** Every process ever started here (name and pid), for the caller to check they are gone. */
  readonly started: { name: string; pid: number | undefined }[] = [];

  start(name: string, command: string, args: readonly string[], logPath: string): ServerProcess {
    const server = new ServerProcess(name, command, args, logPath);
    this.all.add(server);
    this.started.push({ name, pid: server.pid });
    void server.exited.then(() => this.all.delete(server));
    return server;
  }

  get size(): number {
    return this.all.size;
  }

  /** SIGTERM, then SIGKILL whatever did not exit within `graceMs`. */
  async stop(servers: Iterable<ServerProcess> = [...this.all], graceMs = 5000): Promise<void> {
    const list = [...servers];
    for (const server of list) if (server.running) server.child.kill('SIGTERM');
    const timeout = sleep(graceMs).then(() => 'timeout' as const);
    const outcome = await Promise.race([Promise.all(list.map((server) => server.exited)).then(() => 'exited' as const), timeout]);
    if (outcome === 'timeout') {
      for (const server of list) if (server.running) server.child.kill('SIGKILL');
      await Promise.race([Promise.all(list.map((server) => server.exited)), sleep(2000)]);
    }
  }

  /** For process 'exit' and signal handlers: SIGKILL every server still running, now. */
  killAllNow(): void {
    for (const server of this.all) {
      if (!server.running) continue;
      try {
        server.child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

// ---------------------------------------------------------------------------- HTTP

export interface HttpAnswer {
  status: number;
  text: string;
}

/** One request to 127.0.0.1:port, with a Host header naming that address; bounded by timeoutMs. */
export function httpRequest(agent: Agent | undefined, port: number, method: string, path: string, body: Buffer | undefined, timeoutMs: number, contentType = 'application/octet-stream'): Promise<HttpAnswer> {
  return new Promise((resolvePromise, reject) => {
    const headers: Record<string, string | number> = { host: `127.0.0.1:${port}` };
    if (body !== undefined) {
      headers['content-length'] = body.length;
      headers['content-type'] = contentType;
    }
    const outgoing = request({ host: '127.0.0.1', port, method, path, headers, agent: agent ?? false, timeout: timeoutMs }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', reject);
      response.on('end', () => resolvePromise({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
    });
    outgoing.on('timeout', () => outgoing.destroy(new Error(`${method} ${path} on 127.0.0.1:${port} timed out after ${timeoutMs} ms`)));
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------- clusters

/** A running cluster of one system: how to find its leader and how to put one key there. */
export interface BenchCluster {
  system: SystemName;
  nodes: number;
  servers: ServerProcess[];
  /** The client port of the current leader (waits up to timeoutMs for one). */
  leaderPort(timeoutMs: number): Promise<number>;
  /** The request that puts `key` = `value` (both already bytes). */
  putRequest(key: string, value: Buffer): { method: string; path: string; body: Buffer; contentType: string };
}

/** The repository root (where package.json and bin/ are), from this file or its build. */
export function repositoryRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let level = 0; level < 6; level++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bin', 'replicalog.js'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('cannot find the repository root (package.json with bin/replicalog.js) above scripts/bench-cluster-lib');
}

/** bin/replicalog.js, which needs the build (dist/lib/cli/main.js). */
export function replicalogProgram(): string {
  const root = repositoryRoot();
  const program = join(root, 'bin', 'replicalog.js');
  if (!existsSync(join(root, 'dist', 'lib', 'cli', 'main.js'))) throw new Error(`${program} needs the build: run npm run build`);
  return program;
}

async function waitUntil<T>(timeoutMs: number, intervalMs: number, probe: () => Promise<T | undefined>): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await sleep(intervalMs);
  }
  return undefined;
}

function failedStart(servers: ServerProcess[], what: string): Error {
  const dead = servers.filter((server) => !server.running);
  const shown = dead.length > 0 ? dead : servers;
  return new Error(`${what}\n${shown.map((server) => `  ${server.name} (${server.running ? 'running' : 'exited'}, log ${server.logPath}):\n${server.logTail()}`).join('\n')}`);
}

/**
 * Flags for the node runtime of every replicalog node, from REPLICALOG_BENCH_NODE_FLAGS
 * (space-separated), e.g. "--cpu-prof --cpu-prof-dir=/tmp/profiles" to profile each node of a
 * run (NODE_OPTIONS refuses --cpu-prof).
 */
function nodeRuntimeFlags(): string[] {
  return (process.env.REPLICALOG_BENCH_NODE_FLAGS ?? '').split(' ').filter((flag) => flag !== '');
}

export async function startReplicalogCluster(processes: ServerProcesses, dir: string, nodes: number, config: Pick<ClusterBenchConfig, 'replicalogExtraArguments' | 'replicalogPeerTls'>): Promise<BenchCluster> {
  mkdirSync(dir, { recursive: true });
  const ids = Array.from({ length: nodes }, (_, i) => i + 1);
  const ports = await freePorts(nodes * 2);
  const peers = ids.map((id, i) => `${id}=127.0.0.1:${ports[i]}`).join(',');
  const httpPorts = new Map(ids.map((id, i) => [id, ports[nodes + i]!]));
  const clusterId = `bench-${randomBytes(4).toString('hex')}`;
  const certificates = config.replicalogPeerTls ? createClusterCertificates(join(dir, 'certs'), clusterId, ids) : undefined;
  const program = replicalogProgram();
  const servers = ids.map((id) =>
    processes.start(
      `replicalog node ${id}`,
      process.execPath,
      [...nodeRuntimeFlags(), program, ...replicalogNodeArguments({ id, dir: join(dir, `node-${id}`), peers, httpPort: httpPorts.get(id)!, clusterId, ...(certificates === undefined ? {} : { tls: certificates.get(id)! }) }, config.replicalogExtraArguments)],
      join(dir, `node-${id}.log`),
    ),
  );
  const statusOf = async (id: number): Promise<Record<string, unknown> | undefined> => {
    try {
      const answer = await httpRequest(undefined, httpPorts.get(id)!, 'GET', '/status', undefined, 1000);
      return answer.status === 200 ? parseJson(answer.text) : undefined;
    } catch {
      return undefined;
    }
  };
  const findLeader = async (): Promise<number | undefined> => {
    if (servers.some((server) => !server.running)) return undefined;
    const statuses = await Promise.all(ids.map(statusOf));
    const leader = statuses.find((status) => status?.raftState === 'StateLeader');
    if (leader === undefined || typeof leader.id !== 'number') return undefined;
    // Every member follows it (a joining member knows it once it has caught up).
    return statuses.every((status) => status !== undefined && status.lead === leader.id) ? leader.id : undefined;
  };
  const leader = await waitUntil(30_000, 100, findLeader);
  if (leader === undefined) throw failedStart(servers, `the ${nodes}-node replicalog cluster elected no leader within 30 s`);
  return {
    system: 'replicalog',
    nodes,
    servers,
    async leaderPort(timeoutMs) {
      const id = await waitUntil(timeoutMs, 100, findLeader);
      if (id === undefined) throw failedStart(servers, `the replicalog cluster has no leader (waited ${timeoutMs} ms)`);
      return httpPorts.get(id)!;
    },
    putRequest(key, value) {
      return { method: 'PUT', path: `/kv/${encodeURIComponent(key)}`, body: value, contentType: 'application/octet-stream' };
    },
  };
}

/** The etcd binary, or undefined with the reason. */
export function findEtcd(explicit: string | undefined): { path: string; version: string } | { reason: string } {
  const candidates = explicit !== undefined ? [explicit] : [...(process.env.PATH ?? '').split(delimiter).filter((dir) => dir !== '').map((dir) => join(dir, 'etcd')), '/usr/bin/etcd'];
  for (const candidate of candidates) {
    if (!existsSync(candidate)) continue;
    try {
      const output = execFileSync(candidate, ['--version'], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] });
      const version = /etcd Version: (\S+)/.exec(output)?.[1] ?? 'unknown';
      return { path: candidate, version };
    } catch (error) {
      return { reason: `${candidate} --version failed: ${(error as Error).message}` };
    }
  }
  return { reason: explicit !== undefined ? `${explicit} does not exist` : 'no etcd binary on PATH or at /usr/bin/etcd' };
}

export const ETCD_INSTALL_HINT = "install etcd to compare: on Debian/Ubuntu `sudo apt-get update && sudo apt-get install -y etcd-server` (etcd 3.4), or pass --etcd /path/to/etcd";

export async function startEtcdCluster(processes: ServerProcesses, dir: string, nodes: number, binary: string): Promise<BenchCluster> {
  mkdirSync(dir, { recursive: true });
  const names = Array.from({ length: nodes }, (_, i) => `e${i + 1}`);
  const ports = await freePorts(nodes * 2);
  const clientPorts = names.map((_, i) => ports[i]!);
  const initialCluster = names.map((name, i) => `${name}=http://127.0.0.1:${ports[nodes + i]}`).join(',');
  const token = `bench-${randomBytes(4).toString('hex')}`;
  const servers = names.map((name, i) =>
    processes.start(`etcd ${name}`, binary, etcdArguments({ name, dir: join(dir, name), clientPort: clientPorts[i]!, peerPort: ports[nodes + i]!, initialCluster, token }), join(dir, `${name}.log`)),
  );
  /** POST /v3/maintenance/status: {header: {member_id}, leader} (uint64s as strings). */
  const findLeader = async (): Promise<number | undefined> => {
    if (servers.some((server) => !server.running)) return undefined;
    for (const port of clientPorts) {
      try {
        const answer = await httpRequest(undefined, port, 'POST', '/v3/maintenance/status', Buffer.from('{}'), 1000, 'application/json');
        const body = answer.status === 200 ? parseJson(answer.text) : undefined;
        const header = body?.header as Record<string, unknown> | undefined;
        if (body !== undefined && header !== undefined && body.leader !== undefined && body.leader !== '0' && body.leader === header.member_id) return port;
      } catch {
        // not serving yet
      }
    }
    return undefined;
  };
  const leader = await waitUntil(30_000, 100, findLeader);
  if (leader === undefined) throw failedStart(servers, `the ${nodes}-member etcd cluster elected no leader within 30 s`);
  return {
    system: 'etcd',
    nodes,
    servers,
    async leaderPort(timeoutMs) {
      const port = await waitUntil(timeoutMs, 100, findLeader);
      if (port === undefined) throw failedStart(servers, `the etcd cluster has no leader (waited ${timeoutMs} ms)`);
      return port;
    },
    putRequest(key, value) {
      const body = Buffer.from(JSON.stringify({ key: Buffer.from(key).toString('base64'), value: value.toString('base64') }));
      return { method: 'POST', path: '/v3/kv/put', body, contentType: 'application/json' };
    },
  };
}

// ---------------------------------------------------------------------------- costs: CPU and flushes

let clockTicks: number | undefined;
/** USER_HZ (utime/stime units in /proc/<pid>/stat). */
function clockTicksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/**
 * CPU seconds of a process (all its threads) and of its descendants: utime + stime + cutime +
 * cstime of the process, plus the same for each live child, recursively (a replicalog node
 * keeps a small `sh` that runs its syncfs calls; its `sync` children are reaped by it, so they
 * are in its cutime). Undefined once the process is gone.
 */
export function processCpuSeconds(pid: number): number | undefined {
  const ticks = processTreeTicks(pid, 0);
  return ticks === undefined ? undefined : ticks / clockTicksPerSecond();
}

function processTreeTicks(pid: number, depth: number): number | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name may hold spaces and parentheses: the fields start after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14 to 17.
  const own = [11, 12, 13, 14].map((position) => Number(fields[position]));
  if (own.some((value) => !Number.isFinite(value))) return undefined;
  let total = own.reduce((sum, value) => sum + value, 0);
  if (depth < 4) for (const child of childPids(pid)) total += processTreeTicks(child, depth + 1) ?? 0;
  return total;
}

function childPids(pid: number): number[] {
  const children: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const listed = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (listed !== '') children.push(...listed.split(' ').map(Number));
    }
  } catch {
    // gone, or no children file (kernels without CONFIG_PROC_CHILDREN): the process alone
  }
  return children;
}

export type FlushCounter = { available: true; device: string; statPath: string } | { available: false; reason: string };

const TMPFS_MAGIC = 0x01021994;

/**
 * The flush counter of the disk holding `dir`: field 16 ("flush requests completed", Linux ≥ 5.5)
 * of /sys/block/<disk>/stat. A partition's flushes are counted on its whole disk. The counter is
 * the device's: other processes' flushes are in it too.
 */
export function flushCounterFor(dir: string): FlushCounter {
  if (platform() !== 'linux') return { available: false, reason: `not Linux (${platform()})` };
  try {
    if (statfsSync(dir).type === TMPFS_MAGIC) return { available: false, reason: `${dir} is on a tmpfs (no device; fsync costs nothing there: use --root on a real disk)` };
    const dev = statSync(dir, { bigint: true }).dev;
    // Linux dev_t: major = bits 8..19 and 32..43, minor = bits 0..7 and 20..39.
    const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
    const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
    const link = `/sys/dev/block/${major}:${minor}`;
    if (!existsSync(link)) return { available: false, reason: `no block device behind ${dir} (device ${major}:${minor}: overlay, btrfs subvolume or network filesystem?)` };
    let deviceDir = realpathSync(link);
    if (existsSync(join(deviceDir, 'partition'))) deviceDir = dirname(deviceDir);
    const statPath = join(deviceDir, 'stat');
    const fields = readFileSync(statPath, 'utf8').trim().split(/\s+/);
    if (fields.length < 17) return { available: false, reason: `${statPath} has no flush counter (kernel before 5.5)` };
    return { available: true, device: deviceDir.split('/').at(-1)!, statPath };
  } catch (error) {
    return { available: false, reason: (error as Error).message };
  }
}

export function readFlushes(counter: FlushCounter): number | undefined {
  if (!counter.available) return undefined;
  try {
    const value = Number(readFileSync(counter.statPath, 'utf8').trim().split(/\s+/)[15]);
    return Number.isFinite(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------- load generator

export interface LoadSample {
  system: SystemName;
  nodes: number;
  concurrency: number;
  /** Acknowledged puts completed inside the measured window. */
  puts: number;
  errors: number;
  seconds: number;
  putsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU (utime + stime, children included) of every server of the cluster during the window, per acknowledged put. */
  cpuSecondsPerPut: number | null;
  /** Device flushes during the window per acknowledged put (null: no counter). */
  flushesPerPut: number | null;
  firstError?: string;
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: readonly number[], fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(fraction * sorted.length)));
  return sorted[rank - 1]!;
}

export interface LoadOptions {
  concurrency: number;
  warmupMs: number;
  measureMs: number;
  value: Buffer;
  keyPrefix: string;
  requestTimeoutMs: number;
  maxRequestsPerWorker: number;
  flushCounter: FlushCounter;
}

/**
 * Closed loop: `concurrency` workers, each sending its next put as soon as the previous one was
 * answered, to the leader, over kept-alive connections. Puts answered during the warm-up are not
 * counted; the window's CPU and flush counters are read at its two ends. Workers stop sending at
 * the end of the window (or after maxRequestsPerWorker) and the loop waits for their last answer
 * (each bounded by requestTimeoutMs).
 */
export async function runLoad(cluster: BenchCluster, options: LoadOptions): Promise<LoadSample> {
  const port = await cluster.leaderPort(30_000);
  const agent = new Agent({ keepAlive: true, maxSockets: options.concurrency, maxFreeSockets: options.concurrency });
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let measuring = false;
  let stopped = false;
  const pids = cluster.servers.map((server) => server.pid).filter((pid): pid is number => pid !== undefined);
  const cpuNow = () => {
    let total = 0;
    for (const pid of pids) {
      const seconds = processCpuSeconds(pid);
      if (seconds === undefined) return undefined;
      total += seconds;
    }
    return total;
  };

  const worker = async (workerIndex: number): Promise<void> => {
    let consecutiveErrors = 0;
    for (let sequence = 0; sequence < options.maxRequestsPerWorker && !stopped; sequence++) {
      const put = cluster.putRequest(`${options.keyPrefix}/w${workerIndex}/${sequence}`, options.value);
      const started = performance.now();
      let ok = false;
      let problem = '';
      try {
        const answer = await httpRequest(agent, port, put.method, put.path, put.body, options.requestTimeoutMs, put.contentType);
        ok = answer.status === 200;
        if (!ok) problem = `${answer.status} ${answer.text.trim().slice(0, 200)}`;
      } catch (error) {
        problem = (error as Error).message;
      }
      const elapsed = performance.now() - started;
      if (measuring && !stopped) {
        if (ok) latencies.push(elapsed);
        else errors++;
      }
      if (ok) {
        consecutiveErrors = 0;
      } else {
        firstError ??= problem;
        // A failing target must not become a hot loop; many failures in a row end the worker.
        if (++consecutiveErrors >= 50) return;
        await sleep(20);
      }
    }
  };

  const workers = Array.from({ length: options.concurrency }, (_, i) => worker(i));
  let cpuStart: number | undefined;
  let flushStart: number | undefined;
  let windowStart = 0;
  let windowEnd = 0;
  try {
    await sleep(options.warmupMs);
    cpuStart = cpuNow();
    flushStart = readFlushes(options.flushCounter);
    windowStart = performance.now();
    measuring = true;
    await sleep(options.measureMs);
    stopped = true;
    windowEnd = performance.now();
  } finally {
    stopped = true;
    await Promise.all(workers);
    agent.destroy();
  }
  const cpuEnd = cpuNow();
  const flushEnd = readFlushes(options.flushCounter);
  const seconds = (windowEnd - windowStart) / 1000;
  const puts = latencies.length;
  latencies.sort((a, b) => a - b);
  return {
    system: cluster.system,
    nodes: cluster.nodes,
    concurrency: options.concurrency,
    puts,
    errors,
    seconds,
    putsPerSecond: puts / seconds,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    cpuSecondsPerPut: cpuStart !== undefined && cpuEnd !== undefined && puts > 0 ? (cpuEnd - cpuStart) / puts : null,
    flushesPerPut: flushStart !== undefined && flushEnd !== undefined && puts > 0 ? (flushEnd - flushStart) / puts : null,
    ...(firstError === undefined ? {} : { firstError }),
  };
}

// ---------------------------------------------------------------------------- the run

export interface SystemSummary {
  /** Medians over the runs. */
  putsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  cpuSecondsPerPut: number | null;
  flushesPerPut: number | null;
  errors: number;
  samples: LoadSample[];
}

export interface CaseResult {
  name: string;
  nodes: number;
  concurrency: number;
  replicalog: SystemSummary;
  etcd: SystemSummary | null;
  /** replicalog puts/s over etcd's (null without etcd). */
  ratio: number | null;
}

export interface ClusterBenchResult {
  cases: CaseResult[];
  etcd: { available: true; path: string; version: string } | { available: false; reason: string };
  flushCounter: FlushCounter;
  config: { runs: number; warmupSeconds: number; seconds: number; valueBytes: number; replicalogExtraArguments: string[]; replicalogPeerTls: boolean };
  machine: { node: string; platform: string; release: string; cpus: number; cpuModel: string };
  wallSeconds: number;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function summarize(samples: LoadSample[]): SystemSummary {
  const nullableMedian = (values: (number | null)[]) => (values.some((value) => value === null) ? null : median(values as number[]));
  return {
    putsPerSecond: median(samples.map((sample) => sample.putsPerSecond)),
    p50Ms: median(samples.map((sample) => sample.p50Ms)),
    p99Ms: median(samples.map((sample) => sample.p99Ms)),
    cpuSecondsPerPut: nullableMedian(samples.map((sample) => sample.cpuSecondsPerPut)),
    flushesPerPut: nullableMedian(samples.map((sample) => sample.flushesPerPut)),
    errors: samples.reduce((sum, sample) => sum + sample.errors, 0),
    samples,
  };
}

export function caseName(benchCase: BenchCase): string {
  return `${benchCase.nodes} node${benchCase.nodes === 1 ? '' : 's'}, C=${benchCase.concurrency}`;
}

function validateConfig(config: ClusterBenchConfig): void {
  const positive = (name: string, value: number, integer: boolean) => {
    if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) throw new RangeError(`${name} must be a positive ${integer ? 'integer' : 'number'} (got ${value})`);
  };
  positive('runs', config.runs, true);
  positive('seconds', config.seconds, false);
  positive('valueBytes', config.valueBytes, true);
  positive('requestTimeoutMs', config.requestTimeoutMs, true);
  positive('maxRequestsPerWorker', config.maxRequestsPerWorker, true);
  if (!Number.isFinite(config.warmupSeconds) || config.warmupSeconds < 0) throw new RangeError(`warmupSeconds must be ≥ 0 (got ${config.warmupSeconds})`);
  if (config.cases.length === 0) throw new RangeError('no cases to run');
  for (const benchCase of config.cases) {
    positive('nodes', benchCase.nodes, true);
    positive('concurrency', benchCase.concurrency, true);
    if (benchCase.nodes > 7 || benchCase.concurrency > 1024) throw new RangeError(`${caseName(benchCase)}: at most 7 nodes and C=1024`);
  }
}

/**
 * Runs every case against replicalog (and etcd when found), interleaved: for each cluster size,
 * both clusters are started once; each run measures every case of that size on both systems,
 * alternating which goes first; then both are stopped and their directories removed.
 */
export async function runClusterBench(config: ClusterBenchConfig, processes = new ServerProcesses()): Promise<ClusterBenchResult> {
  validateConfig(config);
  const wallStarted = Date.now();
  const log = config.log;
  let etcd: ClusterBenchResult['etcd'];
  if (config.etcd === 'off') etcd = { available: false, reason: 'etcd turned off (--no-etcd)' };
  else {
    const found = findEtcd(config.etcdBinary);
    etcd = 'path' in found ? { available: true, ...found } : { available: false, reason: found.reason };
  }
  mkdirSync(config.root, { recursive: true });
  const runDir = mkdtempSync(join(resolve(config.root), 'replicalog-bench-cluster-'));
  config.onRunDirectory?.(runDir);
  const flushCounter = flushCounterFor(runDir);
  const value = Buffer.from(randomBytes(config.valueBytes).toString('base64').slice(0, config.valueBytes), 'ascii');
  const samples = new Map<string, { replicalog: LoadSample[]; etcd: LoadSample[] }>(config.cases.map((benchCase) => [caseName(benchCase), { replicalog: [], etcd: [] }]));
  try {
    log(`bench:cluster: ${runDir} (${flushCounter.available ? `flush counter of ${flushCounter.device}` : `no flush counter: ${flushCounter.reason}`})`);
    log(etcd.available ? `etcd ${etcd.version} at ${etcd.path}` : `etcd not used: ${etcd.reason}`);
    const sizes = [...new Set(config.cases.map((benchCase) => benchCase.nodes))];
    for (const nodes of sizes) {
      const cases = config.cases.filter((benchCase) => benchCase.nodes === nodes);
      const clusters: BenchCluster[] = [];
      try {
        log(`starting a ${nodes}-node replicalog cluster${etcd.available ? ` and a ${nodes}-member etcd cluster` : ''}`);
        clusters.push(await startReplicalogCluster(processes, join(runDir, `replicalog-${nodes}`), nodes, config));
        if (etcd.available) clusters.push(await startEtcdCluster(processes, join(runDir, `etcd-${nodes}`), nodes, etcd.path));
        for (let run = 0; run < config.runs; run++) {
          for (const [caseIndex, benchCase] of cases.entries()) {
            // Interleaved: which system goes first alternates from case to case and from run to run.
            const order = (run + caseIndex) % 2 === 0 ? clusters : [...clusters].reverse();
            for (const cluster of order) {
              const name = caseName(benchCase);
              const sample = await runLoad(cluster, {
                concurrency: benchCase.concurrency,
                warmupMs: config.warmupSeconds * 1000,
                measureMs: config.seconds * 1000,
                value,
                keyPrefix: `bench/${nodes}/c${benchCase.concurrency}/r${run}`,
                requestTimeoutMs: config.requestTimeoutMs,
                maxRequestsPerWorker: config.maxRequestsPerWorker,
                flushCounter,
              });
              samples.get(name)![cluster.system].push(sample);
              log(
                `  run ${run + 1}/${config.runs} ${name.padEnd(15)} ${cluster.system.padEnd(10)} ${formatRate(sample.putsPerSecond)} puts/s, p50 ${formatMs(sample.p50Ms)} ms, p99 ${formatMs(sample.p99Ms)} ms` +
                  (sample.errors > 0 || sample.firstError !== undefined ? `, ${sample.errors} errors in the window (first: ${sample.firstError ?? '?'})` : ''),
              );
              if (sample.puts === 0) throw new Error(`${cluster.system} acknowledged no put in ${name}: ${sample.firstError ?? 'no answer'}`);
            }
          }
        }
      } finally {
        await processes.stop(clusters.flatMap((cluster) => cluster.servers));
      }
    }
  } finally {
    await processes.stop();
    rmSync(runDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  }
  const cases: CaseResult[] = config.cases.map((benchCase) => {
    const own = samples.get(caseName(benchCase))!;
    const replicalog = summarize(own.replicalog);
    const etcdSummary = own.etcd.length > 0 ? summarize(own.etcd) : null;
    return {
      name: caseName(benchCase),
      nodes: benchCase.nodes,
      concurrency: benchCase.concurrency,
      replicalog,
      etcd: etcdSummary,
      ratio: etcdSummary === null ? null : replicalog.putsPerSecond / etcdSummary.putsPerSecond,
    };
  });
  return {
    cases,
    etcd,
    flushCounter,
    config: {
      runs: config.runs,
      warmupSeconds: config.warmupSeconds,
      seconds: config.seconds,
      valueBytes: config.valueBytes,
      replicalogExtraArguments: [...config.replicalogExtraArguments],
      replicalogPeerTls: config.replicalogPeerTls,
    },
    machine: { node: process.version, platform: platform(), release: release(), cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown' },
    wallSeconds: (Date.now() - wallStarted) / 1000,
  };
}

// ---------------------------------------------------------------------------- output

function formatRate(value: number): string {
  return Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : '-';
}

function formatMs(value: number): string {
  if (!Number.isFinite(value)) return '-';
  return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
}

function formatCost(value: number | null, digits: number): string {
  return value === null ? 'n/a' : value.toFixed(digits);
}

function summaryCell(summary: SystemSummary | null): string {
  if (summary === null) return '-';
  return `${formatRate(summary.putsPerSecond)} (${formatMs(summary.p50Ms)} / ${formatMs(summary.p99Ms)})`;
}

/** The result as an aligned text table plus the notes a reader needs. */
export function formatTable(result: ClusterBenchResult): string {
  const header = ['case', 'replicalog puts/s (p50 / p99 ms)', 'etcd puts/s (p50 / p99 ms)', 'ratio', 'CPU ms/put rl / etcd', 'flushes/put rl / etcd'];
  const rows = result.cases.map((row) => [
    row.name,
    summaryCell(row.replicalog),
    summaryCell(row.etcd),
    row.ratio === null ? '-' : row.ratio.toFixed(2),
    `${formatCost(row.replicalog.cpuSecondsPerPut === null ? null : row.replicalog.cpuSecondsPerPut * 1000, 2)} / ${row.etcd === null ? '-' : formatCost(row.etcd.cpuSecondsPerPut === null ? null : row.etcd.cpuSecondsPerPut * 1000, 2)}`,
    `${formatCost(row.replicalog.flushesPerPut, 2)} / ${row.etcd === null ? '-' : formatCost(row.etcd.flushesPerPut, 2)}`,
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) => `| ${cells.map((cell, column) => cell.padEnd(widths[column]!)).join(' | ')} |`;
  const lines = [line(header), `|${widths.map((width) => '-'.repeat(width + 2)).join('|')}|`, ...rows.map(line)];
  const notes: string[] = [];
  notes.push(
    `${result.config.runs === 1 ? 'one run' : `medians of ${result.config.runs} runs`}, ${result.config.warmupSeconds} s warm-up then ${result.config.seconds} s measured per case, ` +
      `${result.config.valueBytes}-byte values, distinct keys, closed loop to the leader` +
      (result.config.replicalogExtraArguments.length > 0 ? `; replicalog node flags: ${result.config.replicalogExtraArguments.join(' ')}` : ''),
  );
  notes.push('CPU: utime + stime of every server process of the cluster and of its child processes (from /proc/<pid>/stat) during the window, per acknowledged put');
  notes.push(
    result.flushCounter.available
      ? `flushes: device flush requests of ${result.flushCounter.device} (the disk holding the data directories) during the window, per put; the counter is device-wide, so other processes' flushes count too`
      : `flushes per put: unavailable (${result.flushCounter.reason})`,
  );
  if (!result.etcd.available) notes.push(`etcd not measured: ${result.etcd.reason}${result.etcd.reason.includes('--no-etcd') ? '' : `; ${ETCD_INSTALL_HINT}`}`);
  const errors = result.cases.filter((row) => row.replicalog.errors > 0 || (row.etcd?.errors ?? 0) > 0);
  for (const row of errors) notes.push(`${row.name}: ${row.replicalog.errors} replicalog / ${row.etcd?.errors ?? 0} etcd puts failed in the window (not counted)`);
  return [...lines, '', ...notes.map((note) => `  ${note}`)].join('\n');
}

/** One JSON object on one line (medians and every sample). */
export function jsonLine(result: ClusterBenchResult): string {
  return JSON.stringify(result);
}
