/**
 * Issue 14 item 9: what an outsider's connections may cost a node. 2,000 idle connections, 50
 * slowloris connections, 8 pre-handshake frames announcing 64 MiB and two StreamBegin headers
 * announcing a 1 GiB snapshot must leave the node's RSS under 200 MB and writes flowing.
 *
 * The flood comes from other loopback addresses (127.0.0.2, 127.0.0.3) than the members
 * (127.0.0.1), as it would from another host: the per-address limit on connections still in
 * their handshake keeps it from crowding the members out.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sleep } from '../../lib/node/local-cluster.js';
import { FrameKind } from '../../lib/transport/framing.js';
import { encodeStreamHeader } from '../../lib/transport/wire.js';
import { encodeMessage } from '../../lib/codec.js';
import { MessageType } from '../../lib/types.js';
import { attack, forged, startCluster, statusOf, type Cluster } from './harness.js';

const RSS_LIMIT = 200 * 1024 * 1024;
let cluster: Cluster;
const sockets: Socket[] = [];

beforeAll(async () => {
  cluster = await startCluster();
}, 60_000);

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await cluster?.stop();
});

function open(port: number, localAddress: string): Promise<Socket> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, localAddress });
    socket.on('error', () => undefined);
    sockets.push(socket);
    socket.once('connect', () => resolve(socket));
    socket.once('close', () => resolve(socket));
  });
}

it('2,000 idle connections, 50 slowloris, 8 x 64 MiB pre-handshake frames and two 1 GiB StreamBegins: RSS under 200 MB, writes flowing', async () => {
  const leader = await cluster.leader();
  const target = leader.id;
  const port = cluster.raftPorts.get(target)!;

  // 2,000 idle connections in batches (the node refuses all but a few at once).
  for (let batch = 0; batch < 20; batch++) {
    await Promise.all(Array.from({ length: 100 }, () => open(port, '127.0.0.2')));
  }
  await sleep(200);
  const stillOpen = sockets.filter((socket) => !socket.destroyed && socket.readyState === 'open').length;
  const refused = (await statusOf(cluster, target)).refused.transport;
  expect(refused.connectionsOverLimit).toBeGreaterThanOrEqual(1900);
  expect(stillOpen).toBeLessThanOrEqual(100);
  await cluster.put('during-flood', 'ok');

  // 50 slowloris connections from another address: one byte of a Hello every 100 ms.
  const slow = await Promise.all(Array.from({ length: 50 }, () => open(port, '127.0.0.3')));
  const drip = setInterval(() => {
    for (const socket of slow) if (!socket.destroyed) socket.write(Buffer.from([0]));
  }, 100);

  // 8 frames announcing 64 MiB before any handshake: refused at their 5-byte header.
  const big = await Promise.all(Array.from({ length: 8 }, () => open(port, '127.0.0.4')));
  const header = Buffer.alloc(5);
  header.writeUInt32BE(64 * 1024 * 1024, 0);
  header.writeUInt8(FrameKind.Hello, 4);
  for (const socket of big) {
    socket.write(header);
    socket.write(Buffer.alloc(256 * 1024, 1));
  }

  // Two StreamBegins announcing a 1 GiB snapshot, from members (TLS is off here, so any
  // process on the machine can say it is one): nothing is allocated from an announcement.
  const followers = [1, 2, 3].filter((id) => id !== target);
  const streams = followers.map((as) => attack(port, { senderId: as, receiverId: target }));
  for (const [position, stream] of streams.entries()) {
    expect(await stream.outcome).toEqual({ accepted: true });
    const message = forged({
      type: MessageType.MsgSnap,
      from: followers[position]!,
      to: target,
      term: leader.term,
      snapshot: { metadata: { index: 10, term: leader.term, confState: { voters: [1, 2, 3], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } } },
    });
    stream.sendFrame(FrameKind.StreamBegin, encodeStreamHeader({ messageBytes: encodeMessage(message), snapshotDataLength: 1024 * 1024 * 1024, attachments: [] }));
  }

  await sleep(1000);
  expect(cluster.rssBytes(target)).toBeLessThan(RSS_LIMIT);
  await cluster.put('during-everything', 'ok');

  // The slowloris connections never finish a Hello: closed at the handshake timeout (5 s).
  await sleep(5500);
  clearInterval(drip);
  expect(slow.every((socket) => socket.destroyed || socket.readyState === 'closed')).toBe(true);
  for (const stream of streams) stream.close();
  const after = (await statusOf(cluster, target)).refused.transport;
  expect(after.handshakeTimeouts).toBeGreaterThanOrEqual(1);
  expect(after.malformedFrames).toBeGreaterThanOrEqual(8);
  expect(cluster.rssBytes(target)).toBeLessThan(RSS_LIMIT);
  await cluster.put('after-everything', 'ok');
  const digests = await cluster.converged();
  expect(new Set(digests).size).toBe(1);
  expect(cluster.allRunning()).toBe(true);
}, 90_000);
