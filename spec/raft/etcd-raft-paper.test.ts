/**
 * Port of etcd raft v3.6 raft_paper_test.go: the Raft paper's rules (§5.1–§5.4) checked on
 * the state machine directly.
 */
import { describe, expect, it } from 'vitest';
import { Raft, StateType } from '../../lib/raft/raft.js';
import { EntryType, MessageType, type Entry, type Message } from '../../lib/types.js';
import { MemoryStorage } from '../../lib/memory-storage.js';
import { index } from './helpers.js';
import {
  BLACK_HOLE,
  TestNetwork,
  advanceMessagesAfterAppend,
  idsBySize,
  msg,
  mustAppendEntry,
  newTestMemoryStorage,
  newTestRaft,
  readMessages,
  sortMessages,
} from './raft-test-network.js';

const encoder = new TextEncoder();
const data = (text: string) => encoder.encode(text);
const e = (term: number, idx: number, payload?: Uint8Array): Entry =>
  payload === undefined ? { type: EntryType.Normal, term, index: idx } : { type: EntryType.Normal, term, index: idx, data: payload };
const prop = (payload?: Uint8Array): Message =>
  msg({ from: 1, to: 1, type: MessageType.MsgProp, entries: [payload === undefined ? e(0, 0) : e(0, 0, payload)] });

function acceptAndReply(m: Message): Message {
  if (m.type !== MessageType.MsgApp) throw new Error('type should be MsgApp');
  return msg({ from: m.to, to: m.from, term: m.term, type: MessageType.MsgAppResp, index: m.index + m.entries.length });
}

/** Go's commitNoopEntry: the leader's empty entry gets acked by everyone and committed. */
async function commitNoopEntry(r: Raft, storage: MemoryStorage): Promise<void> {
  if (r.state !== StateType.StateLeader) throw new Error('it should only be used when it is the leader');
  r.bcastAppend();
  for (const m of readMessages(r)) {
    if (m.type !== MessageType.MsgApp || m.entries.length !== 1 || m.entries[0]!.data !== undefined) {
      throw new Error('not a message to append noop entry');
    }
    r.step(acceptAndReply(m));
  }
  readMessages(r);
  await storage.append(r.raftLog.nextUnstableEnts());
  r.raftLog.appliedTo(r.raftLog.committed, 0);
  r.raftLog.stableTo(r.raftLog.lastEntryId());
}

async function raft3(): Promise<Raft> {
  return newTestRaft(1, 10, 1, await newTestMemoryStorage([1, 2, 3]));
}

describe('raft paper (raft_paper_test.go)', () => {
  for (const [name, state] of [
    ['TestFollowerUpdateTermFromMessage', StateType.StateFollower],
    ['TestCandidateUpdateTermFromMessage', StateType.StateCandidate],
    ['TestLeaderUpdateTermFromMessage', StateType.StateLeader],
  ] as const) {
    it(name, async () => {
      const r = await raft3();
      if (state === StateType.StateFollower) r.becomeFollower(1, 2);
      if (state === StateType.StateCandidate) r.becomeCandidate();
      if (state === StateType.StateLeader) {
        r.becomeCandidate();
        r.becomeLeader();
      }
      r.step(msg({ type: MessageType.MsgApp, term: 2 }));
      expect(r.term).toBe(2);
      expect(r.state).toBe(StateType.StateFollower);
    });
  }

  it('TestRejectStaleTermMessage', async () => {
    let called = false;
    const r = await raft3();
    r.stepFunction = () => {
      called = true;
      return undefined;
    };
    r.loadState({ term: 2, vote: 0, commit: 0 });
    r.step(msg({ type: MessageType.MsgApp, term: r.term - 1 }));
    expect(called).toBe(false);
  });

  it('TestStartAsFollower', async () => {
    expect((await raft3()).state).toBe(StateType.StateFollower);
  });

  it('TestLeaderBcastBeat', async () => {
    const r = await raft3();
    r.becomeCandidate();
    r.becomeLeader();
    for (let i = 0; i < 10; i++) mustAppendEntry(r, e(0, i + 1));
    r.tick();
    expect(sortMessages(readMessages(r))).toEqual([
      msg({ from: 1, to: 2, term: 1, type: MessageType.MsgHeartbeat }),
      msg({ from: 1, to: 3, term: 1, type: MessageType.MsgHeartbeat }),
    ]);
  });

  for (const [name, state] of [
    ['TestFollowerStartElection', StateType.StateFollower],
    ['TestCandidateStartNewElection', StateType.StateCandidate],
  ] as const) {
    it(name, async () => {
      const et = 10;
      const r = newTestRaft(1, et, 1, await newTestMemoryStorage([1, 2, 3]));
      if (state === StateType.StateFollower) r.becomeFollower(1, 2);
      else r.becomeCandidate();
      for (let i = 1; i < 2 * et; i++) r.tick();
      advanceMessagesAfterAppend(r);
      expect(r.term).toBe(2);
      expect(r.state).toBe(StateType.StateCandidate);
      expect(r.trk.votes.get(r.id)).toBe(true);
      expect(sortMessages(readMessages(r))).toEqual([
        msg({ from: 1, to: 2, term: 2, type: MessageType.MsgVote }),
        msg({ from: 1, to: 3, term: 2, type: MessageType.MsgVote }),
      ]);
    });
  }

  it('TestLeaderElectionInOneRoundRPC', async () => {
    const cases: Array<[number, Record<number, boolean>, StateType]> = [
      [1, {}, StateType.StateLeader],
      [3, { 2: true, 3: true }, StateType.StateLeader],
      [3, { 2: true }, StateType.StateLeader],
      [5, { 2: true, 3: true, 4: true, 5: true }, StateType.StateLeader],
      [5, { 2: true, 3: true, 4: true }, StateType.StateLeader],
      [5, { 2: true, 3: true }, StateType.StateLeader],
      [3, { 2: false, 3: false }, StateType.StateFollower],
      [5, { 2: false, 3: false, 4: false, 5: false }, StateType.StateFollower],
      [5, { 2: true, 3: false, 4: false, 5: false }, StateType.StateFollower],
      [3, {}, StateType.StateCandidate],
      [5, { 2: true }, StateType.StateCandidate],
      [5, { 2: false, 3: false }, StateType.StateCandidate],
      [5, {}, StateType.StateCandidate],
    ];
    for (const [size, votes, want] of cases) {
      const r = newTestRaft(1, 10, 1, await newTestMemoryStorage(idsBySize(size)));
      r.step(msg({ from: 1, to: 1, type: MessageType.MsgHup }));
      advanceMessagesAfterAppend(r);
      for (const [id, granted] of Object.entries(votes)) {
        r.step(msg({ from: Number(id), to: 1, term: r.term, type: MessageType.MsgVoteResp, reject: !granted }));
      }
      expect(r.state).toBe(want);
      expect(r.term).toBe(1);
    }
  });

  it('TestFollowerVote', async () => {
    const cases: Array<[number, number, boolean]> = [
      [0, 2, false],
      [0, 3, false],
      [2, 2, false],
      [3, 3, false],
      [2, 3, true],
      [3, 2, true],
    ];
    for (const [vote, candidate, reject] of cases) {
      const r = await raft3();
      r.loadState({ term: 1, vote, commit: 0 });
      r.step(msg({ from: candidate, to: 1, term: 1, type: MessageType.MsgVote }));
      expect(r.msgsAfterAppend).toEqual([msg({ from: 1, to: candidate, term: 1, type: MessageType.MsgVoteResp, reject })]);
    }
  });

  it('TestCandidateFallback', async () => {
    for (const m of [
      msg({ from: 2, to: 1, term: 1, type: MessageType.MsgApp }),
      msg({ from: 2, to: 1, term: 2, type: MessageType.MsgApp }),
    ]) {
      const r = await raft3();
      r.step(msg({ from: 1, to: 1, type: MessageType.MsgHup }));
      expect(r.state).toBe(StateType.StateCandidate);
      r.step(m);
      expect(r.state).toBe(StateType.StateFollower);
      expect(r.term).toBe(m.term);
    }
  });

  for (const [name, state] of [
    ['TestFollowerElectionTimeoutRandomized', StateType.StateFollower],
    ['TestCandidateElectionTimeoutRandomized', StateType.StateCandidate],
  ] as const) {
    it(name, async () => {
      const et = 10;
      const r = newTestRaft(1, et, 1, await newTestMemoryStorage([1, 2, 3]));
      const timeouts = new Set<number>();
      for (let round = 0; round < 50 * et; round++) {
        if (state === StateType.StateFollower) r.becomeFollower(r.term + 1, 2);
        else r.becomeCandidate();
        let time = 0;
        while (readMessages(r).length === 0) {
          r.tick();
          time++;
        }
        timeouts.add(time);
      }
      for (let d = et; d < 2 * et; d++) expect(timeouts.has(d), `timeout in ${d} ticks should happen`).toBe(true);
    });
  }

  for (const [name, state] of [
    ['TestFollowersElectionTimeoutNonconflict', StateType.StateFollower],
    ['TestCandidatesElectionTimeoutNonconflict', StateType.StateCandidate],
  ] as const) {
    it(name, async () => {
      const et = 10;
      const ids = idsBySize(5);
      const rs: Raft[] = [];
      for (const id of ids) rs.push(newTestRaft(id, et, 1, await newTestMemoryStorage(ids)));
      let conflicts = 0;
      for (let round = 0; round < 1000; round++) {
        for (const r of rs) {
          if (state === StateType.StateFollower) r.becomeFollower(r.term + 1, 0);
          else r.becomeCandidate();
        }
        let timeoutNum = 0;
        while (timeoutNum === 0) {
          for (const r of rs) {
            r.tick();
            if (readMessages(r).length > 0) timeoutNum++;
          }
        }
        if (timeoutNum > 1) conflicts++;
      }
      expect(conflicts / 1000).toBeLessThanOrEqual(0.3);
    });
  }

  it('TestLeaderStartReplication', async () => {
    const s = await newTestMemoryStorage([1, 2, 3]);
    const r = newTestRaft(1, 10, 1, s);
    r.becomeCandidate();
    r.becomeLeader();
    await commitNoopEntry(r, s);
    const li = r.raftLog.lastIndex();
    r.step(prop(data('some data')));
    expect(r.raftLog.lastIndex()).toBe(li + 1);
    expect(r.raftLog.committed).toBe(li);
    const wantEntries = [e(1, li + 1, data('some data'))];
    expect(sortMessages(readMessages(r))).toEqual([
      msg({ from: 1, to: 2, term: 1, type: MessageType.MsgApp, index: li, logTerm: 1, entries: wantEntries, commit: li }),
      msg({ from: 1, to: 3, term: 1, type: MessageType.MsgApp, index: li, logTerm: 1, entries: wantEntries, commit: li }),
    ]);
    expect(r.raftLog.nextUnstableEnts()).toEqual(wantEntries);
  });

  it('TestLeaderCommitEntry', async () => {
    const s = await newTestMemoryStorage([1, 2, 3]);
    const r = newTestRaft(1, 10, 1, s);
    r.becomeCandidate();
    r.becomeLeader();
    await commitNoopEntry(r, s);
    const li = r.raftLog.lastIndex();
    r.step(prop(data('some data')));
    for (const m of readMessages(r)) r.step(acceptAndReply(m));
    expect(r.raftLog.committed).toBe(li + 1);
    expect(r.raftLog.nextCommittedEnts(true)).toEqual([e(1, li + 1, data('some data'))]);
    const msgs = sortMessages(readMessages(r));
    msgs.forEach((m, i) => {
      expect(m.to).toBe(i + 2);
      expect(m.type).toBe(MessageType.MsgApp);
      expect(m.commit).toBe(li + 1);
    });
  });

  it('TestLeaderAcknowledgeCommit', async () => {
    const cases: Array<[number, number[], boolean]> = [
      [1, [], true],
      [3, [], false],
      [3, [2], true],
      [3, [2, 3], true],
      [5, [], false],
      [5, [2], false],
      [5, [2, 3], true],
      [5, [2, 3, 4], true],
      [5, [2, 3, 4, 5], true],
    ];
    for (const [size, acceptors, wantAck] of cases) {
      const s = await newTestMemoryStorage(idsBySize(size));
      const r = newTestRaft(1, 10, 1, s);
      r.becomeCandidate();
      r.becomeLeader();
      await commitNoopEntry(r, s);
      const li = r.raftLog.lastIndex();
      r.step(prop(data('some data')));
      advanceMessagesAfterAppend(r);
      for (const m of r.msgs.slice()) if (acceptors.includes(m.to)) r.step(acceptAndReply(m));
      expect(r.raftLog.committed > li, `size ${size} acceptors ${acceptors.join(',')}`).toBe(wantAck);
    }
  });

  it('TestLeaderCommitPrecedingEntries', async () => {
    const cases: Entry[][] = [[], [e(2, 1)], [e(1, 1), e(2, 2)], [e(1, 1)]];
    for (const entries of cases) {
      const storage = await newTestMemoryStorage([1, 2, 3]);
      await storage.append(entries);
      const r = newTestRaft(1, 10, 1, storage);
      r.loadState({ term: 2, vote: 0, commit: 0 });
      r.becomeCandidate();
      r.becomeLeader();
      r.step(prop(data('some data')));
      for (const m of readMessages(r)) r.step(acceptAndReply(m));
      const li = entries.length;
      expect(r.raftLog.nextCommittedEnts(true)).toEqual([...entries, e(3, li + 1), e(3, li + 2, data('some data'))]);
    }
  });

  it('TestFollowerCommitEntry', async () => {
    const cases: Array<[Entry[], number]> = [
      [[e(1, 1, data('some data'))], 1],
      [[e(1, 1, data('some data')), e(1, 2, data('some data2'))], 2],
      [[e(1, 1, data('some data2')), e(1, 2, data('some data'))], 2],
      [[e(1, 1, data('some data')), e(1, 2, data('some data2'))], 1],
    ];
    for (const [entries, commit] of cases) {
      const r = await raft3();
      r.becomeFollower(1, 2);
      r.step(msg({ from: 2, to: 1, type: MessageType.MsgApp, term: 1, entries, commit }));
      expect(r.raftLog.committed).toBe(commit);
      expect(r.raftLog.nextCommittedEnts(true)).toEqual(entries.slice(0, commit));
    }
  });

  it('TestFollowerCheckMsgApp', async () => {
    const ents = [e(1, 1), e(2, 2)];
    const cases: Array<[number, number, number, boolean, number, number]> = [
      [0, 0, 1, false, 0, 0],
      [1, 1, 1, false, 0, 0],
      [2, 2, 2, false, 0, 0],
      [1, 2, 2, true, 1, 1],
      [3, 3, 3, true, 2, 2],
    ];
    for (const [term, idx, wantIndex, reject, rejectHint, logTerm] of cases) {
      const storage = await newTestMemoryStorage([1, 2, 3]);
      await storage.append(ents);
      const r = newTestRaft(1, 10, 1, storage);
      r.loadState({ term: 0, vote: 0, commit: 1 });
      r.becomeFollower(2, 2);
      r.step(msg({ from: 2, to: 1, type: MessageType.MsgApp, term: 2, logTerm: term, index: idx }));
      expect(readMessages(r)).toEqual([
        msg({ from: 1, to: 2, type: MessageType.MsgAppResp, term: 2, index: wantIndex, reject, rejectHint, logTerm }),
      ]);
    }
  });

  it('TestFollowerAppendEntries', async () => {
    const cases: Array<[number, number, Entry[], Entry[], Entry[]]> = [
      [2, 2, index(3).terms(3), index(1).terms(1, 2, 3), index(3).terms(3)],
      [1, 1, index(2).terms(3, 4), index(1).terms(1, 3, 4), index(2).terms(3, 4)],
      [0, 0, index(1).terms(1), index(1).terms(1, 2), []],
      [0, 0, index(1).terms(3), index(1).terms(3), index(1).terms(3)],
    ];
    for (const [idx, term, entries, wantAll, wantUnstable] of cases) {
      const storage = await newTestMemoryStorage([1, 2, 3]);
      await storage.append([e(1, 1), e(2, 2)]);
      const r = newTestRaft(1, 10, 1, storage);
      r.becomeFollower(2, 2);
      r.step(msg({ from: 2, to: 1, type: MessageType.MsgApp, term: 2, logTerm: term, index: idx, entries }));
      expect(r.raftLog.allEntries()).toEqual(wantAll);
      expect(r.raftLog.nextUnstableEnts()).toEqual(wantUnstable);
    }
  });

  it('TestLeaderSyncFollowerLog', async () => {
    const ents = index(0).terms(0, 1, 1, 1, 4, 4, 5, 5, 6, 6, 6);
    const term = 8;
    const followers = [
      index(0).terms(0, 1, 1, 1, 4, 4, 5, 5, 6, 6),
      index(0).terms(0, 1, 1, 1, 4, 4),
      index(0).terms(0, 1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6),
      index(0).terms(0, 1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7),
      index(0).terms(0, 1, 1, 1, 4, 4, 4, 4),
      index(0).terms(0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3),
    ];
    for (const followerEntries of followers) {
      const leadStorage = await newTestMemoryStorage([1, 2, 3]);
      await leadStorage.append(ents);
      const lead = newTestRaft(1, 10, 1, leadStorage);
      lead.loadState({ commit: lead.raftLog.lastIndex(), term, vote: 0 });
      const followerStorage = await newTestMemoryStorage([1, 2, 3]);
      await followerStorage.append(followerEntries);
      const follower = newTestRaft(2, 10, 1, followerStorage);
      follower.loadState({ term: term - 1, vote: 0, commit: 0 });
      const n = await TestNetwork.create([lead, follower, BLACK_HOLE]);
      n.send(msg({ from: 1, to: 1, type: MessageType.MsgHup }));
      n.send(msg({ from: 3, to: 1, type: MessageType.MsgVoteResp, term: term + 1 }));
      n.send(msg({ from: 1, to: 1, type: MessageType.MsgProp, entries: [e(0, 0)] }));
      expect(follower.raftLog.allEntries()).toEqual(lead.raftLog.allEntries());
      expect(follower.raftLog.committed).toBe(lead.raftLog.committed);
    }
  });

  it('TestVoteRequest', async () => {
    const cases: Array<[Entry[], number]> = [
      [index(1).terms(1), 2],
      [index(1).terms(1, 2), 3],
    ];
    for (const [entries, wantTerm] of cases) {
      const r = await raft3();
      r.step(msg({ from: 2, to: 1, type: MessageType.MsgApp, term: wantTerm - 1, logTerm: 0, index: 0, entries }));
      readMessages(r);
      for (let i = 1; i < r.electionTimeout * 2; i++) r.tickElection();
      const msgs = sortMessages(readMessages(r));
      expect(msgs.length).toBe(2);
      msgs.forEach((m, i) => {
        expect(m.type).toBe(MessageType.MsgVote);
        expect(m.to).toBe(i + 2);
        expect(m.term).toBe(wantTerm);
        expect(m.index).toBe(entries[entries.length - 1]!.index);
        expect(m.logTerm).toBe(entries[entries.length - 1]!.term);
      });
    }
  });

  it('TestVoter', async () => {
    const cases: Array<[Entry[], number, number, boolean]> = [
      [index(1).terms(1), 1, 1, false],
      [index(1).terms(1), 1, 2, false],
      [index(1).terms(1, 1), 1, 1, true],
      [index(1).terms(1), 2, 1, false],
      [index(1).terms(1), 2, 2, false],
      [[e(1, 1), e(1, 2)], 2, 1, false],
      [index(1).terms(2), 1, 1, true],
      [index(1).terms(2), 1, 2, true],
      [index(1).terms(2, 2), 1, 1, true],
      [index(1).terms(1, 1), 1, 1, true],
    ];
    for (const [entries, logTerm, idx, reject] of cases) {
      const storage = await newTestMemoryStorage([1, 2]);
      await storage.append(entries);
      const r = newTestRaft(1, 10, 1, storage);
      r.step(msg({ from: 2, to: 1, type: MessageType.MsgVote, term: 3, logTerm, index: idx }));
      const msgs = readMessages(r);
      expect(msgs.length).toBe(1);
      expect(msgs[0]!.type).toBe(MessageType.MsgVoteResp);
      expect(msgs[0]!.reject).toBe(reject);
    }
  });

  it('TestLeaderOnlyCommitsLogFromCurrentTerm', async () => {
    const cases: Array<[number, number]> = [
      [1, 0],
      [2, 0],
      [3, 3],
    ];
    for (const [idx, wantCommit] of cases) {
      const storage = await newTestMemoryStorage([1, 2]);
      await storage.append([e(1, 1), e(2, 2)]);
      const r = newTestRaft(1, 10, 1, storage);
      r.loadState({ term: 2, vote: 0, commit: 0 });
      r.becomeCandidate();
      r.becomeLeader();
      readMessages(r);
      r.step(prop());
      r.step(msg({ from: 2, to: 1, type: MessageType.MsgAppResp, term: r.term, index: idx }));
      advanceMessagesAfterAppend(r);
      expect(r.raftLog.committed).toBe(wantCommit);
    }
  });
});
