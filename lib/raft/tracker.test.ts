import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { MAX_INDEX, MajorityConfig, VoteResult } from './quorum.js';
import {
  Config,
  type Inflight,
  Inflights,
  Progress,
  ProgressTracker,
  StateType,
  progressMapToString,
  stateTypeToString,
} from './tracker.js';

/** Builds a buffer from parallel index/size lists (Go's inflightsBuffer). */
function inflightsBuffer(indices: number[], sizes: number[]): Inflight[] {
  if (indices.length !== sizes.length) throw new Error('len(indices) != len(sizes)');
  return indices.map((index, i) => ({ index, bytes: sizes[i]! }));
}

const zeros = (n: number): Inflight[] => inflightsBuffer(new Array<number>(n).fill(0), new Array<number>(n).fill(0));

describe('Inflights (inflights_test.go)', () => {
  it('TestInflightsAdd', () => {
    // No rotation.
    const inflights = Inflights.fromState({ size: 10, buffer: zeros(10) });
    for (let i = 0; i < 5; i++) inflights.add(i, 100 + i);
    expect(inflights.state()).toEqual({
      start: 0,
      count: 5,
      bytes: 510,
      size: 10,
      maxBytes: 0,
      buffer: inflightsBuffer([0, 1, 2, 3, 4, 0, 0, 0, 0, 0], [100, 101, 102, 103, 104, 0, 0, 0, 0, 0]),
    });
    for (let i = 5; i < 10; i++) inflights.add(i, 100 + i);
    expect(inflights.state()).toEqual({
      start: 0,
      count: 10,
      bytes: 1045,
      size: 10,
      maxBytes: 0,
      buffer: inflightsBuffer(
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [100, 101, 102, 103, 104, 105, 106, 107, 108, 109],
      ),
    });

    // Rotation.
    const rotating = Inflights.fromState({ start: 5, size: 10, buffer: zeros(10) });
    for (let i = 0; i < 5; i++) rotating.add(i, 100 + i);
    expect(rotating.state()).toEqual({
      start: 5,
      count: 5,
      bytes: 510,
      size: 10,
      maxBytes: 0,
      buffer: inflightsBuffer([0, 0, 0, 0, 0, 0, 1, 2, 3, 4], [0, 0, 0, 0, 0, 100, 101, 102, 103, 104]),
    });
    for (let i = 5; i < 10; i++) rotating.add(i, 100 + i);
    expect(rotating.state()).toEqual({
      start: 5,
      count: 10,
      bytes: 1045,
      size: 10,
      maxBytes: 0,
      buffer: inflightsBuffer(
        [5, 6, 7, 8, 9, 0, 1, 2, 3, 4],
        [105, 106, 107, 108, 109, 100, 101, 102, 103, 104],
      ),
    });
  });

  it('TestInflightFreeTo', () => {
    const inflights = new Inflights(10, 0);
    for (let i = 0; i < 10; i++) inflights.add(i, 100 + i);
    const fullBuffer = inflightsBuffer(
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
      [100, 101, 102, 103, 104, 105, 106, 107, 108, 109],
    );

    inflights.freeLE(0);
    expect(inflights.state()).toEqual({ start: 1, count: 9, bytes: 945, size: 10, maxBytes: 0, buffer: fullBuffer });

    inflights.freeLE(4);
    expect(inflights.state()).toEqual({ start: 5, count: 5, bytes: 535, size: 10, maxBytes: 0, buffer: fullBuffer });

    inflights.freeLE(8);
    expect(inflights.state()).toEqual({ start: 9, count: 1, bytes: 109, size: 10, maxBytes: 0, buffer: fullBuffer });

    // Rotation.
    for (let i = 10; i < 15; i++) inflights.add(i, 100 + i);
    inflights.freeLE(12);
    const rotated = inflightsBuffer(
      [10, 11, 12, 13, 14, 5, 6, 7, 8, 9],
      [110, 111, 112, 113, 114, 105, 106, 107, 108, 109],
    );
    expect(inflights.state()).toEqual({ start: 3, count: 2, bytes: 227, size: 10, maxBytes: 0, buffer: rotated });

    inflights.freeLE(14);
    expect(inflights.state()).toEqual({ start: 0, count: 0, bytes: 0, size: 10, maxBytes: 0, buffer: rotated });
  });

  describe('TestInflightsFull', () => {
    const cases = [
      { name: 'always-full', size: 0, maxBytes: 0, fullAt: 0, freeLE: 0, againAt: 0 },
      { name: 'single-entry', size: 1, maxBytes: 0, fullAt: 1, freeLE: 1, againAt: 2 },
      { name: 'single-entry-overflow', size: 1, maxBytes: 10, fullAt: 1, freeLE: 1, againAt: 2 },
      { name: 'multi-entry', size: 15, maxBytes: 0, fullAt: 15, freeLE: 6, againAt: 22 },
      { name: 'slight-overflow', size: 8, maxBytes: 400, fullAt: 4, freeLE: 2, againAt: 7 },
      { name: 'exact-max-bytes', size: 8, maxBytes: 406, fullAt: 4, freeLE: 3, againAt: 8 },
      { name: 'larger-overflow', size: 15, maxBytes: 408, fullAt: 5, freeLE: 1, againAt: 6 },
    ];
    for (const tc of cases) {
      it(tc.name, () => {
        const inflights = new Inflights(tc.size, tc.maxBytes);
        const addUntilFull = (begin: number, end: number): void => {
          for (let i = begin; i < end; i++) {
            expect(inflights.full(), `full at ${i}, want ${end}`).toBe(false);
            inflights.add(i, 100 + i);
          }
          expect(inflights.full(), `not full at ${end}`).toBe(true);
        };
        addUntilFull(0, tc.fullAt);
        inflights.freeLE(tc.freeLE);
        addUntilFull(tc.fullAt, tc.againAt);
        expect(() => inflights.add(100, 1024)).toThrow('cannot add into a Full inflights');
      });
    }
  });

  it('TestInflightsReset', () => {
    const inflights = new Inflights(10, 1000);
    // Byte usage must not leak across resets.
    let index = 0;
    for (let epoch = 0; epoch < 100; epoch++) {
      inflights.reset();
      for (let i = 0; i < 5; i++) {
        expect(inflights.full()).toBe(false);
        index++;
        inflights.add(index, 16);
      }
      inflights.freeLE(index - 2);
      expect(inflights.full()).toBe(false);
      expect(inflights.count()).toBe(2);
    }
    inflights.freeLE(index);
    expect(inflights.count()).toBe(0);
  });

  it('grows the buffer by doubling, up to size', () => {
    const inflights = new Inflights(5, 0);
    const lengths: number[] = [];
    for (let i = 1; i <= 5; i++) {
      inflights.add(i, 1);
      lengths.push(inflights.state().buffer.length);
    }
    expect(lengths).toEqual([1, 2, 4, 4, 5]);
  });

  it('clone shares no memory', () => {
    const inflights = new Inflights(4, 100);
    inflights.add(1, 10);
    const copy = inflights.clone();
    copy.add(2, 20);
    copy.freeLE(1);
    expect(inflights.count()).toBe(1);
    expect(inflights.bytes()).toBe(10);
    expect(copy.count()).toBe(1);
    expect(copy.bytes()).toBe(20);
  });

  it('ignores frees left of the window', () => {
    const inflights = new Inflights(4, 0);
    inflights.add(5, 1);
    inflights.freeLE(4);
    expect(inflights.count()).toBe(1);
    new Inflights(4, 0).freeLE(10); // empty: no-op
  });
});

describe('Inflights model check', () => {
  type Op = { kind: 'add'; bytes: number } | { kind: 'free'; back: number };
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant('add' as const), bytes: fc.integer({ min: 0, max: 50 }) }),
    fc.record({ kind: fc.constant('free' as const), back: fc.integer({ min: -2, max: 6 }) }),
  );

  it('matches a plain queue under random add/freeLE sequences', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.constantFrom(0, 40, 100),
        fc.array(op, { maxLength: 60 }),
        (size, maxBytes, ops) => {
          const inflights = new Inflights(size, maxBytes);
          const model: Inflight[] = [];
          let lastIndex = 0;
          const modelFull = (): boolean =>
            model.length === size || (maxBytes !== 0 && model.reduce((n, e) => n + e.bytes, 0) >= maxBytes);
          for (const step of ops) {
            if (step.kind === 'add') {
              if (modelFull()) {
                expect(() => inflights.add(lastIndex + 1, step.bytes)).toThrow();
                continue;
              }
              lastIndex += 1;
              inflights.add(lastIndex, step.bytes);
              model.push({ index: lastIndex, bytes: step.bytes });
            } else {
              // Free up to an index near the newest one (possibly below the window).
              const to = Math.max(0, lastIndex - step.back);
              inflights.freeLE(to);
              while (model.length > 0 && model[0]!.index <= to) model.shift();
            }
            expect(inflights.count()).toBe(model.length);
            expect(inflights.bytes()).toBe(model.reduce((n, e) => n + e.bytes, 0));
            expect(inflights.full()).toBe(modelFull());
            expect(inflights.state().buffer.length).toBeLessThanOrEqual(size);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('Progress (progress_test.go)', () => {
  it('TestProgressString', () => {
    const inflights = new Inflights(1, 0);
    inflights.add(123, 1);
    const pr = new Progress({
      match: 1,
      next: 2,
      state: StateType.StateSnapshot,
      pendingSnapshot: 123,
      recentActive: false,
      msgAppFlowPaused: true,
      isLearner: true,
      inflights,
    });
    expect(pr.toString()).toBe(
      'StateSnapshot match=1 next=2 learner paused pendingSnap=123 inactive inflight=1[full]',
    );
  });

  it('TestProgressIsPaused', () => {
    const cases: Array<[StateType, boolean, boolean]> = [
      [StateType.StateProbe, false, false],
      [StateType.StateProbe, true, true],
      [StateType.StateReplicate, false, false],
      [StateType.StateReplicate, true, true],
      [StateType.StateSnapshot, false, true],
      [StateType.StateSnapshot, true, true],
    ];
    cases.forEach(([state, paused, want], i) => {
      const pr = new Progress({ state, msgAppFlowPaused: paused, inflights: new Inflights(256, 0) });
      expect(pr.isPaused(), `#${i}`).toBe(want);
    });
  });

  it('TestProgressResume', () => {
    const pr = new Progress({ next: 2, msgAppFlowPaused: true });
    pr.maybeDecrTo(1, 1);
    expect(pr.msgAppFlowPaused).toBe(false);
    pr.msgAppFlowPaused = true;
    pr.maybeUpdate(2);
    expect(pr.msgAppFlowPaused).toBe(false);
  });

  it('TestProgressBecomeProbe', () => {
    const match = 1;
    const cases: Array<[Progress, number]> = [
      [new Progress({ state: StateType.StateReplicate, match, next: 5, inflights: new Inflights(256, 0) }), 2],
      // Snapshot finished: probe from after it.
      [
        new Progress({
          state: StateType.StateSnapshot,
          match,
          next: 5,
          pendingSnapshot: 10,
          inflights: new Inflights(256, 0),
        }),
        11,
      ],
      // Snapshot failed.
      [
        new Progress({
          state: StateType.StateSnapshot,
          match,
          next: 5,
          pendingSnapshot: 0,
          inflights: new Inflights(256, 0),
        }),
        2,
      ],
    ];
    cases.forEach(([pr, wantNext], i) => {
      pr.becomeProbe();
      expect(pr.state, `#${i}`).toBe(StateType.StateProbe);
      expect(pr.match, `#${i}`).toBe(match);
      expect(pr.next, `#${i}`).toBe(wantNext);
    });
  });

  it('TestProgressBecomeReplicate', () => {
    const pr = new Progress({ state: StateType.StateProbe, match: 1, next: 5, inflights: new Inflights(256, 0) });
    pr.becomeReplicate();
    expect(pr.state).toBe(StateType.StateReplicate);
    expect(pr.match).toBe(1);
    expect(pr.next).toBe(pr.match + 1);
  });

  it('TestProgressBecomeSnapshot', () => {
    const pr = new Progress({ state: StateType.StateProbe, match: 1, next: 5, inflights: new Inflights(256, 0) });
    pr.becomeSnapshot(10);
    expect(pr.state).toBe(StateType.StateSnapshot);
    expect(pr.match).toBe(1);
    expect(pr.pendingSnapshot).toBe(10);
    expect(pr.next).toBe(11);
    expect(pr.sentCommit).toBe(10);
  });

  it('TestProgressUpdate', () => {
    const prevM = 3;
    const prevN = 5;
    const cases: Array<[number, number, number, boolean]> = [
      [prevM - 1, prevM, prevN, false], // match and next never decrease
      [prevM, prevM, prevN, false],
      [prevM + 1, prevM + 1, prevN, true], // match rises, next stays
      [prevM + 2, prevM + 2, prevN + 1, true], // both rise
    ];
    cases.forEach(([update, wantMatch, wantNext, wantOk], i) => {
      const pr = new Progress({ match: prevM, next: prevN });
      expect(pr.maybeUpdate(update), `#${i}`).toBe(wantOk);
      expect(pr.match, `#${i}`).toBe(wantMatch);
      expect(pr.next, `#${i}`).toBe(wantNext);
    });
  });

  it('TestProgressMaybeDecr', () => {
    // [state, match, next, rejected, matchHint, wantOk, wantNext]
    const cases: Array<[StateType, number, number, number, number, boolean, number]> = [
      [StateType.StateReplicate, 5, 10, 5, 5, false, 10], // rejected <= match: stale
      [StateType.StateReplicate, 5, 10, 4, 4, false, 10],
      [StateType.StateReplicate, 5, 10, 9, 9, true, 6], // back to match+1
      [StateType.StateProbe, 0, 0, 0, 0, false, 0], // next-1 != rejected: stale
      [StateType.StateProbe, 0, 10, 5, 5, false, 10],
      [StateType.StateProbe, 0, 10, 9, 9, true, 9], // decremented by one
      [StateType.StateProbe, 0, 2, 1, 1, true, 1],
      [StateType.StateProbe, 0, 1, 0, 0, true, 1], // never below 1
      [StateType.StateProbe, 0, 10, 9, 2, true, 3], // min(rejected, hint+1)
      [StateType.StateProbe, 0, 10, 9, 0, true, 1],
    ];
    cases.forEach(([state, match, next, rejected, hint, wantOk, wantNext], i) => {
      const pr = new Progress({ state, match, next });
      expect(pr.maybeDecrTo(rejected, hint), `#${i}`).toBe(wantOk);
      expect(pr.match, `#${i}`).toBe(match);
      expect(pr.next, `#${i}`).toBe(wantNext);
    });
  });

  it('sentEntries advances next and pauses when inflights fill', () => {
    const pr = new Progress({ state: StateType.StateReplicate, match: 0, next: 1, inflights: new Inflights(2, 0) });
    pr.sentEntries(3, 30);
    expect(pr.next).toBe(4);
    expect(pr.msgAppFlowPaused).toBe(false);
    pr.sentEntries(1, 10);
    expect(pr.next).toBe(5);
    expect(pr.msgAppFlowPaused).toBe(true);
    expect(pr.inflights.count()).toBe(2);

    const probe = new Progress({ state: StateType.StateProbe, next: 1, inflights: new Inflights(2, 0) });
    probe.sentEntries(0, 0);
    expect(probe.msgAppFlowPaused).toBe(false);
    probe.sentEntries(1, 10);
    expect(probe.msgAppFlowPaused).toBe(true);
    expect(probe.next).toBe(1); // probes do not advance next

    const snap = new Progress({ state: StateType.StateSnapshot, inflights: new Inflights(2, 0) });
    expect(() => snap.sentEntries(1, 1)).toThrow('sending append in unhandled state StateSnapshot');
  });

  it('tracks the sent commit index', () => {
    const pr = new Progress({ state: StateType.StateReplicate, match: 3, next: 6, inflights: new Inflights(4, 0) });
    expect(pr.canBumpCommit(4)).toBe(true);
    pr.setSentCommit(5);
    expect(pr.sentCommit).toBe(5);
    expect(pr.canBumpCommit(6)).toBe(false); // already sent next-1
    pr.maybeDecrTo(5, 3); // rejection regresses sentCommit to next-1 = match
    expect(pr.next).toBe(4);
    expect(pr.sentCommit).toBe(3);
    expect(pr.canBumpCommit(3)).toBe(false);
    expect(pr.canBumpCommit(4)).toBe(false); // sentCommit already next-1
    pr.becomeSnapshot(20);
    pr.becomeProbe();
    expect(pr.next).toBe(21);
    expect(pr.sentCommit).toBe(20);
  });

  it('clones deeply and copies shallowly', () => {
    const pr = new Progress({ match: 1, next: 2, inflights: new Inflights(4, 0), recentActive: true });
    const deep = pr.clone();
    const shallow = pr.shallowCopy();
    pr.inflights.add(2, 1);
    expect(deep.inflights.count()).toBe(0);
    expect(shallow.inflights).toBe(pr.inflights);
    shallow.isLearner = true;
    expect(pr.isLearner).toBe(false);
  });

  it('names states like Go', () => {
    expect(stateTypeToString(StateType.StateProbe)).toBe('StateProbe');
    expect(stateTypeToString(StateType.StateReplicate)).toBe('StateReplicate');
    expect(stateTypeToString(StateType.StateSnapshot)).toBe('StateSnapshot');
    expect(StateType.StateProbe).toBe(0);
    expect(StateType.StateReplicate).toBe(1);
    expect(StateType.StateSnapshot).toBe(2);
  });
});

function trackerWith(voters: number[], outgoing: number[] = [], learners: number[] = []): ProgressTracker {
  const tracker = new ProgressTracker(10, 0);
  tracker.config.voters = [new MajorityConfig(voters), new MajorityConfig(outgoing)];
  tracker.config.learners = new Set(learners);
  for (const id of new Set([...voters, ...outgoing, ...learners])) {
    tracker.progress.set(
      id,
      new Progress({ next: 1, inflights: new Inflights(10, 0), isLearner: learners.includes(id) }),
    );
  }
  return tracker;
}

describe('ProgressTracker (tracker.go)', () => {
  it('starts empty', () => {
    const tracker = new ProgressTracker(256, 0);
    expect(tracker.maxInflight).toBe(256);
    expect(tracker.maxInflightBytes).toBe(0);
    expect(tracker.confState()).toEqual({
      voters: [],
      learners: [],
      votersOutgoing: [],
      learnersNext: [],
      autoLeave: false,
    });
    expect(tracker.committed()).toBe(MAX_INDEX);
    expect(tracker.isSingleton()).toBe(false);
    expect(tracker.config.toString()).toBe('voters=()');
  });

  it('reports the ConfState sorted', () => {
    const tracker = trackerWith([3, 1], [4, 1], [7, 5]);
    tracker.config.learnersNext = new Set([4]);
    tracker.config.autoLeave = true;
    expect(tracker.confState()).toEqual({
      voters: [1, 3],
      votersOutgoing: [1, 4],
      learners: [5, 7],
      learnersNext: [4],
      autoLeave: true,
    });
    expect(tracker.voterNodes()).toEqual([1, 3, 4]);
    expect(tracker.learnerNodes()).toEqual([5, 7]);
    expect(tracker.config.toString()).toBe('voters=(1 3)&&(1 4) learners=(5 7) learners_next=(4) autoleave');
    expect(tracker.voters).toBe(tracker.config.voters);
    expect(tracker.autoLeave).toBe(true);
  });

  it('commits by match index across a joint config', () => {
    const tracker = trackerWith([1, 2, 3], [3, 4, 5]);
    const matches: Record<number, number> = { 1: 10, 2: 9, 3: 5, 4: 7, 5: 2 };
    for (const [id, pr] of tracker.progress) pr.match = matches[id]!;
    expect(tracker.committed()).toBe(5);
    expect(trackerWith([1]).isSingleton()).toBe(true);
    expect(trackerWith([1], [2]).isSingleton()).toBe(false);
  });

  it('visits in ascending id order', () => {
    const tracker = trackerWith([9, 2, 11, 1, 5, 3, 4, 8, 7, 10]);
    const seen: number[] = [];
    tracker.visit((id) => seen.push(id));
    expect(seen).toEqual([1, 2, 3, 4, 5, 7, 8, 9, 10, 11]);
  });

  it('checks quorum activity over voters only', () => {
    const tracker = trackerWith([1, 2, 3], [], [4, 5]);
    for (const id of [4, 5]) tracker.progress.get(id)!.recentActive = true;
    tracker.progress.get(1)!.recentActive = true;
    expect(tracker.quorumActive()).toBe(false);
    tracker.progress.get(2)!.recentActive = true;
    expect(tracker.quorumActive()).toBe(true);
    expect(tracker.queryActive()).toBe(true);
  });

  it('records only the first vote and tallies non-learners', () => {
    const tracker = trackerWith([1, 2, 3, 4, 5], [], [6]);
    tracker.recordVote(1, true);
    tracker.recordVote(1, false); // ignored
    tracker.recordVote(2, false);
    tracker.recordVote(6, true); // learner: not counted
    tracker.recordVote(9, true); // unknown node: not counted
    expect(tracker.tallyVotes()).toEqual({ granted: 1, rejected: 1, result: VoteResult.VotePending });
    tracker.recordVote(3, true);
    tracker.recordVote(4, true);
    expect(tracker.tallyVotes()).toEqual({ granted: 3, rejected: 1, result: VoteResult.VoteWon });
    tracker.resetVotes();
    expect(tracker.tallyVotes()).toEqual({ granted: 0, rejected: 0, result: VoteResult.VotePending });
    for (const id of [1, 2, 3]) tracker.recordVote(id, false);
    expect(tracker.tallyVotes().result).toBe(VoteResult.VoteLost);
  });

  it('prints a ProgressMap sorted by id', () => {
    const tracker = trackerWith([2, 1]);
    tracker.progress.get(1)!.recentActive = true;
    expect(progressMapToString(tracker.progress)).toBe('1: StateProbe match=0 next=1\n2: StateProbe match=0 next=1 inactive\n');
  });

  it('Config.clone shares no memory and, like Go, drops autoLeave', () => {
    const config = new Config({
      voters: [new MajorityConfig([1, 2]), new MajorityConfig([1])],
      autoLeave: true,
      learners: new Set([3]),
      learnersNext: new Set([4]),
    });
    const copy = config.clone();
    copy.voters[0].add(9);
    copy.learners.add(10);
    expect(config.voters[0].has(9)).toBe(false);
    expect(config.learners.has(10)).toBe(false);
    expect(copy.autoLeave).toBe(false);
    expect(copy.voters[1].slice()).toEqual([1]);
    expect(copy.learnersNext.has(4)).toBe(true);
  });
});
