/**
 * The crash-state enumerator over the store's write operations (issue 15): every state a power
 * cut may leave at every step of each operation in operations.ts opens, keeps every
 * acknowledged write, shows the write in flight as before, after or a valid prefix, and passes
 * verify. Each control drops one barrier and must fail: the test of the test.
 * CI runs this bounded set (one seed); `npm run powerloss -- --seeds N` samples more.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { EnumerationReport } from './enumerator.js';
import { cases, controls, enumerate, scratchBase } from './operations.js';

const workspaces: string[] = [];
const workspace = () => {
  const path = mkdtempSync(join(scratchBase(), 'replicalog-powerloss-'));
  workspaces.push(path);
  return path;
};
afterAll(() => {
  for (const path of workspaces.splice(0)) rmSync(path, { recursive: true, force: true });
});

const OPTIONS = { seed: 15, samplesPerStep: 4, exhaustiveUpTo: 5 };
const reports: EnumerationReport[] = [];

describe('crash states of every write operation (POSIX model)', () => {
  it.each(cases)('$name: every crash state opens, keeps what was acknowledged, shows before/after/prefix, passes verify', async (operationCase) => {
    const report = await enumerate(operationCase, workspace(), OPTIONS);
    reports.push(report);
    expect(report.states).toBeGreaterThan(1);
    expect(report.failures.slice(0, 3)).toEqual([]);
  }, 120_000);

  it.each(controls)('the control "$name" fails', async (control) => {
    const operationCase = cases.find((candidate) => candidate.name === control.operation)!;
    const report = await enumerate(operationCase, workspace(), { ...OPTIONS, dropFsync: control.dropFsync });
    expect(report.failures.length).toBeGreaterThan(0);
  }, 120_000);

  afterAll(() => {
    const total = reports.reduce((sum, report) => sum + report.states, 0);
    process.stdout.write(`power-loss enumerator: ${reports.length} operations x ${total} crash states, ${reports.reduce((sum, report) => sum + report.failures.length, 0)} failures\n`);
  });
});
