/**
 * What each durable step of the on-disk format costs on this disk, one call at a time with
 * synchronous calls (evidence for the README's performance section; nothing here is a test):
 *
 *   node dist/scripts/bench-steps.js [--root DIR] [--count N]
 *
 * Rows: appending 1 KiB to one file + fdatasync (raw1's unit); creating a new 1 KiB file +
 * fsync (the unit the format cannot avoid: every entry is new files); a new name in a directory
 * + fsync of that directory; and the whole chain one entry needs (mkdir, MANIFEST and RAFT created
 * and fsynced, the entry directory fsynced, renamed into wal/, wal/ fsynced).
 */
import { closeSync, fdatasyncSync, mkdirSync, mkdtempSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createSynced, fsyncPath } from './bench-lib.js';

function option(name: string, fallback: string): string {
  const position = process.argv.indexOf(name);
  return position >= 0 && process.argv[position + 1] !== undefined ? process.argv[position + 1]! : fallback;
}

/** Microseconds per call of `step`, median of three rounds of `count` calls. */
function microseconds(count: number, step: (call: number) => void): number {
  const rounds: number[] = [];
  let call = 0;
  for (let round = 0; round < 3; round++) {
    const started = performance.now();
    for (let k = 0; k < count; k++) step(call++);
    rounds.push(((performance.now() - started) * 1000) / count);
  }
  return rounds.sort((a, b) => a - b)[1]!;
}

function main(): void {
  const base = resolve(option('--root', '.bench-scratch'));
  const count = Number(option('--count', '200'));
  mkdirSync(base, { recursive: true });
  const root = mkdtempSync(join(base, 'steps-'));
  const data = new Uint8Array(1024).fill(7);
  try {
    const raw = openSync(join(root, 'raw'), 'w');
    const rows: [string, number][] = [];
    rows.push(['append 1 KiB to one file + fdatasync (raw1)', microseconds(count, () => (writeSync(raw, data), fdatasyncSync(raw)))]);
    closeSync(raw);
    const files = join(root, 'files');
    mkdirSync(files);
    rows.push(['create a new 1 KiB file + fsync', microseconds(count, (call) => createSynced(join(files, `f${call}`), data))]);
    rows.push(['mkdir a new name + fsync of its parent directory', microseconds(count, (call) => (mkdirSync(join(files, `d${call}`)), fsyncPath(files)))]);
    const staging = join(root, 'staging');
    const wal = join(root, 'wal');
    mkdirSync(staging);
    mkdirSync(wal);
    rows.push([
      'one entry, whole chain (mkdir, MANIFEST+RAFT fsynced, dir fsync, rename, wal/ fsync)',
      microseconds(count, (call) => {
        const name = String(call).padStart(13, '0');
        const directory = join(staging, name);
        mkdirSync(directory, { mode: 0o700 });
        createSynced(join(directory, 'RAFT'), data);
        createSynced(join(directory, 'MANIFEST'), new Uint8Array(0));
        fsyncPath(directory);
        renameSync(directory, join(wal, name));
        fsyncPath(wal);
      }),
    ]);
    const raw1 = rows[0]![1];
    for (const [name, value] of rows) {
      process.stdout.write(`${name.padEnd(88)} ${value.toFixed(0).padStart(6)} µs  ${(value / raw1).toFixed(1).padStart(5)}× raw1\n`);
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

main();
