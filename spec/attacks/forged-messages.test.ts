/**
 * The attack catalogue of issue 14, items 1-8 and 10, against a real 3-node cluster with TLS off
 * (loopback), so the membership and message checks are tested on their own. Each attack is
 * refused; afterwards the cluster takes a write within a few election timeouts, every replica
 * holds the same state, and no node died.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpCall } from '../../lib/node/local-cluster.js';
import { MAX_NETWORK_TERM } from '../../lib/node/message-guard.js';
import { LOCAL_APPLY_THREAD } from '../../lib/raft/util.js';
import { EntryType, MessageType } from '../../lib/types.js';
import { attack, CLUSTER_ID, forged, startCluster, statusOf, type Cluster } from './harness.js';

let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster();
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

/** What every attack must leave: writes flowing, equal replicas, every process alive. */
async function expectHealthy(key: string): Promise<void> {
  await cluster.put(key, 'after');
  const digests = await cluster.converged();
  expect(new Set(digests).size).toBe(1);
  expect(cluster.allRunning()).toBe(true);
}

/** A member id other than the leader and the target, so the attack impersonates a follower. */
async function followerPair(): Promise<{ target: number; as: number; leader: number; term: number }> {
  const leader = await cluster.leader();
  const followers = [1, 2, 3].filter((id) => id !== leader.id);
  return { target: followers[0]!, as: followers[1]!, leader: leader.id, term: leader.term };
}

describe('forged members and messages (TLS off, loopback)', () => {
  it.each([99, 200, Number.MAX_SAFE_INTEGER])('1: a Hello claiming non-member id %d is refused', async (senderId) => {
    const before = (await statusOf(cluster, 1)).refused.transport.handshakesRefused;
    const connection = attack(cluster.raftPorts.get(1)!, { senderId, receiverId: 1 });
    const outcome = await connection.outcome;
    expect(outcome).toEqual({ accepted: false, reason: `node ${senderId} is not a member of this cluster` });
    expect((await statusOf(cluster, 1)).refused.transport.handshakesRefused).toBe(before + 1);
    connection.close();
    await expectHealthy(`after-hello-${senderId}`);
  });

  it('2, 3, 4, 8: a non-member cannot deliver MsgSnap, MsgProp, MsgApp or heartbeats: the connection is refused before any', async () => {
    const { leader, term } = await followerPair();
    for (const target of [1, 2, 3]) {
      const connection = attack(cluster.raftPorts.get(target)!, { senderId: 99, receiverId: target });
      // Sent at once, without waiting for the answer, as an attacker would.
      const data = new TextEncoder().encode(JSON.stringify({ op: 'put', key: 'forged', value: 'x', requestId: 'forged' }));
      connection.sendMessage(forged({ type: MessageType.MsgProp, from: 99, to: target, entries: [{ term: 0, index: 0, type: EntryType.Normal, data }] }));
      connection.sendMessage(forged({ type: MessageType.MsgHeartbeat, from: 99, to: target, term: term + 5 }));
      connection.sendMessage(forged({ type: MessageType.MsgApp, from: 99, to: target, term: term + 5, index: 1, logTerm: 0, entries: [{ term: term + 5, index: 2, type: EntryType.Normal, data }] }));
      expect((await connection.outcome).accepted).toBe(false);
      expect(await connection.closedWithin(2000)).toBe(true);
    }
    await expectHealthy('after-non-member');
    for (const node of cluster.processes.values()) {
      expect((await httpCall(node.httpPort, 'GET', '/kv/forged')).status).toBe(404);
    }
    // Nobody was deposed: the leader is the same one.
    expect((await cluster.leader()).id).toBe(leader);
  });

  it('5: a MsgSnap whose data the state machine cannot restore is refused before it is saved; the node restarts fine', async () => {
    const { target, as, term } = await followerPair();
    const before = (await statusOf(cluster, target)).refused.messages;
    const connection = attack(cluster.raftPorts.get(target)!, { senderId: as, receiverId: target });
    expect(await connection.outcome).toEqual({ accepted: true });
    connection.sendMessage(
      forged({
        type: MessageType.MsgSnap,
        from: as,
        to: target,
        term,
        snapshot: {
          metadata: { index: 100_000, term, confState: { voters: [1, 2, 3], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } },
          data: new TextEncoder().encode('not a state machine snapshot'),
        },
      }),
    );
    await expect.poll(async () => (await statusOf(cluster, target)).refused.messages, { timeout: 5000 }).toBe(before + 1);
    connection.close();
    expect((await statusOf(cluster, target)).snapshotIndex).toBeLessThan(100_000);
    // Restart: nothing unrestorable was persisted.
    const node = cluster.processes.get(target)!;
    node.kill('SIGTERM');
    expect(await node.waitExit(10_000)).toBe(0);
    node.start();
    await node.waitReady();
    await expectHealthy('after-bad-snapshot');
  });

  it(`6: a heartbeat at term 2^53-1 is refused (terms above ${MAX_NETWORK_TERM} never reach raft)`, async () => {
    const { target, as } = await followerPair();
    const before = await statusOf(cluster, target);
    const connection = attack(cluster.raftPorts.get(target)!, { senderId: as, receiverId: target });
    expect(await connection.outcome).toEqual({ accepted: true });
    connection.sendMessagesTogether([
      forged({ type: MessageType.MsgHeartbeat, from: as, to: target, term: Number.MAX_SAFE_INTEGER }),
      forged({ type: MessageType.MsgVote, from: as, to: target, term: MAX_NETWORK_TERM + 1, index: 1_000_000, logTerm: MAX_NETWORK_TERM }),
    ]);
    await expect.poll(async () => (await statusOf(cluster, target)).refused.messages, { timeout: 5000 }).toBe(before.refused.messages + 2);
    connection.close();
    expect((await statusOf(cluster, target)).term).toBeLessThan(MAX_NETWORK_TERM);
    await expectHealthy('after-huge-term');
  });

  it('7: a heartbeat committing past the log and local message types are refused, never a panic', async () => {
    const { target, as, leader, term } = await followerPair();
    const before = (await statusOf(cluster, target)).refused.messages;
    const connection = attack(cluster.raftPorts.get(target)!, { senderId: leader, receiverId: target });
    expect(await connection.outcome).toEqual({ accepted: true });
    const localTypes = [MessageType.MsgStorageApplyResp, MessageType.MsgStorageAppendResp, MessageType.MsgHup, MessageType.MsgBeat, MessageType.MsgCheckQuorum, MessageType.MsgUnreachable, MessageType.MsgSnapStatus, MessageType.MsgForgetLeader];
    connection.sendMessagesTogether([
      forged({ type: MessageType.MsgHeartbeat, from: leader, to: target, term, commit: 1e9 }),
      ...localTypes.map((type) => forged({ type, from: leader, to: target, term })),
    ]);
    await expect.poll(async () => (await statusOf(cluster, target)).refused.messages, { timeout: 5000 }).toBe(before + 9);
    connection.close();
    // A message claiming to come from the local apply thread is not even delivered: the
    // connection's peer is `as`, so the transport closes it.
    const second = attack(cluster.raftPorts.get(target)!, { senderId: as, receiverId: target });
    expect(await second.outcome).toEqual({ accepted: true });
    second.sendMessage(forged({ type: MessageType.MsgStorageApplyResp, from: LOCAL_APPLY_THREAD, to: target, term }));
    expect(await second.closedWithin(3000)).toBe(true);
    await expectHealthy('after-local-types');
  });
});

describe('the HTTP API and the handshake refusal (item 10)', () => {
  it('answers 413 to a body over the limit, 421 to a foreign Host header, and never quotes the cluster id back', async () => {
    const node = cluster.processes.get(1)!;
    const big = 'x'.repeat(1024 * 1024 + 1);
    expect((await httpCall(node.httpPort, 'PUT', '/kv/too-big', big)).status).toBe(413);
    const rebinding = await new Promise<number>((resolve, reject) => {
      import('node:http').then(({ request }) => {
        const outgoing = request({ host: '127.0.0.1', port: node.httpPort, path: '/kv', headers: { host: 'attacker.example:80' } }, (response) => {
          response.resume();
          resolve(response.statusCode ?? 0);
        });
        outgoing.on('error', reject);
        outgoing.end();
      }, reject);
    });
    expect(rebinding).toBe(421);
    const connection = attack(cluster.raftPorts.get(1)!, { senderId: 2, receiverId: 1, clusterId: 'guess' });
    const outcome = await connection.outcome;
    expect(outcome).toEqual({ accepted: false, reason: 'the cluster id does not match' });
    expect(JSON.stringify(outcome)).not.toContain(CLUSTER_ID);
    connection.close();
    await expectHealthy('after-http');
  });
});
