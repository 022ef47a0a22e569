import { describe, expect, it } from 'vitest';

import { runAsyncSimulation } from './async-simulation.js';

/**
 * Seeds run in CI. Run more with e.g.
 *   RAFT_ASYNC_SIM_SEEDS=2000 RAFT_ASYNC_SIM_FIRST=1000 npx vitest run spec/raft/async-simulation.test.ts
 */
const seeds = Number(process.env.RAFT_ASYNC_SIM_SEEDS ?? 40);
const firstSeed = Number(process.env.RAFT_ASYNC_SIM_FIRST ?? 1);

describe('randomised raft simulation with asyncStorageWrites', () => {
  it(`holds election safety, state machine safety and applies-after-durability for ${seeds} seeds`, async () => {
    const results = [];
    for (let seed = firstSeed; seed < firstSeed + seeds; seed++) results.push(await runAsyncSimulation(seed));
    expect(results).toHaveLength(seeds);
    // Not vacuous: seeds elect leaders and commit, terms change under in-flight appends (raft
    // ignores the stale MsgStorageAppendResps), nodes crash, compact, and catch up by snapshot.
    expect(results.filter((r) => r.applied > 5 && r.leaders > 0).length).toBeGreaterThan(seeds * 0.7);
    expect(results.filter((r) => r.leaders > 1).length).toBeGreaterThan(seeds * 0.3);
    expect(results.filter((r) => r.staleAppendResponses > 0).length).toBeGreaterThan(seeds * 0.2);
    expect(results.filter((r) => r.crashes > 0).length).toBeGreaterThan(seeds * 0.5);
    expect(results.filter((r) => r.snapshotAppends > 0).length).toBeGreaterThan(seeds * 0.2);
  }, 600_000);

  it('is deterministic per seed', async () => {
    expect(await runAsyncSimulation(7)).toEqual(await runAsyncSimulation(7));
  });
});
