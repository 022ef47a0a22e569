/**
 * The power-loss enumerator over a storage (issue 19, ./storage-operations.ts): several
 * partitions of one ReplicaLogStorage writing at once, sharing KV batches and syncfs passes.
 * Every crash state opens through the storage, every partition keeps what was acknowledged to
 * it, shows its write in flight as before, after or a valid prefix, sees none of another
 * partition's keys or entries, and passes verify. Each control drops one barrier the storage
 * needs and must fail. CI runs one seed; `npm run powerloss -- --seeds N` samples more.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { EnumerationReport } from './enumerator.js';
import { scratchBase } from './operations.js';
import { enumerateStorage, storageCases, storageControls } from './storage-operations.js';

const workspaces: string[] = [];
const workspace = () => {
  const path = mkdtempSync(join(scratchBase(), 'replicalog-powerloss-storage-'));
  workspaces.push(path);
  return path;
};
afterAll(() => {
  for (const path of workspaces.splice(0)) rmSync(path, { recursive: true, force: true });
});

const OPTIONS = { seed: 19, samplesPerStep: 1, exhaustiveUpTo: 4 };
const reports: EnumerationReport[] = [];

describe('crash states of partitions writing at once in one storage (POSIX model)', () => {
  it.each(storageCases)('$name: every partition opens, keeps what was acknowledged to it, sees only its own keys, passes verify', async (operationCase) => {
    const report = await enumerateStorage(operationCase, workspace(), OPTIONS);
    reports.push(report);
    expect(report.states).toBeGreaterThan(1);
    expect(report.failures.slice(0, 3)).toEqual([]);
  }, 240_000);

  it.each(storageControls)('the control "$name" fails', async (control) => {
    const operationCase = storageCases.find((candidate) => candidate.name === control.operation)!;
    // More samples per crash point than the operations get: a trace varies with how the
    // partitions interleave, and a control must find its failing state in every run (it stops
    // at the first one, so the extra samples cost little).
    const report = await enumerateStorage(operationCase, workspace(), { ...OPTIONS, samplesPerStep: 8, ...control, stopAtFirstFailure: true });
    expect(report.failures.length).toBeGreaterThan(0);
    // A partition lost what was acknowledged to it (not, say, a harness error).
    expect(report.failures[0]!.reason).toMatch(/^partition \d+: /);
  }, 240_000);

  afterAll(() => {
    const total = reports.reduce((sum, report) => sum + report.states, 0);
    process.stdout.write(`power-loss enumerator (storage): ${reports.length} operations x ${total} crash states, ${reports.reduce((sum, report) => sum + report.failures.length, 0)} failures\n`);
    for (const report of reports) process.stdout.write(`  ${report.operation}: ${report.steps} steps, ${report.states} states\n`);
  });
});
