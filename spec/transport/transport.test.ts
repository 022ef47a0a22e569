/**
 * Transport over loopback TCP (127.0.0.1 only; ports chosen by listening on port 0). Every test
 * closes its transports, proxies and sockets and removes its temporary directories (afterEach).
 */
import { newMessage } from '../../lib/raft/util.js';
import { randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, readdir, readFile, rm, stat, writeFile, open } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { encodeMessage } from '../../lib/codec.js';
import { ErrorCode } from '../../lib/errors.js';
import { attachmentFromEntryDirectory } from '../../lib/transport/attachments.js';
import type { AttachmentsProvider } from '../../lib/transport/attachments.js';
import { encodeFrame, FrameDecoder, FrameKind, TransportErrorCode } from '../../lib/transport/framing.js';
import { backoffDelay, Transport } from '../../lib/transport/transport.js';
import type { PeerAddress, SnapshotTransferStatus, TransportOptions } from '../../lib/transport/transport.js';
import { encodeHello, PROTOCOL_VERSION } from '../../lib/transport/wire.js';
import { EntryType, MessageType } from '../../lib/types.js';
import type { Message } from '../../lib/types.js';

const HOST = '127.0.0.1';
const FAST_BACKOFF = { initialMs: 10, maxMs: 100 };

// ---------------------------------------------------------------------------------------------
// Harness

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  // Reverse order: transports before the directories they stage into.
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  vi.restoreAllMocks();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'replicalog-transport-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

interface Received {
  message: Message;
  stagedDirs: Map<number, string>;
}

interface TestNode {
  transport: Transport;
  id: number;
  address: PeerAddress;
  received: Received[];
  unreachable: number[];
  snapshotStatuses: [number, SnapshotTransferStatus][];
  errors: Error[];
}

type NodeOptions = Partial<Omit<TransportOptions, 'onMessage' | 'onUnreachable' | 'onSnapshotStatus' | 'onError'>>;

async function startNode(
  id: number,
  options: NodeOptions = {},
  onDeliver?: (message: Message) => void | Promise<void>,
): Promise<TestNode> {
  const node: Partial<TestNode> & Pick<TestNode, 'received' | 'unreachable' | 'snapshotStatuses' | 'errors'> = {
    id,
    received: [],
    unreachable: [],
    snapshotStatuses: [],
    errors: [],
  };
  const transport = new Transport({
    id,
    clusterId: 'test-cluster',
    listen: { host: HOST, port: 0 },
    backoff: FAST_BACKOFF,
    connectTimeoutMs: 2000,
    ...options,
    onMessage: async (message, stagedDirs) => {
      await onDeliver?.(message);
      node.received.push({ message, stagedDirs: new Map(stagedDirs) });
    },
    onUnreachable: (peerId) => node.unreachable.push(peerId),
    onSnapshotStatus: (peerId, status) => node.snapshotStatuses.push([peerId, status]),
    onError: (error) => node.errors.push(error),
  });
  cleanups.push(() => transport.close());
  node.transport = transport;
  node.address = await transport.start();
  return node as TestNode;
}

/** Starts n nodes (ids 1..n) that all know each other. */
async function startCluster(count: number, options: NodeOptions = {}): Promise<TestNode[]> {
  const nodes: TestNode[] = [];
  for (let id = 1; id <= count; id++) nodes.push(await startNode(id, options));
  for (const node of nodes) for (const other of nodes) if (other !== node) node.transport.addPeer(other.id, other.address);
  return nodes;
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A message with zero values for every field not given (raft's newMessage), naming its endpoints. */
function message(fields: Partial<Message> & Pick<Message, 'type' | 'from' | 'to'>): Message {
  return newMessage(fields);
}

function snapshotMessage(from: number, to: number, index: number, data: Uint8Array | undefined): Message {
  const metadata = { confState: { voters: [1, 2, 3], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false }, index, term: 3 };
  return message({ type: MessageType.MsgSnap, from, to, term: 3, snapshot: data === undefined ? { metadata } : { data, metadata } });
}

/** A port on which nothing listens (bound, then released). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as AddressInfo).port;
}

/**
 * A TCP proxy in front of `target`. The first connection is cut after `cutAfterBytes` bytes from
 * the client have been forwarded: the target gets those bytes then EOF, the client gets a reset.
 * Later connections are forwarded untouched.
 */
async function cuttingProxy(
  target: PeerAddress,
  cutAfterBytes: number,
  tap?: (clientBytes: Buffer) => void,
  mode: 'cut' | 'stall' = 'cut',
): Promise<{ port: number; cuts: () => number }> {
  let cuts = 0;
  let cutPending = true;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const cutThis = cutPending;
    cutPending = false;
    let forwarded = 0;
    client.pause();
    const upstream = connect({ host: target.host, port: target.port }, () => client.resume());
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => sockets.delete(socket));
    }
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    upstream.on('close', () => client.destroy());
    client.on('close', () => upstream.destroy());
    client.on('data', (chunk: Buffer) => {
      tap?.(chunk);
      if (!cutThis || forwarded + chunk.length < cutAfterBytes) {
        forwarded += chunk.length;
        upstream.write(chunk);
        return;
      }
      forwarded = cutAfterBytes;
      cuts += 1;
      client.removeAllListeners('data');
      if (mode === 'stall') {
        // Forward the first part, then hold the rest: both ends stay connected, mid-stream.
        upstream.write(chunk.subarray(0, cutAfterBytes - forwarded));
        client.pause();
        return;
      }
      upstream.end(chunk.subarray(0, cutAfterBytes - forwarded));
      client.resetAndDestroy();
    });
  });
  const port = await listen(server);
  cleanups.push(() => {
    for (const socket of sockets) socket.destroy();
  });
  return { port, cuts: () => cuts };
}

async function rawConnection(port: number): Promise<{ socket: Socket; closed: Promise<void>; data: Buffer[] }> {
  const socket = connect({ host: HOST, port });
  const data: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => data.push(chunk));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  cleanups.push(() => {
    socket.destroy();
  });
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  return { socket, closed, data };
}

// ---------------------------------------------------------------------------------------------

describe('Transport: messages', () => {
  it('round-trips messages between 3 transports, every pair, field for field', async () => {
    const nodes = await startCluster(3);
    const sent: Message[] = [];
    for (const from of nodes) {
      for (const to of nodes) {
        if (from === to) continue;
        const batch = [
          message({ type: MessageType.MsgHeartbeat, from: from.id, to: to.id, term: 7, commit: 5, context: new Uint8Array([1, 2]) }),
          message({
            type: MessageType.MsgApp,
            from: from.id,
            to: to.id,
            term: 7,
            logTerm: 6,
            index: 41,
            commit: 40,
            entries: [
              { type: EntryType.Normal, term: 7, index: 42, data: new Uint8Array([9, 9, 9]) },
              { type: EntryType.Normal, term: 7, index: 43 },
              { type: EntryType.ConfChange, term: 7, index: 44, data: new Uint8Array(0) },
            ],
          }),
          message({ type: MessageType.MsgAppResp, from: from.id, to: to.id, term: 7, index: 43, reject: true, rejectHint: 12 }),
          message({ type: MessageType.MsgVote, from: from.id, to: to.id, term: Number.MAX_SAFE_INTEGER, logTerm: 6, index: 43 }),
        ];
        from.transport.send(batch);
        sent.push(...batch);
      }
    }
    await waitFor(() => nodes.every((node) => node.received.length === 8), 'all 24 messages');
    for (const node of nodes) {
      const expected = sent.filter((m) => m.to === node.id);
      // Order is kept per sender; across senders any interleaving is fine.
      for (const sender of nodes) {
        expect(node.received.filter((r) => r.message.from === sender.id).map((r) => r.message)).toEqual(
          expected.filter((m) => m.from === sender.id),
        );
      }
      expect(node.received.every((r) => r.stagedDirs.size === 0)).toBe(true);
      expect(node.errors).toEqual([]);
    }
  });

  it('keeps the order of many messages to one peer', async () => {
    const [a, b] = await startCluster(2);
    const batch = Array.from({ length: 500 }, (_, i) => message({ type: MessageType.MsgHeartbeat, from: 1, to: 2, term: 1, commit: i }));
    for (let i = 0; i < batch.length; i += 50) a!.transport.send(batch.slice(i, i + 50));
    await waitFor(() => b!.received.length === 500, '500 messages');
    expect(b!.received.map((r) => r.message.commit)).toEqual(batch.map((m) => m.commit));
    expect(a!.transport.peers().get(2)).toMatchObject({ connected: true, queuedMessages: 0, droppedMessages: 0 });
  });

  it('refuses invalid messages before queueing any, and any use after close', async () => {
    const [a, b] = await startCluster(2);
    const good = message({ type: MessageType.MsgHeartbeat, from: 1, to: 2, term: 1 });
    const bad = message({ type: MessageType.MsgHeartbeat, from: 1, to: 2, term: -1 });
    expect(() => a!.transport.send([good, bad])).toThrow(expect.objectContaining({ code: ErrorCode.OutOfRange }));
    const forged = message({ type: MessageType.MsgHeartbeat, from: 3, to: 2, term: 1 });
    expect(() => a!.transport.send([good, forged])).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
    a!.transport.send([good]);
    await waitFor(() => b!.received.length === 1, 'the good message');
    await sleep(30);
    expect(b!.received).toHaveLength(1);
    // A follower forwards another node's proposal to its leader with the original `from`.
    const forwarded = message({ type: MessageType.MsgProp, from: 3, to: 2, entries: [{ type: 0, term: 0, index: 0, data: new Uint8Array([1]) }] });
    a!.transport.send([forwarded]);
    await waitFor(() => b!.received.length === 2, 'the forwarded proposal');
    expect(b!.received[1]!.message).toMatchObject({ type: MessageType.MsgProp, from: 3, to: 2 });
    await a!.transport.close();
    expect(() => a!.transport.send([good])).toThrow(expect.objectContaining({ code: ErrorCode.Closed }));
  });

  it('reports a message to an unknown peer as unreachable, asynchronously', async () => {
    const a = await startNode(1);
    a.transport.send([message({ type: MessageType.MsgHeartbeat, from: 1, to: 9, term: 1 }), snapshotMessage(1, 9, 5, undefined)]);
    expect(a.unreachable).toEqual([]);
    await waitFor(() => a.unreachable.length === 2, 'unreachable reports');
    expect(a.unreachable).toEqual([9, 9]);
    expect(a.snapshotStatuses).toEqual([[9, 'failure']]);
  });

  it('addPeer with a new address moves the peer', async () => {
    const b = await startNode(2);
    const a = await startNode(1, { peers: new Map([[2, { host: HOST, port: await freePort() }]]) });
    a.transport.addPeer(2, b.address);
    expect(a.transport.peers().get(2)!.address).toEqual(b.address);
    a.transport.send([message({ type: MessageType.MsgHeartbeat, from: 1, to: 2, term: 1 })]);
    await waitFor(() => b.received.length === 1, 'delivery at the new address');
    expect(() => a.transport.addPeer(1, b.address)).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
  });

  it('drops a message too large for one frame instead of breaking the connection', async () => {
    const [a, b] = await startCluster(2, { maxFrameBytes: 64 * 1024, chunkBytes: 16 * 1024 });
    const huge = message({ type: MessageType.MsgApp, from: 1, to: 2, term: 1, entries: [{ type: EntryType.Normal, term: 1, index: 1, data: new Uint8Array(70 * 1024) }] });
    const small = message({ type: MessageType.MsgHeartbeat, from: 1, to: 2, term: 1 });
    a!.transport.send([huge, small]);
    await waitFor(() => b!.received.length === 1, 'the small message');
    expect(b!.received[0]!.message.type).toBe(MessageType.MsgHeartbeat);
    expect(a!.errors.map((e) => e.message).join('\n')).toMatch(/does not fit/);
    expect(a!.unreachable).toEqual([2]);
  });

  it('reconnects after the peer restarts on the same address', async () => {
    const [a, b] = await startCluster(2);
    a!.transport.send([message({ type: MessageType.MsgHeartbeat, from: 1, to: 2, term: 1, commit: 1 })]);
    await waitFor(() => b!.received.length === 1, 'first message');

    await b!.transport.close();
    await waitFor(() => a!.transport.peers().get(2)?.connected === false, 'A to notice the loss');
    expect(a!.unreachable).toContain(2);

    const restarted = await startNode(2, { listen: { host: HOST, port: b!.address.port } });
    // Raft retransmits; so does this loop, until the restarted peer hears something.
    for (let commit = 2; restarted.received.length === 0; commit++) {
      a!.transport.send([message({ type: MessageType.MsgHeartbeat, from: 1, to: 2, term: 1, commit })]);
      await sleep(20);
      if (commit > 150) throw new Error('no delivery after restart');
    }
    expect(a!.transport.peers().get(2)?.connected).toBe(true);
    expect(restarted.received[0]!.message.from).toBe(1);
  });
});

describe('Transport: reconnect backoff', () => {
  it('doubles from initialMs, caps at maxMs, jitters within [base/2, base]', () => {
    expect([0, 1, 2, 3, 10, 1000].map((failures) => backoffDelay(failures, 100, 5000, () => 1))).toEqual([100, 200, 400, 800, 5000, 5000]);
    expect([0, 1, 2, 10].map((failures) => backoffDelay(failures, 100, 5000, () => 0))).toEqual([50, 100, 200, 2500]);
    for (let i = 0; i < 100; i++) {
      const delay = backoffDelay(3, 100, 5000);
      expect(delay).toBeGreaterThanOrEqual(400);
      expect(delay).toBeLessThanOrEqual(800);
    }
  });

  it('redials a peer that keeps hanging up, with growing delays', async () => {
    let connections = 0;
    const server = createServer((socket) => {
      connections += 1;
      socket.destroy();
    });
    const port = await listen(server);
    const a = await startNode(1, { backoff: { initialMs: 20, maxMs: 80 }, peers: new Map([[2, { host: HOST, port }]]) });
    await sleep(400);
    // Without backoff this would be hundreds; with 10..80 ms delays it is a handful.
    expect(connections).toBeGreaterThanOrEqual(3);
    expect(connections).toBeLessThanOrEqual(25);
    expect(a.transport.peers().get(2)!.connected).toBe(false);
  });
});

describe('Transport: bounded queues', () => {
  it('drops past maxQueuedMessages while the peer is down, reports unreachable, delivers the rest once up', async () => {
    const port = await freePort();
    const a = await startNode(1, { maxQueuedMessages: 4, peers: new Map([[2, { host: HOST, port }]]) });
    const batch = Array.from({ length: 10 }, (_, i) => message({ type: MessageType.MsgHeartbeat, from: 1, to: 2, term: 1, commit: i }));
    a.transport.send(batch);
    expect(a.transport.peers().get(2)).toMatchObject({ connected: false, queuedMessages: 4, droppedMessages: 6 });
    await waitFor(() => a.unreachable.filter((id) => id === 2).length >= 6, 'six drop reports');
    expect(a.errors.some((error) => (error as { code?: string }).code === TransportErrorCode.ConnectionLost)).toBe(true);

    const b = await startNode(2, { listen: { host: HOST, port } });
    await waitFor(() => b.received.length === 4, 'the four queued messages');
    expect(b.received.map((r) => r.message.commit)).toEqual([0, 1, 2, 3]);
  });

  it('bounds queued bytes too (a lone oversize message still fits an empty queue); a dropped MsgSnap reports failure', async () => {
    const port = await freePort();
    const a = await startNode(1, { maxQueuedBytes: 1000, peers: new Map([[2, { host: HOST, port }]]) });
    const big = (commit: number): Message =>
      message({ type: MessageType.MsgApp, from: 1, to: 2, term: 1, commit, entries: [{ type: EntryType.Normal, term: 1, index: 1, data: new Uint8Array(600) }] });
    a.transport.send([big(1), big(2), snapshotMessage(1, 2, 10, new Uint8Array(2000))]);
    expect(a.transport.peers().get(2)).toMatchObject({ queuedMessages: 1, droppedMessages: 2 });
    await waitFor(() => a.snapshotStatuses.length === 1, 'snapshot failure');
    expect(a.snapshotStatuses).toEqual([[2, 'failure']]);

    const lone = await startNode(3);
    const c = await startNode(4, { maxQueuedBytes: 1000, peers: new Map([[3, lone.address]]) });
    c.transport.send([snapshotMessage(4, 3, 10, new Uint8Array(5000))]);
    await waitFor(() => lone.received.length === 1, 'oversize snapshot through an empty queue');
    await waitFor(() => c.snapshotStatuses.length === 1, 'snapshot status');
    expect(c.snapshotStatuses).toEqual([[3, 'finish']]);
  });

  it('removePeer drops the queue and fails queued snapshots', async () => {
    const port = await freePort();
    const a = await startNode(1, { peers: new Map([[2, { host: HOST, port }]]) });
    a.transport.send([snapshotMessage(1, 2, 10, new Uint8Array(10))]);
    a.transport.removePeer(2);
    await waitFor(() => a.snapshotStatuses.length === 1, 'snapshot failure');
    expect(a.snapshotStatuses).toEqual([[2, 'failure']]);
    expect(a.transport.peers().size).toBe(0);
  });
});

describe('Transport: handshake and garbage', () => {
  it('refuses cross-cluster traffic on both sides and delivers nothing', async () => {
    const b = await startNode(2, { clusterId: 'beta' });
    const a = await startNode(1, { clusterId: 'alpha', peers: new Map([[2, b.address]]) });
    a.transport.send([message({ type: MessageType.MsgHeartbeat, from: 1, to: 2, term: 1 })]);
    await waitFor(() => a.errors.some((e) => (e as { code?: string }).code === TransportErrorCode.HandshakeRefused), 'refusal at A');
    await waitFor(() => b.errors.some((e) => (e as { code?: string }).code === TransportErrorCode.HandshakeRefused), 'refusal at B');
    await waitFor(() => a.unreachable.includes(2), 'unreachable report');
    await sleep(50);
    expect(b.received).toEqual([]);
    expect(a.transport.peers().get(2)?.connected).toBe(false);
    expect(a.errors.find((e) => (e as { code?: string }).code === TransportErrorCode.HandshakeRefused)!.message).toMatch(/cluster id/);
  });

  it('refuses a dialer that expects another node id', async () => {
    const b = await startNode(2);
    const a = await startNode(1, { peers: new Map([[3, b.address]]) });
    a.transport.send([message({ type: MessageType.MsgHeartbeat, from: 1, to: 3, term: 1 })]);
    await waitFor(() => a.errors.some((e) => /not node 3/.test(e.message)), 'refusal');
    expect(b.received).toEqual([]);
  });

  it('closes a connection that sends garbage or an oversize frame, and keeps serving others', async () => {
    const [a, b] = await startCluster(2, { maxFrameBytes: 1024 * 1024 * 2 });
    const garbage = await rawConnection(b!.address.port);
    garbage.socket.write(Buffer.from([0, 0, 0, 3, 0xee, 1, 2]));
    await garbage.closed;
    const oversize = await rawConnection(b!.address.port);
    oversize.socket.write(Buffer.from([0x7f, 0, 0, 0, 1]));
    await oversize.closed;
    const http = await rawConnection(b!.address.port);
    http.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await http.closed;
    const codes = b!.errors.map((e) => (e as { code?: string }).code);
    expect(codes).toContain(TransportErrorCode.MalformedFrame);
    expect(codes).toContain(TransportErrorCode.FrameTooLarge);

    a!.transport.send([message({ type: MessageType.MsgHeartbeat, from: 1, to: 2, term: 1 })]);
    await waitFor(() => b!.received.length === 1, 'a real message after the garbage');
  });

  it('closes a handshaken connection whose message claims another sender', async () => {
    const b = await startNode(2);
    const raw = await rawConnection(b.address.port);
    raw.socket.write(encodeFrame(FrameKind.Hello, encodeHello({ version: PROTOCOL_VERSION, senderId: 5, receiverId: 2, clusterId: 'test-cluster' })));
    await waitFor(() => raw.data.length > 0, 'HelloAccept');
    expect([...Buffer.concat(raw.data)]).toEqual([0, 0, 0, 1, FrameKind.HelloAccept]);
    raw.socket.write(encodeFrame(FrameKind.Message, encodeMessage(message({ type: MessageType.MsgHeartbeat, from: 6, to: 2, term: 1 }))));
    await raw.closed;
    expect(b.received).toEqual([]);
    expect(b.errors.map((e) => e.message).join('\n')).toMatch(/from 6 to 2 on a connection from 5/);
  });
});

describe('Transport: snapshots', () => {
  it('streams a 5 MiB snapshot in chunks; it arrives intact and the sender reports finish', async () => {
    const [a, b] = await startCluster(2);
    const data = randomBytes(5 * 1024 * 1024);
    a!.transport.send([snapshotMessage(1, 2, 100, data)]);
    await waitFor(() => b!.received.length === 1, 'the snapshot', 4000);
    const got = b!.received[0]!.message;
    expect(got.type).toBe(MessageType.MsgSnap);
    expect(got.snapshot!.metadata).toEqual(snapshotMessage(1, 2, 100, undefined).snapshot!.metadata);
    expect(Buffer.from(got.snapshot!.data!).equals(data)).toBe(true);
    await waitFor(() => a!.snapshotStatuses.length === 1, 'snapshot status');
    expect(a!.snapshotStatuses).toEqual([[2, 'finish']]);
  });

  it('puts a header frame, 1 MiB chunk frames and an end frame on the wire', async () => {
    const b = await startNode(2);
    const decoder = new FrameDecoder();
    const kinds: FrameKind[] = [];
    const chunkSizes: number[] = [];
    const proxy = await cuttingProxy(b.address, Number.POSITIVE_INFINITY, (bytes) => {
      for (const frame of decoder.push(bytes)) {
        kinds.push(frame.kind);
        if (frame.kind === FrameKind.StreamChunk) chunkSizes.push(frame.payload.length);
      }
    });
    const a = await startNode(1, { peers: new Map([[2, { host: HOST, port: proxy.port }]]) });
    const data = randomBytes(5 * 1024 * 1024 + 10);
    a.transport.send([snapshotMessage(1, 2, 100, data)]);
    await waitFor(() => a.snapshotStatuses.length === 1, 'snapshot status', 4000);
    expect(kinds).toEqual([FrameKind.Hello, FrameKind.StreamBegin, ...Array(6).fill(FrameKind.StreamChunk), FrameKind.StreamEnd]);
    expect(chunkSizes).toEqual([...Array(5).fill(1024 * 1024), 10]);
    expect(Buffer.from(b.received[0]!.message.snapshot!.data!).equals(data)).toBe(true);
  });

  it('keeps absent and empty snapshot data apart', async () => {
    const [a, b] = await startCluster(2);
    a!.transport.send([snapshotMessage(1, 2, 5, undefined), snapshotMessage(1, 2, 6, new Uint8Array(0))]);
    await waitFor(() => b!.received.length === 2, 'two snapshots');
    expect(b!.received[0]!.message.snapshot!.data).toBeUndefined();
    expect(b!.received[1]!.message.snapshot!.data).toEqual(new Uint8Array(0));
    await waitFor(() => a!.snapshotStatuses.length === 2, 'statuses');
    expect(a!.snapshotStatuses).toEqual([
      [2, 'finish'],
      [2, 'finish'],
    ]);
  });

  it('delivers nothing when the connection is cut mid-stream; the sender reports failure and recovers', async () => {
    const b = await startNode(2);
    const proxy = await cuttingProxy(b.address, 1536 * 1024);
    const a = await startNode(1, { peers: new Map([[2, { host: HOST, port: proxy.port }]]) });
    a.transport.send([snapshotMessage(1, 2, 100, randomBytes(5 * 1024 * 1024))]);
    await waitFor(() => a.snapshotStatuses.length === 1, 'snapshot status');
    expect(a.snapshotStatuses).toEqual([[2, 'failure']]);
    expect(proxy.cuts()).toBe(1);
    expect(a.unreachable).toContain(2);

    // The link redials (through the proxy, now passing everything) and works again.
    a.transport.send([message({ type: MessageType.MsgHeartbeat, from: 1, to: 2, term: 3 })]);
    await waitFor(() => b.received.length === 1, 'a message after the cut');
    expect(b.received.map((r) => r.message.type)).toEqual([MessageType.MsgHeartbeat]);
  });

  it('fails a snapshot to a peer that stops reading, and the link recovers', async () => {
    const b = await startNode(2);
    const proxy = await cuttingProxy(b.address, 512 * 1024, undefined, 'stall');
    const a = await startNode(1, {
      writeTimeoutMs: 300,
      snapshotAckTimeoutMs: 300,
      peers: new Map([[2, { host: HOST, port: proxy.port }]]),
    });
    a.transport.send([snapshotMessage(1, 2, 100, randomBytes(16 * 1024 * 1024))]);
    await waitFor(() => a.snapshotStatuses.length === 1, 'snapshot status');
    expect(a.snapshotStatuses).toEqual([[2, 'failure']]);
    expect(a.errors.map((e) => e.message).join('\n')).toMatch(/accepted no data|did not acknowledge/);
    a.transport.send([message({ type: MessageType.MsgHeartbeat, from: 1, to: 2, term: 3 })]);
    await waitFor(() => b.received.length === 1, 'a message on the new connection');
  });

  it('refuses snapshot data above maxSnapshotBytes without allocating it', async () => {
    const b = await startNode(2, { maxSnapshotBytes: 1024 });
    const a = await startNode(1, { peers: new Map([[2, b.address]]) });
    a.transport.send([snapshotMessage(1, 2, 100, new Uint8Array(4096))]);
    await waitFor(() => a.snapshotStatuses.length === 1, 'snapshot status');
    expect(a.snapshotStatuses).toEqual([[2, 'failure']]);
    expect(b.received).toEqual([]);
    expect(b.errors.map((e) => e.message).join('\n')).toMatch(/maximum is 1024/);
  });
});

describe('Transport: attachments', () => {
  async function entryDirectory(root: string, index: number, files: Record<string, Uint8Array>): Promise<string> {
    const dir = join(root, 'wal', index.toString(36).padStart(13, '0'));
    await mkdir(dir, { recursive: true });
    for (const [name, bytes] of Object.entries(files)) await writeFile(join(dir, name), bytes, { mode: 0o400 });
    return dir;
  }

  function appMessage(from: number, to: number, indexes: number[]): Message {
    return message({
      type: MessageType.MsgApp,
      from,
      to,
      term: 2,
      logTerm: 2,
      index: indexes[0]! - 1,
      entries: indexes.map((index) => ({ type: EntryType.Normal, term: 2, index, data: new Uint8Array([index]) })),
    });
  }

  it('stages the entry files on the receiver, fsynced, byte-identical, never the RAFT file', async () => {
    const senderRoot = await tempDir();
    const receiverStaging = join(await tempDir(), 'staging');
    const files7 = {
      MANIFEST: randomBytes(120),
      RAFT: randomBytes(20),
      '1': randomBytes(3 * 1024 * 1024 + 17),
      '2': new Uint8Array(0),
      a: randomBytes(5000),
    };
    const dir7 = await entryDirectory(senderRoot, 7, files7);
    const files8 = { MANIFEST: new Uint8Array(0) };
    const attachmentsFor: AttachmentsProvider = async (m) => [
      ...(m.entries.some((e) => e.index === 7) ? [await attachmentFromEntryDirectory(dir7, 7)] : []),
      ...(m.entries.some((e) => e.index === 8) ? [{ index: 8, files: [{ name: 'MANIFEST', bytes: files8.MANIFEST }] }] : []),
    ];
    const b = await startNode(2, { stagingDir: receiverStaging, acceptAttachments: true });
    const a = await startNode(1, { attachmentsFor, peers: new Map([[2, b.address]]) });

    // Count fsyncs on the receiving side (the sender only reads).
    const probe = await open(senderRoot, 'r');
    const fileHandlePrototype = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
    await probe.close();
    const syncSpy = vi.spyOn(fileHandlePrototype, 'sync');

    a.transport.send([appMessage(1, 2, [7, 8, 9])]);
    await waitFor(() => b.received.length === 1, 'the message with attachments', 4000);
    const { message: got, stagedDirs } = b.received[0]!;
    expect(got.entries.map((e) => e.index)).toEqual([7, 8, 9]);
    expect([...stagedDirs.keys()].sort()).toEqual([7, 8]);

    for (const [index, expectedFiles] of [
      [7, files7],
      [8, files8],
    ] as const) {
      const staged = stagedDirs.get(index)!;
      expect(staged.startsWith(receiverStaging + '/transport-')).toBe(true);
      expect((await stat(staged)).mode & 0o777).toBe(0o700);
      const names = Object.keys(expectedFiles).filter((name) => name !== 'RAFT');
      expect((await readdir(staged)).sort()).toEqual(names.sort());
      for (const name of names) {
        const bytes = await readFile(join(staged, name));
        expect(bytes.equals(Buffer.from((expectedFiles as Record<string, Uint8Array>)[name]!))).toBe(true);
        expect((await stat(join(staged, name))).mode & 0o777).toBe(0o400);
      }
    }
    // 5 files (MANIFEST, 1, 2, a; MANIFEST) + 2 entry directories + the staging root.
    expect(syncSpy).toHaveBeenCalledTimes(8);
    expect(a.errors).toEqual([]);
  });

  it('drops only the message when attachmentsFor fails, and the connection keeps working', async () => {
    const b = await startNode(2, { stagingDir: join(await tempDir(), 'staging'), acceptAttachments: true });
    const attachmentsFor: AttachmentsProvider = (m) => {
      if (m.commit === 1) throw new Error('entry directory vanished');
      if (m.commit === 2) return [{ index: 999, files: [] }];
      if (m.commit === 3) return [{ index: m.entries[0]!.index, files: [{ name: '../evil', bytes: new Uint8Array(1) }] }];
      return [];
    };
    const a = await startNode(1, { attachmentsFor, peers: new Map([[2, b.address]]) });
    const withCommit = (commit: number): Message => ({ ...appMessage(1, 2, [5]), commit });
    a.transport.send([withCommit(1), withCommit(2), withCommit(3), withCommit(4)]);
    await waitFor(() => b.received.length === 1, 'the good message');
    expect(b.received[0]!.message.commit).toBe(4);
    expect(a.errors.map((e) => e.message)).toEqual([
      'entry directory vanished',
      expect.stringMatching(/index 999/),
      expect.stringMatching(/evil/),
    ]);
    expect(a.unreachable.filter((id) => id === 2)).toHaveLength(3);
  });

  it('refuses attachments when the receiver has no staging directory', async () => {
    const b = await startNode(2);
    const a = await startNode(1, {
      attachmentsFor: (m) => [{ index: m.entries[0]!.index, files: [{ name: 'MANIFEST', bytes: new Uint8Array(3) }] }],
      peers: new Map([[2, b.address]]),
    });
    a.transport.send([appMessage(1, 2, [5])]);
    await waitFor(() => b.errors.some((e) => /no stagingDir/.test(e.message)), 'refusal');
    expect(b.received).toEqual([]);
  });

  it('removes the partial staging directories of a stream cut mid-way', async () => {
    const staging = join(await tempDir(), 'staging');
    const b = await startNode(2, { stagingDir: staging, acceptAttachments: true });
    const proxy = await cuttingProxy(b.address, 1024 * 1024);
    const payload = randomBytes(3 * 1024 * 1024);
    const a = await startNode(1, {
      attachmentsFor: (m) =>
        m.entries.length === 0 ? [] : [{ index: m.entries[0]!.index, files: [{ name: 'MANIFEST', bytes: new Uint8Array(4) }, { name: '1', bytes: payload }] }],
      peers: new Map([[2, { host: HOST, port: proxy.port }]]),
    });
    a.transport.send([appMessage(1, 2, [5])]);
    await waitFor(() => proxy.cuts() === 1 && a.unreachable.includes(2), 'the cut');
    // After the redial a second copy goes through whole.
    a.transport.send([appMessage(1, 2, [5])]);
    await waitFor(() => b.received.length === 1, 'the resent message', 4000);
    const staged = b.received[0]!.stagedDirs.get(5)!;
    expect((await readFile(join(staged, '1'))).equals(payload)).toBe(true);
    // Only the delivered directory remains; the cut stream's directory was removed.
    const deadline = Date.now() + 2000;
    while ((await readdir(staging)).length !== 1 && Date.now() < deadline) await sleep(10);
    expect(await readdir(staging)).toEqual([staged.slice(staging.length + 1)]);
  });
});

describe('Transport: delivery and close', () => {
  it('a throwing onMessage is reported and the connection keeps delivering', async () => {
    const b = await startNode(2, {}, (m) => {
      if (m.commit === 1) throw new Error('application failed');
    });
    const a = await startNode(1, { peers: new Map([[2, b.address]]) });
    a.transport.send([1, 2].map((commit) => message({ type: MessageType.MsgHeartbeat, from: 1, to: 2, term: 1, commit })));
    await waitFor(() => b.received.length === 1, 'the second message');
    expect(b.received[0]!.message.commit).toBe(2);
    expect(b.errors.map((e) => e.message)).toEqual(['application failed']);
  });

  it('close() mid-stream removes the partial staging directory; no callback runs afterwards', async () => {
    const staging = join(await tempDir(), 'staging');
    const b = await startNode(2, { stagingDir: staging, acceptAttachments: true });
    const proxy = await cuttingProxy(b.address, 1024 * 1024, undefined, 'stall');
    const a = await startNode(1, {
      attachmentsFor: (m) => [{ index: m.entries[0]!.index, files: [{ name: 'MANIFEST', bytes: randomBytes(4 * 1024 * 1024) }] }],
      peers: new Map([[2, { host: HOST, port: proxy.port }]]),
    });
    a.transport.send([
      message({ type: MessageType.MsgApp, from: 1, to: 2, term: 1, entries: [{ type: EntryType.Normal, term: 1, index: 1 }] }),
      snapshotMessage(1, 2, 3, randomBytes(1024)),
    ]);
    // The receiver has begun staging (its directory exists) and the rest is held by the proxy.
    const deadline = Date.now() + 3000;
    while ((await readdir(staging)).length === 0 && Date.now() < deadline) await sleep(5);
    expect(proxy.cuts()).toBe(1);
    await b.transport.close();
    expect(await readdir(staging)).toEqual([]);
    expect(b.received).toEqual([]);

    await a.transport.close();
    const counts = [a.unreachable.length, a.snapshotStatuses.length, a.errors.length];
    await sleep(50);
    expect([a.unreachable.length, a.snapshotStatuses.length, a.errors.length]).toEqual(counts);
    // The MsgSnap may have been written into kernel buffers behind the stalled stream (then it
    // failed when B went away) or still be queued (then close() suppresses its status): never 'finish'.
    expect(a.snapshotStatuses.filter(([, status]) => status === 'finish')).toEqual([]);
  });
});
