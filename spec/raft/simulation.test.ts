import { describe, expect, it } from 'vitest';
import { runSimulation, runSimulationSeeds } from './simulation.js';

/**
 * Seeds run in CI. Run more with e.g.
 *   RAFT_SIM_SEEDS=5000 RAFT_SIM_FIRST=1000 RAFT_SIM_STEPS=1000 npx vitest run spec/raft/simulation.test.ts
 * or call runSimulationSeeds from a script.
 */
const seeds = Number(process.env.RAFT_SIM_SEEDS ?? 200);
const firstSeed = Number(process.env.RAFT_SIM_FIRST ?? 1);
const steps = process.env.RAFT_SIM_STEPS === undefined ? undefined : Number(process.env.RAFT_SIM_STEPS);

describe('randomised raft simulation (safety)', () => {
  it(`holds election safety and state machine safety for ${seeds} seeds`, async () => {
    const results = await runSimulationSeeds(firstSeed, seeds, steps === undefined ? {} : { steps });
    expect(results.length).toBe(seeds);
    // The simulation is not vacuous: most seeds commit entries and elect leaders.
    const productive = results.filter((r) => r.committed > 10 && r.leaders > 0).length;
    expect(productive).toBeGreaterThan(seeds * 0.9);
  }, 600_000);

  it('is deterministic per seed', async () => {
    expect(await runSimulation(42)).toEqual(await runSimulation(42));
  });
});
