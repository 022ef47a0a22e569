/**
 * Multi-raft frames (issue 19) between two transports over loopback: sendGroupMessages puts what
 * it is given for one peer in ONE GroupBatch frame (split only at maxBatchMessages), keeps the
 * group ids, order and quiesce flags; an empty call is the node-level heartbeat (sent only while
 * connected); a small MsgSnap rides inline and is reported 'finish' once written, a large one goes
 * as a group stream; invalid input throws before anything is queued; the wire codec refuses what
 * it must.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { newMessage } from '../../lib/raft/util.js';
import { Transport, INLINE_SNAPSHOT_BYTES } from '../../lib/transport/transport.js';
import type { GroupMessage, SnapshotTransferStatus, StagedSnapshotFile } from '../../lib/transport/transport.js';
import { decodeGroupBatch, encodeGroupBatch } from '../../lib/transport/wire.js';
import { MessageType, type Message } from '../../lib/types.js';
import { waitFor } from '../helpers/wait-for.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';

const transports: Transport[] = [];

afterEach(async () => {
  for (const transport of transports.splice(0)) await transport.close();
  removeTempDirs();
});

interface Receiver {
  transport: Transport;
  frames: { from: number; messages: GroupMessage[]; snapshotData?: Uint8Array }[];
}

async function pair(options: { maxBatchMessages?: number } = {}): Promise<{ sender: Transport; receiver: Receiver; statuses: [number, number, SnapshotTransferStatus][] }> {
  const frames: Receiver['frames'] = [];
  const receiverTransport = new Transport({
    id: 2,
    clusterId: 'group-test',
    listen: { host: '127.0.0.1', port: 0 },
    stagingDir: makeTempDir('replicalog-group-staging-'),
    onMessage: () => undefined,
    onUnreachable: () => undefined,
    onGroupMessages: async (from, messages, snapshotFile?: StagedSnapshotFile) => {
      frames.push({ from, messages, ...(snapshotFile === undefined ? {} : { snapshotData: await snapshotFile.read() }) });
    },
  });
  transports.push(receiverTransport);
  const address = await receiverTransport.start();
  const statuses: [number, number, SnapshotTransferStatus][] = [];
  const sender = new Transport({
    id: 1,
    clusterId: 'group-test',
    listen: { host: '127.0.0.1', port: 0 },
    peers: new Map([[2, address]]),
    backoff: { initialMs: 10, maxMs: 50 },
    ...(options.maxBatchMessages === undefined ? {} : { maxBatchMessages: options.maxBatchMessages }),
    onMessage: () => undefined,
    onUnreachable: () => undefined,
    onGroupSnapshotStatus: (peer, group, status) => statuses.push([peer, group, status]),
  });
  transports.push(sender);
  await sender.start();
  await waitFor('the link to connect', () => sender.peers().get(2)?.connected === true);
  return { sender, receiver: { transport: receiverTransport, frames }, statuses };
}

function heartbeat(group: number, term: number): GroupMessage {
  return { group, message: newMessage({ type: MessageType.MsgHeartbeat, from: 1, to: 2, term, commit: group }) };
}

describe('sendGroupMessages', () => {
  it('sends what one call is given as one frame, with group ids, order and quiesce flags', async () => {
    const { sender, receiver } = await pair();
    const messages = [heartbeat(5, 2), heartbeat(1, 3), { ...heartbeat(10_000, 4), quiesce: true }, heartbeat(5, 5)];
    sender.sendGroupMessages(2, messages);
    await waitFor('the frame', () => receiver.frames.length === 1);
    const [frame] = receiver.frames;
    expect(frame!.from).toBe(1);
    expect(frame!.messages.map(({ group, message, quiesce }) => [group, message.term, message.commit, quiesce === true])).toEqual([
      [5, 2, 5, false],
      [1, 3, 1, false],
      [10_000, 4, 10_000, true],
      [5, 5, 5, false],
    ]);
    expect(sender.stats().groupBatches).toMatchObject({ framesSent: 1, messagesSent: 4 });
    await waitFor('the receiver to count it', () => receiver.transport.stats().groupBatches.messagesReceived === 4);
  });

  it('splits at maxBatchMessages, and an empty call is one heartbeat frame', async () => {
    const { sender, receiver } = await pair({ maxBatchMessages: 3 });
    sender.sendGroupMessages(2, Array.from({ length: 7 }, (_, index) => heartbeat(index + 1, 1)));
    sender.sendGroupMessages(2, []);
    await waitFor('four frames', () => receiver.frames.length === 4);
    expect(receiver.frames.map((frame) => frame.messages.map((message) => message.group))).toEqual([[1, 2, 3], [4, 5, 6], [7], []]);
  });

  it('sends a small MsgSnap inline (reported finish once written) and a large one as a group stream', async () => {
    const { sender, receiver, statuses } = await pair();
    const snapshot = (group: number, bytes: number): GroupMessage => ({
      group,
      message: newMessage({ type: MessageType.MsgSnap, from: 1, to: 2, term: 2, snapshot: { metadata: { index: 9, term: 2, confState: { voters: [1, 2], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } }, data: new Uint8Array(bytes).fill(group) } }),
    });
    sender.sendGroupMessages(2, [snapshot(3, 100), heartbeat(4, 2), snapshot(7, INLINE_SNAPSHOT_BYTES + 1)]);
    await waitFor('both snapshots', () => receiver.frames.length === 2);
    const [batch, stream] = receiver.frames;
    expect(batch!.messages.map((message) => message.group)).toEqual([3, 4]);
    expect(batch!.messages[0]!.message.snapshot?.data).toEqual(new Uint8Array(100).fill(3));
    expect(stream!.messages.map((message) => message.group)).toEqual([7]);
    expect(stream!.snapshotData).toEqual(new Uint8Array(INLINE_SNAPSHOT_BYTES + 1).fill(7));
    await waitFor('both statuses', () => statuses.length === 2);
    expect(statuses.sort((a, b) => a[1] - b[1])).toEqual([[2, 3, 'finish'], [2, 7, 'finish']]);
  });

  it.each([
    { what: 'group 0', messages: (): GroupMessage[] => [heartbeat(0, 1)] },
    { what: 'a negative group', messages: (): GroupMessage[] => [heartbeat(-1, 1)] },
    { what: 'a message to another peer', messages: (): GroupMessage[] => [heartbeat(1, 1), { group: 2, message: { ...heartbeat(2, 1).message, to: 3 } as Message }] },
    { what: 'a message from another node', messages: (): GroupMessage[] => [{ group: 2, message: { ...heartbeat(2, 1).message, from: 3 } as Message }] },
  ])('refuses $what before queuing anything', async ({ messages }) => {
    const { sender, receiver } = await pair();
    expect(() => sender.sendGroupMessages(2, messages())).toThrow();
    sender.sendGroupMessages(2, [heartbeat(9, 1)]);
    await waitFor('the valid frame', () => receiver.frames.length === 1);
    expect(receiver.frames[0]!.messages.map((message) => message.group)).toEqual([9]);
  });
});

describe('GroupBatch codec', () => {
  it('round-trips, and refuses counts above the limit, group 0, unknown flags, truncation and trailing bytes', () => {
    const items = [
      { group: 1, flags: 0, bytes: new Uint8Array([1, 2, 3]) },
      { group: Number.MAX_SAFE_INTEGER, flags: 1, bytes: new Uint8Array(0) },
    ];
    const decoded = decodeGroupBatch(encodeGroupBatch(items), 2);
    expect(decoded.map((item) => ({ ...item, bytes: new Uint8Array(item.bytes) }))).toEqual(items);
    const payload = encodeGroupBatch(items);
    expect(() => decodeGroupBatch(payload, 1)).toThrow(/at most 1 per frame/);
    expect(() => decodeGroupBatch(encodeGroupBatch([{ group: 0, flags: 0, bytes: new Uint8Array(0) }]), 10)).toThrow(/group 0/);
    expect(() => decodeGroupBatch(encodeGroupBatch([{ group: 1, flags: 2, bytes: new Uint8Array(0) }]), 10)).toThrow(/unknown flags/);
    expect(() => decodeGroupBatch(payload.subarray(0, payload.length - 1), 10)).toThrow(/truncated/);
    expect(() => decodeGroupBatch(Buffer.concat([payload, Buffer.from([0])]), 10)).toThrow(/trailing/);
    const huge = Buffer.alloc(4);
    huge.writeUInt32BE(1000, 0);
    expect(() => decodeGroupBatch(huge, 100_000)).toThrow(/cannot fit/);
  });
});
