/**
 * Length-prefixed frames for the replicalog transport.
 *
 *   +-------------------+------------+---------------------------+
 *   | length: u32 BE    | kind: u8   | payload: length - 1 bytes |
 *   +-------------------+------------+---------------------------+
 *
 * `length` counts the kind byte plus the payload (so it is at least 1) and never exceeds the
 * decoder's `maxFrameBytes` (default 64 MiB). The decoder checks the length as soon as the
 * 4-byte prefix has arrived and the kind as soon as the fifth byte has arrived, so an oversize
 * or garbage frame is refused before its payload is buffered. Refusals are thrown as
 * `TransportError`s with a stable `code`; the transport turns them into "close this connection"
 * and never lets them escape to the process.
 */

/** Default upper bound of one frame (kind byte + payload). */
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;

/** Bytes of the length prefix plus the kind byte. */
export const FRAME_HEADER_BYTES = 5;

/** What a frame carries. The numbers are on the wire: never renumber, only add. */
export enum FrameKind {
  /** dialer → acceptor, first frame: protocol version, cluster id, sender id, intended receiver id */
  Hello = 1,
  /** acceptor → dialer: the handshake was accepted; messages may follow */
  HelloAccept = 2,
  /** acceptor → dialer: the handshake was refused (UTF-8 reason); the acceptor then closes */
  HelloRefuse = 3,
  /** dialer → acceptor: one raftpb.Message that carries no bulk data (payload = encodeMessage bytes) */
  Message = 4,
  /** dialer → acceptor: header of a message with bulk data (snapshot data and/or entry attachments) */
  StreamBegin = 5,
  /** dialer → acceptor: the next bytes of the current stream's bulk data */
  StreamChunk = 6,
  /** dialer → acceptor: the current stream is complete (payload = total bulk byte count, u64 BE) */
  StreamEnd = 7,
  /** acceptor → dialer: a MsgSnap stream was reassembled and handed to the application */
  SnapshotAck = 8,
  /**
   * dialer → acceptor (multi-raft, issue 19): every message to this peer from one loop turn, each
   * tagged with its raft group (partition) id; an empty batch is the node-level heartbeat.
   * Payload: see wire.ts encodeGroupBatch.
   */
  GroupBatch = 9,
  /** dialer → acceptor: StreamBegin of a message of one raft group (u64 group | StreamBegin payload). */
  GroupStreamBegin = 10,
}

const KNOWN_FRAME_KINDS: ReadonlySet<number> = new Set(
  Object.values(FrameKind).filter((value): value is number => typeof value === 'number'),
);

/** Error codes of the transport (transport-local; lib/errors.ts codes are reused where they fit). */
export const TransportErrorCode = {
  /** a frame's length prefix is above the maximum frame size */
  FrameTooLarge: 'ERR_FRAME_TOO_LARGE',
  /** bytes that are not a valid frame, or a frame out of place in the protocol */
  MalformedFrame: 'ERR_FRAME_MALFORMED',
  /** the peer refused our handshake, or we refused theirs (cluster id, node id, version) */
  HandshakeRefused: 'ERR_HANDSHAKE_REFUSED',
  /** the connection failed, timed out, or was closed before the operation completed */
  ConnectionLost: 'ERR_CONNECTION_LOST',
  /** staging received attachments, or reading attachments to send, failed */
  Attachment: 'ERR_ATTACHMENT',
  /** received snapshot data would exceed the memory budget shared by every connection */
  SnapshotBudget: 'ERR_SNAPSHOT_BUDGET',
  /** bytes staged on disk by streams in flight would exceed the staging budget */
  StagingBudget: 'ERR_STAGING_BUDGET',
} as const;

export type TransportErrorCode = (typeof TransportErrorCode)[keyof typeof TransportErrorCode];

export interface TransportErrorDetails {
  /** The remote node id, when known. */
  peerId?: number;
  cause?: unknown;
}

export class TransportError extends Error {
  readonly code: TransportErrorCode;
  readonly peerId?: number;

  constructor(code: TransportErrorCode, message: string, details: TransportErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'TransportError';
    this.code = code;
    if (details.peerId !== undefined) this.peerId = details.peerId;
  }
}

export function malformedFrameError(message: string, details: TransportErrorDetails = {}): TransportError {
  return new TransportError(TransportErrorCode.MalformedFrame, message, details);
}

/** One decoded frame. `payload` may be a view into a larger buffer; copy it to keep it long-term. */
export interface Frame {
  kind: FrameKind;
  payload: Buffer;
}

/** The 5-byte prefix of a frame whose payload is `payloadBytes` long. */
export function encodeFrameHeader(kind: FrameKind, payloadBytes: number): Buffer {
  if (!Number.isInteger(payloadBytes) || payloadBytes < 0 || payloadBytes + 1 > 0xffff_ffff) {
    throw new RangeError(`frame payload of ${payloadBytes} bytes cannot be framed`);
  }
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header.writeUInt32BE(payloadBytes + 1, 0);
  header.writeUInt8(kind, 4);
  return header;
}

/** A whole frame in one buffer (copies the payload; use encodeFrameHeader to avoid that). */
export function encodeFrame(kind: FrameKind, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  encodeFrameHeader(kind, payload.length).copy(frame, 0);
  frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

/**
 * Streaming decoder: feed it TCP chunks in arrival order with `push`; it returns every frame
 * completed by that chunk (zero, one or many) and keeps the remainder. A frame may be split
 * across any number of chunks and a chunk may hold any number of frames.
 *
 * After `push` throws, the decoder is poisoned (every later push throws the same error): the
 * byte stream has lost its framing and the connection must be closed.
 */
export class FrameDecoder {
  /** Raised once, after the handshake (see raiseMaxFrameBytes); never lowered. */
  maxFrameBytes: number;
  /** Unconsumed chunks, oldest first; `buffered` is the sum of their lengths. */
  private chunks: Buffer[] = [];
  private buffered = 0;
  private failure: TransportError | undefined;

  constructor(options: { maxFrameBytes?: number } = {}) {
    const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < 1 || maxFrameBytes > 0xffff_ffff) {
      throw new RangeError(`maxFrameBytes must be an integer in 1..${0xffff_ffff}, got ${maxFrameBytes}`);
    }
    this.maxFrameBytes = maxFrameBytes;
  }

  /**
   * Allows larger frames from now on (after the peer proved who it is). Before that, a stranger
   * can only make us buffer the small pre-handshake limit.
   */
  raiseMaxFrameBytes(maxFrameBytes: number): void {
    if (maxFrameBytes > this.maxFrameBytes) this.maxFrameBytes = maxFrameBytes;
  }

  /** Bytes received but not yet part of a returned frame. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Uint8Array): Frame[] {
    if (this.failure) throw this.failure;
    if (chunk.length > 0) {
      this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
      this.buffered += chunk.length;
    }
    const frames: Frame[] = [];
    for (;;) {
      if (this.buffered < 4) break;
      const length = this.peekUInt32();
      // Checked before waiting for the body, so a hostile prefix cannot make us buffer 4 GiB.
      if (length === 0) this.fail(malformedFrameError('frame length 0 (a frame holds at least its kind byte)'));
      if (length > this.maxFrameBytes) {
        this.fail(
          new TransportError(
            TransportErrorCode.FrameTooLarge,
            `frame of ${length} bytes exceeds the maximum of ${this.maxFrameBytes} bytes`,
          ),
        );
      }
      if (this.buffered < 5) break;
      const kind = this.peekByte(4);
      if (!KNOWN_FRAME_KINDS.has(kind)) this.fail(malformedFrameError(`unknown frame kind ${kind}`));
      if (this.buffered < 4 + length) break;
      const frame = this.take(4 + length);
      frames.push({ kind: kind as FrameKind, payload: frame.subarray(FRAME_HEADER_BYTES) });
    }
    return frames;
  }

  private fail(error: TransportError): never {
    this.failure = error;
    this.chunks = [];
    this.buffered = 0;
    throw error;
  }

  private peekByte(offset: number): number {
    for (const chunk of this.chunks) {
      if (offset < chunk.length) return chunk[offset]!;
      offset -= chunk.length;
    }
    throw new RangeError('peek past the buffered bytes');
  }

  private peekUInt32(): number {
    const first = this.chunks[0]!;
    if (first.length >= 4) return first.readUInt32BE(0);
    return ((this.peekByte(0) << 24) | (this.peekByte(1) << 16) | (this.peekByte(2) << 8) | this.peekByte(3)) >>> 0;
  }

  /** Removes and returns the first `count` buffered bytes (a view when they sit in one chunk). */
  private take(count: number): Buffer {
    this.buffered -= count;
    const first = this.chunks[0]!;
    if (first.length >= count) {
      if (first.length === count) this.chunks.shift();
      else this.chunks[0] = first.subarray(count);
      return first.subarray(0, count);
    }
    const out = Buffer.allocUnsafe(count);
    let filled = 0;
    while (filled < count) {
      const chunk = this.chunks[0]!;
      const needed = count - filled;
      if (chunk.length <= needed) {
        chunk.copy(out, filled);
        filled += chunk.length;
        this.chunks.shift();
      } else {
        chunk.copy(out, filled, 0, needed);
        filled += needed;
        this.chunks[0] = chunk.subarray(needed);
      }
    }
    return out;
  }
}
