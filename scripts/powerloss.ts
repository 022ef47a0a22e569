/**
 * `npm run powerloss -- --seeds N [--samples K]`: the power-loss crash-state enumerator
 * (spec/powerloss/) over every write operation, N seeds of sampled survivor sets (K per crash
 * point, every subset while there are at most 6 uncertain mutations), and the control that drops
 * an append's directory fsyncs (it must fail). Prints operations x crash states x failures; exits
 * 1 on any failure (or a control that does not fail).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { cases, enumerate } from '../spec/powerloss/operations.js';

const program = new Command('powerloss')
  .description('enumerate the crash states a power cut may leave in every write operation, and open each')
  .option('--seeds <n>', 'seeds of sampled survivor sets', (value) => Number(value), 5)
  .option('--samples <k>', 'sampled survivor sets per crash point (per seed)', (value) => Number(value), 8)
  .parse();
const { seeds, samples } = program.opts<{ seeds: number; samples: number }>();

const root = mkdtempSync(join(tmpdir(), 'replicalog-powerloss-'));
let states = 0;
let failures = 0;
const started = Date.now();
try {
  for (let seed = 1; seed <= seeds; seed++) {
    for (const operationCase of cases) {
      const report = await enumerate(operationCase, mkdtempSync(join(root, 'case-')), { seed, samplesPerStep: samples, exhaustiveUpTo: 6 });
      states += report.states;
      failures += report.failures.length;
      for (const failure of report.failures.slice(0, 3)) console.log(`FAIL ${operationCase.name} (seed ${seed}) after step ${failure.step}, survivors [${failure.survivors}]: ${failure.reason}`);
      console.log(`seed ${seed}  ${operationCase.name.padEnd(52)} ${String(report.states).padStart(6)} states  ${report.failures.length} failures`);
    }
  }
  const control = await enumerate(cases[0]!, mkdtempSync(join(root, 'control-')), {
    seed: 1,
    samplesPerStep: samples,
    exhaustiveUpTo: 6,
    dropFsync: (path) => path.endsWith('/wal') || path.endsWith('/staging'),
  });
  console.log(`${cases.length} operations x ${seeds} seeds: ${states} crash states, ${failures} failures (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  console.log(`control (an append without its directory fsyncs): ${control.failures.length} failures in ${control.states} states ${control.failures.length > 0 ? '(it fails, as it must)' : '(IT DID NOT FAIL: the enumerator is blind)'}`);
  process.exitCode = failures === 0 && control.failures.length > 0 ? 0 : 1;
} finally {
  rmSync(root, { recursive: true, force: true });
}
