/**
 * Go's `%v` renderings that raft's log lines and DescribeReady print, for the shapes etcd's
 * transcripts do not reach (V1 conf changes, contexts, ConfStates, read states).
 */
import { describe, expect, it } from 'vitest';

import { goConfChangeString, goConfStateString } from '../../lib/raft/confchange.js';
import { describeReady } from '../../lib/raft/util.js';
import { ConfChangeTransition, ConfChangeType, type ConfChange, type ConfChangeV2 } from '../../lib/types.js';

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

describe('Go %v formatting', () => {
  const confChanges: [string, ConfChange | ConfChangeV2, string][] = [
    ['V1, fields in Go struct order (Type NodeID Context ID)', { id: 0, type: ConfChangeType.AddNode, nodeId: 3 }, '{ConfChangeAddNode 3 [] 0}'],
    ['V1 with context and id', { id: 7, type: ConfChangeType.RemoveNode, nodeId: 2, context: bytes('12') }, '{ConfChangeRemoveNode 2 [49 50] 7}'],
    ['V2 auto, several changes', { transition: ConfChangeTransition.Auto, changes: [{ type: ConfChangeType.AddNode, nodeId: 3 }, { type: ConfChangeType.AddLearnerNode, nodeId: 4 }] }, '{ConfChangeTransitionAuto [{ConfChangeAddNode 3} {ConfChangeAddLearnerNode 4}] []}'],
    ['V2 empty (leave joint)', { transition: ConfChangeTransition.Auto, changes: [] }, '{ConfChangeTransitionAuto [] []}'],
    ['V2 explicit with context', { transition: ConfChangeTransition.JointExplicit, changes: [{ type: ConfChangeType.UpdateNode, nodeId: 9 }], context: bytes('x') }, '{ConfChangeTransitionJointExplicit [{ConfChangeUpdateNode 9}] [120]}'],
    ['V2 implicit', { transition: ConfChangeTransition.JointImplicit, changes: [{ type: ConfChangeType.RemoveNode, nodeId: 1 }] }, '{ConfChangeTransitionJointImplicit [{ConfChangeRemoveNode 1}] []}'],
  ];
  for (const [name, cc, expected] of confChanges) {
    it(`conf change: ${name}`, () => {
      expect(goConfChangeString(cc)).toBe(expected);
    });
  }

  it('ConfState as %v and %+v', () => {
    const cs = { voters: [1, 2], learners: [3], votersOutgoing: [], learnersNext: [4], autoLeave: true };
    expect(goConfStateString(cs)).toBe('{[1 2] [3] [] [4] true}');
    expect(goConfStateString(cs, true)).toBe('{Voters:[1 2] Learners:[3] VotersOutgoing:[] LearnersNext:[4] AutoLeave:true}');
  });

  it('DescribeReady: empty, and read states as Go prints []ReadState', () => {
    const empty = { readStates: [], entries: [], committedEntries: [], messages: [], mustSync: false };
    expect(describeReady(empty)).toBe('<empty Ready>');
    expect(describeReady({ ...empty, readStates: [{ index: 12, requestCtx: bytes('12') }, { index: 13, requestCtx: new Uint8Array() }] })).toBe(
      'Ready MustSync=false:\nReadStates [{12 [49 50]} {13 []}]\n',
    );
    expect(describeReady({ ...empty, hardState: { term: 2, vote: 0, commit: 5 }, mustSync: true })).toBe('Ready MustSync=true:\nHardState Term:2 Commit:5\n');
  });
});
