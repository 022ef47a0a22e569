/**
 * Transport limits on attachments (issue 14 item 9): refused unless the application enables
 * them (a staging directory and acceptAttachments), bounded per stream (bytes and entry
 * directories) before any directory is created, and in all (bytes staged by streams in flight).
 * Also: the pre-handshake frame cap and the per-address pending cap, in process.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeMessage } from '../../lib/codec.js';
import { sleep } from '../../lib/node/local-cluster.js';
import { FrameKind } from '../../lib/transport/framing.js';
import { Transport, type TransportOptions } from '../../lib/transport/index.js';
import { encodeStreamHeader } from '../../lib/transport/wire.js';
import { EntryType, MessageType } from '../../lib/types.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';
import { waitFor } from '../helpers/wait-for.js';
import { attack, CLUSTER_ID, forged } from './harness.js';

const transports: Transport[] = [];
afterEach(async () => {
  for (const transport of transports.splice(0)) await transport.close();
  removeTempDirs();
});

async function listening(options: Partial<TransportOptions>): Promise<{ transport: Transport; port: number; delivered: number[] }> {
  const delivered: number[] = [];
  const transport = new Transport({
    id: 1,
    clusterId: CLUSTER_ID,
    listen: { host: '127.0.0.1', port: 0 },
    onMessage: (message) => {
      delivered.push(message.type);
    },
    onUnreachable: () => undefined,
    acceptPeer: (peerId) => peerId === 2,
    ...options,
  });
  transports.push(transport);
  const address = await transport.start();
  return { transport, port: address.port, delivered };
}

/** A MsgApp with `count` entries, each announcing one MANIFEST attachment of `size` bytes. */
function attachmentStream(count: number, size: number): Buffer {
  const entries = Array.from({ length: count }, (_, position) => ({ index: position + 2, term: 1, type: EntryType.Normal, data: new Uint8Array(0) }));
  const message = forged({ type: MessageType.MsgApp, from: 2, to: 1, term: 1, index: 1, logTerm: 1, entries });
  return encodeStreamHeader({
    messageBytes: encodeMessage(message),
    snapshotDataLength: undefined,
    attachments: entries.map((entry) => ({ index: entry.index, files: [{ name: 'MANIFEST', size }] })),
  });
}

describe('attachments', () => {
  it.each([
    { name: 'without a staging directory', options: {}, count: 1, size: 10 },
    { name: 'over the per-stream byte budget', options: { maxAttachmentBytesPerStream: 1000 }, count: 2, size: 600 },
    { name: 'over the per-stream directory count', options: { maxAttachmentsPerStream: 100 }, count: 20_000, size: 0 },
    { name: 'with a staging directory but acceptAttachments off', options: { acceptAttachments: false }, count: 1, size: 10 },
  ])('refuses a stream $name before creating anything', async ({ options, count, size }) => {
    const staging = makeTempDir('replicalog-staging-');
    const withStaging = Object.keys(options).length > 0;
    const { transport, port, delivered } = await listening({ ...(withStaging ? { stagingDir: join(staging, 'staging'), acceptAttachments: true } : {}), ...options });
    const connection = attack(port, { senderId: 2, receiverId: 1 });
    expect(await connection.outcome).toEqual({ accepted: true });
    connection.sendFrame(FrameKind.StreamBegin, attachmentStream(count, size));
    expect(await connection.closedWithin(3000)).toBe(true);
    expect(delivered).toEqual([]);
    if (withStaging) expect(readdirSync(join(staging, 'staging'))).toEqual([]);
    expect(transport.refused().malformedFrames).toBe(1);
  });

  it('bounds what many streams in flight stage in all, and leaves nothing on disk once their connections drop', async () => {
    const staging = join(makeTempDir('replicalog-staging-'), 'staging');
    const MiB = 1024 * 1024;
    const { transport, port, delivered } = await listening({
      stagingDir: staging,
      acceptAttachments: true,
      acceptPeer: (peerId) => peerId >= 2 && peerId <= 9,
      maxAttachmentBytesPerStream: 2 * MiB,
      maxStagedBytes: 3 * MiB,
    });
    // Eight members (TLS is off: any local process may say it is one) each stream 2 MiB of
    // attachments within the per-stream budget, stop half-way and hold the stream open.
    const attackers = Array.from({ length: 8 }, (_, position) => attack(port, { senderId: position + 2, receiverId: 1 }));
    for (const [position, connection] of attackers.entries()) {
      expect(await connection.outcome).toEqual({ accepted: true });
      const from = position + 2;
      const entries = [{ index: 2, term: 1, type: EntryType.Normal, data: new Uint8Array(0) }];
      const message = forged({ type: MessageType.MsgApp, from, to: 1, term: 1, index: 1, logTerm: 1, entries });
      connection.sendFrame(
        FrameKind.StreamBegin,
        encodeStreamHeader({ messageBytes: encodeMessage(message), snapshotDataLength: undefined, attachments: [{ index: 2, files: [{ name: '1', size: 2 * MiB }] }] }),
      );
      connection.sendFrame(FrameKind.StreamChunk, Buffer.alloc(MiB, position));
    }
    // 3 MiB fit: three streams stage their first MiB, the other five are refused and closed.
    const closed = await Promise.all(attackers.map((connection) => connection.closedWithin(3000)));
    expect(closed.filter(Boolean)).toHaveLength(5);
    expect(transport.refused().stagingBudgetExceeded).toBe(5);
    expect(transport.stats().stagedBytes).toBe(3 * MiB);
    expect(readdirSync(staging)).toHaveLength(3);
    for (const connection of attackers) connection.close();
    await waitFor('the staging directories to be removed', () => readdirSync(staging).length === 0);
    expect(transport.stats().stagedBytes).toBe(0);
    expect(delivered).toEqual([]);
  });
});

describe('before the handshake', () => {
  it('closes a connection whose first frame announces more than 4 KiB', async () => {
    const { transport, port } = await listening({});
    const header = Buffer.alloc(5);
    header.writeUInt32BE(5000, 0);
    header.writeUInt8(FrameKind.Hello, 4);
    const { connect } = await import('node:net');
    const raw = connect({ host: '127.0.0.1', port });
    raw.on('error', () => undefined);
    const closed = new Promise<void>((resolve) => raw.once('close', () => resolve()));
    raw.write(header);
    await Promise.race([closed, sleep(3000)]);
    expect(raw.destroyed).toBe(true);
    expect(transport.refused().malformedFrames).toBe(1);
  });

  it('refuses connections over the per-address pending limit, and closes the rest at the handshake timeout', async () => {
    const { transport, port } = await listening({ maxPendingConnectionsPerAddress: 3, handshakeTimeoutMs: 300 });
    const { connect } = await import('node:net');
    const sockets = Array.from({ length: 10 }, () => {
      const socket = connect({ host: '127.0.0.1', port, localAddress: '127.0.0.5' });
      socket.on('error', () => undefined);
      return socket;
    });
    await sleep(600);
    expect(transport.refused().connectionsOverLimit).toBe(7);
    expect(transport.refused().handshakeTimeouts).toBe(3);
    expect(sockets.every((socket) => socket.destroyed || socket.readyState === 'closed')).toBe(true);
  });
});
