/**
 * The migration bench (issue 17): a pre-Raft tree the size of a real Gitaly partition (1 M
 * entries in the full bench, 20,000 with --quick) is written by lib/fixture.ts, then
 * `replicalog migrate` and `replicalog verify` run on it as child processes, as an operator runs
 * them. For each: wall time, entries/s and peak RSS.
 *
 * Peak RSS is the child's own `process.resourceUsage().maxRSS` (getrusage's ru_maxrss), written
 * to a file by a preloaded module (`node --import data:…`) when the child exits: it works
 * wherever Node does (no /usr/bin/time, no /proc polling that can miss the last peak).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writePreRaftStorage, writePreRaftWal } from '../lib/fixture.js';
import { removeTree } from './bench-lib.js';

export interface ChildMeasurement {
  command: string;
  seconds: number;
  entriesPerSecond: number;
  /** Peak resident set size of the child process, in bytes. */
  peakRssBytes: number;
}

export interface MigrationBenchResult {
  entries: number;
  /** Time to write the fixture (not part of the migration; shown for scale). */
  fixtureSeconds: number;
  payloadFiles: number;
  /** 1-minute load average before and after (the figures are only comparable on a quiet machine). */
  loadavg: { start: number; end: number };
  migrate: ChildMeasurement;
  verify: ChildMeasurement;
}

export interface MigrationBenchOptions {
  /** Scratch root; the tree is written in a new directory under it and removed at the end. */
  root: string;
  entries: number;
  log?: (line: string) => void;
  /** Told the tree's directory as soon as it exists (bench.ts removes it on Ctrl-C). */
  onRunDirectory?: (path: string) => void;
}

/** Entries of the migration tree: 1 M in the full bench, 20,000 with --quick, 300 with --tiny. */
export const MIGRATION_ENTRIES = { full: 1_000_000, quick: 20_000, tiny: 300 } as const;

/** bin/replicalog.js, from scripts/ (vitest) or from dist/scripts/ (npm run bench). */
export function replicalogBin(): string {
  for (const relative of ['../bin/replicalog.js', '../../bin/replicalog.js']) {
    const candidate = fileURLToPath(new URL(relative, import.meta.url));
    if (existsSync(candidate)) return candidate;
  }
  throw new Error('bench: bin/replicalog.js not found next to scripts/ or dist/scripts/');
}

// Written by the child on exit: its peak RSS in bytes (ru_maxrss is in KiB on Linux).
const RSS_PRELOAD =
  "data:text/javascript,import{writeFileSync}from'node:fs';" +
  "process.on('exit',()=>writeFileSync(process.env.REPLICALOG_BENCH_RSS_FILE,String(process.resourceUsage().maxRSS*1024)))";

/** Runs `replicalog <args>` as a child; resolves with its wall time, stdout and peak RSS. */
export async function measureChild(args: readonly string[], rssFile: string): Promise<{ seconds: number; stdout: string; peakRssBytes: number }> {
  rmSync(rssFile, { force: true });
  const started = process.hrtime.bigint();
  const child = spawn(process.execPath, ['--import', RSS_PRELOAD, replicalogBin(), ...args], {
    env: { ...process.env, REPLICALOG_BENCH_RSS_FILE: rssFile },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-4000)));
  const status = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve(code));
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (status !== 0) throw new Error(`bench: replicalog ${args.join(' ')} exited ${String(status)}: ${stderr.trim()}`);
  const peakRssBytes = Number(readFileSync(rssFile, 'utf8'));
  if (!Number.isFinite(peakRssBytes) || peakRssBytes <= 0) throw new Error(`bench: no peak RSS from replicalog ${args[0] ?? ''}`);
  return { seconds, stdout, peakRssBytes };
}

export async function runMigrationBench(options: MigrationBenchOptions): Promise<MigrationBenchResult> {
  const log = options.log ?? (() => {});
  mkdirSync(options.root, { recursive: true });
  const runDir = mkdtempSync(join(options.root, 'migration-'));
  options.onRunDirectory?.(runDir);
  const dir = join(runDir, 'tree');
  const rssFile = join(runDir, 'peak-rss');
  const loadStart = loadavg()[0]!;
  try {
    log(`migration: writing a ${options.entries}-entry pre-Raft tree…`);
    const fixtureStarted = process.hrtime.bigint();
    const summary = writePreRaftWal({ dir, entries: options.entries });
    const fixtureSeconds = Number(process.hrtime.bigint() - fixtureStarted) / 1e9;
    log(`migration: tree written in ${fixtureSeconds.toFixed(1)} s (${summary.payloadFiles} payload files); replicalog migrate…`);

    // Human output, as an operator runs it (--json lists every entry, which is not what is measured here).
    const migrated = await measureChild(['migrate', dir, '--quiet'], rssFile);
    const backfilled = /backfilled (\d+) entr/.exec(migrated.stdout)?.[1];
    if (Number(backfilled) !== options.entries) {
      throw new Error(`bench: migrate backfilled ${String(backfilled)} entries, expected ${options.entries}: ${migrated.stdout.trim()}`);
    }
    log(`migration: migrate ${migrated.seconds.toFixed(1)} s, ${Math.round(options.entries / migrated.seconds)} entries/s, peak RSS ${mebibytes(migrated.peakRssBytes)}; replicalog verify…`);

    const verified = await measureChild(['verify', dir, '--json'], rssFile);
    const verifyReport = JSON.parse(verified.stdout) as { ok?: unknown; problems?: unknown[] };
    if (verifyReport.ok !== true) {
      throw new Error(`bench: verify found problems after migrate: ${JSON.stringify(verifyReport.problems?.slice(0, 3))}`);
    }
    log(`migration: verify ${verified.seconds.toFixed(1)} s, ${Math.round(options.entries / verified.seconds)} entries/s, peak RSS ${mebibytes(verified.peakRssBytes)}; removing the tree…`);

    const measurement = (command: string, run: { seconds: number; peakRssBytes: number }): ChildMeasurement => ({
      command,
      seconds: run.seconds,
      entriesPerSecond: options.entries / run.seconds,
      peakRssBytes: run.peakRssBytes,
    });
    return {
      entries: options.entries,
      fixtureSeconds,
      payloadFiles: summary.payloadFiles,
      loadavg: { start: loadStart, end: loadavg()[0]! },
      migrate: measurement('replicalog migrate --quiet', migrated),
      verify: measurement('replicalog verify --json', verified),
    };
  } finally {
    removeTree(runDir);
  }
}

const mebibytes = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

export function formatMigration(result: MigrationBenchResult): string {
  const mib = mebibytes;
  const row = (name: string, run: ChildMeasurement) =>
    `${name.padEnd(9)} ${run.seconds.toFixed(1).padStart(8)} s ${Math.round(run.entriesPerSecond).toString().padStart(9)} entries/s   peak RSS ${mib(run.peakRssBytes)}`;
  return [
    `migration of a ${result.entries}-entry pre-Raft tree (${result.payloadFiles} payload files; written in ${result.fixtureSeconds.toFixed(1)} s; ` +
      `load average ${result.loadavg.start.toFixed(2)} → ${result.loadavg.end.toFixed(2)})`,
    row('migrate', result.migrate),
    row('verify', result.verify),
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// A storage of many small partitions (issue 19): `replicalog migrate <storage>` opens, backfills
// and closes each partition; its time and peak RSS at 1,000 and 10,000 partitions.

export interface StorageMigrationBenchResult {
  partitions: number;
  entriesPerPartition: number;
  entries: number;
  fixtureSeconds: number;
  loadavg: { start: number; end: number };
  migrate: ChildMeasurement & { partitionsPerSecond: number };
  /** A second run: every partition opened and skipped (what a resumed run pays for finished partitions). */
  rerun: ChildMeasurement & { partitionsPerSecond: number };
  verify: ChildMeasurement & { partitionsPerSecond: number };
}

export interface StorageMigrationBenchOptions {
  root: string;
  partitions: number;
  /** Entries per partition (default 4: small partitions). */
  entriesPerPartition?: number;
  log?: (line: string) => void;
  onRunDirectory?: (path: string) => void;
}

/** Partition counts of the storage bench: 1,000 and 10,000 in the full run, 20 with --tiny. */
export const STORAGE_PARTITIONS = { full: [1_000, 10_000], tiny: [20] } as const;

export async function runStorageMigrationBench(options: StorageMigrationBenchOptions): Promise<StorageMigrationBenchResult> {
  const log = options.log ?? (() => {});
  const entriesPerPartition = options.entriesPerPartition ?? 4;
  mkdirSync(options.root, { recursive: true });
  const runDir = mkdtempSync(join(options.root, 'storage-migration-'));
  options.onRunDirectory?.(runDir);
  const dir = join(runDir, 'storage');
  const rssFile = join(runDir, 'peak-rss');
  const loadStart = loadavg()[0]!;
  try {
    log(`storage migration: writing ${options.partitions} pre-Raft partitions of ${entriesPerPartition} entries…`);
    const fixtureStarted = process.hrtime.bigint();
    const summary = writePreRaftStorage({ dir, partitions: options.partitions, entriesPerPartition });
    const fixtureSeconds = Number(process.hrtime.bigint() - fixtureStarted) / 1e9;
    const measurement = (command: string, run: { seconds: number; peakRssBytes: number }) => ({
      command,
      seconds: run.seconds,
      entriesPerSecond: summary.entries / run.seconds,
      partitionsPerSecond: options.partitions / run.seconds,
      peakRssBytes: run.peakRssBytes,
    });
    log(`storage migration: written in ${fixtureSeconds.toFixed(1)} s; replicalog migrate…`);
    const migrated = await measureChild(['migrate', dir, '--quiet', '--json'], rssFile);
    const report = JSON.parse(migrated.stdout) as { backfilled?: unknown; migrated?: unknown };
    if (report.backfilled !== summary.entries || report.migrated !== options.partitions) {
      throw new Error(`bench: migrate backfilled ${String(report.backfilled)} entries in ${String(report.migrated)} partitions, expected ${summary.entries} in ${options.partitions}`);
    }
    log(`storage migration: migrate ${migrated.seconds.toFixed(1)} s, peak RSS ${mebibytes(migrated.peakRssBytes)}; again (every partition skipped)…`);
    const rerun = await measureChild(['migrate', dir, '--quiet', '--json'], rssFile);
    const rerunReport = JSON.parse(rerun.stdout) as { alreadyMigrated?: unknown };
    if (rerunReport.alreadyMigrated !== options.partitions) throw new Error(`bench: the second migrate skipped ${String(rerunReport.alreadyMigrated)} partitions, expected ${options.partitions}`);
    log(`storage migration: rerun ${rerun.seconds.toFixed(1)} s; replicalog verify…`);
    const verified = await measureChild(['verify', dir, '--json', '--quiet'], rssFile);
    const verifyReport = JSON.parse(verified.stdout) as { ok?: unknown; partitions?: unknown; problems?: unknown[] };
    if (verifyReport.ok !== true || verifyReport.partitions !== options.partitions) {
      throw new Error(`bench: verify after migrate: ${JSON.stringify(verifyReport.problems?.slice(0, 3))}`);
    }
    log(`storage migration: verify ${verified.seconds.toFixed(1)} s, peak RSS ${mebibytes(verified.peakRssBytes)}; removing the storage…`);
    return {
      partitions: options.partitions,
      entriesPerPartition,
      entries: summary.entries,
      fixtureSeconds,
      loadavg: { start: loadStart, end: loadavg()[0]! },
      migrate: measurement('replicalog migrate <storage> --quiet --json', migrated),
      rerun: measurement('replicalog migrate <storage> --quiet --json (again)', rerun),
      verify: measurement('replicalog verify <storage> --json', verified),
    };
  } finally {
    removeTree(runDir);
  }
}

export function formatStorageMigration(result: StorageMigrationBenchResult): string {
  const row = (name: string, run: ChildMeasurement & { partitionsPerSecond: number }) =>
    `${name.padEnd(9)} ${run.seconds.toFixed(1).padStart(8)} s ${Math.round(run.partitionsPerSecond).toString().padStart(7)} partitions/s ${Math.round(run.entriesPerSecond).toString().padStart(7)} entries/s   peak RSS ${mebibytes(run.peakRssBytes)}`;
  return [
    `storage of ${result.partitions} pre-Raft partitions × ${result.entriesPerPartition} entries (written in ${result.fixtureSeconds.toFixed(1)} s; ` +
      `load average ${result.loadavg.start.toFixed(2)} → ${result.loadavg.end.toFixed(2)})`,
    row('migrate', result.migrate),
    row('again', result.rerun),
    row('verify', result.verify),
  ].join('\n');
}
