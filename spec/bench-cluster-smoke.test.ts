/**
 * Smoke test of `npm run bench:cluster` (scripts/bench-cluster-lib.ts) in a tiny configuration:
 * replicalog alone (etcd is never needed here), 3 nodes, C=1, a 1 s window. It checks that the
 * harness produces a well-formed result and leaves no process and no directory behind. No timing
 * assertions: speed is measured by the benchmark, never in a test.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  defaultConfig,
  etcdArguments,
  findEtcd,
  flushCounterFor,
  formatTable,
  jsonLine,
  median,
  percentile,
  processCpuSeconds,
  replicalogNodeArguments,
  runClusterBench,
  ServerProcesses,
  type ClusterBenchResult,
} from '../scripts/bench-cluster-lib.js';
import { makeTempDir, removeTempDirs } from './helpers/temp-dir.js';
import { ensureBuilt } from './node/build.js';

beforeAll(async () => {
  await ensureBuilt();
}, 120_000);
afterEach(() => removeTempDirs());

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('bench:cluster pieces', () => {
  it.each([
    { values: [5], fraction: 0.5, expected: 5 },
    { values: [1, 2, 3, 4], fraction: 0.5, expected: 2 },
    { values: [1, 2, 3, 4], fraction: 0.99, expected: 4 },
    { values: Array.from({ length: 100 }, (_, i) => i + 1), fraction: 0.99, expected: 99 },
    { values: Array.from({ length: 100 }, (_, i) => i + 1), fraction: 0.5, expected: 50 },
  ])('percentile($fraction) of $values.length sorted values is $expected (nearest rank)', ({ values, fraction, expected }) => {
    expect(percentile(values, fraction)).toBe(expected);
  });

  it.each([
    { values: [3], expected: 3 },
    { values: [3, 1, 2], expected: 2 },
    { values: [4, 1, 3, 2], expected: 2.5 },
  ])('median of $values is $expected', ({ values, expected }) => {
    expect(median(values)).toBe(expected);
  });

  it('reads this process\'s CPU time from /proc and finds the flush counter or says why not', () => {
    const cpu = processCpuSeconds(process.pid);
    expect(typeof cpu === 'number' && cpu > 0).toBe(true);
    expect(processCpuSeconds(2 ** 31 - 1)).toBeUndefined(); // no such process
    const counter = flushCounterFor(makeTempDir('replicalog-bench-cluster-test-'));
    if (counter.available) expect(counter.device).toMatch(/^[a-z0-9_.-]+$/i);
    else expect(counter.reason.length).toBeGreaterThan(0);
  });

  it('gives the servers loopback addresses only', () => {
    const node = replicalogNodeArguments({ id: 2, dir: '/d/node-2', peers: '1=127.0.0.1:7001,2=127.0.0.1:7002', httpPort: 8002, clusterId: 'c' }, ['--snapshot-every', '1000']);
    expect(node.slice(0, 1)).toEqual(['node']);
    expect(node[node.indexOf('--peers') + 1]).toBe('1=127.0.0.1:7001,2=127.0.0.1:7002');
    expect(node[node.indexOf('--http-port') + 1]).toBe('8002');
    expect(node).toContain('--bootstrap');
    expect(node.slice(-2)).toEqual(['--snapshot-every', '1000']);
    const etcd = etcdArguments({ name: 'e1', dir: '/d/e1', clientPort: 1, peerPort: 2, initialCluster: 'e1=http://127.0.0.1:2', token: 't' });
    const urls = etcd.filter((argument) => argument.includes('http'));
    expect(urls.length).toBe(5);
    for (const url of urls) expect(url).toMatch(/^(e1=)?http:\/\/127\.0\.0\.1:[0-9]+$/);
  });

  it('says why when the etcd binary given does not exist', () => {
    const found = findEtcd('/nonexistent/etcd');
    expect('reason' in found && found.reason).toContain('/nonexistent/etcd');
  });
});

describe('bench:cluster (tiny: replicalog alone, 3 nodes, C=1, 1 s)', () => {
  it('produces a well-formed result, a table and a JSON line, and leaves nothing behind', async () => {
    const root = makeTempDir('replicalog-bench-cluster-test-');
    let runDirectory = '';
    const processes = new ServerProcesses();
    const config = {
      ...defaultConfig(),
      root,
      cases: [{ nodes: 3, concurrency: 1 }],
      runs: 1,
      warmupSeconds: 0.2,
      seconds: 1,
      etcd: 'off' as const,
      onRunDirectory: (path: string) => (runDirectory = path),
    };
    let result: ClusterBenchResult;
    try {
      result = await runClusterBench(config, processes);
    } finally {
      processes.killAllNow();
    }

    expect(result.cases.map((row) => row.name)).toEqual(['3 nodes, C=1']);
    const row = result.cases[0]!;
    expect(row.etcd).toBeNull();
    expect(row.ratio).toBeNull();
    expect(result.etcd.available).toBe(false);
    const replicalog = row.replicalog;
    expect(replicalog.samples).toHaveLength(1);
    const sample = replicalog.samples[0]!;
    expect(sample).toMatchObject({ system: 'replicalog', nodes: 3, concurrency: 1, errors: 0 });
    expect(sample.puts).toBeGreaterThan(0);
    expect(sample.seconds).toBeGreaterThan(0.9);
    expect(sample.putsPerSecond).toBeCloseTo(sample.puts / sample.seconds, 6);
    expect(replicalog.putsPerSecond).toBe(sample.putsPerSecond); // the median of one run
    expect(replicalog.p50Ms).toBeGreaterThan(0);
    expect(replicalog.p99Ms).toBeGreaterThanOrEqual(replicalog.p50Ms);
    // Three servers replicating and fsyncing every put use some CPU.
    expect(replicalog.cpuSecondsPerPut !== null && replicalog.cpuSecondsPerPut > 0).toBe(true);
    if (result.flushCounter.available) {
      // Each acknowledged put was made durable on a quorum: at least one device flush.
      expect(replicalog.flushesPerPut !== null && replicalog.flushesPerPut > 0).toBe(true);
    } else {
      expect(replicalog.flushesPerPut).toBeNull();
    }

    // Nothing left: every server exited, the data directories are gone.
    expect(processes.started).toHaveLength(3);
    for (const server of processes.started) expect(processAlive(server.pid!), `${server.name} (pid ${server.pid})`).toBe(false);
    expect(runDirectory.startsWith(join(root, 'replicalog-bench-cluster-'))).toBe(true);
    expect(existsSync(runDirectory)).toBe(false);

    const table = formatTable(result);
    expect(table).toMatch(/\| 3 nodes, C=1 \| [0-9,]+ \([0-9.]+ \/ [0-9.]+\)/);
    expect(table).toContain('etcd not measured');
    const json = JSON.parse(jsonLine(result)) as ClusterBenchResult;
    expect(jsonLine(result)).not.toContain('\n');
    expect(json.cases[0]!.replicalog.putsPerSecond).toBe(replicalog.putsPerSecond);
    expect(json.config).toMatchObject({ runs: 1, seconds: 1, valueBytes: 1024 });
  }, 25_000);
});
