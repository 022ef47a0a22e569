/**
 * The receiving side of the transport: one InboundConnection per accepted socket (handshake,
 * in-order frame processing, stream reassembly and staging). See transport.ts for the protocol.
 */
import type { Socket } from 'node:net';
import { decodeMessage } from '../codec.js';
import { MessageType } from '../types.js';
import type { Message } from '../types.js';
import { checkAttachmentHeaders, StagedAttachmentWriter } from './attachments.js';
import { StagedSnapshotWriter } from './staged-snapshot.js';
import { encodeFrame, FrameDecoder, FrameKind, malformedFrameError, TransportError, TransportErrorCode } from './framing.js';
import type { Frame } from './framing.js';
import { decodeGroupBatch, decodeGroupStreamHeader, decodeHello, decodeStreamHeader, decodeU64, encodeU64, GroupMessageFlags, PROTOCOL_VERSION } from './wire.js';
import type { StreamHeader } from './wire.js';
import { asError, forwardsOnBehalf, INBOUND_HIGH_WATER_BYTES, INBOUND_LOW_WATER_BYTES, PRE_HANDSHAKE_MAX_FRAME_BYTES } from './options.js';
import type { GroupMessage, ResolvedOptions } from './options.js';

/** Receive state of a stream between StreamBegin and StreamEnd. */
export interface InboundStream {
  message: Message;
  /**
   * Snapshot data received so far, one copy per chunk, when there is no staging directory.
   * Nothing is allocated from what the header announces: memory grows only with bytes that
   * actually arrived, within the shared budget.
   */
  snapshotChunks: Buffer[] | undefined;
  /** With a staging directory: the file the snapshot data is written to as it arrives. */
  snapshotFile: StagedSnapshotWriter | undefined;
  /** Bytes this stream wrote under the staging directory (charged to the staging budget). */
  staged: number;
  /** Announced snapshot data length; bytes of it received so far (also charged to the budget). */
  snapshotLength: number;
  snapshotFilled: number;
  writer: StagedAttachmentWriter | undefined;
  /** Total bulk bytes announced by the header, and received so far. */
  expected: number;
  received: number;
  /** Multi-raft: the group of a GroupStreamBegin stream. */
  group: number | undefined;
}

/** The callbacks and settings an inbound connection needs from its Transport. */
export interface InboundContext {
  readonly localId: number;
  readonly clusterId: string;
  readonly options: ResolvedOptions;
  readonly stagingDir: string | undefined;
  /** Attachments are refused unless the application enabled them (and gave a stagingDir). */
  readonly acceptAttachments: boolean;
  /** Who may complete a handshake (membership); undefined accepts every id. */
  readonly acceptPeer: ((peerId: number) => boolean) | undefined;
  /** The shared budget of snapshot bytes held in memory by every connection (no staging directory). */
  readonly snapshotBudget: ByteBudget;
  /** The shared budget of bytes written under the staging directory by streams in flight. */
  readonly stagingBudget: ByteBudget;
  /** The shared budget of received frames not yet processed, over every connection. */
  readonly frameBudget: ByteBudget;
  deliver(message: Message, stagedDirs: ReadonlyMap<number, string>, snapshotFile: StagedSnapshotWriter | undefined): Promise<void>;
  /** Whether the application takes group messages (GroupBatch, GroupStreamBegin); refused otherwise. */
  readonly acceptsGroups: boolean;
  /** Group messages of one GroupBatch frame (batch true), or one group stream's message. */
  deliverGroups(peerId: number, messages: GroupMessage[], snapshotFile: StagedSnapshotWriter | undefined, batch: boolean): Promise<void>;
  accepted(connection: InboundConnection): void;
  /** Bytes read from an accepted peer's connection (for the transport's byte counters). */
  received(peerId: number, bytes: number): void;
  /** A refusal to count (see TransportRefusals), reported with the error. */
  refused(kind: 'handshakesRefused' | 'malformedFrames' | 'snapshotBudgetExceeded' | 'stagingBudgetExceeded', error: Error): void;
  error(error: Error): void;
}

/** A byte budget shared by every connection (snapshot data held in memory). */
export class ByteBudget {
  private used = 0;
  constructor(readonly limit: number) {}

  get inUse(): number {
    return this.used;
  }

  /** Charges `bytes` if they fit; false (and nothing charged) if they do not. */
  take(bytes: number): boolean {
    if (this.used + bytes > this.limit) return false;
    this.used += bytes;
    return true;
  }

  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }

  /** Charges `bytes` whether they fit or not (for bytes already received); see `over`. */
  charge(bytes: number): void {
    this.used += bytes;
  }

  /** True while more than the limit is charged. */
  get over(): boolean {
    return this.used > this.limit;
  }
}

/**
 * What the TLS handshake proved about the remote side: `undefined` on a plain TCP connection,
 * otherwise the member id its certificate names for this cluster, or why it names none.
 */
export type CertifiedIdentity = { id: number } | { refusal: string } | undefined;

export class InboundConnection {
  peerId: number | undefined;
  private readonly decoder: FrameDecoder;
  private readonly frames: Frame[] = [];
  private pendingBytes = 0;
  private unattributedBytes = 0;
  private paused = false;
  private processing = false;
  private closed = false;
  private stream: InboundStream | undefined;
  /** Settles when the processing loop is idle; after close, when the partial stream was discarded. */
  private idle: Promise<void> = Promise.resolve();

  constructor(
    readonly socket: Socket,
    private readonly context: InboundContext,
    private readonly certified: CertifiedIdentity = undefined,
  ) {
    // Until the handshake is accepted a stranger may only send a small Hello.
    this.decoder = new FrameDecoder({ maxFrameBytes: Math.min(PRE_HANDSHAKE_MAX_FRAME_BYTES, context.options.maxFrameBytes) });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined); // 'close' follows; a reset peer is not our error
    socket.on('close', () => {
      this.closed = true;
      this.schedule();
    });
  }

  /** Closes the connection and waits until a partial stream, if any, has been removed. */
  async destroy(): Promise<void> {
    this.closed = true;
    this.socket.destroy();
    this.schedule();
    await this.idle;
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    // Bytes before the Hello was accepted are counted for the peer once it is known.
    if (this.peerId === undefined) this.unattributedBytes += chunk.length;
    else this.context.received(this.peerId, chunk.length);
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (error) {
      this.fail(asError(error));
      return;
    }
    for (const frame of frames) {
      this.frames.push(frame);
      this.pendingBytes += frame.payload.length;
      this.context.frameBudget.charge(frame.payload.length);
    }
    // Paused above this connection's high water, or while every connection together holds more
    // than the shared budget. Only a connection with frames waiting pauses for the shared budget:
    // processing them releases bytes and resumes it, so no connection waits for another.
    if (!this.paused && (this.pendingBytes > INBOUND_HIGH_WATER_BYTES || (this.pendingBytes > 0 && this.context.frameBudget.over))) {
      this.paused = true;
      this.socket.pause();
    }
    this.schedule();
  }

  /** Starts the processing loop unless it runs; frames are handled strictly one at a time, in order. */
  private schedule(): void {
    if (this.processing) return;
    this.processing = true;
    this.idle = this.process();
  }

  /**
   * The processing loop. Invariant: `processing` is reset in the same synchronous step that
   * finds nothing left to do (never one microtask later), so a frame or a close arriving at any
   * later moment finds processing === false and schedules a new run instead of being stranded.
   */
  private async process(): Promise<void> {
    try {
      for (;;) {
        if (this.closed) {
          // Only here (inside the loop) is the stream touched, so no write can race this abort.
          await this.discardStream();
          for (const pending of this.frames) this.context.frameBudget.release(pending.payload.length);
          this.pendingBytes = 0;
          this.frames.length = 0;
          this.processing = false;
          return;
        }
        const frame = this.frames.shift();
        if (frame === undefined) {
          this.processing = false;
          return;
        }
        this.pendingBytes -= frame.payload.length;
        this.context.frameBudget.release(frame.payload.length);
        if (this.paused && this.pendingBytes < INBOUND_LOW_WATER_BYTES && (this.pendingBytes === 0 || !this.context.frameBudget.over)) {
          this.paused = false;
          this.socket.resume();
        }
        try {
          await this.onFrame(frame);
        } catch (error) {
          this.fail(asError(error));
        }
      }
    } catch (error) {
      // Frame errors are handled above; this last guard keeps `idle` (awaited by close() and by
      // superseding connections) from ever rejecting.
      this.processing = false;
      this.context.error(asError(error));
    }
  }

  private fail(error: Error): void {
    if (this.closed) return;
    const wrapped =
      error instanceof TransportError
        ? error
        : malformedFrameError(`from ${this.describePeer()}: ${error.message}`, { cause: error, ...(this.peerId === undefined ? {} : { peerId: this.peerId }) });
    if (wrapped.code === TransportErrorCode.SnapshotBudget) this.context.refused('snapshotBudgetExceeded', wrapped);
    else if (wrapped.code === TransportErrorCode.StagingBudget) this.context.refused('stagingBudgetExceeded', wrapped);
    else if (wrapped.code === TransportErrorCode.MalformedFrame || wrapped.code === TransportErrorCode.FrameTooLarge || wrapped.code === TransportErrorCode.Attachment) {
      this.context.refused('malformedFrames', wrapped);
    }
    else this.context.error(wrapped);
    this.closed = true;
    this.socket.destroy();
    this.schedule();
  }

  private describePeer(): string {
    return this.peerId === undefined ? `${this.socket.remoteAddress}:${this.socket.remotePort}` : `peer ${this.peerId}`;
  }

  private async discardStream(): Promise<void> {
    const stream = this.stream;
    this.stream = undefined;
    if (stream === undefined) return;
    if (stream.snapshotChunks !== undefined) this.context.snapshotBudget.release(stream.snapshotFilled);
    this.context.stagingBudget.release(stream.staged);
    await stream.snapshotFile?.remove();
    await stream.writer?.abort();
  }

  private async onFrame(frame: Frame): Promise<void> {
    if (this.peerId === undefined) return this.onHello(frame);
    switch (frame.kind) {
      case FrameKind.Message: {
        if (this.stream) throw malformedFrameError(`${this.describePeer()} sent a Message frame inside a stream`);
        const message = this.decode(frame.payload);
        await this.context.deliver(message, new Map(), undefined);
        return;
      }
      case FrameKind.StreamBegin:
        return this.onStreamBegin(frame.payload, undefined);
      case FrameKind.GroupBatch: {
        if (!this.context.acceptsGroups) throw malformedFrameError(`${this.describePeer()} sent a GroupBatch frame, which this node does not take`);
        if (this.stream) throw malformedFrameError(`${this.describePeer()} sent a GroupBatch frame inside a stream`);
        // Every message is decoded and checked before any is delivered: a bad one refuses the frame.
        const messages = decodeGroupBatch(frame.payload, this.context.options.maxBatchMessages).map((item) => {
          const groupMessage: GroupMessage = { group: item.group, message: this.decode(item.bytes) };
          if ((item.flags & GroupMessageFlags.Quiesce) !== 0) groupMessage.quiesce = true;
          return groupMessage;
        });
        await this.context.deliverGroups(this.peerId, messages, undefined, true);
        return;
      }
      case FrameKind.GroupStreamBegin: {
        if (!this.context.acceptsGroups) throw malformedFrameError(`${this.describePeer()} sent a GroupStreamBegin frame, which this node does not take`);
        const { group, header } = decodeGroupStreamHeader(frame.payload);
        if (header.attachments.length > 0) throw malformedFrameError(`${this.describePeer()} sent attachments in a group stream`);
        return this.onStreamBegin(header, group);
      }
      case FrameKind.StreamChunk:
        return this.onStreamChunk(frame.payload);
      case FrameKind.StreamEnd:
        return this.onStreamEnd(frame.payload);
      default:
        throw malformedFrameError(`${this.describePeer()} sent frame kind ${frame.kind} after the handshake`);
    }
  }

  private onHello(frame: Frame): void {
    if (frame.kind !== FrameKind.Hello) throw malformedFrameError(`${this.describePeer()} sent frame kind ${frame.kind} before Hello`);
    const hello = decodeHello(frame.payload);
    const { localId, clusterId } = this.context;
    const certified = this.certified;
    // The refusal goes back to a stranger: it names what was wrong, never our own settings
    // (the cluster id is not quoted back).
    let refusal: string | undefined;
    if (hello.version !== PROTOCOL_VERSION) refusal = `protocol version ${hello.version} is not ${PROTOCOL_VERSION}`;
    else if (hello.clusterId !== clusterId) refusal = 'the cluster id does not match';
    else if (hello.receiverId !== localId) refusal = `this is not node ${hello.receiverId}`;
    else if (hello.senderId === 0 || hello.senderId === localId) refusal = `sender id ${hello.senderId} is not a valid peer id`;
    else if (certified !== undefined && 'refusal' in certified) refusal = certified.refusal;
    else if (certified !== undefined && certified.id !== hello.senderId) refusal = `the certificate is member ${certified.id}'s, not member ${hello.senderId}'s`;
    else if (this.context.acceptPeer !== undefined && !this.context.acceptPeer(hello.senderId)) refusal = `node ${hello.senderId} is not a member of this cluster`;
    if (refusal !== undefined) {
      const error = new TransportError(
        TransportErrorCode.HandshakeRefused,
        `refused connection from ${this.describePeer()} (node ${hello.senderId}): ${refusal}`,
        { peerId: hello.senderId },
      );
      this.context.refused('handshakesRefused', error);
      this.closed = true;
      // end() (not destroy) so the refusal reaches the dialer before the FIN.
      this.socket.end(encodeFrame(FrameKind.HelloRefuse, Buffer.from(refusal, 'utf8')));
      return;
    }
    this.peerId = hello.senderId;
    this.context.received(hello.senderId, this.unattributedBytes);
    this.unattributedBytes = 0;
    this.decoder.raiseMaxFrameBytes(this.context.options.maxFrameBytes);
    this.socket.write(encodeFrame(FrameKind.HelloAccept));
    this.context.accepted(this);
  }

  private decode(bytes: Uint8Array): Message {
    let message: Message;
    try {
      message = decodeMessage(bytes);
    } catch (error) {
      throw malformedFrameError(`${this.describePeer()} sent an undecodable message: ${asError(error).message}`, { cause: error });
    }
    // The handshake fixed who is talking to whom; a message claiming otherwise is a protocol error.
    if ((message.from !== this.peerId && !forwardsOnBehalf(message)) || message.to !== this.context.localId) {
      throw malformedFrameError(
        `${this.describePeer()} sent a message from ${message.from} to ${message.to} on a connection from ${this.peerId} to ${this.context.localId}`,
      );
    }
    return message;
  }

  private async onStreamBegin(payload: Buffer | StreamHeader, group: number | undefined): Promise<void> {
    if (this.stream) throw malformedFrameError(`${this.describePeer()} began a stream inside a stream`);
    const header = Buffer.isBuffer(payload) ? decodeStreamHeader(payload) : payload;
    const message = this.decode(header.messageBytes);
    let expected = 0;
    let snapshotChunks: Buffer[] | undefined;
    let snapshotFile: StagedSnapshotWriter | undefined;
    let snapshotLength = 0;
    if (header.snapshotDataLength !== undefined) {
      if (message.snapshot === undefined) throw malformedFrameError(`${this.describePeer()} sent snapshot data for a message without a snapshot`);
      if (message.snapshot.data !== undefined) throw malformedFrameError(`${this.describePeer()} sent snapshot data twice`);
      if (header.snapshotDataLength > this.context.options.maxSnapshotBytes) {
        throw malformedFrameError(
          `${this.describePeer()} sent a snapshot of ${header.snapshotDataLength} bytes; the maximum is ${this.context.options.maxSnapshotBytes}`,
        );
      }
      // Nothing is allocated here: a 55-byte header may announce a gigabyte.
      snapshotLength = header.snapshotDataLength;
      if (this.context.stagingDir === undefined) snapshotChunks = [];
      else snapshotFile = new StagedSnapshotWriter(this.context.stagingDir, snapshotLength);
      expected += header.snapshotDataLength;
    }
    checkAttachmentHeaders(message, header.attachments, 'receive');
    let writer: StagedAttachmentWriter | undefined;
    if (header.attachments.length > 0) {
      const stagingDir = this.context.stagingDir;
      if (stagingDir === undefined || !this.context.acceptAttachments) {
        throw new TransportError(
          TransportErrorCode.Attachment,
          `${this.describePeer()} sent attachments, which this node does not accept (${stagingDir === undefined ? 'no stagingDir is configured' : 'acceptAttachments is off'})`,
        );
      }
      if (header.attachments.length > this.context.options.maxAttachmentsPerStream) {
        throw malformedFrameError(`${this.describePeer()} announced ${header.attachments.length} attachments; at most ${this.context.options.maxAttachmentsPerStream} per stream`);
      }
      let attachmentBytes = 0;
      for (const attachment of header.attachments) for (const file of attachment.files) attachmentBytes += file.size;
      // Checked before any directory is created or byte written: the disk budget of one stream.
      if (!Number.isSafeInteger(attachmentBytes) || attachmentBytes > this.context.options.maxAttachmentBytesPerStream) {
        throw malformedFrameError(`${this.describePeer()} announced ${attachmentBytes} attachment bytes; at most ${this.context.options.maxAttachmentBytesPerStream} per stream`);
      }
      expected += attachmentBytes;
      if (!Number.isSafeInteger(expected)) throw malformedFrameError(`${this.describePeer()} announced more bulk bytes than can be counted`);
      writer = new StagedAttachmentWriter(stagingDir, header.attachments);
    }
    // Registered before open() so that a failing open's file and directories are removed by discardStream.
    this.stream = { message, snapshotChunks, snapshotFile, staged: 0, snapshotLength, snapshotFilled: 0, writer, expected, received: 0, group };
    await snapshotFile?.open();
    await writer?.open();
  }

  private async onStreamChunk(payload: Buffer): Promise<void> {
    const stream = this.stream;
    if (!stream) throw malformedFrameError(`${this.describePeer()} sent a StreamChunk outside a stream`);
    if (stream.received + payload.length > stream.expected) {
      throw malformedFrameError(`${this.describePeer()} sent more bulk bytes than the ${stream.expected} announced`);
    }
    stream.received += payload.length;
    let offset = 0;
    // Bulk order is fixed: snapshot data first, then attachment files.
    if (stream.snapshotLength > 0 && stream.snapshotFilled < stream.snapshotLength) {
      const count = Math.min(stream.snapshotLength - stream.snapshotFilled, payload.length);
      if (stream.snapshotFile !== undefined) {
        this.chargeStaging(stream, count);
        await stream.snapshotFile.write(payload.subarray(0, count));
      } else {
        if (!this.context.snapshotBudget.take(count)) {
          throw new TransportError(
            TransportErrorCode.SnapshotBudget,
            `${this.describePeer()}: snapshot data would exceed the budget of ${this.context.snapshotBudget.limit} bytes held in memory`,
          );
        }
        // A copy: the payload is a view into the socket's buffer.
        stream.snapshotChunks!.push(Buffer.from(payload.subarray(0, count)));
      }
      stream.snapshotFilled += count;
      offset = count;
    }
    if (offset < payload.length) {
      this.chargeStaging(stream, payload.length - offset);
      await stream.writer!.write(payload.subarray(offset));
    }
  }

  /** Charges bytes about to be written under the staging directory; refuses the stream when they do not fit. */
  private chargeStaging(stream: InboundStream, bytes: number): void {
    if (!this.context.stagingBudget.take(bytes)) {
      throw new TransportError(
        TransportErrorCode.StagingBudget,
        `${this.describePeer()}: the stream would exceed the budget of ${this.context.stagingBudget.limit} bytes staged on disk by streams in flight`,
      );
    }
    stream.staged += bytes;
  }

  private async onStreamEnd(payload: Buffer): Promise<void> {
    const stream = this.stream;
    if (!stream) throw malformedFrameError(`${this.describePeer()} sent a StreamEnd outside a stream`);
    const total = decodeU64(payload, 'StreamEnd frame');
    if (total !== stream.expected || stream.received !== stream.expected) {
      throw malformedFrameError(
        `${this.describePeer()} ended a stream after ${stream.received} of ${stream.expected} bytes (trailer says ${total})`,
      );
    }
    await stream.snapshotFile?.finish();
    const stagedDirs = stream.writer ? await stream.writer.finish() : new Map<number, string>();
    // From here the directories are complete and durable; ownership passes to deliver().
    this.stream = undefined;
    const message = stream.message;
    if (stream.snapshotChunks !== undefined && message.snapshot !== undefined) {
      const data = Buffer.concat(stream.snapshotChunks, stream.snapshotLength);
      stream.snapshotChunks.length = 0;
      message.snapshot.data = new Uint8Array(data.buffer, data.byteOffset, data.length);
    }
    try {
      if (stream.group !== undefined) await this.context.deliverGroups(this.peerId!, [{ group: stream.group, message }], stream.snapshotFile, false);
      else await this.context.deliver(message, stagedDirs, stream.snapshotFile);
    } finally {
      // Handed over: the application holds it now (raft keeps it until it is persisted), and the
      // snapshot file was read during delivery: removed whatever the application did.
      if (stream.snapshotChunks !== undefined) this.context.snapshotBudget.release(stream.snapshotFilled);
      await stream.snapshotFile?.remove();
      this.context.stagingBudget.release(stream.staged);
    }
    if (message.type === MessageType.MsgSnap && !this.closed) {
      this.socket.write(encodeFrame(FrameKind.SnapshotAck, encodeU64(message.snapshot?.metadata.index ?? 0)));
    }
  }
}
