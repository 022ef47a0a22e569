/**
 * RawNode with asyncStorageWrites (etcd raft v3.6's AsyncStorageWrites): the Ready hands its
 * writes to the local append thread and its applies to the local apply thread as messages, and
 * everything that must wait for the writes travels as their responses. The transcripts
 * async_storage_writes*.txt (spec/raft/etcd-interaction.test.ts) check the whole exchange;
 * these tests pin the contract a user of the option relies on.
 */
import { describe, expect, it } from 'vitest';

import { MemoryStorage } from '../../lib/memory-storage.js';
import { RaftError, StateType } from '../../lib/raft/raft.js';
import { RawNode, type Ready } from '../../lib/raft/rawnode.js';
import { LOCAL_APPEND_THREAD, LOCAL_APPLY_THREAD, newMessage } from '../../lib/raft/util.js';
import { EntryType, MessageType, type Message } from '../../lib/types.js';
import { snapshotAt } from './helpers.js';

const encoder = new TextEncoder();

/** A node whose storage starts from a snapshot at index 1 (term 1) holding `voters`. */
async function newNode(id: number, voters: number[], asyncStorageWrites: boolean): Promise<{ node: RawNode; storage: MemoryStorage }> {
  const storage = new MemoryStorage();
  await storage.applySnapshot(snapshotAt(1, 1, voters));
  const node = new RawNode({ id, storage, electionTick: 10, heartbeatTick: 1, asyncStorageWrites, random: () => 0 });
  return { node, storage };
}

function only<T>(values: readonly T[], predicate: (value: T) => boolean): T {
  const matches = values.filter(predicate);
  expect(matches).toHaveLength(1);
  return matches[0]!;
}

/** The local append thread: writes what the message carries (entries before the hard state that may commit them). */
async function processAppend(storage: MemoryStorage, m: Message): Promise<void> {
  if (m.snapshot !== undefined) await storage.applySnapshot(m.snapshot);
  await storage.append(m.entries);
  if (m.term !== 0 || m.vote !== 0 || m.commit !== 0) await storage.setHardState({ term: m.term, vote: m.vote, commit: m.commit });
}

describe('RawNode asyncStorageWrites', () => {
  it('a leader: each Ready hands a MsgStorageAppend (entries, hard state, waiting messages) to the append thread; nothing commits or applies before it is acknowledged', async () => {
    const { node, storage } = await newNode(1, [1], true);
    node.campaign();
    // 1. The vote for itself must be durable before it counts: it rides on the append.
    const rd = node.ready();
    expect(rd.hardState).toEqual({ term: 1, vote: 1, commit: 1 });
    expect(rd.messages).toHaveLength(1);
    const voteAppend = rd.messages[0]!;
    expect(voteAppend.type).toBe(MessageType.MsgStorageAppend);
    expect(voteAppend.to).toBe(LOCAL_APPEND_THREAD);
    expect(voteAppend.from).toBe(1);
    expect([voteAppend.term, voteAppend.vote, voteAppend.commit]).toEqual([1, 1, 1]);
    expect(voteAppend.responses.map((m) => [MessageType[m.type], m.from, m.to])).toEqual([['MsgVoteResp', 1, 1]]);
    expect(node.raft.state).toBe(StateType.StateCandidate);
    expect(node.hasReady()).toBe(false);
    await processAppend(storage, voteAppend);
    for (const response of voteAppend.responses) node.step(response);
    expect(node.raft.state).toBe(StateType.StateLeader);

    // 2. The leader's empty entry: in the Ready fields and in the message, with the leader's
    // self-acknowledgement first, then the append thread's own response.
    const rd2 = node.ready();
    expect(rd2.entries.map((e) => e.index)).toEqual([2]);
    expect(rd2.committedEntries).toEqual([]);
    const append = only(rd2.messages, (m) => m.type === MessageType.MsgStorageAppend);
    expect(append.entries).toEqual(rd2.entries);
    expect(append.responses.map((m) => [MessageType[m.type], m.from, m.to])).toEqual([
      ['MsgAppResp', 1, 1],
      ['MsgStorageAppendResp', LOCAL_APPEND_THREAD, 1],
    ]);
    const appendResponse = append.responses[1]!;
    expect([appendResponse.term, appendResponse.index, appendResponse.logTerm]).toEqual([1, 2, 1]);
    // Without the responses the entry is neither committed nor stable.
    expect(node.hasReady()).toBe(false);
    expect(node.raft.raftLog.committed).toBe(1);
    await processAppend(storage, append);
    for (const response of append.responses) node.step(response);
    expect(node.raft.raftLog.unstable.entries).toEqual([]);

    // 3. Index 2 commits; it goes to the apply thread (MsgStorageApply with its response).
    const rd3 = node.ready();
    expect(rd3.hardState).toEqual({ term: 1, vote: 1, commit: 2 });
    expect(rd3.committedEntries.map((e) => e.index)).toEqual([2]);
    const hardStateOnly = only(rd3.messages, (m) => m.type === MessageType.MsgStorageAppend);
    expect(hardStateOnly.entries).toEqual([]);
    expect(hardStateOnly.commit).toBe(2);
    const apply = only(rd3.messages, (m) => m.type === MessageType.MsgStorageApply);
    expect(apply.to).toBe(LOCAL_APPLY_THREAD);
    expect(apply.term).toBe(0);
    expect(apply.entries).toEqual(rd3.committedEntries);
    expect(apply.responses).toEqual([
      newMessage({ type: MessageType.MsgStorageApplyResp, to: 1, from: LOCAL_APPLY_THREAD, entries: rd3.committedEntries }),
    ]);
    expect(node.status().applied).toBe(1);
    for (const response of apply.responses) node.step(response);
    expect(node.status().applied).toBe(2);
  });

  it('a follower: its MsgAppResp to the leader is attached to the MsgStorageAppend, not sent with the Ready', async () => {
    const { node, storage } = await newNode(2, [1, 2], true);
    node.step(
      newMessage({
        type: MessageType.MsgApp,
        from: 1,
        to: 2,
        term: 2,
        logTerm: 1,
        index: 1,
        commit: 2,
        entries: [{ type: EntryType.Normal, term: 2, index: 2, data: encoder.encode('x') }],
      }),
    );
    const rd = node.ready();
    expect(rd.entries.map((e) => [e.term, e.index])).toEqual([[2, 2]]);
    // Committed but not yet durable locally: not handed out for applying yet.
    expect(rd.committedEntries).toEqual([]);
    expect(rd.messages.map((m) => MessageType[m.type])).toEqual(['MsgStorageAppend']);
    const append = rd.messages[0]!;
    const toLeader = only(append.responses, (m) => m.to === 1);
    expect([MessageType[toLeader.type], toLeader.index, toLeader.reject]).toEqual(['MsgAppResp', 2, false]);
    expect(append.responses[append.responses.length - 1]!.type).toBe(MessageType.MsgStorageAppendResp);

    // Once the append is acknowledged, the committed entry goes to the apply thread.
    await processAppend(storage, append);
    for (const response of append.responses.filter((m) => m.to === 2)) node.step(response);
    const rd2 = node.ready();
    expect(rd2.committedEntries.map((e) => e.index)).toEqual([2]);
    expect(only(rd2.messages, (m) => m.type === MessageType.MsgStorageApply).entries).toEqual(rd2.committedEntries);
  });

  it('a snapshot travels in the MsgStorageAppend and in its MsgStorageAppendResp', async () => {
    const { node, storage } = await newNode(2, [1, 2], true);
    const snapshot = snapshotAt(5, 2, [1, 2]);
    node.step(newMessage({ type: MessageType.MsgSnap, from: 1, to: 2, term: 2, snapshot }));
    const rd = node.ready();
    expect(rd.snapshot).toEqual(snapshot);
    const append = only(rd.messages, (m) => m.type === MessageType.MsgStorageAppend);
    expect(append.snapshot).toEqual(snapshot);
    const appendResponse = only(append.responses, (m) => m.type === MessageType.MsgStorageAppendResp);
    expect(appendResponse.snapshot).toEqual(snapshot);
    // The snapshot stays "in progress" until the response is stepped.
    expect(node.raft.raftLog.unstable.snapshotInProgress).toBe(true);
    await processAppend(storage, append);
    for (const response of append.responses.filter((m) => m.to === 2)) node.step(response);
    expect(node.raft.raftLog.unstable.snapshot).toBeUndefined();
    expect(node.raft.raftLog.firstIndex()).toBe(6);
  });

  it('advance() is refused (ERR_ADVANCE_ASYNC) and leaves the node usable', async () => {
    const { node } = await newNode(1, [1], true);
    node.campaign();
    const rd: Ready = node.ready();
    expect(() => node.advance(rd)).toThrow(RaftError);
    try {
      node.advance(rd);
    } catch (error) {
      expect((error as RaftError).code).toBe('ERR_ADVANCE_ASYNC');
    }
    expect(node.stoppedBy()).toBeUndefined();
    const append = rd.messages[0]!;
    for (const response of append.responses) node.step(response);
    expect(node.hasReady()).toBe(true);
  });

  it('synchronous mode (the default) has no local messages and applies in the same Ready as it persists', async () => {
    const { node, storage } = await newNode(1, [1], false);
    expect(node.asyncStorageWrites).toBe(false);
    node.campaign();
    // Persist, then advance: the vote counts, the node leads and appends its empty entry.
    for (let round = 0; round < 3 && node.hasReady(); round++) {
      const rd = node.ready();
      expect(rd.messages).toEqual([]);
      await storage.append(rd.entries);
      if (rd.hardState !== undefined) await storage.setHardState(rd.hardState);
      if (rd.committedEntries.length > 0) {
        // Committed entries are handed out in the same Ready that carries the commit.
        expect(rd.hardState?.commit).toBe(2);
        expect(rd.committedEntries.map((e) => e.index)).toEqual([2]);
      }
      node.advance(rd);
    }
    expect(node.raft.state).toBe(StateType.StateLeader);
    expect(node.status().applied).toBe(2);
  });

  it('three nodes run the README loop shape to agreement: every proposal applied everywhere, in order, through the strict MemoryStorage', async () => {
    const ids = [1, 2, 3];
    const nodes = new Map<number, { node: RawNode; storage: MemoryStorage; applied: string[]; appendWork: Message[]; applyWork: Message[] }>();
    for (const id of ids) {
      const { node, storage } = await newNode(id, ids, true);
      nodes.set(id, { node, storage, applied: [], appendWork: [], applyWork: [] });
    }
    let network: Message[] = [];
    const decoder = new TextDecoder();
    // One round: every Ready, then one step of each append thread and apply thread, then the network.
    const round = async (): Promise<boolean> => {
      let busy = false;
      for (const state of nodes.values()) {
        while (state.node.hasReady()) {
          busy = true;
          for (const m of state.node.ready().messages) {
            if (m.to === LOCAL_APPEND_THREAD) state.appendWork.push(m);
            else if (m.to === LOCAL_APPLY_THREAD) state.applyWork.push(m);
            else network.push(m);
          }
        }
        const append = state.appendWork.shift();
        if (append !== undefined) {
          busy = true;
          await processAppend(state.storage, append);
          network.push(...append.responses);
        }
        const apply = state.applyWork.shift();
        if (apply !== undefined) {
          busy = true;
          for (const entry of apply.entries) {
            if (entry.type === EntryType.Normal && entry.data !== undefined && entry.data.length > 0) state.applied.push(decoder.decode(entry.data));
          }
          network.push(...apply.responses);
        }
      }
      const inFlight = network;
      network = [];
      for (const m of inFlight) {
        busy = true;
        nodes.get(m.to)!.node.step(m);
      }
      return busy;
    };
    const settle = async (): Promise<void> => {
      for (let rounds = 0; await round(); rounds++) expect(rounds).toBeLessThan(1000);
    };
    nodes.get(1)!.node.campaign();
    await settle();
    expect(nodes.get(1)!.node.raft.state).toBe(StateType.StateLeader);
    const values = Array.from({ length: 20 }, (_, i) => `v${i}`);
    for (const value of values) {
      nodes.get(1)!.node.propose(encoder.encode(value));
      // Proposals overlap with the writes of earlier ones: settle only now and then.
      if (value.endsWith('5')) await settle();
    }
    await settle();
    for (const state of nodes.values()) {
      expect(state.applied).toEqual(values);
      expect(state.storage.lastIndex()).toBe(22); // snapshot 1, the leader's empty entry 2, 20 proposals
      expect(state.node.raft.raftLog.unstable.entries).toEqual([]);
    }
  });

  // etcd node_test.go TestCommitPaginationWithAsyncStorageWrites, in RawNode form: committed
  // entries handed to the apply thread are bounded by maxCommittedSizePerReady until their
  // application is acknowledged.
  it('TestCommitPaginationWithAsyncStorageWrites', async () => {
    const storage = new MemoryStorage();
    await storage.applySnapshot(snapshotAt(0, 0, [1]));
    const node = new RawNode({ id: 1, storage, electionTick: 10, heartbeatTick: 1, maxCommittedSizePerReady: 2048, asyncStorageWrites: true });
    const readyNow = (): Ready => {
      expect(node.hasReady()).toBe(true);
      return node.ready();
    };
    const appendAndRespond = async (m: Message): Promise<void> => {
      await storage.append(m.entries);
      for (const response of m.responses) node.step(response);
    };
    node.campaign();

    // Persist vote.
    let rd = readyNow();
    expect(rd.messages.map((m) => m.type)).toEqual([MessageType.MsgStorageAppend]);
    await appendAndRespond(rd.messages[0]!);
    // Append empty entry.
    rd = readyNow();
    expect(rd.messages.map((m) => m.type)).toEqual([MessageType.MsgStorageAppend]);
    await appendAndRespond(rd.messages[0]!);
    // Apply empty entry.
    rd = readyNow();
    expect(rd.messages).toHaveLength(2);
    for (const m of rd.messages) {
      if (m.type === MessageType.MsgStorageAppend) {
        await appendAndRespond(m);
      } else {
        expect(m.type).toBe(MessageType.MsgStorageApply);
        expect(m.entries).toHaveLength(1);
        expect(m.responses).toHaveLength(1);
        node.step(m.responses[0]!);
      }
    }

    const blob = encoder.encode('a'.repeat(1024));
    // Propose and append the first entry.
    node.propose(blob);
    rd = readyNow();
    expect(rd.messages.map((m) => m.type)).toEqual([MessageType.MsgStorageAppend]);
    expect(rd.messages[0]!.entries).toHaveLength(1);
    await appendAndRespond(rd.messages[0]!);

    // Propose and append the second, then the third entry, without applying the earlier ones.
    const applyResponses: Message[] = [];
    for (let proposal = 2; proposal <= 3; proposal++) {
      node.propose(blob);
      rd = readyNow();
      expect(rd.messages).toHaveLength(2);
      for (const m of rd.messages) {
        if (m.type === MessageType.MsgStorageAppend) {
          await appendAndRespond(m);
        } else {
          expect(m.type).toBe(MessageType.MsgStorageApply);
          expect(m.entries).toHaveLength(1);
          expect(m.responses).toHaveLength(1);
          applyResponses.push(m.responses[0]!);
        }
      }
    }

    // The third entry is not handed out until the first one's application is acknowledged.
    while (node.hasReady()) {
      for (const m of node.ready().messages) expect(m.type).not.toBe(MessageType.MsgStorageApply);
    }
    node.step(applyResponses.shift()!);
    rd = readyNow();
    expect(rd.messages.map((m) => m.type)).toEqual([MessageType.MsgStorageApply]);
    expect(rd.messages[0]!.entries).toHaveLength(1);
    applyResponses.push(rd.messages[0]!.responses[0]!);
    for (const response of applyResponses) node.step(response);
    expect(node.status().applied).toBe(4); // the leader's empty entry 1, then the three proposals
  });
});
