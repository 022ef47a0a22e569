/**
 * Where ReplicaLogStore's time goes (evidence for the bench report; nothing here is timed in a
 * test). Wraps the store's injectable FileSystem to count and time every call:
 *
 *   node dist/scripts/bench-profile.js append [--batches 1,16,256] [--calls N]
 *   node dist/scripts/bench-profile.js open [--entries N]
 *
 * append: per append() call, the wall time, how many file-system calls of each kind it made
 *         (each is one or more libuv thread-pool round trips) and their summed latency.
 * open:   the open() wall time split into readdir, RAFT reads (readFileSync) and the rest
 *         (decode, index, cache).
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ReplicaLogStore } from '../lib/replica-log-store.js';
import { EntryType, type Entry } from '../lib/types.js';
import { nodeFileSystem, type FileSystem } from '../lib/wal/file-system.js';
import { buildTree, payload } from './bench-lib.js';

interface CallStats {
  count: number;
  ms: number;
}

/** A FileSystem that forwards to node's and records count and latency per call kind. */
export function timedFileSystem(stats: Map<string, CallStats>): FileSystem {
  const record = (kind: string, ms: number) => {
    const entry = stats.get(kind) ?? { count: 0, ms: 0 };
    entry.count++;
    entry.ms += ms;
    stats.set(kind, entry);
  };
  const wrapped: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(nodeFileSystem) as [string, (...args: unknown[]) => unknown][]) {
    wrapped[name] = (...args: unknown[]) => {
      const started = performance.now();
      const result = fn(...args);
      if (result instanceof Promise) {
        return result.finally(() => record(name, performance.now() - started));
      }
      record(name, performance.now() - started);
      return result;
    };
  }
  return wrapped as unknown as FileSystem;
}

function table(stats: Map<string, CallStats>, calls: number): string {
  return [...stats.entries()]
    .sort((a, b) => b[1].ms - a[1].ms)
    .map(([kind, s]) => `    ${kind.padEnd(12)} ${(s.count / calls).toFixed(1).padStart(7)} calls/append  ${(s.ms / calls).toFixed(3).padStart(9)} ms/append summed  ${(s.ms / s.count).toFixed(3).padStart(7)} ms/call`)
    .join('\n');
}

async function profileAppend(root: string, batches: number[], calls: number): Promise<void> {
  const data = payload(1024);
  for (const batch of batches) {
    const dir = join(root, `append-${batch}`);
    const stats = new Map<string, CallStats>();
    const store = await ReplicaLogStore.open({ dir, fileSystem: timedFileSystem(stats) });
    // one warm-up call, not counted
    const entriesFrom = (first: number): Entry[] => Array.from({ length: batch }, (_, k) => ({ type: EntryType.Normal, term: 1, index: first + k, data }));
    await store.append(entriesFrom(1));
    stats.clear();
    const walls: number[] = [];
    for (let call = 0; call < calls; call++) {
      const started = performance.now();
      await store.append(entriesFrom(store.lastIndex() + 1));
      walls.push(performance.now() - started);
    }
    await store.close();
    rmSync(dir, { recursive: true, force: true });
    walls.sort((a, b) => a - b);
    const med = walls[walls.length >> 1]!;
    process.stdout.write(
      `append B=${batch}: median ${med.toFixed(2)} ms/call = ${((med * 1000) / batch).toFixed(0)} µs/entry (${calls} calls, p10 ${walls[Math.floor(walls.length * 0.1)]!.toFixed(2)} p90 ${walls[Math.floor(walls.length * 0.9)]!.toFixed(2)})\n${table(stats, calls)}\n`,
    );
  }
}

async function profileOpen(root: string, entries: number): Promise<void> {
  const dir = join(root, 'open');
  let started = performance.now();
  await buildTree({ dir, entries, payloadBytes: 1024, term: (index) => 1 + Math.floor(index / 1000) });
  process.stdout.write(`built ${entries} entries in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  for (let rep = 0; rep < 3; rep++) {
    const stats = new Map<string, CallStats>();
    started = performance.now();
    const store = await ReplicaLogStore.open({ dir, fileSystem: timedFileSystem(stats) });
    const wall = performance.now() - started;
    await store.close();
    const io = [...stats.values()].reduce((sum, s) => sum + s.ms, 0);
    process.stdout.write(
      `open ${entries}: ${(wall / 1000).toFixed(3)} s = ${((wall * 1000) / entries).toFixed(1)} µs/entry; file-system calls ${(io / 1000).toFixed(3)} s, the rest (decode, index, cache, LevelDB) ${((wall - io) / 1000).toFixed(3)} s\n${table(stats, 1).replaceAll('calls/append', 'calls').replaceAll('ms/append summed', 'ms summed')}\n`,
    );
  }
  rmSync(dir, { recursive: true, force: true });
}

async function main(argv: string[]): Promise<void> {
  const mode = argv[0];
  const option = (name: string, fallback: string) => {
    const at = argv.indexOf(name);
    return at >= 0 && argv[at + 1] !== undefined ? argv[at + 1]! : fallback;
  };
  const base = resolve(option('--root', '.bench-scratch'));
  mkdirSync(base, { recursive: true });
  const root = mkdtempSync(join(base, 'profile-'));
  try {
    if (mode === 'append') await profileAppend(root, option('--batches', '1,16,256').split(',').map(Number), Number(option('--calls', '20')));
    else if (mode === 'open') await profileOpen(root, Number(option('--entries', '100000')));
    else process.stderr.write('usage: bench-profile.js append|open [--batches 1,16,256] [--calls N] [--entries N] [--root DIR]\n');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

await main(process.argv.slice(2));
