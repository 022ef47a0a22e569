/**
 * Bulk data staged on disk (issue 14): with a `stagingDir`, snapshot data is written to a file
 * as it arrives and handed to `onMessage` as a file (never reassembled in memory); the file is
 * removed after delivery, when the stream breaks, the connection dies or the transport closes;
 * what streams in flight wrote is bounded by `maxStagedBytes` in all; and the byte counters
 * count what moved per peer.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeMessage } from '../../lib/codec.js';
import { sleep } from '../../lib/node/local-cluster.js';
import { FrameKind } from '../../lib/transport/framing.js';
import { Transport, type StagedSnapshotFile, type TransportOptions } from '../../lib/transport/index.js';
import { encodeStreamHeader } from '../../lib/transport/wire.js';
import { MessageType, type Message } from '../../lib/types.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';
import { waitFor } from '../helpers/wait-for.js';
import { attack, CLUSTER_ID, forged } from '../attacks/harness.js';

const MiB = 1024 * 1024;
const transports: Transport[] = [];
afterEach(async () => {
  for (const transport of transports.splice(0)) await transport.close();
  removeTempDirs();
});

interface Delivery {
  message: Message;
  file: StagedSnapshotFile | undefined;
  /** What the file held, read inside onMessage, and whether it existed then. */
  data: Uint8Array | undefined;
  existedDuringDelivery: boolean;
}

async function receiver(options: Partial<TransportOptions> = {}): Promise<{ transport: Transport; port: number; staging: string; delivered: Delivery[] }> {
  const staging = join(makeTempDir('replicalog-staging-'), 'staging');
  const delivered: Delivery[] = [];
  const transport = new Transport({
    id: 1,
    clusterId: CLUSTER_ID,
    listen: { host: '127.0.0.1', port: 0 },
    stagingDir: staging,
    acceptPeer: (peerId) => peerId >= 2 && peerId <= 9,
    onMessage: async (message, _stagedDirs, file) => {
      const existedDuringDelivery = file !== undefined && existsSync(file.path);
      delivered.push({ message, file, data: await file?.read(), existedDuringDelivery });
    },
    onUnreachable: () => undefined,
    ...options,
  });
  transports.push(transport);
  const address = await transport.start();
  return { transport, port: address.port, staging, delivered };
}

function snapshotMessage(from: number, index: number): Message {
  return forged({
    type: MessageType.MsgSnap,
    from,
    to: 1,
    term: 2,
    snapshot: { metadata: { index, term: 2, confState: { voters: [1, 2, 3], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } } },
  });
}

function snapshotHeader(from: number, length: number): Buffer {
  return encodeStreamHeader({ messageBytes: encodeMessage(snapshotMessage(from, 10)), snapshotDataLength: length, attachments: [] });
}

describe('snapshot data with a staging directory', () => {
  it('arrives as a file (not in the message), read inside onMessage and removed after it; both sides count the bytes', async () => {
    const { transport: b, port, staging, delivered } = await receiver();
    const a = new Transport({
      id: 2,
      clusterId: CLUSTER_ID,
      listen: { host: '127.0.0.1', port: 0 },
      peers: new Map([[1, { host: '127.0.0.1', port }]]),
      onMessage: () => undefined,
      onUnreachable: () => undefined,
    });
    transports.push(a);
    await a.start();
    const data = randomBytes(5 * MiB);
    a.send([{ ...snapshotMessage(2, 10), snapshot: { ...snapshotMessage(2, 10).snapshot!, data } }]);
    await waitFor('the snapshot', () => delivered.length === 1);
    const [delivery] = delivered;
    expect(delivery!.message.snapshot!.data).toBeUndefined();
    expect(delivery!.file!.length).toBe(5 * MiB);
    expect(delivery!.existedDuringDelivery).toBe(true);
    expect(Buffer.from(delivery!.data!).equals(data)).toBe(true);
    expect(delivery!.file!.path.startsWith(staging)).toBe(true);
    // Removed once onMessage settled; the budget is released.
    await waitFor('the staged file to be removed', () => readdirSync(staging).length === 0);
    expect(b.stats().stagedBytes).toBe(0);
    await expect(delivery!.file!.read()).rejects.toThrow(/already removed/);
    expect(b.stats().peers).toEqual([{ peer: 2, sent: 0, received: expect.any(Number) }]);
    expect(b.stats().peers[0]!.received).toBeGreaterThan(5 * MiB);
    expect(a.stats().peers[0]!.sent).toBe(b.stats().peers[0]!.received);
  });

  it('removes the file of a stream cut off mid-way, and of one cut by close()', async () => {
    const { transport, port, staging, delivered } = await receiver();
    for (const cut of ['connection', 'close'] as const) {
      const connection = attack(port, { senderId: 2, receiverId: 1 });
      expect(await connection.outcome).toEqual({ accepted: true });
      connection.sendFrame(FrameKind.StreamBegin, snapshotHeader(2, 8 * MiB));
      for (let chunk = 0; chunk < 3; chunk++) connection.sendFrame(FrameKind.StreamChunk, Buffer.alloc(MiB, chunk));
      // Staged on disk as it arrives, and charged to the staging budget.
      const [name] = await waitFor('3 MiB staged', () => {
        const names = readdirSync(staging);
        return names.length === 1 && statSync(join(staging, names[0]!)).size === 3 * MiB ? names : undefined;
      });
      expect(name).toMatch(/^transport-snapshot-[0-9a-f]{16}$/);
      expect(transport.stats().stagedBytes).toBe(3 * MiB);
      if (cut === 'connection') connection.close();
      else await transport.close();
      await waitFor('the staged file to be removed', () => readdirSync(staging).length === 0);
      expect(transport.stats().stagedBytes).toBe(0);
    }
    expect(delivered).toEqual([]);
  });

  it('refuses a stream that would stage more than maxStagedBytes, and removes its file', async () => {
    const { transport, port, staging, delivered } = await receiver({ maxStagedBytes: 2 * MiB });
    const connection = attack(port, { senderId: 2, receiverId: 1 });
    expect(await connection.outcome).toEqual({ accepted: true });
    connection.sendFrame(FrameKind.StreamBegin, snapshotHeader(2, 4 * MiB));
    for (let chunk = 0; chunk < 3; chunk++) connection.sendFrame(FrameKind.StreamChunk, Buffer.alloc(MiB, chunk));
    expect(await connection.closedWithin(3000)).toBe(true);
    expect(transport.refused().stagingBudgetExceeded).toBe(1);
    await waitFor('the staged file to be removed', () => readdirSync(staging).length === 0);
    expect(transport.stats().stagedBytes).toBe(0);
    expect(delivered).toEqual([]);
  });
});

describe('options', () => {
  it('refuses acceptAttachments without a stagingDir', () => {
    expect(
      () => new Transport({ id: 1, clusterId: CLUSTER_ID, listen: { host: '127.0.0.1', port: 0 }, acceptAttachments: true, onMessage: () => undefined, onUnreachable: () => undefined }),
    ).toThrow(/acceptAttachments needs a stagingDir/);
  });
});

describe('the shared frame budget', () => {
  it('pauses a connection while frames wait beyond maxBufferedFrameBytes, and delivers everything in order', async () => {
    // A slow application: each delivery takes 20 ms, so frames pile up until reading pauses.
    const delivered: number[] = [];
    let peak = 0;
    const transport = new Transport({
      id: 1,
      clusterId: CLUSTER_ID,
      listen: { host: '127.0.0.1', port: 0 },
      acceptPeer: (peerId) => peerId === 2,
      maxBufferedFrameBytes: 256 * 1024,
      onMessage: async (message) => {
        peak = Math.max(peak, transport.stats().bufferedFrameBytes);
        await sleep(20);
        delivered.push(message.commit);
      },
      onUnreachable: () => undefined,
    });
    transports.push(transport);
    const { port } = await transport.start();
    const connection = attack(port, { senderId: 2, receiverId: 1 });
    expect(await connection.outcome).toEqual({ accepted: true });
    // 40 heartbeats carrying 64 KiB of context each: 2.5 MiB in all, sent at once.
    for (let commit = 1; commit <= 40; commit++) {
      connection.sendMessage(forged({ type: MessageType.MsgHeartbeat, from: 2, to: 1, term: 1, commit, context: new Uint8Array(64 * 1024) }));
    }
    await waitFor('every message', () => delivered.length === 40, 10_000);
    expect(delivered).toEqual(Array.from({ length: 40 }, (_, position) => position + 1));
    // Reading paused near the budget (one socket read past it at most), far below the 2.5 MiB sent.
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThan(256 * 1024 + 2 * 65 * 1024 + 64 * 1024);
    expect(transport.stats().bufferedFrameBytes).toBe(0);
  });
});
