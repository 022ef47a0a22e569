/**
 * RawNode.proposeMany (issue 18): several entries in one MsgProp. raft.go's stepLeader appends a
 * MsgProp's entries together and broadcasts once, so a batch costs one MsgApp per follower where
 * one propose() per entry costs one each; a follower forwards the batch as one message; raft
 * accepts or drops the batch as a whole.
 */
import { describe, expect, it } from 'vitest';

import { MemoryStorage } from '../../lib/memory-storage.js';
import { RawNode, type Ready } from '../../lib/raft/rawnode.js';
import { MessageType, type Message } from '../../lib/types.js';
import { snapshotAt } from './helpers.js';

const encoder = new TextEncoder();
const payloads = (count: number) => Array.from({ length: count }, (_, i) => encoder.encode(`value-${i}`));

async function newNode(id: number, voters: number[]): Promise<{ node: RawNode; storage: MemoryStorage }> {
  const storage = new MemoryStorage();
  await storage.applySnapshot(snapshotAt(1, 1, voters));
  const node = new RawNode({ id, storage, electionTick: 10, heartbeatTick: 1, maxInflightMsgs: 256, random: () => 0 });
  return { node, storage };
}

async function persistAndAdvance(node: RawNode, storage: MemoryStorage): Promise<Ready> {
  const ready = node.ready();
  if (ready.entries.length > 0) await storage.append(ready.entries);
  if (ready.hardState !== undefined) await storage.setHardState(ready.hardState);
  node.advance(ready);
  return ready;
}

/** Node 1 leads a 3-voter group whose followers are in StateReplicate (their appends acknowledged). */
async function leaderOfThree(): Promise<{ leader: RawNode; storage: MemoryStorage }> {
  const { node: leader, storage } = await newNode(1, [1, 2, 3]);
  leader.campaign();
  let ready = await persistAndAdvance(leader, storage);
  for (const vote of ready.messages.filter((message) => message.type === MessageType.MsgVote)) {
    leader.step({ ...vote, type: MessageType.MsgVoteResp, from: vote.to, to: 1, reject: false, entries: [], responses: [] });
  }
  expect(leader.basicStatus().raftState).toBe('StateLeader');
  // The leader's empty entry goes out as a MsgApp; acknowledging it moves both followers to StateReplicate.
  ready = await persistAndAdvance(leader, storage);
  for (const append of ready.messages.filter((message) => message.type === MessageType.MsgApp)) {
    const last = append.entries.at(-1)!.index;
    leader.step({ ...append, type: MessageType.MsgAppResp, from: append.to, to: 1, index: last, entries: [], responses: [] });
  }
  await persistAndAdvance(leader, storage);
  return { leader, storage };
}

const appendsIn = (messages: readonly Message[]) => messages.filter((message) => message.type === MessageType.MsgApp);

describe('RawNode.proposeMany', () => {
  it('a batch of 8 is one MsgApp per follower carrying all 8; 8 propose() calls are 8 per follower', async () => {
    const cases = [
      { how: 'proposeMany', propose: (node: RawNode, data: Uint8Array[]) => node.proposeMany(data), appendsPerFollower: 1 },
      { how: 'propose one by one', propose: (node: RawNode, data: Uint8Array[]) => data.forEach((item) => node.propose(item)), appendsPerFollower: 8 },
    ];
    for (const { how, propose, appendsPerFollower } of cases) {
      const { leader, storage } = await leaderOfThree();
      const before = storage.lastIndex();
      propose(leader, payloads(8));
      const ready = await persistAndAdvance(leader, storage);
      expect(ready.entries.map((entry) => new TextDecoder().decode(entry.data)), how).toEqual(payloads(8).map((item) => new TextDecoder().decode(item)));
      expect(storage.lastIndex(), how).toBe(before + 8);
      for (const follower of [2, 3]) {
        const appends = appendsIn(ready.messages).filter((message) => message.to === follower);
        expect(appends, `${how}: MsgApps to ${follower}`).toHaveLength(appendsPerFollower);
        expect(appends.flatMap((message) => message.entries).map((entry) => entry.index), how).toEqual(Array.from({ length: 8 }, (_, i) => before + 1 + i));
      }
    }
  });

  it('a follower forwards the batch to its leader as one MsgProp', async () => {
    const { node: follower, storage } = await newNode(2, [1, 2, 3]);
    // A heartbeat of term 2 from node 1 makes it the known leader.
    follower.step({ type: MessageType.MsgHeartbeat, from: 1, to: 2, term: 2, logTerm: 0, index: 0, commit: 1, entries: [], vote: 0, reject: false, rejectHint: 0, responses: [] });
    await persistAndAdvance(follower, storage);
    follower.proposeMany(payloads(5));
    const ready = await persistAndAdvance(follower, storage);
    const forwarded = ready.messages.filter((message) => message.type === MessageType.MsgProp);
    expect(forwarded).toHaveLength(1);
    expect(forwarded[0]!.to).toBe(1);
    expect(forwarded[0]!.entries).toHaveLength(5);
  });

  it('without a leader the whole batch is dropped (ERR_PROPOSAL_DROPPED) and nothing is appended', async () => {
    const { node, storage } = await newNode(1, [1, 2, 3]);
    expect(() => node.proposeMany(payloads(3))).toThrow(expect.objectContaining({ code: 'ERR_PROPOSAL_DROPPED' }));
    expect(node.hasReady()).toBe(false);
    expect(storage.lastIndex()).toBe(1);
  });

  it.each([
    ['an empty array', []],
    ['a string among the entries', [encoder.encode('a'), 'b']],
    ['not an array', encoder.encode('a')],
  ])('refuses %s with ERR_INVALID_ARGUMENT and appends nothing', async (_what, data) => {
    const { leader, storage } = await leaderOfThree();
    const before = storage.lastIndex();
    expect(() => leader.proposeMany(data as unknown as Uint8Array[])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(leader.hasReady()).toBe(false);
    expect(storage.lastIndex()).toBe(before);
  });
});
