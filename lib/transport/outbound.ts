/**
 * The sending side of the transport: one PeerLink per peer (bounded queue, dial/handshake,
 * backoff, send loop) over one OutboundConnection at a time. See transport.ts for the protocol.
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { memberIdOfCertificate } from './tls.js';
import { invalidArgumentError } from '../errors.js';
import { MessageType } from '../types.js';
import type { Message } from '../types.js';
import { checkAttachmentHeaders, closePrepared, prepareAttachments, readPreparedFile } from './attachments.js';
import type { AttachmentsProvider, PreparedAttachment } from './attachments.js';
import {
  encodeFrame,
  encodeFrameHeader,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameKind,
  malformedFrameError,
  TransportError,
  TransportErrorCode,
} from './framing.js';
import type { Frame } from './framing.js';
import { decodeU64, decodeUtf8, encodeGroupStreamHeader, encodeHello, encodeStreamHeader, encodeU64, PROTOCOL_VERSION } from './wire.js';
import type { StreamHeader } from './wire.js';
import { asError, COALESCE_BYTES, connectionLost, DIALER_MAX_FRAME_BYTES } from './options.js';
import type { PeerAddress, PeerStatus, ResolvedOptions, SnapshotTransferStatus, TransportTlsOptions } from './options.js';

/** A message waiting in a peer queue, encoded at `send` time (later mutation of the message is harmless). */
export interface QueuedMessage {
  message: Message;
  /** encodeMessage of the message with snapshot.data removed. */
  bytes: Uint8Array;
  /** snapshot.data, sent as bulk; undefined when the message has none. */
  snapshotData: Uint8Array | undefined;
  /** What the queue accounts for: bytes + snapshot data. */
  size: number;
  /** Multi-raft: the raft group of a message sent as a stream (a GroupStreamBegin frame). */
  group?: number;
}

/** A GroupBatch frame waiting in a peer queue (multi-raft, issue 19): one queue slot. */
export interface QueuedBatch {
  batch: Buffer;
  /** Group messages in it (0: the node-level heartbeat). */
  count: number;
  size: number;
  /** Groups of the small MsgSnaps inline in it: 'finish' once the frame is written, 'failure' if it is lost. */
  snapshotGroups: number[];
}

export type QueuedItem = QueuedMessage | QueuedBatch;

export function isQueuedBatch(item: QueuedItem): item is QueuedBatch {
  return 'batch' in item;
}

/** The callbacks and settings a PeerLink needs from its Transport. */
export interface LinkContext {
  readonly localId: number;
  readonly clusterId: string;
  readonly options: ResolvedOptions;
  readonly attachmentsFor: AttachmentsProvider | undefined;
  /** Mutual TLS: present our certificate and accept only the peer's own (see tls.ts). */
  readonly tls: TransportTlsOptions | undefined;
  unreachable(peerId: number): void;
  snapshotStatus(peerId: number, status: SnapshotTransferStatus, group: number | undefined): void;
  /** A GroupBatch frame of `count` messages was written to a peer's socket. */
  batchSent(count: number): void;
  error(error: Error): void;
  /** Bytes written to a peer's socket (for the transport's byte counters). */
  sent(peerId: number, bytes: number): void;
}


/** One handshaken (or handshaking) outbound TCP connection. */
export class OutboundConnection {
  readonly socket: Socket;
  private readonly decoder = new FrameDecoder({ maxFrameBytes: DIALER_MAX_FRAME_BYTES });
  private closeError: TransportError | undefined;
  /** Rejects once the socket is closed; always has a handler attached (never unhandled). */
  readonly closed: Promise<never>;
  private rejectClosed!: (error: TransportError) => void;
  private drainWaiters: (() => void)[] = [];
  private handshake: { resolve: () => void; reject: (error: Error) => void } | undefined;
  private ackWaiter: { index: number; resolve: () => void; reject: (error: Error) => void } | undefined;

  /** 'connect', or 'secureConnect' once TLS proved the peer: Hello is sent only then. */
  private readonly readyEvent: 'connect' | 'secureConnect';

  constructor(
    private readonly peerId: number,
    address: PeerAddress,
    private readonly writeTimeoutMs: number,
    tls?: { options: TransportTlsOptions; clusterId: string },
    private readonly countSent: (bytes: number) => void = () => undefined,
  ) {
    this.closed = new Promise<never>((_, reject) => {
      this.rejectClosed = reject;
    });
    this.closed.catch(() => undefined);
    if (tls === undefined) {
      this.socket = connect({ host: address.host, port: address.port });
      this.readyEvent = 'connect';
    } else {
      this.socket = connectTls({
        host: address.host,
        port: address.port,
        ...tls.options,
        minVersion: 'TLSv1.3',
        // Members are identified by the member id their certificate names, not by host name:
        // the acceptor must prove it is the peer we meant to reach.
        checkServerIdentity: (_host, certificate) => {
          const proved = memberIdOfCertificate(certificate, tls.clusterId);
          if ('refusal' in proved) return new Error(`peer ${peerId}: ${proved.refusal}`);
          if (proved.id !== peerId) return new Error(`peer ${peerId} presented member ${proved.id}'s certificate`);
          return undefined;
        },
      });
      this.readyEvent = 'secureConnect';
    }
    this.socket.setNoDelay(true);
    this.socket.setKeepAlive(true, 10_000);
    this.socket.on('drain', () => this.releaseDrainWaiters());
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (error) => this.fail(connectionLost(`connection to peer ${peerId}: ${error.message}`, peerId, error)));
    this.socket.on('close', () => this.fail(connectionLost(`connection to peer ${peerId} closed`, peerId)));
  }

  /** Connects, sends Hello, resolves on HelloAccept; rejects on refusal, close or timeout. */
  open(hello: Buffer, timeoutMs: number): Promise<void> {
    const handshake = new Promise<void>((resolve, reject) => {
      this.handshake = { resolve, reject };
    });
    this.socket.once(this.readyEvent, () => {
      const frame = encodeFrame(FrameKind.Hello, hello);
      this.countSent(frame.length);
      this.socket.write(frame);
    });
    const timer = setTimeout(
      () => this.destroy(connectionLost(`connecting to peer ${this.peerId} timed out after ${timeoutMs} ms`, this.peerId)),
      timeoutMs,
    );
    return Promise.race([handshake, this.closed]).finally(() => clearTimeout(timer));
  }

  destroy(error?: TransportError): void {
    this.fail(error ?? connectionLost(`connection to peer ${this.peerId} closed locally`, this.peerId));
    this.socket.destroy();
  }

  /** Queues one frame; resolves at once unless the socket buffer is full (then on 'drain'). */
  async writeFrame(kind: FrameKind, payload: Uint8Array): Promise<void> {
    if (this.closeError) throw this.closeError;
    let belowHighWater: boolean;
    this.countSent(FRAME_HEADER_BYTES + payload.length);
    if (payload.length <= COALESCE_BYTES) {
      belowHighWater = this.socket.write(encodeFrame(kind, payload));
    } else {
      this.socket.write(encodeFrameHeader(kind, payload.length));
      belowHighWater = this.socket.write(payload);
    }
    if (!belowHighWater) {
      // A peer that stops reading (hung process, silent partition) would otherwise hold this link
      // until TCP gives up, minutes later: no progress within writeTimeoutMs breaks the connection.
      const timer = setTimeout(
        () => this.destroy(connectionLost(`peer ${this.peerId} accepted no data for ${this.writeTimeoutMs} ms`, this.peerId)),
        this.writeTimeoutMs,
      );
      try {
        await Promise.race([new Promise<void>((resolve) => this.drainWaiters.push(resolve)), this.closed]);
      } finally {
        clearTimeout(timer);
      }
    }
  }

  /** Resolves when the receiver acknowledges the MsgSnap stream for `index`. */
  waitForSnapshotAck(index: number, timeoutMs: number): Promise<void> {
    if (this.closeError) return Promise.reject(this.closeError);
    const ack = new Promise<void>((resolve, reject) => {
      this.ackWaiter = { index, resolve, reject };
    });
    const timer = setTimeout(
      () => this.destroy(connectionLost(`peer ${this.peerId} did not acknowledge snapshot ${index} within ${timeoutMs} ms`, this.peerId)),
      timeoutMs,
    );
    return Promise.race([ack, this.closed]).finally(() => {
      clearTimeout(timer);
      this.ackWaiter = undefined;
    });
  }

  private onData(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (error) {
      this.destroy(error as TransportError);
      return;
    }
    for (const frame of frames) {
      if (this.closeError) return;
      try {
        this.onFrame(frame);
      } catch (error) {
        this.destroy(error instanceof TransportError ? error : malformedFrameError(asError(error).message, { peerId: this.peerId }));
      }
    }
  }

  private onFrame(frame: Frame): void {
    if (this.handshake) {
      const handshake = this.handshake;
      if (frame.kind === FrameKind.HelloAccept) {
        this.handshake = undefined;
        handshake.resolve();
        return;
      }
      if (frame.kind === FrameKind.HelloRefuse) {
        const error = new TransportError(
          TransportErrorCode.HandshakeRefused,
          `peer ${this.peerId} refused the handshake: ${decodeUtf8(frame.payload)}`,
          { peerId: this.peerId },
        );
        this.handshake = undefined;
        handshake.reject(error);
        this.destroy(error);
        return;
      }
      throw malformedFrameError(`peer ${this.peerId} sent frame kind ${frame.kind} during the handshake`, { peerId: this.peerId });
    }
    // After the handshake the acceptor only ever acknowledges MsgSnap streams we sent.
    if (frame.kind !== FrameKind.SnapshotAck || this.ackWaiter === undefined) {
      throw malformedFrameError(`peer ${this.peerId} sent unexpected frame kind ${frame.kind}`, { peerId: this.peerId });
    }
    const index = decodeU64(frame.payload, 'SnapshotAck frame');
    if (index !== this.ackWaiter.index) {
      throw malformedFrameError(`peer ${this.peerId} acknowledged snapshot ${index}, expected ${this.ackWaiter.index}`);
    }
    this.ackWaiter.resolve();
  }

  private fail(error: TransportError): void {
    if (this.closeError) return;
    this.closeError = error;
    this.rejectClosed(error);
    this.handshake?.reject(error);
    this.handshake = undefined;
    this.ackWaiter?.reject(error);
    this.releaseDrainWaiters();
  }

  private releaseDrainWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

/** A failure that concerns one message only: it is dropped and the connection stays usable. */
export class MessageDropped extends Error {
  constructor(readonly reason: Error) {
    super(reason.message);
  }
}

/** The outbound side for one peer: its queue, its connection, and the dial/send loop. */
export class PeerLink {
  private readonly queue: QueuedItem[] = [];
  private queuedBytes = 0;
  private droppedMessages = 0;
  private connection: OutboundConnection | undefined;
  private connected = false;
  private stopped = false;
  /** Wakes the send loop waiting for work (new message queued, or stop). */
  private wake: (() => void) | undefined;
  private backoffTimer: NodeJS.Timeout | undefined;
  /** Ends a backoff sleep early; only stop() uses it (new messages must not shorten the backoff). */
  private endSleep: (() => void) | undefined;
  /** Rejects when stop() is called (always has a handler attached). */
  private readonly stopping: Promise<never>;
  private rejectStopping!: (error: Error) => void;
  /** Settles when the loop has exited (after stop). */
  private loop: Promise<void> = Promise.resolve();
  private lastReportedDialError: string | undefined;

  constructor(
    readonly peerId: number,
    readonly address: PeerAddress,
    private readonly context: LinkContext,
  ) {
    this.stopping = new Promise<never>((_, reject) => {
      this.rejectStopping = reject;
    });
    this.stopping.catch(() => undefined);
  }

  start(): void {
    this.loop = this.run().catch((error: unknown) => this.context.error(asError(error)));
  }

  status(): PeerStatus {
    return {
      address: { ...this.address },
      connected: this.connected,
      queuedMessages: this.queue.length,
      queuedBytes: this.queuedBytes,
      droppedMessages: this.droppedMessages,
    };
  }

  /** False when the queue is full (the caller reports the drop). */
  /** True while a handshaken connection is open (node-level heartbeats are not queued otherwise). */
  get isConnected(): boolean {
    return this.connected;
  }

  enqueue(item: QueuedItem): boolean {
    const { maxQueuedMessages, maxQueuedBytes } = this.context.options;
    // An empty queue takes any one message, so a snapshot larger than maxQueuedBytes can still be sent.
    const fits =
      this.queue.length < maxQueuedMessages && (this.queue.length === 0 || this.queuedBytes + item.size <= maxQueuedBytes);
    if (!fits) {
      this.droppedMessages += 1;
      return false;
    }
    this.queue.push(item);
    this.queuedBytes += item.size;
    this.wakeLoop();
    return true;
  }

  /** Stops the loop, closes the connection and returns the messages that were still queued. */
  async stop(): Promise<QueuedItem[]> {
    this.stopped = true;
    this.rejectStopping(connectionLost(`link to peer ${this.peerId} stopped`, this.peerId));
    clearTimeout(this.backoffTimer);
    this.endSleep?.();
    this.connection?.destroy();
    this.wakeLoop();
    await this.loop;
    const left = this.queue.splice(0);
    this.queuedBytes = 0;
    return left;
  }

  private wakeLoop(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      const connection = new OutboundConnection(
        this.peerId,
        this.address,
        this.context.options.writeTimeoutMs,
        this.context.tls === undefined ? undefined : { options: this.context.tls, clusterId: this.context.clusterId },
        (bytes) => this.context.sent(this.peerId, bytes),
      );
      this.connection = connection;
      const hello = encodeHello({
        version: PROTOCOL_VERSION,
        senderId: this.context.localId,
        receiverId: this.peerId,
        clusterId: this.context.clusterId,
      });
      try {
        await connection.open(hello, this.context.options.connectTimeoutMs);
      } catch (error) {
        connection.destroy();
        if (this.stopped) break;
        this.reportDialError(asError(error));
        if (this.queue.length > 0) this.context.unreachable(this.peerId);
        await this.sleep(this.backoffDelay(failures++));
        continue;
      }
      failures = 0;
      this.lastReportedDialError = undefined;
      this.connected = true;
      try {
        await this.pump(connection);
      } catch (error) {
        if (!this.stopped) this.context.error(asError(error));
      } finally {
        this.connected = false;
        connection.destroy();
      }
      if (this.stopped) break;
      // The connection was established and is gone: whatever was in flight may be lost.
      this.context.unreachable(this.peerId);
      await this.sleep(this.backoffDelay(failures++));
    }
    this.connection = undefined;
  }

  /** Sends queued messages in order until the connection fails (throws) or the link stops. */
  private async pump(connection: OutboundConnection): Promise<void> {
    while (!this.stopped) {
      if (this.queue.length === 0) {
        await Promise.race([new Promise<void>((resolve) => (this.wake = resolve)), connection.closed]);
        continue;
      }
      // Dequeued before writing: if the write fails, this message is the one lost with the connection.
      const item = this.queue.shift()!;
      this.queuedBytes -= item.size;
      if (isQueuedBatch(item)) {
        // Built by Transport.sendGroupMessages within maxFrameBytes.
        try {
          await connection.writeFrame(FrameKind.GroupBatch, item.batch);
        } catch (error) {
          for (const group of item.snapshotGroups) this.context.snapshotStatus(this.peerId, 'failure', group);
          throw error;
        }
        this.context.batchSent(item.count);
        // As etcd's transport for a message sent: raft learns from the follower's answer whether
        // it was installed (a lost one is probed again).
        for (const group of item.snapshotGroups) this.context.snapshotStatus(this.peerId, 'finish', group);
        continue;
      }
      const isSnapshot = item.message.type === MessageType.MsgSnap;
      try {
        await this.transmit(connection, item);
        if (isSnapshot) this.context.snapshotStatus(this.peerId, 'finish', item.group);
      } catch (error) {
        if (isSnapshot) this.context.snapshotStatus(this.peerId, 'failure', item.group);
        // A failure caused by stop() (removePeer/close) is not news: report nothing more.
        if (this.stopped) return;
        if (error instanceof MessageDropped) {
          this.context.error(error.reason);
          this.context.unreachable(this.peerId);
          continue;
        }
        throw error;
      }
    }
  }

  private async transmit(connection: OutboundConnection, item: QueuedMessage): Promise<void> {
    const { chunkBytes, maxFrameBytes, snapshotAckTimeoutMs } = this.context.options;
    const prepared = await this.prepare(item);
    try {
      const isSnapshot = item.message.type === MessageType.MsgSnap;
      if (prepared.length === 0 && item.snapshotData === undefined && !isSnapshot && item.group === undefined) {
        // The receiver would refuse (and disconnect on) a frame above its maximum: drop it here.
        if (item.bytes.length + 1 > maxFrameBytes) {
          throw new MessageDropped(invalidArgumentError(`message to peer ${this.peerId} does not fit in a ${maxFrameBytes}-byte frame`));
        }
        await connection.writeFrame(FrameKind.Message, item.bytes);
        return;
      }
      const header: StreamHeader = {
        messageBytes: item.bytes,
        snapshotDataLength: item.snapshotData?.length,
        attachments: prepared.map((attachment) => ({
          index: attachment.index,
          files: attachment.files.map((file) => ({ name: file.name, size: file.size })),
        })),
      };
      const headerBytes = item.group === undefined ? encodeStreamHeader(header) : encodeGroupStreamHeader(item.group, header);
      if (headerBytes.length + 1 > maxFrameBytes) {
        throw new MessageDropped(invalidArgumentError(`message to peer ${this.peerId} does not fit in a ${maxFrameBytes}-byte frame`));
      }
      // From here on a failure leaves the receiver mid-stream: it must break the connection
      // (the caller's catch does), never drop just the message.
      await connection.writeFrame(item.group === undefined ? FrameKind.StreamBegin : FrameKind.GroupStreamBegin, headerBytes);
      let total = 0;
      const data = item.snapshotData;
      if (data !== undefined) {
        for (let offset = 0; offset < data.length; offset += chunkBytes) {
          const chunk = data.subarray(offset, Math.min(data.length, offset + chunkBytes));
          await connection.writeFrame(FrameKind.StreamChunk, chunk);
          total += chunk.length;
        }
      }
      for (const attachment of prepared) {
        for (const file of attachment.files) {
          for await (const chunk of readPreparedFile(file, chunkBytes)) {
            await connection.writeFrame(FrameKind.StreamChunk, chunk);
            total += chunk.length;
          }
        }
      }
      await connection.writeFrame(FrameKind.StreamEnd, encodeU64(total));
      if (isSnapshot) await connection.waitForSnapshotAck(item.message.snapshot?.metadata.index ?? 0, snapshotAckTimeoutMs);
    } finally {
      await closePrepared(prepared);
    }
  }

  /** Asks the application for the message's attachments and opens them; failures drop the message only. */
  private async prepare(item: QueuedMessage): Promise<PreparedAttachment[]> {
    const provider = this.context.attachmentsFor;
    // A group's messages carry no attachments (the multi-raft node ships none).
    if (provider === undefined || item.message.entries.length === 0 || item.group !== undefined) return [];
    try {
      // Raced with stop() so that a provider that never settles cannot hold close() forever.
      const attachments = await Promise.race([provider(item.message), this.stopping]);
      if (attachments.length === 0) return [];
      checkAttachmentHeaders(
        item.message,
        attachments.map((attachment) => ({
          index: attachment.index,
          files: attachment.files.map((file) => ({ name: file.name, size: 0 })),
        })),
        'send',
      );
      return await prepareAttachments(attachments);
    } catch (error) {
      throw new MessageDropped(asError(error));
    }
  }

  /** Reports a dial failure once per distinct cause (a down peer would otherwise flood onError). */
  private reportDialError(error: Error): void {
    const key = `${(error as { code?: string }).code ?? ''}:${error.message}`;
    if (key === this.lastReportedDialError) return;
    this.lastReportedDialError = key;
    this.context.error(error);
  }

  private backoffDelay(failures: number): number {
    const { backoffInitialMs, backoffMaxMs } = this.context.options;
    return backoffDelay(failures, backoffInitialMs, backoffMaxMs);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.stopped) return resolve();
      this.backoffTimer = setTimeout(resolve, ms);
      // stop() clears the timer, so it must also be able to end the wait.
      this.endSleep = resolve;
    });
  }
}

/**
 * Redial delay after `failures` consecutive failures: base = min(maxMs, initialMs · 2^failures),
 * then "equal jitter": base/2 fixed plus up to base/2 random, so peers that lost the same node
 * do not redial in lockstep, and the delay never exceeds maxMs.
 */
export function backoffDelay(failures: number, initialMs: number, maxMs: number, random: () => number = Math.random): number {
  const base = Math.min(maxMs, initialMs * 2 ** Math.min(failures, 30));
  return base / 2 + random() * (base / 2);
}
