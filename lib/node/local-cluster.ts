/**
 * Helpers to run a local cluster of `replicalog node` processes on loopback (the demo and the
 * soak script): a handle per node process, a tiny HTTP client, waiting for a leader, and a
 * client that retries puts until they are acknowledged.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ReplicaNodeStatus } from './node.js';

export interface HttpAnswer {
  status: number;
  body: unknown;
  text: string;
}

export function httpCall(port: number, method: string, path: string, body?: string, timeoutMs = 8000): Promise<HttpAnswer> {
  return new Promise((resolvePromise, reject) => {
    const outgoing = request(
      { host: '127.0.0.1', port, method, path, timeout: timeoutMs, headers: body === undefined ? {} : { 'content-length': Buffer.byteLength(body) } },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          if ((response.headers['content-type'] ?? '').startsWith('application/json')) {
            try {
              parsed = JSON.parse(text);
            } catch {
              // keep the text
            }
          }
          resolvePromise({ status: response.statusCode ?? 0, body: parsed, text });
        });
      },
    );
    outgoing.on('timeout', () => outgoing.destroy(new Error(`HTTP ${method} ${path} on port ${port} timed out`)));
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}

export const sleep = (ms: number) => new Promise((resolvePromise) => setTimeout(resolvePromise, ms));

export interface NodeProcessOptions {
  id: number;
  /** The store directory; the process's output is appended to `<dir>.log`. */
  dir: string;
  httpPort: number;
  /** `ID=HOST:PORT,…` of every member. */
  peers: string;
  /** The script to run (nodeEntryPath()). */
  entry: string;
  clusterId?: string;
  tickMs?: number;
  snapshotEvery?: number;
  keepEntries?: number;
  /** Run in its own process group, to outlive the parent (demo --keep). */
  detached?: boolean;
  /** Mutual TLS between members: this node's files (see createClusterCertificates). */
  tls?: { cert: string; key: string; ca: string };
  /** More command-line arguments (tests). */
  extraArguments?: string[];
}

/** One `replicalog node` process of a local cluster. */
export class NodeProcess {
  child: ChildProcess | undefined;
  private exited: Promise<number | null> | undefined;
  readonly id: number;
  readonly dir: string;
  readonly httpPort: number;
  readonly logPath: string;

  constructor(private readonly options: NodeProcessOptions) {
    this.id = options.id;
    this.dir = options.dir;
    this.httpPort = options.httpPort;
    this.logPath = `${options.dir}.log`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  start(): void {
    // Appending: a restarted node's log follows its previous life.
    const logFd = openSync(this.logPath, 'a');
    try {
      this.child = spawn(
        process.execPath,
        [
          this.options.entry,
          'node',
          '--id', String(this.id),
          '--dir', this.dir,
          '--peers', this.options.peers,
          '--http-port', String(this.httpPort),
          '--cluster-id', this.options.clusterId ?? 'replicalog-local',
          '--tick-ms', String(this.options.tickMs ?? 100),
          '--snapshot-every', String(this.options.snapshotEvery ?? 100),
          '--keep-entries', String(this.options.keepEntries ?? 50),
          ...(this.options.tls === undefined ? [] : ['--peer-cert', this.options.tls.cert, '--peer-key', this.options.tls.key, '--peer-ca', this.options.tls.ca]),
          ...(this.options.extraArguments ?? []),
        ],
        { stdio: ['ignore', logFd, logFd], detached: this.options.detached === true },
      );
    } finally {
      closeSync(logFd); // the child has its own copy
    }
    const child = this.child;
    this.exited = new Promise((resolvePromise) => {
      if (child.exitCode !== null) resolvePromise(child.exitCode);
      child.once('exit', (code) => resolvePromise(code));
      child.once('error', () => resolvePromise(null));
    });
  }

  /** Waits until the HTTP API answers /status (or the process died). */
  async waitReady(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.running) throw new Error(`node ${this.id} exited during start-up:\n${this.logTail()}`);
      if ((await this.status()) !== undefined) return;
      await sleep(50);
    }
    throw new Error(`node ${this.id} did not answer within ${timeoutMs} ms:\n${this.logTail()}`);
  }

  async status(): Promise<ReplicaNodeStatus | undefined> {
    if (!this.running) return undefined;
    try {
      const answer = await httpCall(this.httpPort, 'GET', '/status', undefined, 1000);
      return answer.status === 200 ? (answer.body as ReplicaNodeStatus) : undefined;
    } catch {
      return undefined;
    }
  }

  kill(signal: NodeJS.Signals): void {
    if (this.running) this.child!.kill(signal);
  }

  /** The exit code, or undefined when it did not exit in time. */
  async waitExit(timeoutMs: number): Promise<number | null | undefined> {
    if (this.exited === undefined) return undefined;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolvePromise) => {
      timer = setTimeout(() => resolvePromise(undefined), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      // A pending timer would keep the demo process alive after its last line.
      clearTimeout(timer);
    }
  }

  logTail(lines = 15): string {
    try {
      return readFileSync(this.logPath, 'utf8').trimEnd().split('\n').slice(-lines).map((line) => `    | ${line}`).join('\n');
    } catch {
      return '    (no log)';
    }
  }
}

/** Where the built cli-entry.js is (next to this file once compiled). */
export function nodeEntryPath(): string {
  const here = fileURLToPath(new URL('./cli-entry.js', import.meta.url));
  if (existsSync(here)) return here;
  // Running from the TypeScript sources (a test runner): use the build.
  const built = resolve(fileURLToPath(new URL('../../dist/lib/node/cli-entry.js', import.meta.url)));
  if (existsSync(built)) return built;
  throw new Error(`cannot find the node entry point (${here}); build with npm run build`);
}

export async function allStatuses(processes: Map<number, NodeProcess>): Promise<(ReplicaNodeStatus | undefined)[]> {
  return Promise.all([...processes.values()].map((node) => node.status()));
}

export async function waitUntil<T>(timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await sleep(100);
  }
  return undefined;
}

/** A leader with a term above `aboveTerm` that every running node agrees on. */
export function waitForLeader(processes: Map<number, NodeProcess>, aboveTerm: number, timeoutMs: number): Promise<ReplicaNodeStatus | undefined> {
  return waitUntil(timeoutMs, async () => {
    const statuses = (await allStatuses(processes)).filter((status): status is ReplicaNodeStatus => status !== undefined);
    const leader = statuses.find((status) => status.raftState === 'StateLeader' && status.term > aboveTerm);
    if (leader === undefined) return undefined;
    return statuses.every((status) => status.lead === leader.id) ? leader : undefined;
  });
}

/** Puts with retries: follows 503 {lead} answers, tries another node when one does not answer. */
export class ClusterClient {
  constructor(
    private readonly processes: Map<number, NodeProcess>,
    private readonly leader: () => number,
    private readonly setLeader: (id: number) => void,
  ) {}

  async put(key: string, value: string, via?: number, timeoutMs = 15_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let target = via ?? this.leader();
    let lastError = '';
    while (Date.now() < deadline) {
      const node = this.processes.get(target);
      if (node !== undefined && node.running) {
        try {
          const answer = await httpCall(node.httpPort, 'PUT', `/kv/${encodeURIComponent(key)}`, value);
          const body = answer.body as { index?: number; lead?: number; error?: string };
          if (answer.status === 200) {
            // The answer names the leader the node follows: aim there next time.
            if (typeof body.lead === 'number' && body.lead !== 0 && body.lead !== this.leader()) this.setLeader(body.lead);
            return body.index ?? 0;
          }
          lastError = `node ${target}: ${answer.status} ${body.error ?? answer.text}`;
          if (typeof body.lead === 'number' && body.lead !== 0 && body.lead !== target) {
            target = body.lead;
            this.setLeader(body.lead);
            continue;
          }
        } catch (error) {
          lastError = `node ${target}: ${(error as Error).message}`;
        }
      }
      // No answer or no leader known there: wait a little and try the next running node.
      await sleep(100);
      const running = [...this.processes.values()].filter((candidate) => candidate.running).map((candidate) => candidate.id);
      target = running[(running.indexOf(target) + 1) % running.length] ?? target;
    }
    throw new Error(`put ${key} was not acknowledged within ${timeoutMs} ms (${lastError})`);
  }

  async putMany(count: number, prefix: string, acknowledged: Map<string, string>, say: (line: string) => void, viaFollowers: boolean): Promise<void> {
    const started = Date.now();
    let lastIndex = 0;
    let forwarded = 0;
    for (let i = 0; i < count; i++) {
      const key = `${prefix}/key-${String(i).padStart(3, '0')}`;
      const value = `v${i}-${randomBytes(3).toString('hex')}`;
      let via: number | undefined;
      if (viaFollowers && i % 4 === 3) {
        via = [...this.processes.values()].find((node) => node.running && node.id !== this.leader())?.id;
        if (via !== undefined) forwarded++;
      }
      lastIndex = await this.put(key, value, via);
      acknowledged.set(key, value);
    }
    const seconds = (Date.now() - started) / 1000;
    say(
      `      ${count}/${count} puts acknowledged (${prefix}/key-000…${String(count - 1).padStart(3, '0')}), last at index ${lastIndex}, ` +
        `${seconds.toFixed(1)} s${forwarded > 0 ? `; ${forwarded} went through a follower` : ''}`,
    );
  }
}
