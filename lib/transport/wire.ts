/**
 * Payload layouts of the transport's control frames (see framing.ts for the frame itself).
 * All integers are big-endian; u64 values must be safe integers (refused otherwise).
 *
 *   Hello        u8 version | u64 senderId | u64 receiverId | u16 clusterIdLength | clusterId (UTF-8)
 *   HelloAccept  (empty)
 *   HelloRefuse  reason (UTF-8)
 *   Message      encodeMessage(message)
 *   StreamBegin  u32 messageLength | encodeMessage(message without snapshot.data)
 *                | u8 snapshotDataPresent (0/1) | u64 snapshotDataLength
 *                | u32 attachmentCount | per attachment: u64 index | u32 fileCount
 *                  | per file: u16 nameLength | name (UTF-8) | u64 size
 *   StreamChunk  raw bulk bytes: snapshot data first, then every attachment file in header order
 *   StreamEnd    u64 total bulk bytes (must equal what the header announced)
 *   SnapshotAck  u64 snapshot index
 *   GroupBatch   u32 count | per message: u64 group (> 0) | u8 flags (bit 0: quiesce; others 0)
 *                | u32 messageLength | encodeMessage(message)        (count <= the receiver's limit)
 *   GroupStreamBegin  u64 group (> 0) | StreamBegin payload (no attachments)
 */
import { malformedFrameError } from './framing.js';

/**
 * 2 since issue 19 (GroupBatch and GroupStreamBegin frames): a node of version 1 cannot read
 * them, so the handshake refuses the mix plainly ("protocol version 2 is not 1") instead of the
 * connection dying on an unknown frame kind.
 */
export const PROTOCOL_VERSION = 2;

/** Upper bound of a cluster id, in UTF-8 bytes. */
export const MAX_CLUSTER_ID_BYTES = 256;

class ByteWriter {
  private readonly parts: Buffer[] = [];

  u8(value: number): this {
    const b = Buffer.allocUnsafe(1);
    b.writeUInt8(value, 0);
    this.parts.push(b);
    return this;
  }

  u16(value: number): this {
    const b = Buffer.allocUnsafe(2);
    b.writeUInt16BE(value, 0);
    this.parts.push(b);
    return this;
  }

  u32(value: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(value, 0);
    this.parts.push(b);
    return this;
  }

  u64(value: number): this {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${value} is not a safe unsigned integer`);
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64BE(BigInt(value), 0);
    this.parts.push(b);
    return this;
  }

  bytes(value: Uint8Array): this {
    this.parts.push(Buffer.from(value.buffer, value.byteOffset, value.length));
    return this;
  }

  /** u16 length + UTF-8 bytes. */
  shortString(value: string): this {
    const encoded = Buffer.from(value, 'utf8');
    if (encoded.length > 0xffff) throw new RangeError('string longer than 65535 bytes');
    return this.u16(encoded.length).bytes(encoded);
  }

  finish(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** Reads a control payload; every overrun or bad value throws ERR_FRAME_MALFORMED naming `what`. */
class ByteReader {
  private offset = 0;
  constructor(
    private readonly buffer: Buffer,
    private readonly what: string,
  ) {}

  private need(count: number): void {
    if (this.offset + count > this.buffer.length) throw malformedFrameError(`${this.what} is truncated`);
  }

  u8(): number {
    this.need(1);
    return this.buffer.readUInt8(this.offset++);
  }

  u16(): number {
    this.need(2);
    const value = this.buffer.readUInt16BE(this.offset);
    this.offset += 2;
    return value;
  }

  u32(): number {
    this.need(4);
    const value = this.buffer.readUInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  u64(field: string): number {
    this.need(8);
    const value = this.buffer.readBigUInt64BE(this.offset);
    this.offset += 8;
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw malformedFrameError(`${this.what}: ${field} ${value} is not a safe integer`);
    return Number(value);
  }

  bytes(count: number): Buffer {
    this.need(count);
    const value = this.buffer.subarray(this.offset, this.offset + count);
    this.offset += count;
    return value;
  }

  shortString(field: string): string {
    const length = this.u16();
    const raw = this.bytes(length);
    const text = raw.toString('utf8');
    // Refuse invalid UTF-8 instead of silently replacing it: names and ids must compare exactly.
    if (!Buffer.from(text, 'utf8').equals(raw)) throw malformedFrameError(`${this.what}: ${field} is not valid UTF-8`);
    return text;
  }

  end(): void {
    if (this.offset !== this.buffer.length) throw malformedFrameError(`${this.what} has ${this.buffer.length - this.offset} trailing bytes`);
  }
}

// ---------------------------------------------------------------------------------------------
// Handshake

export interface Hello {
  version: number;
  senderId: number;
  /** The node the dialer believes it is talking to; the acceptor refuses a mismatch. */
  receiverId: number;
  clusterId: string;
}

export function encodeHello(hello: Hello): Buffer {
  return new ByteWriter().u8(hello.version).u64(hello.senderId).u64(hello.receiverId).shortString(hello.clusterId).finish();
}

export function decodeHello(payload: Buffer): Hello {
  const reader = new ByteReader(payload, 'Hello frame');
  const hello: Hello = {
    version: reader.u8(),
    senderId: reader.u64('senderId'),
    receiverId: reader.u64('receiverId'),
    clusterId: reader.shortString('clusterId'),
  };
  reader.end();
  return hello;
}

// ---------------------------------------------------------------------------------------------
// Stream header

export interface StreamFileHeader {
  name: string;
  size: number;
}

export interface StreamAttachmentHeader {
  index: number;
  files: StreamFileHeader[];
}

export interface StreamHeader {
  /** encodeMessage bytes of the message, snapshot.data removed. */
  messageBytes: Uint8Array;
  /** Length of snapshot.data, or undefined when the message's snapshot had no data (nil). */
  snapshotDataLength: number | undefined;
  attachments: StreamAttachmentHeader[];
}

export function encodeStreamHeader(header: StreamHeader): Buffer {
  const writer = new ByteWriter().u32(header.messageBytes.length).bytes(header.messageBytes);
  writer.u8(header.snapshotDataLength === undefined ? 0 : 1).u64(header.snapshotDataLength ?? 0);
  writer.u32(header.attachments.length);
  for (const attachment of header.attachments) {
    writer.u64(attachment.index).u32(attachment.files.length);
    for (const file of attachment.files) writer.shortString(file.name).u64(file.size);
  }
  return writer.finish();
}

export function decodeStreamHeader(payload: Buffer): StreamHeader {
  const reader = new ByteReader(payload, 'StreamBegin frame');
  const messageBytes = reader.bytes(reader.u32());
  const present = reader.u8();
  if (present > 1) throw malformedFrameError(`StreamBegin frame: snapshotDataPresent is ${present}`);
  const length = reader.u64('snapshotDataLength');
  if (present === 0 && length !== 0) throw malformedFrameError('StreamBegin frame: length given for absent snapshot data');
  const attachmentCount = reader.u32();
  const attachments: StreamAttachmentHeader[] = [];
  for (let a = 0; a < attachmentCount; a++) {
    const index = reader.u64('attachment index');
    const fileCount = reader.u32();
    const files: StreamFileHeader[] = [];
    for (let f = 0; f < fileCount; f++) files.push({ name: reader.shortString('file name'), size: reader.u64('file size') });
    attachments.push({ index, files });
  }
  reader.end();
  return { messageBytes, snapshotDataLength: present === 1 ? length : undefined, attachments };
}

export function encodeU64(value: number): Buffer {
  return new ByteWriter().u64(value).finish();
}

export function decodeU64(payload: Buffer, what: string): number {
  const reader = new ByteReader(payload, what);
  const value = reader.u64('value');
  reader.end();
  return value;
}

export function decodeUtf8(payload: Buffer): string {
  return payload.toString('utf8');
}

// ---------------------------------------------------------------------------------------------
// Multi-raft batches (issue 19)

/** Flag bits of a message in a GroupBatch frame. */
export const GroupMessageFlags = {
  /** The leader's last heartbeat before its group quiesces: the follower stops ticking the group too. */
  Quiesce: 1,
} as const;

const KNOWN_GROUP_FLAGS = GroupMessageFlags.Quiesce;

/** Fixed bytes of one message in a GroupBatch (group + flags + length). */
export const GROUP_BATCH_ITEM_OVERHEAD = 8 + 1 + 4;

/** Default bound of messages in one GroupBatch frame (sender splits above it; receiver refuses above it). */
export const DEFAULT_MAX_BATCH_MESSAGES = 16_384;

export interface GroupBatchItem {
  group: number;
  flags: number;
  /** encodeMessage bytes. */
  bytes: Uint8Array;
}

export function encodeGroupBatch(items: readonly GroupBatchItem[]): Buffer {
  const writer = new ByteWriter().u32(items.length);
  for (const item of items) writer.u64(item.group).u8(item.flags).u32(item.bytes.length).bytes(item.bytes);
  return writer.finish();
}

/**
 * Decodes a GroupBatch payload. Refuses (ERR_FRAME_MALFORMED) a count above `maxMessages` or
 * above what the payload can hold (checked before anything is allocated), a group id 0, unknown
 * flag bits, and truncated or trailing bytes. The message bytes are views into the payload.
 */
export function decodeGroupBatch(payload: Buffer, maxMessages: number): GroupBatchItem[] {
  const reader = new ByteReader(payload, 'GroupBatch frame');
  const count = reader.u32();
  if (count > maxMessages) throw malformedFrameError(`GroupBatch frame: ${count} messages, at most ${maxMessages} per frame`);
  if (count * GROUP_BATCH_ITEM_OVERHEAD > payload.length - 4) throw malformedFrameError(`GroupBatch frame: ${count} messages cannot fit in ${payload.length} bytes`);
  const items: GroupBatchItem[] = [];
  for (let position = 0; position < count; position++) {
    const group = reader.u64('group');
    if (group === 0) throw malformedFrameError(`GroupBatch frame: message ${position} has group 0`);
    const flags = reader.u8();
    if ((flags & ~KNOWN_GROUP_FLAGS) !== 0) throw malformedFrameError(`GroupBatch frame: message ${position} has unknown flags ${flags}`);
    const bytes = reader.bytes(reader.u32());
    items.push({ group, flags, bytes });
  }
  reader.end();
  return items;
}

export function encodeGroupStreamHeader(group: number, header: StreamHeader): Buffer {
  return Buffer.concat([new ByteWriter().u64(group).finish(), encodeStreamHeader(header)]);
}

export function decodeGroupStreamHeader(payload: Buffer): { group: number; header: StreamHeader } {
  const reader = new ByteReader(payload, 'GroupStreamBegin frame');
  const group = reader.u64('group');
  if (group === 0) throw malformedFrameError('GroupStreamBegin frame: group 0');
  return { group, header: decodeStreamHeader(payload.subarray(8)) };
}
