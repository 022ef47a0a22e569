/**
 * etcd raft v3.6 raft_test.go, first part (the rest is etcd-raft-more.test.ts): elections (with and without pre-vote), replication,
 * commit rules, proposals, check-quorum, ReadIndex, snapshots, leadership transfer, removal.
 */
import { describe, expect, it } from 'vitest';
import { encodeConfChange, encodeConfChangeV2 } from '../../lib/codec.js';
import { RaftLog } from '../../lib/raft/log.js';
import { confChangeAsV2 } from '../../lib/raft/confchange.js';
import { Raft, StateType, type RaftConfig } from '../../lib/raft/raft.js';
import { StateType as ProgressState } from '../../lib/raft/tracker.js';
import { ConfChangeTransition, ConfChangeType, EntryType, MessageType, emptyConfState, type Entry, type Message } from '../../lib/types.js';
import { ReadOnlyOption } from '../../lib/raft/read-only.js';
import { index } from './helpers.js';
import {
  BLACK_HOLE,
  TestNetwork,
  msg,
  newTestConfig,
  newTestMemoryStorage,
  newTestRaft,
  nextEnts,
  readMessages,
} from './raft-test-network.js';

const encoder = new TextEncoder();
const someData = encoder.encode('somedata');
const e = (term: number, idx: number, data?: Uint8Array): Entry =>
  data === undefined ? { type: EntryType.Normal, term, index: idx } : { type: EntryType.Normal, term, index: idx, data };
const hup = (id: number) => msg({ from: id, to: id, type: MessageType.MsgHup });
const beat = (id: number) => msg({ from: id, to: id, type: MessageType.MsgBeat });
const prop = (id: number, data?: Uint8Array) => msg({ from: id, to: id, type: MessageType.MsgProp, entries: [data === undefined ? e(0, 0) : e(0, 0, data)] });

type Configure = ((c: RaftConfig) => void) | undefined;
const preVote: Configure = (c) => {
  c.preVote = true;
};

/** Go's ltoa: what raft_test compares logs by. */
function ltoa(log: RaftLog): { lastIndex: number; applied: number; applying: number; entries: Entry[] } {
  return { lastIndex: log.lastIndex(), applied: log.applied, applying: log.applying, entries: log.allEntries() };
}
const wantLog = (entries: Entry[]) => ({ lastIndex: entries.length, applied: 0, applying: 0, entries });

/** Go's entsWithConfig, with the id and voters newNetwork would assign. */
async function entsWithConfig(id: number, voters: number[], configure: Configure, ...terms: number[]): Promise<Raft> {
  const storage = await newTestMemoryStorage(voters);
  for (let i = 0; i < terms.length; i++) await storage.append([e(terms[i]!, i + 1)]);
  const config = newTestConfig(id, 5, 1, storage);
  configure?.(config);
  const r = new Raft(config);
  r.reset(terms[terms.length - 1]!);
  return r;
}

/** Go's votedWithConfig: voted for `vote` in `term`, no log. */
async function votedWithConfig(id: number, voters: number[], configure: Configure, vote: number, term: number): Promise<Raft> {
  const storage = await newTestMemoryStorage(voters);
  await storage.setHardState({ vote, term, commit: 0 });
  const config = newTestConfig(id, 5, 1, storage);
  configure?.(config);
  const r = new Raft(config);
  r.reset(term);
  return r;
}

function peer(network: TestNetwork, id: number): Raft {
  const p = network.peers.get(id);
  if (p === undefined || p === BLACK_HOLE) throw new Error(`peer ${id} is not a raft`);
  return p;
}

function checkLeaderTransferState(r: Raft, state: StateType, lead: number): void {
  expect(r.state).toBe(state);
  expect(r.lead).toBe(lead);
  expect(r.leadTransferee).toBe(0);
}

describe('raft (raft_test.go)', () => {
  for (const [name, configure] of [
    ['TestLeaderElection', undefined],
    ['TestLeaderElectionPreVote', preVote],
  ] as const) {
    it(name, async () => {
      const candState = configure === undefined ? StateType.StateCandidate : StateType.StatePreCandidate;
      const candTerm = configure === undefined ? 1 : 0;
      const five = [1, 2, 3, 4, 5];
      const cases: Array<[TestNetwork, StateType, number]> = [
        [await TestNetwork.create([undefined, undefined, undefined], configure), StateType.StateLeader, 1],
        [await TestNetwork.create([undefined, undefined, BLACK_HOLE], configure), StateType.StateLeader, 1],
        [await TestNetwork.create([undefined, BLACK_HOLE, BLACK_HOLE], configure), candState, candTerm],
        [await TestNetwork.create([undefined, BLACK_HOLE, BLACK_HOLE, undefined], configure), candState, candTerm],
        [await TestNetwork.create([undefined, BLACK_HOLE, BLACK_HOLE, undefined, undefined], configure), StateType.StateLeader, 1],
        [
          await TestNetwork.create(
            [
              undefined,
              await entsWithConfig(2, five, configure, 1),
              await entsWithConfig(3, five, configure, 1),
              await entsWithConfig(4, five, configure, 1, 1),
              undefined,
            ],
            configure,
          ),
          StateType.StateFollower,
          1,
        ],
      ];
      for (const [network, state, term] of cases) {
        network.send(hup(1));
        expect(peer(network, 1).state).toBe(state);
        expect(peer(network, 1).term).toBe(term);
      }
    });
  }

  for (const [name, configure] of [
    ['TestLeaderCycle', undefined],
    ['TestLeaderCyclePreVote', preVote],
  ] as const) {
    it(name, async () => {
      const n = await TestNetwork.create([undefined, undefined, undefined], configure);
      for (let campaigner = 1; campaigner <= 3; campaigner++) {
        n.send(hup(campaigner));
        for (const id of [1, 2, 3]) {
          expect(peer(n, id).state).toBe(id === campaigner ? StateType.StateLeader : StateType.StateFollower);
        }
      }
    });
  }

  for (const [name, configure] of [
    ['TestLeaderElectionOverwriteNewerLogs', undefined],
    ['TestLeaderElectionOverwriteNewerLogsPreVote', preVote],
  ] as const) {
    it(name, async () => {
      const ids = [1, 2, 3, 4, 5];
      const n = await TestNetwork.create([
        await entsWithConfig(1, ids, configure, 1),
        await entsWithConfig(2, ids, configure, 1),
        await entsWithConfig(3, ids, configure, 2),
        await votedWithConfig(4, ids, configure, 3, 2),
        await votedWithConfig(5, ids, configure, 3, 2),
      ]);
      n.send(hup(1));
      const sm1 = peer(n, 1);
      expect(sm1.state).toBe(StateType.StateFollower);
      expect(sm1.term).toBe(2);
      n.send(hup(1));
      expect(sm1.state).toBe(StateType.StateLeader);
      expect(sm1.term).toBe(3);
      for (const id of ids) {
        const entries = peer(n, id).raftLog.allEntries();
        expect(entries.map((x) => x.term)).toEqual([1, 3]);
      }
    });
  }

  it('TestLogReplication', async () => {
    const cases: Array<[Message[], number]> = [
      [[prop(1, someData)], 2],
      [[prop(1, someData), msg({ from: 1, to: 2, type: MessageType.MsgHup }), msg({ from: 1, to: 2, type: MessageType.MsgProp, entries: [e(0, 0, someData)] })], 4],
    ];
    for (const [msgs, wantCommitted] of cases) {
      const n = await TestNetwork.create([undefined, undefined, undefined]);
      n.send(hup(1));
      for (const m of msgs) n.send(m);
      for (const id of [1, 2, 3]) {
        const sm = peer(n, id);
        expect(sm.raftLog.committed).toBe(wantCommitted);
        const withData = (await nextEnts(sm, n.storage.get(id)!)).filter((x) => x.data !== undefined);
        const proposals = msgs.filter((m) => m.type === MessageType.MsgProp);
        proposals.forEach((m, k) => expect(withData[k]!.data).toEqual(m.entries[0]!.data));
      }
    }
  });

  it('TestSingleNodeCommit', async () => {
    const n = await TestNetwork.create([undefined]);
    n.send(hup(1));
    n.send(prop(1, encoder.encode('some data')));
    n.send(prop(1, encoder.encode('some data')));
    expect(peer(n, 1).raftLog.committed).toBe(3);
  });

  it('TestCannotCommitWithoutNewTermEntry', async () => {
    const n = await TestNetwork.create([undefined, undefined, undefined, undefined, undefined]);
    n.send(hup(1));
    n.cut(1, 3);
    n.cut(1, 4);
    n.cut(1, 5);
    n.send(prop(1, encoder.encode('some data')));
    n.send(prop(1, encoder.encode('some data')));
    expect(peer(n, 1).raftLog.committed).toBe(1);
    n.recover();
    // Avoid committing the ChangeTerm proposal.
    n.ignore(MessageType.MsgApp);
    n.send(hup(2));
    const sm = peer(n, 2);
    expect(sm.raftLog.committed).toBe(1);
    n.recover();
    n.send(beat(2));
    n.send(prop(2, encoder.encode('some data')));
    expect(sm.raftLog.committed).toBe(5);
  });

  it('TestCommitWithoutNewTermEntry', async () => {
    const n = await TestNetwork.create([undefined, undefined, undefined, undefined, undefined]);
    n.send(hup(1));
    n.cut(1, 3);
    n.cut(1, 4);
    n.cut(1, 5);
    n.send(prop(1, encoder.encode('some data')));
    n.send(prop(1, encoder.encode('some data')));
    const sm = peer(n, 1);
    expect(sm.raftLog.committed).toBe(1);
    n.recover();
    // Electing 2 commits its empty entry and, with it, the earlier entries.
    n.send(hup(2));
    expect(sm.raftLog.committed).toBe(4);
  });

  it('TestDuelingCandidates', async () => {
    const a = newTestRaft(1, 10, 1, await newTestMemoryStorage([1, 2, 3]));
    const b = newTestRaft(2, 10, 1, await newTestMemoryStorage([1, 2, 3]));
    const c = newTestRaft(3, 10, 1, await newTestMemoryStorage([1, 2, 3]));
    const n = await TestNetwork.create([a, b, c]);
    n.cut(1, 3);
    n.send(hup(1));
    n.send(hup(3));
    expect(a.state).toBe(StateType.StateLeader);
    expect(c.state).toBe(StateType.StateCandidate);
    n.recover();
    // c's higher term disrupts a; c's shorter log loses the election.
    n.send(hup(3));
    expect(c.state).toBe(StateType.StateFollower);
    const cases: Array<[Raft, StateType, number, number]> = [
      [a, StateType.StateFollower, 2, 1],
      [b, StateType.StateFollower, 2, 1],
      [c, StateType.StateFollower, 2, 0],
    ];
    for (const [sm, state, term, last] of cases) {
      expect(sm.state).toBe(state);
      expect(sm.term).toBe(term);
      expect(sm.raftLog.lastIndex()).toBe(last);
    }
  });

  it('TestDuelingPreCandidates', async () => {
    const make = async (id: number) => new Raft({ ...newTestConfig(id, 10, 1, await newTestMemoryStorage([1, 2, 3])), preVote: true });
    const a = await make(1);
    const b = await make(2);
    const c = await make(3);
    const n = await TestNetwork.create([a, b, c]);
    n.cut(1, 3);
    n.send(hup(1));
    n.send(hup(3));
    expect(a.state).toBe(StateType.StateLeader);
    expect(c.state).toBe(StateType.StateFollower);
    n.recover();
    // With pre-vote, c's pre-campaign fails and does not disrupt a.
    n.send(hup(3));
    const cases: Array<[Raft, StateType, number, number]> = [
      [a, StateType.StateLeader, 1, 1],
      [b, StateType.StateFollower, 1, 1],
      [c, StateType.StateFollower, 1, 0],
    ];
    for (const [sm, state, term, last] of cases) {
      expect(sm.state).toBe(state);
      expect(sm.term).toBe(term);
      expect(sm.raftLog.lastIndex()).toBe(last);
    }
  });

  it('TestCandidateConcede', async () => {
    const n = await TestNetwork.create([undefined, undefined, undefined]);
    n.isolate(1);
    n.send(hup(1));
    n.send(hup(3));
    n.recover();
    n.send(beat(3));
    const data = encoder.encode('force follower');
    n.send(prop(3, data));
    n.send(beat(3));
    const a = peer(n, 1);
    expect(a.state).toBe(StateType.StateFollower);
    expect(a.term).toBe(1);
    for (const id of [1, 2, 3]) {
      const log = ltoa(peer(n, id).raftLog);
      expect(log.entries).toEqual([e(1, 1), e(1, 2, data)]);
    }
  });

  it('TestOldMessages', async () => {
    const n = await TestNetwork.create([undefined, undefined, undefined]);
    n.send(hup(1));
    n.send(hup(2));
    n.send(hup(1));
    // A stale MsgApp from the term-2 leader is ignored.
    n.send(msg({ from: 2, to: 1, type: MessageType.MsgApp, term: 2, entries: index(3).terms(2) }));
    n.send(prop(1, someData));
    for (const id of [1, 2, 3]) {
      expect(peer(n, id).raftLog.allEntries()).toEqual([e(1, 1), e(2, 2), e(3, 3), e(3, 4, someData)]);
    }
  });

  it('TestProposal', async () => {
    const cases: Array<[Array<undefined | typeof BLACK_HOLE>, boolean]> = [
      [[undefined, undefined, undefined], true],
      [[undefined, undefined, BLACK_HOLE], true],
      [[undefined, BLACK_HOLE, BLACK_HOLE], false],
      [[undefined, BLACK_HOLE, BLACK_HOLE, undefined], false],
      [[undefined, BLACK_HOLE, BLACK_HOLE, undefined, undefined], true],
    ];
    for (const [peers, success] of cases) {
      const n = await TestNetwork.create(peers);
      n.send(hup(1));
      n.send(prop(1, someData));
      const want = success ? wantLog([e(1, 1), e(1, 2, someData)]) : wantLog([]);
      for (const [, p] of n.peers) if (p !== BLACK_HOLE) expect(ltoa(p.raftLog)).toEqual(want);
      expect(peer(n, 1).term).toBe(1);
    }
  });

  it('TestProposalByProxy', async () => {
    for (const peers of [
      [undefined, undefined, undefined],
      [undefined, undefined, BLACK_HOLE],
    ] as Array<Array<undefined | typeof BLACK_HOLE>>) {
      const n = await TestNetwork.create(peers);
      n.send(hup(1));
      n.send(prop(2, someData));
      for (const [, p] of n.peers) {
        if (p !== BLACK_HOLE) expect(ltoa(p.raftLog)).toEqual(wantLog([e(1, 1), e(1, 2, someData)]));
      }
      expect(peer(n, 1).term).toBe(1);
    }
  });

  it('TestCommit', async () => {
    const cases: Array<[number[], Entry[], number, number]> = [
      [[1], index(1).terms(1), 1, 1],
      [[1], index(1).terms(1), 2, 0],
      [[2], index(1).terms(1, 2), 2, 2],
      [[1], index(1).terms(2), 2, 1],
      [[2, 1, 1], index(1).terms(1, 2), 1, 1],
      [[2, 1, 1], index(1).terms(1, 1), 2, 0],
      [[2, 1, 2], index(1).terms(1, 2), 2, 2],
      [[2, 1, 2], index(1).terms(1, 1), 2, 0],
      [[2, 1, 1, 1], index(1).terms(1, 2), 1, 1],
      [[2, 1, 1, 1], index(1).terms(1, 1), 2, 0],
      [[2, 1, 1, 2], index(1).terms(1, 2), 1, 1],
      [[2, 1, 1, 2], index(1).terms(1, 1), 2, 0],
      [[2, 1, 2, 2], index(1).terms(1, 2), 2, 2],
      [[2, 1, 2, 2], index(1).terms(1, 1), 2, 0],
    ];
    for (const [matches, logs, term, want] of cases) {
      const storage = await newTestMemoryStorage([1]);
      await storage.append(logs);
      await storage.setHardState({ term, vote: 0, commit: 0 });
      const sm = newTestRaft(1, 10, 2, storage);
      matches.forEach((match, j) => {
        const id = j + 1;
        if (id > 1) sm.applyConfChange(confChangeAsV2({ id: 0, type: ConfChangeType.AddNode, nodeId: id }));
        const pr = sm.trk.progress.get(id)!;
        pr.match = match;
        pr.next = match + 1;
      });
      sm.maybeCommit();
      expect(sm.raftLog.committed).toBe(want);
    }
  });

  it('TestReadOnlyOptionSafe', async () => {
    const a = newTestRaft(1, 10, 1, await newTestMemoryStorage([1, 2, 3]));
    const b = newTestRaft(2, 10, 1, await newTestMemoryStorage([1, 2, 3]));
    const c = newTestRaft(3, 10, 1, await newTestMemoryStorage([1, 2, 3]));
    const n = await TestNetwork.create([a, b, c]);
    b.randomizedElectionTimeout = b.electionTimeout + 1;
    for (let i = 0; i < b.electionTimeout; i++) b.tick();
    n.send(hup(1));
    expect(a.state).toBe(StateType.StateLeader);
    const cases: Array<[Raft, number, number, string]> = [
      [a, 10, 11, 'ctx1'],
      [b, 10, 21, 'ctx2'],
      [c, 10, 31, 'ctx3'],
      [a, 10, 41, 'ctx4'],
      [b, 10, 51, 'ctx5'],
      [c, 10, 61, 'ctx6'],
    ];
    for (const [r, proposals, wantIndex, ctx] of cases) {
      for (let j = 0; j < proposals; j++) n.send(prop(1));
      n.send(msg({ from: r.id, to: r.id, type: MessageType.MsgReadIndex, entries: [e(0, 0, encoder.encode(ctx))] }));
      expect(r.readStates.length).toBeGreaterThan(0);
      expect(r.readStates[0]!.index).toBe(wantIndex);
      expect(new TextDecoder().decode(r.readStates[0]!.requestCtx)).toBe(ctx);
      r.readStates = [];
    }
  });

  it('TestLeaderStepdownWhenQuorumLost', async () => {
    const sm = newTestRaft(1, 5, 1, await newTestMemoryStorage([1, 2, 3]));
    sm.checkQuorum = true;
    sm.becomeCandidate();
    sm.becomeLeader();
    for (let i = 0; i < sm.electionTimeout + 1; i++) sm.tick();
    expect(sm.state).toBe(StateType.StateFollower);
  });

  it('TestLeaderSupersedingWithCheckQuorum', async () => {
    const make = async (id: number) => new Raft({ ...newTestConfig(id, 10, 1, await newTestMemoryStorage([1, 2, 3])), checkQuorum: true });
    const a = await make(1);
    const b = await make(2);
    const c = await make(3);
    const n = await TestNetwork.create([a, b, c]);
    b.randomizedElectionTimeout = b.electionTimeout + 1;
    for (let i = 0; i < b.electionTimeout; i++) b.tick();
    n.send(hup(1));
    expect(a.state).toBe(StateType.StateLeader);
    expect(c.state).toBe(StateType.StateFollower);
    n.send(hup(3));
    // b is still in its lease and ignores c's vote request.
    expect(c.state).toBe(StateType.StateCandidate);
    for (let i = 0; i < b.electionTimeout; i++) b.tick();
    n.send(hup(3));
    expect(c.state).toBe(StateType.StateLeader);
  });

  it('TestRestore', async () => {
    const s = { metadata: { index: 11, term: 11, confState: { ...emptyConfState(), voters: [1, 2, 3] } } };
    const sm = newTestRaft(1, 10, 1, await newTestMemoryStorage([1, 2]));
    expect(sm.restore(s)).toBe(true);
    expect(sm.raftLog.lastIndex()).toBe(11);
    expect(sm.raftLog.term(11)).toBe(11);
    expect(sm.trk.voterNodes()).toEqual([1, 2, 3]);
    expect(sm.restore(s)).toBe(false);
    // A pending snapshot makes the node unpromotable: it must not campaign.
    for (let i = 0; i < sm.randomizedElectionTimeout; i++) sm.tick();
    expect(sm.state).toBe(StateType.StateFollower);
  });

  it('TestProvideSnap', async () => {
    const s = { metadata: { index: 11, term: 11, confState: { ...emptyConfState(), voters: [1, 2] } } };
    const sm = newTestRaft(1, 10, 1, await newTestMemoryStorage([1]));
    sm.restore(s);
    sm.becomeCandidate();
    sm.becomeLeader();
    // Force the follower to need entries below the first index: a snapshot is sent.
    sm.trk.progress.get(2)!.next = sm.raftLog.firstIndex();
    sm.step(msg({ from: 2, to: 1, type: MessageType.MsgAppResp, index: sm.trk.progress.get(2)!.next - 1, reject: true }));
    const msgs = readMessages(sm);
    expect(msgs.length).toBe(1);
    expect(msgs[0]!.type).toBe(MessageType.MsgSnap);
  });

  it('TestSlowNodeRestore', async () => {
    const n = await TestNetwork.create([undefined, undefined, undefined]);
    n.send(hup(1));
    n.isolate(3);
    for (let j = 0; j <= 100; j++) n.send(prop(1));
    const lead = peer(n, 1);
    await nextEnts(lead, n.storage.get(1)!);
    await n.storage.get(1)!.createSnapshot(lead.raftLog.applied, { ...emptyConfState(), voters: lead.trk.voterNodes() });
    await n.storage.get(1)!.compact(lead.raftLog.applied);
    n.recover();
    // Heartbeats until the leader knows 3 is active (a snapshot is only sent to active peers).
    do n.send(beat(1));
    while (!lead.trk.progress.get(3)!.recentActive);
    // Trigger a snapshot, then a commit.
    n.send(prop(1));
    const follower = peer(n, 3);
    n.send(prop(1));
    expect(follower.raftLog.committed).toBe(lead.raftLog.committed);
  });

  it('TestLeaderTransferToUpToDateNode', async () => {
    const n = await TestNetwork.create([undefined, undefined, undefined]);
    n.send(hup(1));
    const lead = peer(n, 1);
    expect(lead.lead).toBe(1);
    n.send(msg({ from: 2, to: 1, type: MessageType.MsgTransferLeader }));
    checkLeaderTransferState(lead, StateType.StateFollower, 2);
    n.send(prop(1));
    n.send(msg({ from: 1, to: 2, type: MessageType.MsgTransferLeader }));
    checkLeaderTransferState(lead, StateType.StateLeader, 1);
  });

  it('TestLeaderTransferToSlowFollower', async () => {
    const n = await TestNetwork.create([undefined, undefined, undefined]);
    n.send(hup(1));
    n.isolate(3);
    n.send(prop(1));
    n.recover();
    const lead = peer(n, 1);
    expect(lead.trk.progress.get(3)!.match).toBe(1);
    // The transferee is caught up first, then gets MsgTimeoutNow.
    n.send(msg({ from: 3, to: 1, type: MessageType.MsgTransferLeader }));
    checkLeaderTransferState(lead, StateType.StateFollower, 3);
  });

  it('TestLeaderTransferAfterSnapshot', async () => {
    const n = await TestNetwork.create([undefined, undefined, undefined]);
    n.send(hup(1));
    n.isolate(3);
    n.send(prop(1));
    const lead = peer(n, 1);
    await nextEnts(lead, n.storage.get(1)!);
    await n.storage.get(1)!.createSnapshot(lead.raftLog.applied, { ...emptyConfState(), voters: lead.trk.voterNodes() });
    await n.storage.get(1)!.compact(lead.raftLog.applied);
    n.recover();
    expect(lead.trk.progress.get(3)!.match).toBe(1);
    let filtered: Message | undefined;
    // Hold back 3's response to the snapshot until it is applied.
    n.msgHook = (m) => {
      if (m.type !== MessageType.MsgAppResp || m.from !== 3 || m.reject) return true;
      filtered = m;
      return false;
    };
    n.send(msg({ from: 3, to: 1, type: MessageType.MsgTransferLeader }));
    expect(lead.state).toBe(StateType.StateLeader);
    expect(filtered).toBeDefined();
    const follower = peer(n, 3);
    const snapshot = follower.raftLog.nextUnstableSnapshot()!;
    await n.storage.get(3)!.applySnapshot(snapshot);
    follower.appliedSnap(snapshot);
    n.msgHook = undefined;
    n.send(filtered!);
    checkLeaderTransferState(lead, StateType.StateFollower, 3);
  });

  it('TestLeaderTransferTimeout', async () => {
    const n = await TestNetwork.create([undefined, undefined, undefined]);
    n.send(hup(1));
    n.isolate(3);
    const lead = peer(n, 1);
    n.send(msg({ from: 3, to: 1, type: MessageType.MsgTransferLeader }));
    expect(lead.leadTransferee).toBe(3);
    for (let i = 0; i < lead.heartbeatTimeout; i++) lead.tick();
    expect(lead.leadTransferee).toBe(3);
    for (let i = 0; i < lead.electionTimeout - lead.heartbeatTimeout; i++) lead.tick();
    checkLeaderTransferState(lead, StateType.StateLeader, 1);
  });

  it('TestLeaderTransferIgnoreProposal', async () => {
    const s = await newTestMemoryStorage([1, 2, 3]);
    const r = newTestRaft(1, 10, 1, s);
    const n = await TestNetwork.create([r, undefined, undefined]);
    n.send(hup(1));
    n.isolate(3);
    await nextEnts(r, s);
    n.send(msg({ from: 3, to: 1, type: MessageType.MsgTransferLeader }));
    expect(r.leadTransferee).toBe(3);
    n.send(prop(1));
    expect(r.step(prop(1))?.code).toBe('ERR_PROPOSAL_DROPPED');
    expect(r.trk.progress.get(1)!.match).toBe(1);
  });

  it('TestCommitAfterRemoveNode', async () => {
    const s = await newTestMemoryStorage([1, 2]);
    const r = newTestRaft(1, 5, 1, s);
    r.becomeCandidate();
    r.becomeLeader();
    const cc = { id: 0, type: ConfChangeType.RemoveNode, nodeId: 2 };
    r.step(msg({ type: MessageType.MsgProp, entries: [{ type: EntryType.ConfChange, term: 0, index: 0, data: encodeConfChange(cc) }] }));
    // Nothing commits until 2 acknowledges (it is still a voter).
    expect(await nextEnts(r, s)).toEqual([]);
    const ccIndex = r.raftLog.lastIndex();
    r.step(prop(0, encoder.encode('hello')));
    r.step(msg({ type: MessageType.MsgAppResp, from: 2, index: ccIndex }));
    let ents = await nextEnts(r, s);
    expect(ents.length).toBe(2);
    expect(ents[0]!.type).toBe(EntryType.Normal);
    expect(ents[0]!.data).toBeUndefined();
    expect(ents[1]!.type).toBe(EntryType.ConfChange);
    // Applying the removal shrinks the quorum to 1: the proposal commits at once.
    r.applyConfChange(confChangeAsV2(cc));
    ents = await nextEnts(r, s);
    expect(ents.length).toBe(1);
    expect(ents[0]!.type).toBe(EntryType.Normal);
    expect(new TextDecoder().decode(ents[0]!.data)).toBe('hello');
  });

  it('TestProgressState after snapshot catch-up (raft_snap_test.go TestSnapshotSucceed, reduced)', async () => {
    const s = { metadata: { index: 11, term: 11, confState: { ...emptyConfState(), voters: [1, 2] } } };
    const sm = newTestRaft(1, 10, 1, await newTestMemoryStorage([1]));
    sm.restore(s);
    sm.becomeCandidate();
    sm.becomeLeader();
    const pr = sm.trk.progress.get(2)!;
    pr.next = 1;
    pr.becomeSnapshot(11);
    sm.step(msg({ from: 2, to: 1, type: MessageType.MsgSnapStatus, reject: false }));
    expect(pr.pendingSnapshot).toBe(0);
    expect(pr.next).toBe(12);
    expect(pr.state).toBe(ProgressState.StateProbe);
    expect(pr.msgAppFlowPaused).toBe(true);
  });


  it('TestFastLogRejection', async () => {
    const cases: Array<{ leader: Entry[]; follower: Entry[]; compact?: number; hintTerm: number; hintIndex: number; nextTerm: number; nextIndex: number }> = [
      { leader: index(1).terms(1, 2, 2, 4, 4, 4, 4), follower: index(1).terms(1, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3), hintTerm: 3, hintIndex: 7, nextTerm: 2, nextIndex: 3 },
      { leader: index(1).terms(1, 2, 2, 3, 4, 4, 4, 5), follower: index(1).terms(1, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3), hintTerm: 3, hintIndex: 8, nextTerm: 3, nextIndex: 4 },
      { leader: index(1).terms(1, 1, 1, 1), follower: index(1).terms(1, 2, 2, 4), hintTerm: 1, hintIndex: 1, nextTerm: 1, nextIndex: 1 },
      { leader: index(1).terms(1, 1, 1, 1, 1, 1), follower: index(1).terms(1, 2, 2, 4), hintTerm: 1, hintIndex: 1, nextTerm: 1, nextIndex: 1 },
      { leader: index(1).terms(1, 1, 1, 1), follower: index(1).terms(1, 2, 2, 4, 4, 4), hintTerm: 1, hintIndex: 1, nextTerm: 1, nextIndex: 1 },
      { leader: index(1).terms(1, 1, 1, 4, 5), follower: index(1).terms(1, 1, 1, 4), hintTerm: 4, hintIndex: 4, nextTerm: 4, nextIndex: 4 },
      { leader: index(1).terms(2, 5, 5, 5, 5, 5, 5, 5, 5), follower: index(1).terms(2, 4, 4, 4, 4, 4), hintTerm: 4, hintIndex: 6, nextTerm: 2, nextIndex: 1 },
      { leader: index(1).terms(2, 2, 2, 2, 2), follower: index(1).terms(2, 4, 4, 4, 4, 4, 4, 4), hintTerm: 2, hintIndex: 1, nextTerm: 2, nextIndex: 1 },
      { leader: index(1).terms(1, 1, 3), follower: index(1).terms(1, 1, 3, 3, 3), compact: 5, hintTerm: 0, hintIndex: 3, nextTerm: 1, nextIndex: 2 },
    ];
    for (const c of cases) {
      const s1 = await newTestMemoryStorage([1, 2, 3]);
      await s1.append(c.leader);
      const last = c.leader[c.leader.length - 1]!;
      await s1.setHardState({ term: last.term - 1, vote: 0, commit: last.index });
      const n1 = newTestRaft(1, 10, 1, s1);
      n1.becomeCandidate(); // bumps the term to last.term
      n1.becomeLeader();
      const s2 = await newTestMemoryStorage([1, 2, 3]);
      await s2.append(c.follower);
      await s2.setHardState({ term: last.term, vote: 1, commit: 0 });
      const n2 = newTestRaft(2, 10, 1, s2);
      if (c.compact !== undefined) await s2.compact(c.compact);
      n2.step(msg({ from: 1, to: 2, type: MessageType.MsgHeartbeat }));
      let msgs = readMessages(n2);
      expect(msgs.map((m) => m.type)).toEqual([MessageType.MsgHeartbeatResp]);
      n1.step(msgs[0]!);
      msgs = readMessages(n1);
      expect(msgs.map((m) => m.type)).toEqual([MessageType.MsgApp]);
      n2.step(msgs[0]!);
      msgs = readMessages(n2);
      expect(msgs.length).toBe(1);
      expect(msgs[0]!.type).toBe(MessageType.MsgAppResp);
      expect(msgs[0]!.reject).toBe(true);
      expect(msgs[0]!.logTerm).toBe(c.hintTerm);
      expect(msgs[0]!.rejectHint).toBe(c.hintIndex);
      n1.step(msgs[0]!);
      msgs = readMessages(n1);
      expect(msgs[0]!.logTerm).toBe(c.nextTerm);
      expect(msgs[0]!.index).toBe(c.nextIndex);
    }
  });

  it('TestStepConfig and TestStepIgnoreConfig', async () => {
    const r = newTestRaft(1, 10, 1, await newTestMemoryStorage([1, 2]));
    r.becomeCandidate();
    r.becomeLeader();
    const last = r.raftLog.lastIndex();
    const confProp = () => msg({ from: 1, to: 1, type: MessageType.MsgProp, entries: [{ type: EntryType.ConfChange, term: 0, index: 0 }] });
    r.step(confProp());
    expect(r.raftLog.lastIndex()).toBe(last + 1);
    expect(r.pendingConfIndex).toBe(last + 1);
    // A second change while the first is unapplied becomes an empty normal entry.
    const pending = r.pendingConfIndex;
    r.step(confProp());
    expect(r.raftLog.entries(last + 2, Number.POSITIVE_INFINITY)).toEqual([e(1, 3)]);
    expect(r.pendingConfIndex).toBe(pending);
  });

  it('TestNewLeaderPendingConfig', async () => {
    for (const [addEntry, wantPending] of [
      [false, 0],
      [true, 1],
    ] as const) {
      const r = newTestRaft(1, 10, 1, await newTestMemoryStorage([1, 2]));
      if (addEntry) r.appendEntry([e(0, 0)]);
      r.becomeCandidate();
      r.becomeLeader();
      expect(r.pendingConfIndex).toBe(wantPending);
    }
  });

  it('TestAddNode, TestAddLearner, TestRemoveNode, TestRemoveLearner', async () => {
    const add = (nodeId: number, type = ConfChangeType.AddNode) => confChangeAsV2({ id: 0, type, nodeId });
    let r = newTestRaft(1, 10, 1, await newTestMemoryStorage([1]));
    r.applyConfChange(add(2));
    expect(r.trk.voterNodes()).toEqual([1, 2]);

    r = newTestRaft(1, 10, 1, await newTestMemoryStorage([1]));
    r.applyConfChange(add(2, ConfChangeType.AddLearnerNode));
    expect(r.isLearner).toBe(false);
    expect(r.trk.learnerNodes()).toEqual([2]);
    expect(r.trk.progress.get(2)!.isLearner).toBe(true);
    r.applyConfChange(add(2));
    expect(r.trk.progress.get(2)!.isLearner).toBe(false);
    r.applyConfChange(add(1, ConfChangeType.AddLearnerNode));
    expect(r.trk.progress.get(1)!.isLearner).toBe(true);
    expect(r.isLearner).toBe(true);
    r.applyConfChange(add(1));
    expect(r.trk.progress.get(1)!.isLearner).toBe(false);
    expect(r.isLearner).toBe(false);

    r = newTestRaft(1, 10, 1, await newTestMemoryStorage([1, 2]));
    r.applyConfChange(add(2, ConfChangeType.RemoveNode));
    expect(r.trk.voterNodes()).toEqual([1]);
    // Removing the last voter panics in Go.
    expect(() => r.applyConfChange(add(1, ConfChangeType.RemoveNode))).toThrow();

    r = newTestRaft(1, 10, 1, await newTestMemoryStorage([1], [2]));
    r.applyConfChange(add(2, ConfChangeType.RemoveNode));
    expect(r.trk.voterNodes()).toEqual([1]);
    expect(r.trk.learnerNodes()).toEqual([]);
    expect(() => r.applyConfChange(add(1, ConfChangeType.RemoveNode))).toThrow();
  });

  it('TestPromotable', async () => {
    const cases: Array<[number[], boolean]> = [
      [[1], true],
      [[1, 2, 3], true],
      [[], false],
      [[2, 3], false],
    ];
    for (const [peers, want] of cases) {
      expect(newTestRaft(1, 5, 1, await newTestMemoryStorage(peers)).promotable()).toBe(want);
    }
  });

  it('TestLearnerElectionTimeout', async () => {
    const n2 = newTestRaft(2, 10, 1, await newTestMemoryStorage([1], [2]));
    n2.becomeFollower(1, 0);
    n2.randomizedElectionTimeout = n2.electionTimeout;
    for (let i = 0; i < n2.electionTimeout; i++) n2.tick();
    expect(n2.state).toBe(StateType.StateFollower);
  });

  it('TestLearnerPromotion', async () => {
    const n1 = newTestRaft(1, 10, 1, await newTestMemoryStorage([1], [2]));
    const n2 = newTestRaft(2, 10, 1, await newTestMemoryStorage([1], [2]));
    n1.becomeFollower(1, 0);
    n2.becomeFollower(1, 0);
    const n = await TestNetwork.create([n1, n2]);
    expect(n1.state).not.toBe(StateType.StateLeader);
    n1.randomizedElectionTimeout = n1.electionTimeout;
    for (let i = 0; i < n1.electionTimeout; i++) n1.tick();
    readMessages(n1);
    expect(n1.state).toBe(StateType.StateLeader);
    expect(n2.state).toBe(StateType.StateFollower);
    n.send(beat(1));
    const promote = confChangeAsV2({ id: 0, type: ConfChangeType.AddNode, nodeId: 2 });
    n1.applyConfChange(promote);
    n2.applyConfChange(promote);
    expect(n2.isLearner).toBe(false);
    n2.randomizedElectionTimeout = n2.electionTimeout;
    for (let i = 0; i < n2.electionTimeout; i++) n2.tick();
    n.send(...readMessages(n2));
    n.send(beat(2));
    expect(n1.state).toBe(StateType.StateFollower);
    expect(n2.state).toBe(StateType.StateLeader);
  });

  it('TestLearnerCanVote', async () => {
    const n2 = newTestRaft(2, 10, 1, await newTestMemoryStorage([1], [2]));
    n2.becomeFollower(1, 0);
    n2.step(msg({ from: 1, to: 2, term: 2, type: MessageType.MsgVote, logTerm: 11, index: 11 }));
    const msgs = readMessages(n2);
    expect(msgs.length).toBe(1);
    expect(msgs[0]!.type).toBe(MessageType.MsgVoteResp);
    expect(msgs[0]!.reject).toBe(false);
  });

  it('TestFreeStuckCandidateWithCheckQuorum', async () => {
    const make = async (id: number) => new Raft({ ...newTestConfig(id, 10, 1, await newTestMemoryStorage([1, 2, 3])), checkQuorum: true });
    const a = await make(1);
    const b = await make(2);
    const c = await make(3);
    const n = await TestNetwork.create([a, b, c]);
    b.randomizedElectionTimeout = b.electionTimeout + 1;
    for (let i = 0; i < b.electionTimeout; i++) b.tick();
    n.send(hup(1));
    n.isolate(1);
    n.send(hup(3));
    expect(b.state).toBe(StateType.StateFollower);
    expect(c.state).toBe(StateType.StateCandidate);
    expect(c.term).toBe(b.term + 1);
    n.send(hup(3));
    expect(b.state).toBe(StateType.StateFollower);
    expect(c.state).toBe(StateType.StateCandidate);
    expect(c.term).toBe(b.term + 2);
    n.recover();
    // The stuck candidate's reply to the old leader's heartbeat deposes it.
    n.send(msg({ from: 1, to: 3, type: MessageType.MsgHeartbeat, term: a.term }));
    expect(a.state).toBe(StateType.StateFollower);
    expect(c.term).toBe(a.term);
    n.send(hup(3));
    expect(c.state).toBe(StateType.StateLeader);
  });

  it('TestNonPromotableVoterWithCheckQuorum', async () => {
    const a = new Raft({ ...newTestConfig(1, 10, 1, await newTestMemoryStorage([1, 2])), checkQuorum: true });
    const b = new Raft({ ...newTestConfig(2, 10, 1, await newTestMemoryStorage([1, 2])), checkQuorum: true });
    const n = await TestNetwork.create([a, b]);
    b.randomizedElectionTimeout = b.electionTimeout + 1;
    // b no longer sees itself as a voter.
    b.applyConfChange(confChangeAsV2({ id: 0, type: ConfChangeType.RemoveNode, nodeId: 2 }));
    expect(b.promotable()).toBe(false);
    for (let i = 0; i < b.electionTimeout; i++) b.tick();
    n.send(hup(1));
    expect(a.state).toBe(StateType.StateLeader);
    expect(b.state).toBe(StateType.StateFollower);
    expect(b.lead).toBe(1);
  });

  it('TestDisruptiveFollower', async () => {
    const make = async (id: number) => new Raft({ ...newTestConfig(id, 10, 1, await newTestMemoryStorage([1, 2, 3])), checkQuorum: true });
    const n1 = await make(1);
    const n2 = await make(2);
    const n3 = await make(3);
    for (const r of [n1, n2, n3]) r.becomeFollower(1, 0);
    const n = await TestNetwork.create([n1, n2, n3]);
    n.send(hup(1));
    expect([n1.state, n2.state, n3.state]).toEqual([StateType.StateLeader, StateType.StateFollower, StateType.StateFollower]);
    n3.randomizedElectionTimeout = n3.electionTimeout + 2;
    for (let i = 0; i < n3.randomizedElectionTimeout - 1; i++) n3.tick();
    // n3 times out and campaigns (its vote requests are not delivered).
    n3.tick();
    expect([n1.state, n2.state, n3.state]).toEqual([StateType.StateLeader, StateType.StateFollower, StateType.StateCandidate]);
    expect([n1.term, n2.term, n3.term]).toEqual([2, 2, 3]);
    // The leader's heartbeat gets a higher-term response: it steps down.
    n.send(msg({ from: 1, to: 3, term: n1.term, type: MessageType.MsgHeartbeat }));
    expect([n1.state, n2.state, n3.state]).toEqual([StateType.StateFollower, StateType.StateFollower, StateType.StateCandidate]);
    expect([n1.term, n2.term, n3.term]).toEqual([3, 2, 3]);
  });

  it('TestPreVoteWithSplitVote', async () => {
    const make = async (id: number) => new Raft({ ...newTestConfig(id, 10, 1, await newTestMemoryStorage([1, 2, 3])), preVote: true });
    const n1 = await make(1);
    const n2 = await make(2);
    const n3 = await make(3);
    for (const r of [n1, n2, n3]) r.becomeFollower(1, 0);
    const n = await TestNetwork.create([n1, n2, n3]);
    n.send(hup(1));
    n.isolate(1);
    n.send(hup(2), hup(3));
    expect([n2.term, n3.term]).toEqual([3, 3]);
    expect([n2.state, n3.state]).toEqual([StateType.StateCandidate, StateType.StateCandidate]);
    n.send(hup(2));
    expect([n2.term, n3.term]).toEqual([4, 4]);
    expect([n2.state, n3.state]).toEqual([StateType.StateLeader, StateType.StateFollower]);
  });

  for (const v2 of [false, true]) {
    it(v2 ? 'TestConfChangeV2CheckBeforeCampaign' : 'TestConfChangeCheckBeforeCampaign', async () => {
      const n = await TestNetwork.create([undefined, undefined, undefined]);
      const n1 = peer(n, 1);
      const n2 = peer(n, 2);
      n.send(hup(1));
      expect(n1.state).toBe(StateType.StateLeader);
      const cc = { id: 0, type: ConfChangeType.RemoveNode, nodeId: 2 };
      const entry: Entry = v2
        ? { type: EntryType.ConfChangeV2, term: 0, index: 0, data: encodeConfChangeV2(confChangeAsV2(cc)) }
        : { type: EntryType.ConfChange, term: 0, index: 0, data: encodeConfChange(cc) };
      n.send(msg({ from: 1, to: 1, type: MessageType.MsgProp, entries: [entry] }));
      // The committed but unapplied conf change keeps n2 from campaigning…
      for (let i = 0; i < n2.randomizedElectionTimeout; i++) n2.tick();
      expect(n2.state).toBe(StateType.StateFollower);
      // …even when leadership is transferred to it.
      n.send(msg({ from: 2, to: 1, type: MessageType.MsgTransferLeader }));
      expect(n1.state).toBe(StateType.StateLeader);
      expect(n2.state).toBe(StateType.StateFollower);
      // Abort the transfer.
      for (let i = 0; i < n1.electionTimeout; i++) n1.tick();
      // Once applied, the transfer works.
      await nextEnts(n2, n.storage.get(2)!);
      n.send(msg({ from: 2, to: 1, type: MessageType.MsgTransferLeader }));
      expect(n1.state).toBe(StateType.StateFollower);
      expect(n2.state).toBe(StateType.StateLeader);
      await nextEnts(n1, n.storage.get(1)!);
      for (let i = 0; i < n1.randomizedElectionTimeout; i++) n1.tick();
      expect(n1.state).toBe(StateType.StateCandidate);
    });
  }

  it('TestHandleMsgApp', async () => {
    const app = (term: number, logTerm: number, idx: number, commit: number, entries: Entry[] = []) =>
      msg({ type: MessageType.MsgApp, term, logTerm, index: idx, commit, entries });
    const cases: Array<[Message, number, number, boolean]> = [
      [app(2, 3, 2, 3), 2, 0, true], // previous log mismatch
      [app(2, 3, 3, 3), 2, 0, true], // previous log non-exist
      [app(2, 1, 1, 1), 2, 1, false],
      [app(2, 0, 0, 1, [e(2, 1)]), 1, 1, false],
      [app(2, 2, 2, 3, [e(2, 3), e(2, 4)]), 4, 3, false],
      [app(2, 2, 2, 4, [e(2, 3)]), 3, 3, false],
      [app(2, 1, 1, 4, [e(2, 2)]), 2, 2, false],
      [app(1, 1, 1, 3), 2, 1, false],
      [app(1, 1, 1, 3, [e(2, 2)]), 2, 2, false],
      [app(2, 2, 2, 3), 2, 2, false],
      [app(2, 2, 2, 4), 2, 2, false],
    ];
    for (const [m, wantIndex, wantCommit, wantReject] of cases) {
      const storage = await newTestMemoryStorage([1]);
      await storage.append(index(1).terms(1, 2));
      const sm = newTestRaft(1, 10, 1, storage);
      sm.becomeFollower(2, 0);
      sm.handleAppendEntries(m);
      expect(sm.raftLog.lastIndex()).toBe(wantIndex);
      expect(sm.raftLog.committed).toBe(wantCommit);
      const msgs = readMessages(sm);
      expect(msgs.length).toBe(1);
      expect(msgs[0]!.reject).toBe(wantReject);
    }
  });

  it('TestHandleHeartbeat', async () => {
    const commit = 2;
    for (const [heartbeatCommit, wantCommit] of [
      [commit + 1, commit + 1],
      [commit - 1, commit], // never decrease commit
    ]) {
      const storage = await newTestMemoryStorage([1, 2]);
      await storage.append(index(1).terms(1, 2, 3));
      const sm = newTestRaft(1, 5, 1, storage);
      sm.becomeFollower(2, 2);
      sm.raftLog.commitTo(commit);
      sm.handleHeartbeat(msg({ from: 2, to: 1, type: MessageType.MsgHeartbeat, term: 2, commit: heartbeatCommit }));
      expect(sm.raftLog.committed).toBe(wantCommit);
      const msgs = readMessages(sm);
      expect(msgs.map((x) => x.type)).toEqual([MessageType.MsgHeartbeatResp]);
    }
  });

  it('TestHandleHeartbeatResp', async () => {
    const storage = await newTestMemoryStorage([1, 2]);
    await storage.append(index(1).terms(1, 2, 3));
    const sm = newTestRaft(1, 5, 1, storage);
    sm.becomeCandidate();
    sm.becomeLeader();
    sm.raftLog.commitTo(sm.raftLog.lastIndex());
    // A heartbeat response from a lagging follower triggers a MsgApp, every time.
    sm.step(msg({ from: 2, type: MessageType.MsgHeartbeatResp }));
    let msgs = readMessages(sm);
    expect(msgs.map((x) => x.type)).toEqual([MessageType.MsgApp]);
    sm.step(msg({ from: 2, type: MessageType.MsgHeartbeatResp }));
    msgs = readMessages(sm);
    expect(msgs.map((x) => x.type)).toEqual([MessageType.MsgApp]);
    // Once caught up, no more.
    sm.step(msg({ from: 2, type: MessageType.MsgAppResp, index: msgs[0]!.index + msgs[0]!.entries.length }));
    readMessages(sm);
    sm.step(msg({ from: 2, type: MessageType.MsgHeartbeatResp }));
    expect(readMessages(sm)).toEqual([]);
  });

  it('TestMsgAppRespWaitReset', async () => {
    const s = await newTestMemoryStorage([1, 2, 3]);
    const sm = newTestRaft(1, 5, 1, s);
    sm.becomeCandidate();
    sm.becomeLeader();
    await nextEnts(sm, s);
    sm.step(msg({ from: 2, type: MessageType.MsgAppResp, index: 1 }));
    expect(sm.raftLog.committed).toBe(1);
    readMessages(sm);
    sm.step(msg({ from: 1, type: MessageType.MsgProp, entries: [e(0, 0)] }));
    // Only 2 (in StateReplicate) gets the entry; 3 is still probing with a message in flight.
    let msgs = readMessages(sm);
    expect(msgs.length).toBe(1);
    expect([msgs[0]!.type, msgs[0]!.to, msgs[0]!.entries.length, msgs[0]!.entries[0]!.index]).toEqual([MessageType.MsgApp, 2, 1, 2]);
    sm.step(msg({ from: 3, type: MessageType.MsgAppResp, index: 1 }));
    msgs = readMessages(sm);
    expect(msgs.length).toBe(1);
    expect([msgs[0]!.type, msgs[0]!.to, msgs[0]!.entries.length, msgs[0]!.entries[0]!.index]).toEqual([MessageType.MsgApp, 3, 1, 2]);
  });

  for (const voteType of [MessageType.MsgVote, MessageType.MsgPreVote]) {
    it(voteType === MessageType.MsgVote ? 'TestRecvMsgVote' : 'TestRecvMsgPreVote (vote table)', async () => {
      const F = StateType.StateFollower;
      const cases: Array<[StateType, number, number, number, boolean]> = [
        [F, 0, 0, 0, true], [F, 0, 1, 0, true], [F, 0, 2, 0, true], [F, 0, 3, 0, false],
        [F, 1, 0, 0, true], [F, 1, 1, 0, true], [F, 1, 2, 0, true], [F, 1, 3, 0, false],
        [F, 2, 0, 0, true], [F, 2, 1, 0, true], [F, 2, 2, 0, false], [F, 2, 3, 0, false],
        [F, 3, 0, 0, true], [F, 3, 1, 0, true], [F, 3, 2, 0, false], [F, 3, 3, 0, false],
        [F, 3, 2, 2, false], [F, 3, 2, 1, true],
        [StateType.StateLeader, 3, 3, 1, true],
        [StateType.StatePreCandidate, 3, 3, 1, true],
        [StateType.StateCandidate, 3, 3, 1, true],
      ];
      for (const [state, idx, logTerm, voteFor, wantReject] of cases) {
        const sm = newTestRaft(1, 10, 1, await newTestMemoryStorage([1]));
        sm.state = state;
        sm.vote = voteFor;
        const storage = await newTestMemoryStorage([1]);
        await storage.append(index(1).terms(2, 2));
        sm.raftLog = new RaftLog(storage, sm.logger);
        const term = Math.max(sm.raftLog.lastEntryId().term, logTerm);
        sm.term = term;
        sm.step(msg({ type: voteType, term, from: 2, index: idx, logTerm }));
        const msgs = readMessages(sm);
        expect(msgs.length).toBe(1);
        expect(msgs[0]!.type).toBe(voteType === MessageType.MsgVote ? MessageType.MsgVoteResp : MessageType.MsgPreVoteResp);
        // A pre-vote at our own term is granted like a vote only if we could vote; same table.
        expect(msgs[0]!.reject, `state ${state} index ${idx} logTerm ${logTerm} vote ${voteFor}`).toBe(wantReject);
      }
    });
  }

  it('TestStateTransition', async () => {
    const { StateFollower: F, StatePreCandidate: P, StateCandidate: C, StateLeader: L } = StateType;
    const cases: Array<[StateType, StateType, boolean, number, number]> = [
      [F, F, true, 1, 0], [F, P, true, 0, 0], [F, C, true, 1, 0], [F, L, false, 0, 0],
      [P, F, true, 0, 0], [P, P, true, 0, 0], [P, C, true, 1, 0], [P, L, true, 0, 1],
      [C, F, true, 0, 0], [C, P, true, 0, 0], [C, C, true, 1, 0], [C, L, true, 0, 1],
      [L, F, true, 1, 0], [L, P, false, 0, 0], [L, C, false, 1, 0], [L, L, true, 0, 1],
    ];
    for (const [from, to, allowed, wantTerm, wantLead] of cases) {
      const sm = newTestRaft(1, 10, 1, await newTestMemoryStorage([1]));
      sm.state = from;
      const transition = () => {
        if (to === F) sm.becomeFollower(wantTerm, wantLead);
        else if (to === P) sm.becomePreCandidate();
        else if (to === C) sm.becomeCandidate();
        else sm.becomeLeader();
      };
      if (!allowed) {
        expect(transition).toThrow(/invalid transition/);
        continue;
      }
      transition();
      expect(sm.term).toBe(wantTerm);
      expect(sm.lead).toBe(wantLead);
    }
  });

  it('TestAllServerStepdown', async () => {
    const cases: Array<[StateType, number]> = [
      [StateType.StateFollower, 0],
      [StateType.StatePreCandidate, 0],
      [StateType.StateCandidate, 0],
      [StateType.StateLeader, 1],
    ];
    for (const [state, wantIndex] of cases) {
      const sm = newTestRaft(1, 10, 1, await newTestMemoryStorage([1, 2, 3]));
      if (state === StateType.StateFollower) sm.becomeFollower(1, 0);
      if (state === StateType.StatePreCandidate) sm.becomePreCandidate();
      if (state === StateType.StateCandidate) sm.becomeCandidate();
      if (state === StateType.StateLeader) {
        sm.becomeCandidate();
        sm.becomeLeader();
      }
      for (const type of [MessageType.MsgVote, MessageType.MsgApp]) {
        sm.step(msg({ from: 2, type, term: 3, logTerm: 3 }));
        expect(sm.state).toBe(StateType.StateFollower);
        expect(sm.term).toBe(3);
        expect(sm.raftLog.lastIndex()).toBe(wantIndex);
        expect(sm.raftLog.allEntries().length).toBe(wantIndex);
        expect(sm.lead).toBe(type === MessageType.MsgVote ? 0 : 2);
      }
    }
  });

  it('TestLeaderAppResp', async () => {
    const cases: Array<[number, boolean, number, number, number, number, number]> = [
      [3, true, 0, 3, 0, 0, 0], // stale rejection: no reply
      [2, true, 0, 2, 1, 1, 0], // rejection: next decreases, probe sent
      [2, false, 2, 4, 2, 2, 2], // ack: commit, broadcast with the commit index
      [0, false, 0, 4, 1, 0, 0],
    ];
    for (const [idx, reject, wantMatch, wantNext, wantCount, wantIndex, wantCommitted] of cases) {
      const sm = newTestRaft(1, 10, 1, await newTestMemoryStorage([1, 2, 3]));
      const storage = await newTestMemoryStorage([1, 2, 3]);
      await storage.append(index(1).terms(1, 1));
      sm.raftLog = new RaftLog(storage, sm.logger);
      sm.becomeCandidate();
      sm.becomeLeader();
      readMessages(sm);
      expect(sm.step(msg({ from: 2, type: MessageType.MsgAppResp, index: idx, term: sm.term, reject, rejectHint: idx }))).toBeUndefined();
      const p = sm.trk.progress.get(2)!;
      expect([p.match, p.next]).toEqual([wantMatch, wantNext]);
      const msgs = readMessages(sm);
      expect(msgs.length).toBe(wantCount);
      for (const m of msgs) {
        expect(m.index).toBe(wantIndex);
        expect(m.commit).toBe(wantCommitted);
      }
    }
  });

  it('TestReadOnlyOptionLease', async () => {
    const make = async (id: number) =>
      new Raft({ ...newTestConfig(id, 10, 1, await newTestMemoryStorage([1, 2, 3])), checkQuorum: true, readOnlyOption: ReadOnlyOption.ReadOnlyLeaseBased });
    const a = await make(1);
    const b = await make(2);
    const c = await make(3);
    const n = await TestNetwork.create([a, b, c]);
    b.randomizedElectionTimeout = b.electionTimeout + 1;
    for (let i = 0; i < b.electionTimeout; i++) b.tick();
    n.send(hup(1));
    expect(a.state).toBe(StateType.StateLeader);
    const cases: Array<[Raft, number, string]> = [
      [a, 11, 'ctx1'],
      [b, 21, 'ctx2'],
      [c, 31, 'ctx3'],
      [a, 41, 'ctx4'],
      [b, 51, 'ctx5'],
      [c, 61, 'ctx6'],
    ];
    for (const [r, wantIndex, ctx] of cases) {
      for (let j = 0; j < 10; j++) n.send(prop(1));
      n.send(msg({ from: r.id, to: r.id, type: MessageType.MsgReadIndex, entries: [e(0, 0, encoder.encode(ctx))] }));
      expect(r.readStates[0]!.index).toBe(wantIndex);
      expect(new TextDecoder().decode(r.readStates[0]!.requestCtx)).toBe(ctx);
      r.readStates = [];
    }
  });

  it('TestReadOnlyForNewLeader', async () => {
    const configs: Array<[number, number, number, number]> = [
      [1, 1, 1, 0],
      [2, 2, 2, 2],
      [3, 2, 2, 2],
    ];
    const peers: Raft[] = [];
    for (const [id, committed, applied, compactIndex] of configs) {
      const storage = await newTestMemoryStorage([1, 2, 3]);
      await storage.append(index(1).terms(1, 1));
      await storage.setHardState({ term: 1, vote: 0, commit: committed });
      if (compactIndex !== 0) await storage.compact(compactIndex);
      peers.push(new Raft({ ...newTestConfig(id, 10, 1, storage), applied }));
    }
    const n = await TestNetwork.create(peers);
    // Keep the new leader from committing an entry of its term.
    n.ignore(MessageType.MsgApp);
    n.send(hup(1));
    const sm = peer(n, 1);
    expect(sm.state).toBe(StateType.StateLeader);
    const ctx = encoder.encode('ctx');
    n.send(msg({ from: 1, to: 1, type: MessageType.MsgReadIndex, entries: [e(0, 0, ctx)] }));
    // Not answerable before the leader commits in its term.
    expect(sm.readStates).toEqual([]);
    n.recover();
    for (let i = 0; i < sm.heartbeatTimeout; i++) sm.tick();
    n.send(prop(1));
    expect(sm.raftLog.committed).toBe(4);
    expect(sm.raftLog.zeroTermOnOutOfBounds(sm.raftLog.committed)).toBe(sm.term);
    expect(sm.readStates).toEqual([{ index: 4, requestCtx: ctx }]);
    n.send(msg({ from: 1, to: 1, type: MessageType.MsgReadIndex, entries: [e(0, 0, ctx)] }));
    expect(sm.readStates.length).toBe(2);
    expect(sm.readStates[1]).toEqual({ index: 4, requestCtx: ctx });
  });

  it('TestLeaderTransferToSelf, ToNonExistingNode, Back', async () => {
    let n = await TestNetwork.create([undefined, undefined, undefined]);
    n.send(hup(1));
    n.send(msg({ from: 1, to: 1, type: MessageType.MsgTransferLeader }));
    checkLeaderTransferState(peer(n, 1), StateType.StateLeader, 1);
    n.send(msg({ from: 4, to: 1, type: MessageType.MsgTransferLeader }));
    checkLeaderTransferState(peer(n, 1), StateType.StateLeader, 1);

    n = await TestNetwork.create([undefined, undefined, undefined]);
    n.send(hup(1));
    n.isolate(3);
    const lead = peer(n, 1);
    n.send(msg({ from: 3, to: 1, type: MessageType.MsgTransferLeader }));
    expect(lead.leadTransferee).toBe(3);
    // Transferring back to the leader itself aborts the transfer.
    n.send(msg({ from: 1, to: 1, type: MessageType.MsgTransferLeader }));
    checkLeaderTransferState(lead, StateType.StateLeader, 1);
  });

  it('TestLeaderTransferReceiveHigherTermVote', async () => {
    const n = await TestNetwork.create([undefined, undefined, undefined]);
    n.send(hup(1));
    n.isolate(3);
    const lead = peer(n, 1);
    n.send(msg({ from: 3, to: 1, type: MessageType.MsgTransferLeader }));
    expect(lead.leadTransferee).toBe(3);
    n.send(msg({ from: 2, to: 2, type: MessageType.MsgHup, index: 1, term: 2 }));
    checkLeaderTransferState(lead, StateType.StateFollower, 2);
  });

  it('TestLeaderTransferRemoveNode and TestLeaderTransferDemoteNode', async () => {
    for (const demote of [false, true]) {
      const n = await TestNetwork.create([undefined, undefined, undefined]);
      n.send(hup(1));
      n.ignore(MessageType.MsgTimeoutNow);
      const lead = peer(n, 1);
      n.send(msg({ from: 3, to: 1, type: MessageType.MsgTransferLeader }));
      expect(lead.leadTransferee).toBe(3);
      if (demote) {
        lead.applyConfChange({
          transition: ConfChangeTransition.Auto,
          changes: [
            { type: ConfChangeType.RemoveNode, nodeId: 3 },
            { type: ConfChangeType.AddLearnerNode, nodeId: 3 },
          ],
        });
        lead.applyConfChange({ transition: ConfChangeTransition.Auto, changes: [] });
      } else {
        lead.applyConfChange(confChangeAsV2({ id: 0, type: ConfChangeType.RemoveNode, nodeId: 3 }));
      }
      // The transferee is no longer a voter: the transfer is aborted.
      checkLeaderTransferState(lead, StateType.StateLeader, 1);
    }
  });

  it('TestLeaderTransferSecondTransferToAnotherNode and ToSameNode', async () => {
    let n = await TestNetwork.create([undefined, undefined, undefined]);
    n.send(hup(1));
    n.isolate(3);
    let lead = peer(n, 1);
    n.send(msg({ from: 3, to: 1, type: MessageType.MsgTransferLeader }));
    expect(lead.leadTransferee).toBe(3);
    n.send(msg({ from: 2, to: 1, type: MessageType.MsgTransferLeader }));
    checkLeaderTransferState(lead, StateType.StateFollower, 2);

    n = await TestNetwork.create([undefined, undefined, undefined]);
    n.send(hup(1));
    n.isolate(3);
    lead = peer(n, 1);
    n.send(msg({ from: 3, to: 1, type: MessageType.MsgTransferLeader }));
    expect(lead.leadTransferee).toBe(3);
    for (let i = 0; i < lead.heartbeatTimeout; i++) lead.tick();
    // A repeated request does not extend the transfer's deadline.
    n.send(msg({ from: 3, to: 1, type: MessageType.MsgTransferLeader }));
    for (let i = 0; i < lead.electionTimeout - lead.heartbeatTimeout; i++) lead.tick();
    checkLeaderTransferState(lead, StateType.StateLeader, 1);
  });

  it('TestTransferNonMember', async () => {
    const r = newTestRaft(1, 5, 1, await newTestMemoryStorage([2, 3, 4]));
    r.step(msg({ from: 2, to: 1, type: MessageType.MsgTimeoutNow }));
    r.step(msg({ from: 2, to: 1, type: MessageType.MsgVoteResp }));
    r.step(msg({ from: 3, to: 1, type: MessageType.MsgVoteResp }));
    expect(r.state).toBe(StateType.StateFollower);
  });

  it('TestLeaderTransferWithCheckQuorum', async () => {
    const n = await TestNetwork.create([undefined, undefined, undefined], (c) => {
      c.checkQuorum = true;
    });
    for (let i = 1; i < 4; i++) peer(n, i).randomizedElectionTimeout = peer(n, i).electionTimeout + i;
    const f = peer(n, 2);
    for (let i = 0; i < f.electionTimeout; i++) f.tick();
    n.send(hup(1));
    const lead = peer(n, 1);
    expect(lead.state).toBe(StateType.StateLeader);
    // A transfer bypasses the followers' leader lease.
    n.send(msg({ from: 2, to: 1, type: MessageType.MsgTransferLeader }));
    checkLeaderTransferState(lead, StateType.StateFollower, 2);
    n.send(prop(1));
    n.send(msg({ from: 1, to: 2, type: MessageType.MsgTransferLeader }));
    checkLeaderTransferState(lead, StateType.StateLeader, 1);
  });

  it('TestUncommittedEntryLimit', async () => {
    const maxEntries = 1024;
    const testData = encoder.encode('testdata');
    const maxEntrySize = maxEntries * testData.length;
    const r = new Raft({
      ...newTestConfig(1, 5, 1, await newTestMemoryStorage([1, 2, 3])),
      maxUncommittedEntriesSize: maxEntrySize,
      maxInflightMsgs: 2 * 1024,
    });
    r.becomeCandidate();
    r.becomeLeader();
    expect(r.uncommittedSize).toBe(0);
    r.trk.progress.get(2)!.becomeReplicate();
    r.trk.progress.get(3)!.becomeReplicate();
    r.uncommittedSize = 0;
    const propOne = () => msg({ from: 1, to: 1, type: MessageType.MsgProp, entries: [e(0, 0, testData)] });
    for (let i = 0; i < maxEntries; i++) expect(r.step(propOne())).toBeUndefined();
    // Over the limit: dropped.
    expect(r.step(propOne())?.code).toBe('ERR_PROPOSAL_DROPPED');
    expect(readMessages(r).length).toBe(maxEntries * 2);
    r.reduceUncommittedSize(maxEntrySize);
    expect(r.uncommittedSize).toBe(0);
    // A single oversized batch is allowed when nothing is uncommitted.
    const large = Array.from({ length: 2 * maxEntries }, () => e(0, 0, testData));
    expect(r.step(msg({ from: 1, to: 1, type: MessageType.MsgProp, entries: large }))).toBeUndefined();
    expect(r.step(propOne())?.code).toBe('ERR_PROPOSAL_DROPPED');
    // Empty entries are always allowed.
    expect(r.step(prop(1))).toBeUndefined();
    expect(readMessages(r).length).toBe(2 * 2);
    r.reduceUncommittedSize(2 * maxEntrySize);
    expect(r.uncommittedSize).toBe(0);
  });
});
