import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { decodeConfChange, decodeConfChangeV2 } from '../codec.js';
import {
  type ConfChange,
  type ConfChangeSingle,
  ConfChangeTransition,
  ConfChangeType,
  type ConfChangeV2,
  type ConfState,
  EntryType,
} from '../types.js';
import {
  Changer,
  asV1,
  asV2,
  confChangeAsV2,
  confChangesFromString,
  confChangesToString,
  confStateEquivalent,
  describeConfChanges,
  enterJoint,
  isConfChangeV2,
  leaveJoint,
  marshalConfChange,
  restore,
} from './confchange.js';
import { type TestData, argBool, etcdTestdataDir, runDataDriven } from './datadriven.js';
import { type Config, type ProgressMap, ProgressTracker, progressMapToString } from './tracker.js';


function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Runs `fn` and reports Go-style `(cfg, trk, err)`. */
function attempt(fn: () => [Config, ProgressMap]): { result?: [Config, ProgressMap]; error?: string } {
  try {
    return { result: fn() };
  } catch (error) {
    return { error: errorMessage(error) };
  }
}

/** Port of confchange/datadriven_test.go: one Changer per file, lastIndex bumped per command. */
function makeConfChangeRunner(): (d: TestData) => string {
  const changer = new Changer(new ProgressTracker(10, 0), 0);
  return (d) => {
    try {
      let ccs: ConfChangeSingle[];
      try {
        ccs = confChangesFromString(d.input);
      } catch (error) {
        return errorMessage(error);
      }
      let outcome: { result?: [Config, ProgressMap]; error?: string };
      switch (d.cmd) {
        case 'simple':
          outcome = attempt(() => changer.simple(ccs));
          break;
        case 'enter-joint': {
          const autoLeave = d.cmdArgs.length > 0 ? argBool(d, 'autoleave') : false;
          outcome = attempt(() => changer.enterJoint(autoLeave, ccs));
          break;
        }
        case 'leave-joint':
          outcome =
            ccs.length > 0 ? { error: 'this command takes no input' } : attempt(() => changer.leaveJoint());
          break;
        default:
          return 'unknown command';
      }
      if (outcome.error !== undefined) return `${outcome.error}\n`;
      const [cfg, trk] = outcome.result!;
      changer.tracker.config = cfg;
      changer.tracker.progress = trk;
      return `${cfg.toString()}\n${progressMapToString(trk)}`;
    } finally {
      changer.lastIndex++;
    }
  };
}

const confchangeTestdata = etcdTestdataDir('confchange');

describe('confchange datadriven (etcd confchange/testdata)', () => {
  const dir = confchangeTestdata;
  const files = readdirSync(dir).filter((f) => f.endsWith('.txt')).sort();
  // Counted by the per-file tests (which run first, in order), checked by the last one.
  let casesRun = 0;
  let casesPassed = 0;
  for (const file of files) {
    it(file, () => {
      const text = readFileSync(join(dir, file), 'utf8');
      const results = runDataDriven(text, file, makeConfChangeRunner());
      // Every "----" separator in these files opens exactly one case.
      expect(results.length).toBe(text.split('\n').filter((line) => line === '----').length);
      casesRun += results.length;
      casesPassed += results.filter((result) => result.actual === result.data.expected).length;
      for (const result of results) {
        expect(result.actual, `${result.data.pos}: ${result.data.cmd} ${result.data.input}`).toBe(
          result.data.expected,
        );
      }
    });
  }
  // etcd raft v3.6.0 ships 9 files with 58 cases here (shared/etcd-raft-v3.6.0/README.md): all of them run.
  it('ran all 58 cases of the 9 files, all passing', () => {
    expect(files.length).toBe(9);
    expect(casesRun).toBe(58);
    expect(casesPassed).toBe(58);
  });
});

/** etcd's joint_autoleave.txt and joint_learners_next.txt cases, inlined so the harness always runs. */
const INLINE_CONFCHANGE_CASES = `
simple
v1
----
voters=(1)
1: StateProbe match=0 next=1

enter-joint autoleave=true
v2 v3
----
voters=(1 2 3)&&(1) autoleave
1: StateProbe match=0 next=1
2: StateProbe match=0 next=1
3: StateProbe match=0 next=1

enter-joint autoleave=false
----
config is already joint

leave-joint
----
voters=(1 2 3)
1: StateProbe match=0 next=1
2: StateProbe match=0 next=1
3: StateProbe match=0 next=1

enter-joint
v4 l1
----
voters=(2 3 4)&&(1 2 3) learners_next=(1)
1: StateProbe match=0 next=1
2: StateProbe match=0 next=1
3: StateProbe match=0 next=1
4: StateProbe match=0 next=4

leave-joint
----
voters=(2 3 4) learners=(1)
1: StateProbe match=0 next=1 learner
2: StateProbe match=0 next=1
3: StateProbe match=0 next=1
4: StateProbe match=0 next=4

leave-joint
v1
----
this command takes no input

simple
x1
----
unknown input: x1
`;

describe('confchange datadriven (inline cases)', () => {
  it('passes', () => {
    const results = runDataDriven(INLINE_CONFCHANGE_CASES, 'inline', makeConfChangeRunner());
    expect(results).toHaveLength(8);
    for (const result of results) expect(result.actual, result.data.pos).toBe(result.data.expected);
  });
});

// ---------------------------------------------------------------------------------------------
// quick_test.go: simple and joint changes reach the same configuration.

/** Plain-data view of a Changer's state, for deep comparison. */
function snapshotOf(config: Config, progress: ProgressMap): unknown {
  return {
    config: config.toString(),
    confState: (() => {
      const tracker = new ProgressTracker(10, 0);
      tracker.config = config;
      return tracker.confState();
    })(),
    progress: [...progress.entries()]
      .sort(([a], [b]) => a - b)
      .map(([id, pr]) => ({
        id,
        match: pr.match,
        next: pr.next,
        sentCommit: pr.sentCommit,
        state: pr.state,
        pendingSnapshot: pr.pendingSnapshot,
        recentActive: pr.recentActive,
        msgAppFlowPaused: pr.msgAppFlowPaused,
        isLearner: pr.isLearner,
        inflights: pr.inflights.state(),
      })),
  };
}

function runWithSimple(changer: Changer, ccs: readonly ConfChangeSingle[]): void {
  for (const cc of ccs) {
    const [cfg, trk] = changer.simple([cc]);
    changer.tracker.config = cfg;
    changer.tracker.progress = trk;
  }
}

function runWithJoint(changer: Changer, ccs: readonly ConfChangeSingle[]): void {
  const [cfg, trk] = changer.enterJoint(false, ccs);
  // With autoLeave the result must be the same apart from the flag.
  const [cfgAuto, trkAuto] = changer.enterJoint(true, ccs);
  expect(cfgAuto.autoLeave).toBe(true);
  cfgAuto.autoLeave = false;
  expect(snapshotOf(cfgAuto, trkAuto)).toEqual(snapshotOf(cfg, trk));
  changer.tracker.config = cfg;
  changer.tracker.progress = trk;
  const [cfgLeftB, trkLeftB] = changer.leaveJoint();
  // Leave again from the same joint state: must be deterministic.
  changer.tracker.config = cfg;
  changer.tracker.progress = trk;
  const [cfgLeft, trkLeft] = changer.leaveJoint();
  expect(snapshotOf(cfgLeft, trkLeft)).toEqual(snapshotOf(cfgLeftB, trkLeftB));
  changer.tracker.config = cfgLeft;
  changer.tracker.progress = trkLeft;
}

/** Node 1 first, then 1..5 more AddNode changes with ids 1..5. */
const initialChanges = fc
  .array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 5 })
  .map((ids): ConfChangeSingle[] => [
    { type: ConfChangeType.AddNode, nodeId: 1 },
    ...ids.map((nodeId) => ({ type: ConfChangeType.AddNode, nodeId })),
  ]);

/** 1..9 changes of any type on ids 2..10 (node 1 is never touched, so voters never run out). */
const confChanges = fc.array(
  fc.record({
    type: fc.constantFrom(
      ConfChangeType.AddNode,
      ConfChangeType.RemoveNode,
      ConfChangeType.UpdateNode,
      ConfChangeType.AddLearnerNode,
    ),
    nodeId: fc.integer({ min: 2, max: 10 }),
  }),
  { minLength: 1, maxLength: 9 },
);

describe('confchange quick (quick_test.go)', () => {
  it('simple and joint changes arrive at the same result', () => {
    fc.assert(
      fc.property(initialChanges, confChanges, (setup, ccs) => {
        const run = (invoke: (c: Changer, ccs: readonly ConfChangeSingle[]) => void): unknown => {
          const changer = new Changer({ tracker: new ProgressTracker(10, 0), lastIndex: 10 });
          runWithSimple(changer, setup);
          invoke(changer, ccs);
          return snapshotOf(changer.tracker.config, changer.tracker.progress);
        };
        const viaSimple = run(runWithSimple);
        const viaJoint = run(runWithJoint);
        expect(viaJoint, `setup: ${describeConfChanges(setup)}\nccs: ${describeConfChanges(ccs)}`).toEqual(
          viaSimple,
        );
      }),
      { numRuns: 300 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// restore_test.go

/** A random valid ConfState (never the empty one), as rndConfChange.Generate builds it. */
const randomConfState = fc
  .record({
    nVoters: fc.integer({ min: 1, max: 5 }),
    nLearners: fc.integer({ min: 0, max: 4 }),
    nRemovedVoters: fc.integer({ min: 0, max: 2 }),
    retainedFraction: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
    learnersNextFraction: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
    autoLeaveCoin: fc.boolean(),
  })
  .chain((p) => {
    const total = 2 * (p.nVoters + p.nLearners + p.nRemovedVoters);
    return fc
      .shuffledSubarray(
        Array.from({ length: total }, (_, i) => i + 1),
        { minLength: total, maxLength: total },
      )
      .map((ids): ConfState => {
        let rest = ids;
        const voters = rest.slice(0, p.nVoters);
        rest = rest.slice(p.nVoters);
        const learners = rest.slice(0, p.nLearners);
        rest = rest.slice(p.nLearners);
        const nRetained = Math.floor(p.retainedFraction * (p.nVoters + 1));
        const votersOutgoing =
          nRetained > 0 || p.nRemovedVoters > 0
            ? [...voters.slice(0, nRetained), ...rest.slice(0, p.nRemovedVoters)]
            : [];
        // Only removed outgoing voters can be demoted into learnersNext.
        const nLearnersNext = p.nRemovedVoters > 0 ? Math.floor(p.learnersNextFraction * (p.nRemovedVoters + 1)) : 0;
        const learnersNext = rest.slice(0, nLearnersNext);
        return {
          voters,
          learners,
          votersOutgoing,
          learnersNext,
          autoLeave: votersOutgoing.length > 0 && p.autoLeaveCoin,
        };
      });
  });

function checkRestore(cs: ConfState): void {
  const changer = new Changer(new ProgressTracker(20, 0), 10);
  const [cfg, trk] = restore(changer, cs);
  // restore leaves the given changer untouched.
  expect(changer.tracker.progress.size).toBe(0);
  changer.tracker.config = cfg;
  changer.tracker.progress = trk;
  const sorted: ConfState = {
    voters: [...cs.voters].sort((a, b) => a - b),
    learners: [...cs.learners].sort((a, b) => a - b),
    votersOutgoing: [...cs.votersOutgoing].sort((a, b) => a - b),
    learnersNext: [...cs.learnersNext].sort((a, b) => a - b),
    autoLeave: cs.autoLeave,
  };
  const restored = changer.tracker.confState();
  expect(restored).toEqual(sorted);
  expect(confStateEquivalent(cs, restored)).toBeUndefined();
  expect(confStateEquivalent(restored, cs)).toBeUndefined();
}

describe('restore (restore_test.go)', () => {
  const ids = (...sl: number[]): number[] => sl;
  const empty: ConfState = { voters: [], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
  const unitCases: ConfState[] = [
    empty,
    { ...empty, voters: ids(1, 2, 3) },
    { ...empty, voters: ids(1, 2, 3), learners: ids(4, 5, 6) },
    { ...empty, voters: ids(1, 2, 3), learners: ids(5), votersOutgoing: ids(1, 2, 4, 6), learnersNext: ids(4) },
  ];
  unitCases.forEach((cs, i) => {
    it(`unit case #${i}`, () => checkRestore(cs));
  });

  it('restores random ConfStates', () => {
    fc.assert(fc.property(randomConfState, checkRestore), { numRuns: 500 });
  });

  it('restores a joint config with its progress', () => {
    const changer = new Changer(new ProgressTracker(20, 0), 10);
    const [cfg, trk] = restore(changer, {
      voters: [1, 2, 3],
      learners: [5],
      votersOutgoing: [1, 2, 4, 6],
      learnersNext: [4],
      autoLeave: true,
    });
    expect(cfg.toString()).toBe('voters=(1 2 3)&&(1 2 4 6) learners=(5) learners_next=(4) autoleave');
    expect([...trk.keys()].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(trk.get(4)!.isLearner).toBe(false);
    expect(trk.get(5)!.isLearner).toBe(true);
    expect(trk.get(1)!.next).toBe(10);
    expect(trk.get(1)!.recentActive).toBe(true);
    expect(trk.get(1)!.inflights.size).toBe(20);
  });

  it('refuses invalid ConfStates with Go messages', () => {
    const changer = (): Changer => new Changer(new ProgressTracker(20, 0), 10);
    // A learner that is also a voter.
    expect(() => restore(changer(), { ...empty, voters: [1], learners: [1] })).toThrow('removed all voters');
    // learnersNext without an outgoing config restores as a plain learner, so the result is
    // not equivalent (raft's assertConfStatesEquivalent would panic on it).
    const cs: ConfState = { ...empty, voters: [1], learnersNext: [2] };
    const [cfg] = restore(changer(), cs);
    expect(cfg.toString()).toBe('voters=(1) learners=(2)');
    const tracker = new ProgressTracker(20, 0);
    tracker.config = cfg;
    expect(confStateEquivalent(cs, tracker.confState())?.message).toMatch(/^ConfStates not equivalent/);
  });
});

// ---------------------------------------------------------------------------------------------
// Changer errors (messages as in Go)

describe('Changer', () => {
  it('reports Go error messages', () => {
    const changer = new Changer(new ProgressTracker(10, 0), 0);
    expect(() => changer.enterJoint(false, confChangesFromString('v1'))).toThrow(
      "can't make a zero-voter config joint",
    );
    expect(() => changer.leaveJoint()).toThrow("can't leave a non-joint config");
    const [cfg, trk] = changer.simple(confChangesFromString('v1'));
    changer.tracker.config = cfg;
    changer.tracker.progress = trk;
    expect(() => changer.simple(confChangesFromString('v2 v3'))).toThrow(
      'more than one voter changed without entering joint config',
    );
    expect(() => changer.simple([{ type: 9 as ConfChangeType, nodeId: 2 }])).toThrow('unexpected conf type 9');
    const [joint, jointTrk] = changer.enterJoint(true, confChangesFromString('v2 v3'));
    changer.tracker.config = joint;
    changer.tracker.progress = jointTrk;
    expect(() => changer.enterJoint(false, [])).toThrow('config is already joint');
    expect(() => changer.simple([])).toThrow("can't apply simple config change in joint config");
  });

  it('does not mutate the tracker it was given', () => {
    const tracker = new ProgressTracker(10, 0);
    const changer = new Changer(tracker, 3);
    const [cfg, trk] = changer.simple(confChangesFromString('v1'));
    expect(tracker.progress.size).toBe(0);
    expect(tracker.config.voters[0].size).toBe(0);
    tracker.config = cfg;
    tracker.progress = trk;
    const [cfg2, trk2] = changer.simple(confChangesFromString('v2'));
    tracker.config = cfg2;
    tracker.progress = trk2;
    const [cfg3] = changer.simple(confChangesFromString('l1'));
    expect(cfg3.toString()).toBe('voters=(2) learners=(1)');
    // The tracker's own Progress for 1 is still a voter's: the Changer worked on copies.
    expect(tracker.progress.get(1)!.isLearner).toBe(false);
    expect(tracker.config.toString()).toBe('voters=(1 2)');
  });

  it('describes changes', () => {
    expect(describeConfChanges(confChangesFromString('v1 r2 u3 l4'))).toBe(
      'ConfChangeAddNode(1) ConfChangeRemoveNode(2) ConfChangeUpdateNode(3) ConfChangeAddLearnerNode(4)',
    );
  });
});

// ---------------------------------------------------------------------------------------------
// raftpb helpers

describe('raftpb confchange helpers', () => {
  it('parses and prints conf change strings', () => {
    const ccs = confChangesFromString(' v1 l2 r3 u4 ');
    expect(ccs).toEqual([
      { type: ConfChangeType.AddNode, nodeId: 1 },
      { type: ConfChangeType.AddLearnerNode, nodeId: 2 },
      { type: ConfChangeType.RemoveNode, nodeId: 3 },
      { type: ConfChangeType.UpdateNode, nodeId: 4 },
    ]);
    expect(confChangesToString(ccs)).toBe('v1 l2 r3 u4');
    expect(confChangesFromString('')).toEqual([]);
    expect(() => confChangesFromString('v')).toThrow('unknown token v');
    expect(() => confChangesFromString('x1')).toThrow('unknown input: x1');
    expect(() => confChangesFromString('vx')).toThrow('strconv.ParseUint: parsing "x": invalid syntax');
  });

  it('round-trips random change lists', () => {
    const change = fc.record({
      type: fc.constantFrom(
        ConfChangeType.AddNode,
        ConfChangeType.RemoveNode,
        ConfChangeType.UpdateNode,
        ConfChangeType.AddLearnerNode,
      ),
      nodeId: fc.nat(),
    });
    fc.assert(
      fc.property(fc.array(change, { maxLength: 8 }), (ccs) => {
        expect(confChangesFromString(confChangesToString(ccs))).toEqual(ccs);
      }),
      { numRuns: 200 },
    );
  });

  it('converts ConfChange to V2', () => {
    const context = new Uint8Array([1, 2]);
    const cc: ConfChange = { id: 7, type: ConfChangeType.AddLearnerNode, nodeId: 3, context };
    const v2 = confChangeAsV2(cc);
    expect(v2).toEqual({
      transition: ConfChangeTransition.Auto,
      changes: [{ type: ConfChangeType.AddLearnerNode, nodeId: 3 }],
      context,
    });
    expect(confChangeAsV2({ id: 0, type: ConfChangeType.AddNode, nodeId: 1 })).not.toHaveProperty('context');
    expect(asV2(v2)).toBe(v2);
    expect(asV2(cc)).toEqual(v2);
    expect(asV1(cc)).toBe(cc);
    expect(asV1(v2)).toBeUndefined();
    expect(isConfChangeV2(cc)).toBe(false);
    expect(isConfChangeV2(v2)).toBe(true);
  });

  it('decides on joint consensus like ConfChangeV2.EnterJoint/LeaveJoint', () => {
    const single = [{ type: ConfChangeType.AddNode, nodeId: 1 }];
    const double = [...single, { type: ConfChangeType.AddNode, nodeId: 2 }];
    const v2 = (transition: ConfChangeTransition, changes: ConfChangeSingle[]): ConfChangeV2 => ({
      transition,
      changes,
    });
    expect(enterJoint(v2(ConfChangeTransition.Auto, single))).toEqual({ autoLeave: false, ok: false });
    expect(enterJoint(v2(ConfChangeTransition.Auto, double))).toEqual({ autoLeave: true, ok: true });
    expect(enterJoint(v2(ConfChangeTransition.JointImplicit, single))).toEqual({ autoLeave: true, ok: true });
    expect(enterJoint(v2(ConfChangeTransition.JointExplicit, single))).toEqual({ autoLeave: false, ok: true });
    expect(enterJoint(v2(ConfChangeTransition.JointExplicit, []))).toEqual({ autoLeave: false, ok: true });
    expect(() => enterJoint(v2(7 as ConfChangeTransition, []))).toThrow(/^unknown transition: /);

    expect(leaveJoint(v2(ConfChangeTransition.Auto, []))).toBe(true);
    expect(leaveJoint({ transition: ConfChangeTransition.Auto, changes: [], context: new Uint8Array([1]) })).toBe(true);
    expect(leaveJoint(v2(ConfChangeTransition.JointExplicit, []))).toBe(false);
    expect(leaveJoint(v2(ConfChangeTransition.Auto, single))).toBe(false);
  });

  it('marshals like MarshalConfChange', () => {
    const cc: ConfChange = { id: 1, type: ConfChangeType.AddNode, nodeId: 2 };
    const v1 = marshalConfChange(cc);
    expect(v1.type).toBe(EntryType.ConfChange);
    expect(decodeConfChange(v1.data!)).toEqual(cc);
    const v2: ConfChangeV2 = { transition: ConfChangeTransition.JointExplicit, changes: [{ type: ConfChangeType.RemoveNode, nodeId: 3 }] };
    const encoded = marshalConfChange(v2);
    expect(encoded.type).toBe(EntryType.ConfChangeV2);
    expect(decodeConfChangeV2(encoded.data!)).toEqual(v2);
    expect(marshalConfChange(undefined)).toEqual({ type: EntryType.ConfChangeV2, data: undefined });
  });
});

describe('ConfState equivalence (confstate_test.go)', () => {
  const cs = (partial: Partial<ConfState>): ConfState => ({
    voters: [],
    learners: [],
    votersOutgoing: [],
    learnersNext: [],
    autoLeave: false,
    ...partial,
  });
  const cases: Array<[ConfState, ConfState, boolean]> = [
    // Reordered voters and learners.
    [
      cs({ voters: [1, 2, 3], learners: [5, 4, 6], votersOutgoing: [9, 8, 7], learnersNext: [10, 20, 15] }),
      cs({ voters: [1, 2, 3], learners: [4, 5, 6], votersOutgoing: [7, 9, 8], learnersNext: [20, 10, 15] }),
      true,
    ],
    // Empty lists are equivalent (Go: nil vs empty slice).
    [cs({ voters: [] }), cs({}), true],
    // Different voters.
    [cs({ voters: [1, 2, 3, 4] }), cs({ voters: [2, 1, 3] }), false],
    [cs({ voters: [1, 4, 3] }), cs({ voters: [2, 1, 3] }), false],
    // Different learners.
    [cs({ learners: [1, 2, 3, 4] }), cs({ learners: [2, 1, 3] }), false],
    // AutoLeave matters.
    [cs({ autoLeave: true }), cs({}), false],
  ];
  cases.forEach(([a, b, ok], i) => {
    it(`case #${i}`, () => {
      const error = confStateEquivalent(a, b);
      expect(error === undefined).toBe(ok);
      if (!ok) expect(error!.message).toMatch(/^ConfStates not equivalent after sorting:\n/);
    });
  });

  it('does not sort its inputs in place', () => {
    const a = cs({ voters: [3, 1, 2] });
    confStateEquivalent(a, cs({ voters: [1, 2, 3] }));
    expect(a.voters).toEqual([3, 1, 2]);
  });
});
