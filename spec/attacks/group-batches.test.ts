/**
 * Multi-raft frames (issue 19) from a hostile member: GroupBatch frames with unknown or invalid
 * group ids, oversized counts, forged senders and unknown flags, against a real 3-node cluster.
 * A message for a group the node does not host is refused and counted and creates nothing; a
 * frame that breaks the format closes the connection and is counted; afterwards the cluster takes
 * a write, its replicas agree, and no node died.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeMessage } from '../../lib/codec.js';
import { FrameKind } from '../../lib/transport/framing.js';
import { DEFAULT_MAX_BATCH_MESSAGES, encodeGroupBatch, type GroupBatchItem } from '../../lib/transport/wire.js';
import { MessageType } from '../../lib/types.js';
import { sleep, waitUntil } from '../../lib/node/local-cluster.js';
import { attack, forged, startCluster, statusOf, type Cluster } from './harness.js';

let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster();
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

async function expectHealthy(key: string): Promise<void> {
  await cluster.put(key, 'after');
  const digests = await cluster.converged();
  expect(new Set(digests).size).toBe(1);
  expect(cluster.allRunning()).toBe(true);
}

/** A follower to attack, and the other follower whose identity the attacker borrows. */
async function followerPair(): Promise<{ target: number; as: number; term: number }> {
  const leader = await cluster.leader();
  const followers = [1, 2, 3].filter((id) => id !== leader.id);
  return { target: followers[0]!, as: followers[1]!, term: leader.term };
}

/** A GroupBatch payload with a raw header: `count` announced, then `body` as is. */
function rawBatch(count: number, body: Uint8Array = new Uint8Array(0)): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(count, 0);
  return Buffer.concat([header, body]);
}

describe('GroupBatch frames from a hostile member', () => {
  it('a message for a partition the node does not host is refused, counted, and changes nothing', async () => {
    const { target, as, term } = await followerPair();
    const before = await statusOf(cluster, target);
    const connection = attack(cluster.raftPorts.get(target)!, { senderId: as, receiverId: target });
    expect(await connection.outcome).toEqual({ accepted: true });
    // A heartbeat far in the future, for groups 2, 1000 and 2^53-1: any of them stepped would
    // create a group, or (in partition 1) raise its term.
    const items: GroupBatchItem[] = [2, 1000, Number.MAX_SAFE_INTEGER].map((group) => ({
      group,
      flags: 0,
      bytes: encodeMessage(forged({ type: MessageType.MsgHeartbeat, from: as, to: target, term: term + 50 })),
    }));
    connection.sendFrame(FrameKind.GroupBatch, encodeGroupBatch(items));
    const after = await waitUntil(5000, async () => {
      const status = await statusOf(cluster, target);
      return status.refused.unknownGroups > before.refused.unknownGroups ? status : undefined;
    });
    expect(after?.refused.unknownGroups).toBe(before.refused.unknownGroups + 3);
    // Refusing a message is not a reason to drop the connection (the real member, redialing,
    // may supersede it meanwhile: that is not a refusal).
    expect(after!.refused.transport.malformedFrames).toBe(before.refused.transport.malformedFrames);
    expect(after!.groups.count).toBe(1);
    expect(after!.term).toBe(before.term);
    connection.close();
    await expectHealthy('after-unknown-groups');
  });

  it.each([
    { what: 'group 0', payload: () => encodeGroupBatch([{ group: 0, flags: 0, bytes: new Uint8Array(0) }]) },
    { what: 'unknown flag bits', payload: () => encodeGroupBatch([{ group: 1, flags: 0x80, bytes: new Uint8Array(0) }]) },
    { what: `a count above ${DEFAULT_MAX_BATCH_MESSAGES}`, payload: () => rawBatch(DEFAULT_MAX_BATCH_MESSAGES + 1, Buffer.alloc(13 * (DEFAULT_MAX_BATCH_MESSAGES + 1))) },
    { what: 'a count of 2^32-1 in a 4-byte frame', payload: () => rawBatch(0xffff_ffff) },
    { what: 'a count its bytes cannot hold', payload: () => rawBatch(100, Buffer.alloc(50)) },
    { what: 'a message longer than the frame', payload: () => Buffer.concat([rawBatch(1), Buffer.from([0, 0, 0, 0, 0, 0, 0, 1, 0, 0xff, 0xff, 0xff, 0xff])]) },
    { what: 'trailing bytes', payload: () => Buffer.concat([encodeGroupBatch([]), Buffer.from([1])]) },
  ])('a batch with $what closes the connection and is counted', async ({ what, payload }) => {
    const { target, as } = await followerPair();
    const before = (await statusOf(cluster, target)).refused.transport.malformedFrames;
    // The real member, redialing after this connection superseded its own, may supersede this
    // one before its frame is read (then nothing is counted): tried again, at most three times.
    let counted = before;
    for (let attempt = 0; attempt < 3 && counted === before; attempt++) {
      const connection = attack(cluster.raftPorts.get(target)!, { senderId: as, receiverId: target });
      expect(await connection.outcome).toEqual({ accepted: true });
      connection.sendFrame(FrameKind.GroupBatch, payload());
      expect(await connection.closedWithin(2000), what).toBe(true);
      counted = (await statusOf(cluster, target)).refused.transport.malformedFrames;
    }
    expect(counted).toBe(before + 1);
    await expectHealthy(`after-batch-${what.replace(/[^a-z0-9]+/gi, '-')}`);
  });

  it('a batch with one message forged as another member\'s is refused whole: nothing in it is stepped', async () => {
    const { target, as, term } = await followerPair();
    const before = await statusOf(cluster, target);
    const connection = attack(cluster.raftPorts.get(target)!, { senderId: as, receiverId: target });
    expect(await connection.outcome).toEqual({ accepted: true });
    const leader = [1, 2, 3].find((id) => id !== target && id !== as)!;
    connection.sendFrame(
      FrameKind.GroupBatch,
      encodeGroupBatch([
        // Well formed, from the connection's own member: would be stepped if the frame were taken.
        { group: 1, flags: 0, bytes: encodeMessage(forged({ type: MessageType.MsgHeartbeat, from: as, to: target, term: term + 50 })) },
        // Claims to come from the leader over the attacker's connection.
        { group: 1, flags: 0, bytes: encodeMessage(forged({ type: MessageType.MsgHeartbeat, from: leader, to: target, term: term + 50 })) },
      ]),
    );
    expect(await connection.closedWithin(2000)).toBe(true);
    const after = await statusOf(cluster, target);
    expect(after.refused.transport.malformedFrames).toBe(before.refused.transport.malformedFrames + 1);
    expect(after.term).toBe(before.term);
    await expectHealthy('after-forged-batch');
  });

  it('a flood of empty batches (node-level heartbeats) is taken and changes nothing', async () => {
    const { target, as } = await followerPair();
    const before = await statusOf(cluster, target);
    const connection = attack(cluster.raftPorts.get(target)!, { senderId: as, receiverId: target });
    expect(await connection.outcome).toEqual({ accepted: true });
    for (let i = 0; i < 2000; i++) connection.sendFrame(FrameKind.GroupBatch, encodeGroupBatch([]));
    await sleep(500);
    connection.close();
    const after = await statusOf(cluster, target);
    expect(after.refused.transport.malformedFrames).toBe(before.refused.transport.malformedFrames);
    expect(after.refused.messages).toBe(before.refused.messages);
    expect(after.term).toBe(before.term);
    await expectHealthy('after-empty-batches');
  });
});
