/**
 * The crash-state enumerator over the store's write operations (issue 15): every state a power
 * cut may leave at every step of an append, a write group, a truncating append, a compaction
 * (also of the whole log) and a hard state opens, keeps every acknowledged write, shows the
 * write in flight as before, after or a valid prefix, and passes verify. A control that drops
 * the fsyncs that make an append's renames durable must fail: the test of the test.
 * CI runs this bounded set; `npm run powerloss -- --seeds N` samples more.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';
import type { EnumerationReport } from './enumerator.js';
import { cases, enumerate } from './operations.js';

afterAll(removeTempDirs);

const OPTIONS = { seed: 15, samplesPerStep: 3, exhaustiveUpTo: 4 };
const reports: EnumerationReport[] = [];

describe('crash states of every write operation (POSIX model)', () => {
  it.each(cases)('$name: every crash state opens, keeps what was acknowledged, shows before/after/prefix, passes verify', async (operationCase) => {
    const report = await enumerate(operationCase, makeTempDir('replicalog-powerloss-'), OPTIONS);
    reports.push(report);
    expect(report.states).toBeGreaterThan(1);
    expect(report.failures.slice(0, 3)).toEqual([]);
  }, 120_000);

  it("the control: without the fsyncs of wal/ and staging/ after an append's renames, an acknowledged entry can be lost", async () => {
    const report = await enumerate(cases[0]!, makeTempDir('replicalog-powerloss-'), { ...OPTIONS, dropFsync: (path) => path.endsWith('/wal') || path.endsWith('/staging') });
    expect(report.failures.some((failure) => failure.reason.includes('expected the state after'))).toBe(true);
  }, 120_000);

  afterAll(() => {
    const total = reports.reduce((sum, report) => sum + report.states, 0);
    process.stdout.write(`power-loss enumerator: ${reports.length} operations x ${total} crash states, ${reports.reduce((sum, report) => sum + report.failures.length, 0)} failures\n`);
  });
});
