/**
 * `replicalog node`: flag parsing, and a one-node cluster run as a process (--bootstrap on an
 * empty directory seeds it; PUT/GET over HTTP; SIGTERM stops it cleanly and the data stays).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError } from 'commander';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { formatPeers, parsePeers, parseRatio } from '../../lib/cli/node-command.js';
import { freePort } from '../../lib/node/ports.js';
import { recoverStateFromStorage } from '../../lib/node/state-machine.js';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { clusterEntry as entry, ensureBuilt } from './build.js';
const root = mkdtempSync(join(tmpdir(), 'replicalog-node-command-'));
let child: ChildProcess | undefined;

beforeAll(ensureBuilt, 120_000);

afterAll(() => {
  if (child !== undefined && child.exitCode === null) child.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

it('parses --peers', () => {
  const peers = parsePeers('1=127.0.0.1:7001,2=127.0.0.1:7002');
  expect([...peers]).toEqual([
    [1, { host: '127.0.0.1', port: 7001 }],
    [2, { host: '127.0.0.1', port: 7002 }],
  ]);
  expect(formatPeers(peers)).toBe('1=127.0.0.1:7001,2=127.0.0.1:7002');
  expect(() => parsePeers('1=127.0.0.1')).toThrow(InvalidArgumentError);
  expect(() => parsePeers('0=127.0.0.1:1')).toThrow(/positive/);
  expect(() => parsePeers('1=a:1,1=b:2')).toThrow(/twice/);
  expect(() => parsePeers('1=a:70000')).toThrow(/port/);
});

it.each([
  { given: '1', ratio: 1 },
  { given: '0', ratio: 0 },
  { given: '0.5', ratio: 0.5 },
  { given: '1000', ratio: 1000 },
])('parses --snapshot-log-ratio $given', ({ given, ratio }) => {
  expect(parseRatio(given)).toBe(ratio);
});

it.each(['-1', 'abc', '1e3', '', '.5', '1001', 'Infinity', 'NaN'])('refuses --snapshot-log-ratio %j', (given) => {
  expect(() => parseRatio(given)).toThrow(InvalidArgumentError);
});

it('runs a one-node cluster until SIGTERM', async () => {
  const dir = join(root, 'single');
  const raftPort = await freePort();
  child = spawn(process.execPath, [entry, 'node', '--id', '1', '--dir', dir, '--peers', `1=127.0.0.1:${raftPort}`, '--bootstrap', '--tick-ms', '20'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const ready = await new Promise<string>((resolvePromise, reject) => {
    let stdout = '';
    child!.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stdout.includes('\n')) resolvePromise(stdout);
    });
    child!.once('exit', () => reject(new Error(`exited: ${stderr}`)));
  });
  const match = /^ready id=1 raft=127\.0\.0\.1:\d+ http=127\.0\.0\.1:(\d+) pid=\d+/.exec(ready);
  expect(match, ready).not.toBeNull();
  const base = `http://127.0.0.1:${match![1]}`;
  // A single voter elects itself after an election timeout.
  let answer: Response | undefined;
  for (let attempt = 0; attempt < 100; attempt++) {
    answer = await fetch(`${base}/kv/greeting`, { method: 'PUT', body: 'hello' });
    if (answer.status === 200) break;
    await new Promise((resolvePromise) => setTimeout(resolvePromise, 50));
  }
  expect(answer!.status).toBe(200);
  expect(await (await fetch(`${base}/kv/greeting`)).text()).toBe('hello');
  expect(stderr).toContain('bootstrap: seeded the cluster with an empty state');

  const exitCode = await new Promise<number | null>((resolvePromise) => {
    child!.once('exit', (code) => resolvePromise(code));
    child!.kill('SIGTERM');
  });
  expect(exitCode, stderr).toBe(0);
  const store = await ReplicaLogStore.open({ dir });
  try {
    expect(recoverStateFromStorage(store).get('greeting')).toBe('hello');
  } finally {
    await store.close();
  }
}, 30_000);

/** Runs `replicalog node …` expecting it to refuse at once; returns its exit code and stderr. */
function refusedRun(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const run = spawn(process.execPath, [entry, 'node', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    run.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const timer = setTimeout(() => run.kill('SIGKILL'), 20_000);
    run.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

it.each([
  {
    name: 'a non-loopback peer without TLS',
    args: ['--id', '1', '--peers', '1=127.0.0.1:1,2=192.0.2.10:7002', '--bootstrap'],
    says: /node 2 \(192\.0\.2\.10\) not on loopback, and without TLS nothing authenticates peers/,
  },
  {
    name: 'half of the peer TLS files',
    args: ['--id', '1', '--peers', '1=127.0.0.1:1', '--peer-cert', '/nonexistent.pem'],
    says: /--peer-cert, --peer-key and --peer-ca go together/,
  },
  {
    name: 'an empty directory without --bootstrap',
    args: ['--id', '1', '--peers', '1=127.0.0.1:1'],
    says: /has no raft state yet \(an empty store\), and --bootstrap was not given/,
  },
  {
    name: 'an empty storage of 3 partitions without --bootstrap',
    args: ['--id', '1', '--peers', '1=127.0.0.1:1', '--partitions', '3'],
    says: /partitions 1, 2, 3 of the storage .* have no raft state yet, and --bootstrap was not given/,
  },
  {
    name: '--partitions 0',
    args: ['--id', '1', '--peers', '1=127.0.0.1:1', '--partitions', '0'],
    says: /option '--partitions <n>' argument '0' is invalid/,
  },
])('refuses $name with exit 2 and says what to do', async ({ args, says }) => {
  const dir = join(root, `refused-${Math.random().toString(36).slice(2)}`);
  const result = await refusedRun(['--dir', dir, ...args]);
  expect(result.code).toBe(2);
  expect(result.stderr).toMatch(says);
});
