/**
 * `npm run powerloss -- --seeds N [--samples K] [--exhaustive E] [--barriers]`: the power-loss
 * crash-state enumerator (spec/powerloss/) over every write operation (of one store, then of
 * several partitions of one storage writing at once), N seeds of sampled
 * survivor sets (K per crash point, every subset while there are at most E uncertain changes),
 * then every control (one barrier dropped: each must fail). Prints operations x crash states x
 * failures; exits 1 on any failure or on a control that does not fail.
 *
 * --barriers: instead, for every operation, drops each fsync of its trace in turn and says
 * whether the enumerator then finds a failing state: a barrier whose loss fails nothing is one
 * the model does not need (the write-path comment in lib/wal/log-manager.ts says why each
 * remaining one is needed).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Command } from 'commander';
import { cases, controls, enumerate, scratchBase } from '../spec/powerloss/operations.js';
import { enumerateStorage, storageCases, storageControls } from '../spec/powerloss/storage-operations.js';

const program = new Command('powerloss')
  .description('enumerate the crash states a power cut may leave in every write operation, and open each')
  .option('--seeds <n>', 'seeds of sampled survivor sets', (value) => Number(value), 3)
  .option('--samples <k>', 'sampled survivor sets per crash point (per seed)', (value) => Number(value), 8)
  .option('--exhaustive <e>', 'every subset while at most this many changes are uncertain', (value) => Number(value), 6)
  .option('--barriers', 'drop each fsync of each operation in turn and report which ones the model needs')
  .parse();
const { seeds, samples, exhaustive, barriers } = program.opts<{ seeds: number; samples: number; exhaustive: number; barriers?: boolean }>();

const root = mkdtempSync(join(scratchBase(), 'replicalog-powerloss-'));
/** A barrier's path relative to the model root, a snapshot file's random tag left out (it differs from run to run). */
const barrierPath = (model: string, path: string) => relative(model, path).replace(/-[0-9a-f]+\.snap/, '-*.snap');
const started = Date.now();
const seconds = () => ((Date.now() - started) / 1000).toFixed(1);
try {
  if (barriers === true) {
    for (const operationCase of cases) {
      // A dry run lists the fsyncs (path and occurrence) of the operation's trace.
      const seen: { path: string; occurrence: number }[] = [];
      await enumerate(operationCase, mkdtempSync(join(root, 'case-')), {
        seed: 1,
        samplesPerStep: 0,
        exhaustiveUpTo: 0,
        dropFsync: (path, occurrence, _dir, model) => {
          seen.push({ path: barrierPath(model, path), occurrence });
          return false;
        },
      });
      console.log(operationCase.name);
      for (const barrier of seen) {
        const report = await enumerate(operationCase, mkdtempSync(join(root, 'case-')), {
          seed: 1,
          samplesPerStep: samples,
          exhaustiveUpTo: exhaustive,
          dropFsync: (path, occurrence, _dir, model) => barrierPath(model, path) === barrier.path && occurrence === barrier.occurrence,
        });
        const where = barrier.path || '.';
        const verdict = report.failures.length > 0 ? `needed: ${report.failures.length} of ${report.states} states fail, e.g. ${report.failures[0]!.reason.slice(0, 160)}` : `no failure in ${report.states} states`;
        console.log(`  fsync ${where} #${barrier.occurrence}: ${verdict}`);
      }
    }
    console.log(`(${seconds()} s)`);
  } else {
    let states = 0;
    let failures = 0;
    for (let seed = 1; seed <= seeds; seed++) {
      for (const operationCase of cases) {
        const report = await enumerate(operationCase, mkdtempSync(join(root, 'case-')), { seed, samplesPerStep: samples, exhaustiveUpTo: exhaustive });
        states += report.states;
        failures += report.failures.length;
        for (const failure of report.failures.slice(0, 3)) console.log(`FAIL ${operationCase.name} (seed ${seed}) after step ${failure.step}, survivors [${failure.survivors}]: ${failure.reason}`);
        console.log(`seed ${seed}  ${operationCase.name.padEnd(80)} ${String(report.steps).padStart(4)} steps ${String(report.states).padStart(6)} states  ${report.failures.length} failures`);
      }
    }
    // Several partitions of one storage writing at once (spec/powerloss/storage-operations.ts).
    for (let seed = 1; seed <= seeds; seed++) {
      for (const operationCase of storageCases) {
        const report = await enumerateStorage(operationCase, mkdtempSync(join(root, 'case-')), { seed, samplesPerStep: samples, exhaustiveUpTo: exhaustive });
        states += report.states;
        failures += report.failures.length;
        for (const failure of report.failures.slice(0, 3)) console.log(`FAIL ${operationCase.name} (seed ${seed}) after step ${failure.step}, survivors [${failure.survivors}]: ${failure.reason}`);
        console.log(`seed ${seed}  ${operationCase.name.slice(0, 80).padEnd(80)} ${String(report.steps).padStart(4)} steps ${String(report.states).padStart(6)} states  ${report.failures.length} failures`);
      }
    }
    console.log(`${cases.length + storageCases.length} operations x ${seeds} seeds: ${states} crash states, ${failures} failures (${seconds()} s)`);
    let blind = 0;
    for (const control of controls) {
      const operationCase = cases.find((candidate) => candidate.name === control.operation)!;
      const report = await enumerate(operationCase, mkdtempSync(join(root, 'control-')), { seed: 1, samplesPerStep: samples, exhaustiveUpTo: exhaustive, dropFsync: control.dropFsync });
      if (report.failures.length === 0) blind++;
      console.log(`control: ${control.name}: ${report.failures.length} failing states of ${report.states} ${report.failures.length > 0 ? '(it fails, as it must)' : '(IT DID NOT FAIL: the enumerator is blind to it)'}`);
    }
    for (const control of storageControls) {
      const operationCase = storageCases.find((candidate) => candidate.name === control.operation)!;
      const report = await enumerateStorage(operationCase, mkdtempSync(join(root, 'control-')), { seed: 1, samplesPerStep: samples, exhaustiveUpTo: exhaustive, ...control });
      if (report.failures.length === 0) blind++;
      console.log(`control: ${control.name}: ${report.failures.length} failing states of ${report.states} ${report.failures.length > 0 ? '(it fails, as it must)' : '(IT DID NOT FAIL: the enumerator is blind to it)'}`);
    }
    process.exitCode = failures === 0 && blind === 0 ? 0 : 1;
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
