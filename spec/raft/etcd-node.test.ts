/**
 * etcd raft v3.6 node_test.go, for the behaviours that exist without Go's goroutine `node`:
 * raft-level ones (TestDisableProposalForwarding, TestNodeReadIndexToOldLeader,
 * TestAppendPagination, also run on three RawNodes with and without asyncStorageWrites) and the
 * Ready-loop ones in RawNode form (TestCommitPagination,
 * TestNodeProposeWaitDropped, TestNodeProposeAddLearnerNode, and the helpers of TestSoftStateEqual and
 * TestIsHardStateEqual); TestCommitPaginationWithAsyncStorageWrites
 * is in rawnode-async-storage-writes.test.ts, TestNodeCommitPaginationAfterRestart is
 * etcd-rawnode.test.ts's TestRawNodeCommitPaginationAfterRestart. Then the three Config switches
 * that change behaviour: disableProposalForwarding, stepDownOnRemoval, disableConfChangeValidation.
 */
import { describe, expect, it } from 'vitest';
import { decodeConfChange, encodeConfChange, encodeConfChangeV2 } from '../../lib/codec.js';
import type { MemoryStorage } from '../../lib/memory-storage.js';
import { confChangeAsV2 } from '../../lib/raft/confchange.js';
import { Raft, RaftError, StateType, proposalDroppedError } from '../../lib/raft/raft.js';
import { RawNode, isHardStateEqual, softStateEqual, type Ready } from '../../lib/raft/rawnode.js';
import {
  ConfChangeTransition,
  ConfChangeType,
  EntryType,
  MessageType,
  type ConfState,
  type Entry,
  type Message,
} from '../../lib/types.js';
import { LOCAL_APPEND_THREAD, LOCAL_APPLY_THREAD } from '../../lib/raft/util.js';
import { TestNetwork, msg, newTestConfig, newTestMemoryStorage, newTestRaft, readMessages } from './raft-test-network.js';

const encoder = new TextEncoder();
const testData = encoder.encode('testdata');
const dataEntry = (data: Uint8Array): Entry => ({ type: EntryType.Normal, term: 0, index: 0, data });
const hup = (id: number) => msg({ from: id, to: id, type: MessageType.MsgHup });

async function persist(storage: MemoryStorage, rd: Ready): Promise<void> {
  if (rd.snapshot !== undefined) await storage.applySnapshot(rd.snapshot);
  if (rd.entries.length > 0) await storage.append(rd.entries);
  if (rd.hardState !== undefined) await storage.setHardState(rd.hardState);
}

/** The next Ready, which must exist (node_test's readyWithTimeout). */
function readyNow(node: RawNode): Ready {
  expect(node.hasReady()).toBe(true);
  return node.ready();
}

/** A single-voter RawNode campaigned into leadership with its first (empty) entry applied. */
async function singleNodeLeader(extra: Partial<ConstructorParameters<typeof RawNode>[0]> = {}): Promise<{ node: RawNode; storage: MemoryStorage }> {
  const storage = await newTestMemoryStorage([1]);
  const node = new RawNode({ ...newTestConfig(1, 10, 1, storage), ...extra });
  node.campaign();
  // Persist vote; append the empty entry; apply it.
  let rd = readyNow(node);
  await persist(storage, rd);
  node.advance(rd);
  rd = readyNow(node);
  await persist(storage, rd);
  node.advance(rd);
  rd = readyNow(node);
  expect(rd.committedEntries).toHaveLength(1);
  await persist(storage, rd);
  node.advance(rd);
  expect(node.raft.state).toBe(StateType.StateLeader);
  return { node, storage };
}

function expectDropped(operation: () => void): void {
  let error: unknown;
  try {
    operation();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(RaftError);
  expect((error as RaftError).code).toBe('ERR_PROPOSAL_DROPPED');
}

describe('node_test.go behaviours', () => {
  it('TestDisableProposalForwarding', async () => {
    const r1 = newTestRaft(1, 10, 1, await newTestMemoryStorage([1, 2, 3]));
    const r2 = newTestRaft(2, 10, 1, await newTestMemoryStorage([1, 2, 3]));
    const r3 = newTestRaft(3, 10, 1, await newTestMemoryStorage([1, 2, 3]), { disableProposalForwarding: true });
    const nt = await TestNetwork.create([r1, r2, r3]);
    nt.send(hup(1));
    // r2 forwards the proposal to the leader.
    expect(r2.step(msg({ from: 2, to: 2, type: MessageType.MsgProp, entries: [dataEntry(testData)] }))).toBeUndefined();
    expect(r2.msgs.map((m) => [m.type, m.to])).toEqual([[MessageType.MsgProp, 1]]);
    // r3 drops it, and says so.
    expect(r3.step(msg({ from: 3, to: 3, type: MessageType.MsgProp, entries: [dataEntry(testData)] }))?.code).toBe('ERR_PROPOSAL_DROPPED');
    expect(r3.msgs).toEqual([]);
  });

  it('TestNodeReadIndexToOldLeader: forwarded read requests carry no term', async () => {
    const [r1, r2, r3] = await Promise.all([1, 2, 3].map(async (id) => newTestRaft(id, 10, 1, await newTestMemoryStorage([1, 2, 3]))));
    const nt = await TestNetwork.create([r1!, r2!, r3!]);
    nt.send(hup(1));
    const read = (from: number, to: number) => msg({ from, to, type: MessageType.MsgReadIndex, entries: [dataEntry(testData)] });
    // Followers forward to the leader, without a term.
    r2!.step(read(2, 2));
    expect(r2!.msgs).toEqual([read(2, 1)]);
    r3!.step(read(3, 3));
    expect(r3!.msgs).toEqual([read(3, 1)]);
    // 3 becomes leader; the old leader forwards the two requests it now receives to it.
    nt.send(hup(3));
    expect(r1!.state).toBe(StateType.StateFollower);
    r1!.step(read(2, 1));
    r1!.step(read(3, 1));
    expect(r1!.msgs).toEqual([read(2, 3), read(3, 3)]);
  });

  it('TestAppendPagination', async () => {
    const maxSizePerMsg = 2048;
    const n = await TestNetwork.create([undefined, undefined, undefined], (c) => {
      c.maxSizePerMsg = maxSizePerMsg;
    });
    let seenFullMessage = false;
    let largestPayload = 0;
    // Never above the limit, but some messages above half of it.
    n.msgHook = (m) => {
      if (m.type === MessageType.MsgApp) {
        const size = m.entries.reduce((sum, entry) => sum + (entry.data?.length ?? 0), 0);
        largestPayload = Math.max(largestPayload, size);
        if (size > maxSizePerMsg / 2) seenFullMessage = true;
      }
      return true;
    };
    n.send(hup(1));
    // Partitioned while proposing: the entries are batched on recovery.
    n.isolate(1);
    const blob = encoder.encode('a'.repeat(1000));
    for (let i = 0; i < 5; i++) n.send(msg({ from: 1, to: 1, type: MessageType.MsgProp, entries: [dataEntry(blob)] }));
    n.recover();
    n.send(msg({ from: 1, to: 1, type: MessageType.MsgBeat }));
    expect(largestPayload).toBeLessThanOrEqual(maxSizePerMsg);
    expect(seenFullMessage, 'no message above half the limit: the test does not test').toBe(true);
    const follower = n.peers.get(2) as Raft;
    expect(follower.raftLog.lastIndex()).toBe(6);
  });

  /**
   * Three RawNodes over MemoryStorage, run one Ready at a time: in sync mode persist, send,
   * advance; in async mode the local append and apply threads' messages are carried out at once
   * and their responses routed (to the node itself, or to the network).
   */
  async function rawNodeCluster(asyncStorageWrites: boolean, maxSizePerMsg: number) {
    const nodes = new Map<number, { node: RawNode; storage: MemoryStorage }>();
    for (const id of [1, 2, 3]) {
      const storage = await newTestMemoryStorage([1, 2, 3]);
      nodes.set(id, { node: new RawNode({ ...newTestConfig(id, 10, 1, storage), maxSizePerMsg, asyncStorageWrites }), storage });
    }
    const network: Message[] = [];
    const isolated = new Set<number>();
    const sentMsgApps: Message[] = [];
    const send = (m: Message) => {
      if (isolated.has(m.from) || isolated.has(m.to)) return;
      if (m.type === MessageType.MsgApp) sentMsgApps.push(m);
      network.push(m);
    };
    const route = (self: RawNode, responses: Message[]) => {
      for (const response of responses) {
        if (response.to === self.raft.id) self.step(response);
        else send(response);
      }
    };
    const pump = async (): Promise<void> => {
      for (let round = 0; round < 1000; round++) {
        let busy = false;
        for (const { node, storage } of nodes.values()) {
          if (!node.hasReady()) continue;
          busy = true;
          const rd = node.ready();
          if (!asyncStorageWrites) {
            await persist(storage, rd);
            rd.messages.forEach(send);
            node.advance(rd);
            continue;
          }
          for (const m of rd.messages) {
            if (m.to === LOCAL_APPEND_THREAD) {
              if (m.snapshot !== undefined) await storage.applySnapshot(m.snapshot);
              if (m.entries.length > 0) await storage.append(m.entries);
              if (m.term !== 0) await storage.setHardState({ term: m.term, vote: m.vote, commit: m.commit });
              route(node, m.responses);
            } else if (m.to === LOCAL_APPLY_THREAD) {
              route(node, m.responses);
            } else {
              send(m);
            }
          }
        }
        while (network.length > 0) {
          busy = true;
          const m = network.shift()!;
          nodes.get(m.to)!.node.step(m);
        }
        if (!busy) return;
      }
      throw new Error('the cluster did not settle');
    };
    return { nodes, isolated, sentMsgApps, pump };
  }

  for (const asyncStorageWrites of [false, true]) {
    it(`TestAppendPagination (RawNode form${asyncStorageWrites ? ', asyncStorageWrites' : ''})`, async () => {
      const maxSizePerMsg = 2048;
      const cluster = await rawNodeCluster(asyncStorageWrites, maxSizePerMsg);
      const leader = cluster.nodes.get(1)!.node;
      leader.campaign();
      await cluster.pump();
      expect(leader.raft.state).toBe(StateType.StateLeader);
      // Partitioned while proposing: the entries go out in batches afterwards.
      cluster.isolated.add(1);
      const blob = encoder.encode('a'.repeat(1000));
      for (let i = 0; i < 5; i++) leader.propose(blob);
      await cluster.pump();
      cluster.isolated.clear();
      cluster.sentMsgApps.length = 0;
      leader.tick(); // a heartbeat wakes the followers up
      await cluster.pump();
      const payloads = cluster.sentMsgApps.map((m) => m.entries.reduce((sum, entry) => sum + (entry.data?.length ?? 0), 0));
      expect(Math.max(...payloads)).toBeLessThanOrEqual(maxSizePerMsg);
      expect(payloads.some((size) => size > maxSizePerMsg / 2), 'no MsgApp above half the limit: the test does not test').toBe(true);
      // Everyone has the 6 entries (the leader's empty one and the 5 proposals), committed.
      for (const { node, storage } of cluster.nodes.values()) {
        expect(storage.lastIndex()).toBe(6);
        expect(node.raft.raftLog.committed).toBe(6);
      }
    });
  }

  it('TestCommitPagination (RawNode form)', async () => {
    const { node, storage } = await singleNodeLeader({ maxCommittedSizePerReady: 2048 });
    const blob = encoder.encode('a'.repeat(1000));
    for (let i = 0; i < 3; i++) node.propose(blob);
    // First the three proposals are appended.
    let rd = readyNow(node);
    expect(rd.entries).toHaveLength(3);
    expect(rd.committedEntries).toHaveLength(0);
    await persist(storage, rd);
    node.advance(rd);
    // They commit in two batches.
    rd = readyNow(node);
    expect(rd.committedEntries).toHaveLength(2);
    await persist(storage, rd);
    node.advance(rd);
    rd = readyNow(node);
    expect(rd.committedEntries).toHaveLength(1);
    await persist(storage, rd);
    node.advance(rd);
    expect(node.hasReady()).toBe(false);
    expect(node.status().applied).toBe(4); // the empty entry 1, the proposals 2 to 4
  });

  it('TestNodeProposeWaitDropped (RawNode form): a dropped proposal is an error, nothing is sent', async () => {
    const { node } = await singleNodeLeader();
    const dropping = encoder.encode('test_dropping');
    const seen: Message[] = [];
    const original = node.raft.stepFunction;
    node.raft.stepFunction = (m) => {
      if (m.type === MessageType.MsgProp && m.entries.some((e) => e.data !== undefined && Buffer.from(e.data).equals(Buffer.from(dropping)))) {
        return proposalDroppedError();
      }
      seen.push(m);
      return original(m);
    };
    expectDropped(() => node.propose(dropping));
    expect(seen).toEqual([]);
    // A dropped proposal does not stop the node: the next one is accepted.
    node.propose(testData);
    expect(seen.map((m) => m.type)).toEqual([MessageType.MsgProp]);
    expect(node.stoppedBy()).toBeUndefined();
  });

  it('TestSoftStateEqual', () => {
    const empty = { lead: 0, raftState: StateType.StateFollower };
    const cases: Array<[{ lead: number; raftState: StateType }, boolean]> = [
      [{ lead: 0, raftState: StateType.StateFollower }, true],
      [{ lead: 1, raftState: StateType.StateFollower }, false],
      [{ lead: 0, raftState: StateType.StateLeader }, false],
    ];
    for (const [softState, wantEqual] of cases) expect(softStateEqual(softState, empty), JSON.stringify(softState)).toBe(wantEqual);
  });

  it('TestIsHardStateEqual', () => {
    const empty = { term: 0, vote: 0, commit: 0 };
    const cases: Array<[{ term: number; vote: number; commit: number }, boolean]> = [
      [{ term: 0, vote: 0, commit: 0 }, true],
      [{ term: 0, vote: 1, commit: 0 }, false],
      [{ term: 0, vote: 0, commit: 1 }, false],
      [{ term: 1, vote: 0, commit: 0 }, false],
    ];
    for (const [hardState, wantEqual] of cases) expect(isHardStateEqual(hardState, empty), JSON.stringify(hardState)).toBe(wantEqual);
  });

  it('TestNodeProposeAddLearnerNode (RawNode form)', async () => {
    const { node, storage } = await singleNodeLeader();
    node.proposeConfChange({ id: 0, type: ConfChangeType.AddLearnerNode, nodeId: 2 });
    const applied: ConfState[] = [];
    for (let round = 0; round < 5 && node.hasReady(); round++) {
      const rd = node.ready();
      await persist(storage, rd);
      for (const entry of rd.committedEntries) {
        if (entry.type !== EntryType.ConfChange) continue;
        applied.push(node.applyConfChange(decodeConfChange(entry.data!)));
      }
      node.advance(rd);
    }
    expect(applied).toHaveLength(1);
    // The learner is added; the voters are unchanged.
    expect(applied[0]!.learners).toEqual([2]);
    expect(applied[0]!.voters).toEqual([1]);
  });
});

describe('Config switches', () => {
  it('disableProposalForwarding: RawNode.propose on a follower throws ERR_PROPOSAL_DROPPED and sends nothing', async () => {
    for (const disableProposalForwarding of [false, true]) {
      const storage = await newTestMemoryStorage([1, 2]);
      const node = new RawNode({ ...newTestConfig(2, 10, 1, storage), disableProposalForwarding });
      // A heartbeat from leader 1 makes 2 its follower.
      node.step(msg({ from: 1, to: 2, type: MessageType.MsgHeartbeat, term: 1 }));
      expect(node.raft.lead).toBe(1);
      node.ready(); // the term change and the heartbeat response
      if (disableProposalForwarding) {
        expectDropped(() => node.propose(testData));
        expect(node.hasReady()).toBe(false);
      } else {
        node.propose(testData);
        const rd = node.ready();
        expect(rd.messages.map((m) => [m.type, m.to, m.term])).toEqual([[MessageType.MsgProp, 1, 0]]);
      }
    }
  });

  /** A 3-voter leader (1) that has just applied a conf change removing or demoting itself. */
  async function leaderAfterOwnRemoval(stepDownOnRemoval: boolean, demote: boolean): Promise<Raft> {
    const r = newTestRaft(1, 10, 1, await newTestMemoryStorage([1, 2, 3]), { stepDownOnRemoval });
    r.becomeCandidate();
    r.becomeLeader();
    if (demote) {
      // Enter and leave a joint config that turns 1 into a learner.
      r.applyConfChange({
        transition: ConfChangeTransition.JointExplicit,
        changes: [
          { type: ConfChangeType.RemoveNode, nodeId: 1 },
          { type: ConfChangeType.AddLearnerNode, nodeId: 1 },
        ],
      });
      expect(r.state).toBe(StateType.StateLeader); // still a voter in the outgoing half
      r.applyConfChange({ transition: ConfChangeTransition.Auto, changes: [] });
    } else {
      r.applyConfChange(confChangeAsV2({ id: 0, type: ConfChangeType.RemoveNode, nodeId: 1 }));
    }
    return r;
  }

  for (const demote of [false, true]) {
    it(`stepDownOnRemoval: a leader ${demote ? 'demoted to learner' : 'removed'} steps down only when set`, async () => {
      const kept = await leaderAfterOwnRemoval(false, demote);
      // Go's default: it keeps leading (it cannot campaign again) until a new leader appears.
      expect(kept.state).toBe(StateType.StateLeader);
      expect(kept.lead).toBe(1);
      const steppedDown = await leaderAfterOwnRemoval(true, demote);
      expect(steppedDown.state).toBe(StateType.StateFollower);
      expect(steppedDown.lead).toBe(0);
      expect(steppedDown.term).toBe(kept.term);
      // Either way it may not campaign.
      steppedDown.step(hup(1));
      expect(steppedDown.state).toBe(StateType.StateFollower);
    });
  }

  it('disableConfChangeValidation: conf changes the leader would neutralise are appended as proposed', async () => {
    const ccData = encodeConfChange({ id: 0, type: ConfChangeType.AddNode, nodeId: 4 });
    const leaveJoint = encodeConfChangeV2({ transition: ConfChangeTransition.Auto, changes: [] });
    const cases: Array<[string, Entry[]]> = [
      // A second conf change while one is unapplied.
      ['pending', [{ type: EntryType.ConfChange, term: 0, index: 0, data: ccData }, { type: EntryType.ConfChange, term: 0, index: 0, data: ccData }]],
      // Leaving a joint config we are not in.
      ['not joint', [{ type: EntryType.ConfChangeV2, term: 0, index: 0, data: leaveJoint }]],
    ];
    for (const [label, entries] of cases) {
      for (const disableConfChangeValidation of [false, true]) {
        const r = newTestRaft(1, 10, 1, await newTestMemoryStorage([1]), { disableConfChangeValidation });
        r.becomeCandidate();
        r.becomeLeader();
        // Commit (self-ack) and apply the empty entry so that no conf change counts as pending.
        readMessages(r);
        r.raftLog.appliedTo(r.raftLog.lastIndex(), 0);
        const before = r.raftLog.lastIndex();
        expect(r.step(msg({ from: 1, to: 1, type: MessageType.MsgProp, entries }))).toBeUndefined();
        const appended = r.raftLog.unstable.entries.filter((e) => e.index > before);
        const types = appended.map((e) => e.type);
        const wantTypes = entries.map((e) => e.type);
        if (disableConfChangeValidation) {
          expect(types, `${label}, validation off`).toEqual(wantTypes);
        } else {
          // The refused change keeps its slot as an empty normal entry.
          const refused = label === 'pending' ? [wantTypes[0], EntryType.Normal] : [EntryType.Normal];
          expect(types, `${label}, validation on`).toEqual(refused);
          expect(appended[appended.length - 1]!.data ?? new Uint8Array()).toEqual(new Uint8Array());
        }
        readMessages(r);
      }
    }
  });
});
