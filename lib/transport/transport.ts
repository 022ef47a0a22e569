/**
 * Transport: carries raftpb Messages between replicalog node processes over TCP (node:net).
 *
 * ```ts
 * const transport = new Transport({
 *   id: 1, clusterId: 'demo',
 *   listen: { host: '127.0.0.1', port: 7001 },
 *   peers: new Map([[2, { host: '127.0.0.1', port: 7002 }], [3, { host: '127.0.0.1', port: 7003 }]]),
 *   stagingDir: stagingPath(store.dir),              // same filesystem; start after the store opened
 *   acceptAttachments: true,                         // refused unless enabled
 *   attachmentsFor: entryDirectoryAttachments(store.dir), // ships wal/<LSN> minus RAFT per entry
 *   onMessage: async (message, stagedDirs, snapshotFile) => {
 *     // snapshot data arrives as a staged file: read it now (it is removed when this returns)
 *     if (snapshotFile && message.snapshot) message.snapshot.data = await snapshotFile.read();
 *     for (const entry of message.entries) {
 *       const dir = stagedDirs.get(entry.index);   // a durable staged copy of the leader's entry dir
 *       // ... after raft accepts the entry: await store.insertLogEntry(entry, dir)
 *     }
 *     node.step(message);
 *   },
 *   onUnreachable: (peer) => node.reportUnreachable(peer),
 *   onSnapshotStatus: (peer, status) => node.reportSnapshot(peer, status),
 * });
 * await transport.start();
 * transport.send(ready.messages);   // never blocks, never throws for an unreachable peer
 * await transport.close();
 * ```
 *
 * Connections. Messages flow one way per TCP connection: each node dials one outbound
 * connection to each peer and uses it only to send; what a peer sends to us arrives on the
 * peer's own outbound connection (an inbound connection here). The dialer opens with a Hello
 * frame (protocol version, cluster id, its id, the id it expects to reach); the acceptor answers
 * HelloAccept, or HelloRefuse and closes when the cluster id, the receiver id or the version do
 * not match (cross-cluster traffic is never delivered). Nothing is sent before HelloAccept.
 * With `tls`, every connection is mutual TLS and the Hello id must be the member id the
 * certificate names (tls.ts); `acceptPeer` refuses ids outside the membership. Without TLS, only
 * loopback addresses are allowed (unless `insecure`). Before its Hello is accepted a connection
 * may send one small frame (PRE_HANDSHAKE_MAX_FRAME_BYTES) within `handshakeTimeoutMs`, and only
 * a few such connections may exist at once (in all, and per remote address).
 *
 * Queues. Each peer has a FIFO queue bounded by `maxQueuedMessages` and `maxQueuedBytes`
 * (encoded message bytes plus snapshot data; attachment files are read later and not counted).
 * A message that does not fit is dropped (tail drop) and `onUnreachable(peer)` is called, so raft
 * can `reportUnreachable` and retransmit later. Queued messages survive reconnects. A lost
 * connection loses at most the message being written plus whatever the kernel had buffered; raft
 * tolerates loss, so nothing is retried at this level.
 *
 * Reconnects. A link whose dial or handshake fails, or whose connection breaks, redials after an
 * exponential backoff (initial `backoff.initialMs`, doubled per failure, capped at
 * `backoff.maxMs`, with "equal jitter": half fixed, half random); a successful handshake resets
 * it. `onUnreachable(peer)` is called when an established connection is lost and when a dial
 * fails while messages are waiting. A peer that stops reading (its socket buffer stays full for
 * `writeTimeoutMs`) is treated as a lost connection, so a silent partition cannot wedge a link.
 *
 * Bulk data. A message with snapshot data, with entry attachments, or of type MsgSnap is sent as
 * a stream: StreamBegin (message without snapshot.data + sizes) · StreamChunk × N (at most
 * `chunkBytes` each: snapshot data, then attachment files) · StreamEnd (total). With a
 * `stagingDir`, the receiver writes snapshot data to a file there as it arrives (at most
 * `maxSnapshotBytes` per stream; staged-snapshot.ts) and hands the file to `onMessage`; without
 * one it reassembles the data in memory (within `maxBufferedSnapshotBytes` over all
 * connections). Attachments are refused unless `acceptAttachments`; then their files go to fresh
 * directories under `stagingDir` (see attachments.ts for the fsync order). What streams in
 * flight wrote under `stagingDir` is bounded by `maxStagedBytes` in all. Only a complete stream
 * is delivered; a broken one is discarded and its file and directories removed.
 *
 * Snapshot status. Every MsgSnap passed to `send` yields exactly one `onSnapshotStatus` call
 * (unless the transport is closed first): 'finish' once the whole stream is written to the
 * socket and the receiver acknowledged that it was reassembled and handed to its `onMessage`
 * (as etcd's snapshot sender waits for the HTTP response), 'failure' when it was dropped, the
 * connection broke, or no acknowledgement came within `snapshotAckTimeoutMs`.
 *
 * Delivery. `onMessage` is called once per message, in the order the peer sent them, and is
 * awaited before the next message of that connection is processed (back-pressure). The staged
 * directories it receives belong to the application from then on: adopt each with
 * `store.insertLogEntry(entry, dir)` or remove it. The entry's own data (a gitaly RaftEntry whose
 * local_path names a directory on the *sender*) is passed through untouched and must not be used
 * as a path on the receiver (gitaly.md B13). Messages whose `from` is not the handshake's sender
 * (except a forwarded MsgProp) or whose `to` is not this node close the connection.
 *
 * Callbacks are never invoked synchronously from inside `send`, and never after `close()`
 * has been called (close() does wait for an `onMessage` call already in progress). Errors that
 * only concern one connection (malformed frames, refused handshakes, failing attachment reads,
 * a throwing `onMessage`) go to `onError` and never escape to the process.
 *
 * Staging root and the store. A ReplicaLogStore clears its staging/ directory when it opens, so
 * open the store before starting a transport that stages there, and keep staged directories
 * that wait for raft (between onMessage and the Ready that persists the entry) in memory only:
 * after a restart they are gone, and raft simply resends the entries.
 */
import { mkdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import type { AddressInfo, Server, Socket } from 'node:net';
import { encodeMessage } from '../codec.js';
import { closedError, invalidArgumentError } from '../errors.js';
import { MessageType } from '../types.js';
import type { Message } from '../types.js';
import { DIRECTORY_MODE } from '../wal/layout.js';
import { DEFAULT_MAX_FRAME_BYTES } from './framing.js';
import { MAX_CLUSTER_ID_BYTES } from './wire.js';
import { forwardsOnBehalf } from './options.js';
import { ByteBudget, InboundConnection } from './inbound.js';
import type { CertifiedIdentity, InboundContext } from './inbound.js';
import { memberIdOfCertificate } from './tls.js';
import { TransportError, TransportErrorCode } from './framing.js';
import { isQueuedBatch, PeerLink } from './outbound.js';
import type { LinkContext, QueuedItem, QueuedMessage } from './outbound.js';
import { encodeGroupBatch, GROUP_BATCH_ITEM_OVERHEAD, GroupMessageFlags, type GroupBatchItem } from './wire.js';
import { asError, checkAddress, checkNodeId, DEFAULTS, insecureAddressError, isLoopbackHost, positiveInteger } from './options.js';
import type {
  GroupMessage,
  PeerAddress,
  PeerStatus,
  ResolvedOptions,
  SnapshotTransferStatus,
  StagedSnapshotFile,
  TransportOptions,
  TransportPeerBytes,
  TransportRefusals,
  TransportStats,
  TransportTlsOptions,
} from './options.js';

/** Snapshot data up to this size travels inline in a GroupBatch (no stream, no acknowledgement wait). */
export const INLINE_SNAPSHOT_BYTES = 64 * 1024;

export type {
  BackoffOptions,
  GroupMessage,
  PeerAddress,
  PeerStatus,
  SnapshotTransferStatus,
  StagedSnapshotFile,
  TransportOptions,
  TransportPeerBytes,
  TransportRefusals,
  TransportStats,
  TransportTlsOptions,
} from './options.js';
export { backoffDelay } from './outbound.js';

/** The transport of one node: listens for its peers, dials them, and moves raft messages. */
export class Transport {
  readonly id: number;
  readonly clusterId: string;
  private readonly listenAddress: PeerAddress;
  private readonly options: ResolvedOptions;
  private readonly callbacks: Pick<
    TransportOptions,
    'onMessage' | 'onUnreachable' | 'onSnapshotStatus' | 'onError' | 'attachmentsFor' | 'onGroupMessages' | 'onGroupSnapshotStatus'
  >;
  private readonly groupBatches = { framesSent: 0, messagesSent: 0, framesReceived: 0, messagesReceived: 0 };
  private readonly stagingDir: string | undefined;
  private readonly links = new Map<number, PeerLink>();
  private readonly inbound = new Set<InboundConnection>();
  private server: Server | undefined;
  private readonly tls: TransportTlsOptions | undefined;
  private readonly insecure: boolean;
  private readonly acceptPeer: ((peerId: number) => boolean) | undefined;
  private readonly snapshotBudget: ByteBudget;
  private readonly stagingBudget: ByteBudget;
  private readonly frameBudget: ByteBudget;
  private readonly acceptAttachments: boolean;
  /** Bytes sent to and received from each peer (kept after a peer is removed). */
  private readonly bytes = new Map<number, TransportPeerBytes>();
  /** Inbound connections still in TLS or Hello, by remote address (see onRawConnection). */
  private readonly pendingByAddress = new Map<string, number>();
  private pendingTotal = 0;
  private readonly refusals: TransportRefusals = {
    connectionsOverLimit: 0,
    handshakeTimeouts: 0,
    handshakesRefused: 0,
    tlsFailures: 0,
    malformedFrames: 0,
    idleTimeouts: 0,
    snapshotBudgetExceeded: 0,
    stagingBudgetExceeded: 0,
  };
  private boundAddress: PeerAddress | undefined;
  private state: 'new' | 'starting' | 'running' | 'closed' = 'new';

  constructor(options: TransportOptions) {
    this.id = checkNodeId(options.id, 'id');
    if (typeof options.clusterId !== 'string' || Buffer.byteLength(options.clusterId, 'utf8') > MAX_CLUSTER_ID_BYTES) {
      throw invalidArgumentError(`clusterId must be a string of at most ${MAX_CLUSTER_ID_BYTES} UTF-8 bytes`);
    }
    this.clusterId = options.clusterId;
    this.listenAddress = checkAddress(options.listen, 'listen');
    if (typeof options.onMessage !== 'function' || typeof options.onUnreachable !== 'function') {
      throw invalidArgumentError('onMessage and onUnreachable are required functions');
    }
    const maxFrameBytes = positiveInteger(options.maxFrameBytes, DEFAULT_MAX_FRAME_BYTES, 'maxFrameBytes');
    const chunkBytes = positiveInteger(options.chunkBytes, DEFAULTS.chunkBytes, 'chunkBytes');
    if (chunkBytes + 1 > maxFrameBytes) throw invalidArgumentError(`chunkBytes ${chunkBytes} does not fit in maxFrameBytes ${maxFrameBytes}`);
    const backoffInitialMs = positiveInteger(options.backoff?.initialMs, DEFAULTS.backoffInitialMs, 'backoff.initialMs');
    this.options = {
      maxBatchMessages: positiveInteger(options.maxBatchMessages, DEFAULTS.maxBatchMessages, 'maxBatchMessages'),
      maxQueuedMessages: positiveInteger(options.maxQueuedMessages, DEFAULTS.maxQueuedMessages, 'maxQueuedMessages'),
      maxQueuedBytes: positiveInteger(options.maxQueuedBytes, DEFAULTS.maxQueuedBytes, 'maxQueuedBytes'),
      maxFrameBytes,
      chunkBytes,
      maxSnapshotBytes: positiveInteger(options.maxSnapshotBytes, DEFAULTS.maxSnapshotBytes, 'maxSnapshotBytes'),
      backoffInitialMs,
      backoffMaxMs: Math.max(backoffInitialMs, positiveInteger(options.backoff?.maxMs, DEFAULTS.backoffMaxMs, 'backoff.maxMs')),
      connectTimeoutMs: positiveInteger(options.connectTimeoutMs, DEFAULTS.connectTimeoutMs, 'connectTimeoutMs'),
      snapshotAckTimeoutMs: positiveInteger(options.snapshotAckTimeoutMs, DEFAULTS.snapshotAckTimeoutMs, 'snapshotAckTimeoutMs'),
      writeTimeoutMs: positiveInteger(options.writeTimeoutMs, DEFAULTS.writeTimeoutMs, 'writeTimeoutMs'),
      handshakeTimeoutMs: positiveInteger(options.handshakeTimeoutMs, DEFAULTS.handshakeTimeoutMs, 'handshakeTimeoutMs'),
      idleTimeoutMs: positiveInteger(options.idleTimeoutMs, DEFAULTS.idleTimeoutMs, 'idleTimeoutMs'),
      maxPendingConnections: positiveInteger(options.maxPendingConnections, DEFAULTS.maxPendingConnections, 'maxPendingConnections'),
      maxPendingConnectionsPerAddress: positiveInteger(
        options.maxPendingConnectionsPerAddress,
        DEFAULTS.maxPendingConnectionsPerAddress,
        'maxPendingConnectionsPerAddress',
      ),
      maxBufferedSnapshotBytes: positiveInteger(options.maxBufferedSnapshotBytes, DEFAULTS.maxBufferedSnapshotBytes, 'maxBufferedSnapshotBytes'),
      maxAttachmentBytesPerStream: positiveInteger(options.maxAttachmentBytesPerStream, DEFAULTS.maxAttachmentBytesPerStream, 'maxAttachmentBytesPerStream'),
      maxAttachmentsPerStream: positiveInteger(options.maxAttachmentsPerStream, DEFAULTS.maxAttachmentsPerStream, 'maxAttachmentsPerStream'),
      maxStagedBytes: positiveInteger(options.maxStagedBytes, DEFAULTS.maxStagedBytes, 'maxStagedBytes'),
      maxBufferedFrameBytes: positiveInteger(options.maxBufferedFrameBytes, DEFAULTS.maxBufferedFrameBytes, 'maxBufferedFrameBytes'),
    };
    if (options.acceptAttachments === true && options.stagingDir === undefined) {
      throw invalidArgumentError('acceptAttachments needs a stagingDir (attachments are written there)');
    }
    this.acceptAttachments = options.acceptAttachments === true;
    this.tls = options.tls;
    this.insecure = options.insecure === true;
    this.acceptPeer = options.acceptPeer;
    this.snapshotBudget = new ByteBudget(this.options.maxBufferedSnapshotBytes);
    this.stagingBudget = new ByteBudget(this.options.maxStagedBytes);
    this.frameBudget = new ByteBudget(this.options.maxBufferedFrameBytes);
    // Without TLS nothing authenticates a peer: only this machine may take part, unless the
    // operator says the network is trusted.
    if (this.tls === undefined && !this.insecure) {
      for (const [what, address] of [['listen', this.listenAddress] as const, ...[...(options.peers ?? [])].map(([peerId, address]) => [`peer ${peerId}`, address] as const)]) {
        if (!isLoopbackHost(address.host)) throw insecureAddressError(what, address.host);
      }
    }
    this.callbacks = {
      onMessage: options.onMessage,
      onUnreachable: options.onUnreachable,
      onSnapshotStatus: options.onSnapshotStatus,
      onError: options.onError,
      attachmentsFor: options.attachmentsFor,
      onGroupMessages: options.onGroupMessages,
      onGroupSnapshotStatus: options.onGroupSnapshotStatus,
    };
    this.stagingDir = options.stagingDir;
    for (const [peerId, address] of options.peers ?? []) this.createLink(peerId, address);
  }

  /** The address actually listened on (port resolved when 0 was asked); undefined before start. */
  get address(): PeerAddress | undefined {
    return this.boundAddress === undefined ? undefined : { ...this.boundAddress };
  }

  /** Creates the staging directory, listens, and starts dialing the peers. */
  async start(): Promise<PeerAddress> {
    if (this.state !== 'new') throw invalidArgumentError(`transport ${this.id} was already started`);
    this.state = 'starting';
    if (this.stagingDir !== undefined) await mkdir(this.stagingDir, { recursive: true, mode: DIRECTORY_MODE });
    let server: Server;
    if (this.tls === undefined) {
      server = createServer((socket) => this.onConnection(socket, undefined));
    } else {
      const tlsServer = createTlsServer(
        {
          ...this.tls,
          requestCert: true,
          rejectUnauthorized: true,
          minVersion: 'TLSv1.3',
          handshakeTimeout: this.options.handshakeTimeoutMs,
        },
        (socket) => this.onConnection(socket, memberIdOfCertificate(socket.getPeerCertificate(), this.clusterId)),
      );
      tlsServer.on('tlsClientError', (error, socket) => {
        this.refusals.tlsFailures++;
        this.reportError(
          new TransportError(TransportErrorCode.HandshakeRefused, `TLS handshake with ${socket.remoteAddress}:${socket.remotePort} failed: ${error.message}`),
        );
      });
      server = tlsServer;
    }
    // Every accepted TCP connection (before TLS) counts against the pending limits.
    server.on('connection', (socket: Socket) => this.onRawConnection(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.listenAddress.port, this.listenAddress.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (error) => this.reportError(error));
    const info = server.address() as AddressInfo;
    this.boundAddress = { host: this.listenAddress.host, port: info.port };
    if (this.state !== 'starting') {
      // close() ran while we were listening.
      await new Promise<void>((resolve) => server.close(() => resolve()));
      throw closedError('transport');
    }
    this.state = 'running';
    for (const link of this.links.values()) link.start();
    return { ...this.boundAddress };
  }

  /**
   * Queues messages for their `to` peers and returns at once. Every message is encoded first, so
   * an invalid one throws (ERR_OUT_OF_RANGE / ERR_INVALID_ARGUMENT) before any is queued. A
   * message to an unknown peer or to a full queue is dropped and reported via onUnreachable
   * (and onSnapshotStatus 'failure' for MsgSnap), asynchronously.
   */
  send(messages: readonly Message[]): void {
    if (this.state === 'closed') throw closedError('transport');
    const items = messages.map((message) => this.encodeForQueue(message));
    for (const item of items) {
      const peerId = item.message.to;
      const link = this.links.get(peerId);
      const accepted = link !== undefined && item.message.to !== this.id && link.enqueue(item);
      if (!accepted) {
        const isSnapshot = item.message.type === MessageType.MsgSnap;
        // Deferred: raft must not be re-entered from inside its own send call.
        setImmediate(() => {
          this.reportUnreachable(peerId);
          if (isSnapshot) this.reportSnapshotStatus(peerId, 'failure');
        });
      }
    }
  }

  /**
   * Multi-raft (issue 19): queues every message of `messages` (all to `peerId`, each tagged with
   * its group) as GroupBatch frames: one frame unless they exceed maxBatchMessages or the frame
   * size, and one queue slot per frame. A MsgSnap (or a message with snapshot data) goes alone as
   * a group stream. An empty `messages` queues the node-level heartbeat (an empty batch), only
   * while the peer is connected (a stale heartbeat is worthless). Every message is validated
   * first: an invalid one throws before any is queued. A frame that does not fit the queue is
   * dropped and reported via onUnreachable (and onGroupSnapshotStatus 'failure'), asynchronously.
   */
  sendGroupMessages(peerId: number, messages: readonly GroupMessage[]): void {
    if (this.state === 'closed') throw closedError('transport');
    const link = this.links.get(peerId);
    const batchItems: GroupBatchItem[] = [];
    const streams: QueuedMessage[] = [];
    /** Which batch items are inline MsgSnaps (their status is reported when their frame is written). */
    const inlineSnapshot: boolean[] = [];
    for (const { group, message, quiesce } of messages) {
      if (!Number.isSafeInteger(group) || group <= 0) throw invalidArgumentError(`sendGroupMessages: group ${group} is not a positive integer`);
      if (typeof message !== 'object' || message === null || message.to !== peerId) {
        throw invalidArgumentError(`sendGroupMessages: a message of group ${group} is not addressed to peer ${peerId}`);
      }
      const item = this.encodeForQueue(message);
      const flags = quiesce === true ? GroupMessageFlags.Quiesce : 0;
      if (item.snapshotData !== undefined || message.type === MessageType.MsgSnap) {
        // A small snapshot (a fresh or small partition's) rides in the batch, data included: a
        // stream costs a round trip for its acknowledgement, and 10,000 partitions joining at once
        // would wait in line behind each other (and hold every heartbeat behind them).
        if ((item.snapshotData?.length ?? 0) <= INLINE_SNAPSHOT_BYTES) {
          batchItems.push({ group, flags, bytes: encodeMessage(message) });
          inlineSnapshot.push(true);
        } else {
          streams.push({ ...item, group });
        }
      } else {
        batchItems.push({ group, flags, bytes: item.bytes });
        inlineSnapshot.push(false);
      }
    }
    const queued: QueuedItem[] = [];
    if (batchItems.length === 0 && streams.length === 0) {
      if (link?.isConnected === true) queued.push({ batch: encodeGroupBatch([]), count: 0, size: 4, snapshotGroups: [] });
    }
    // Split by count and by frame size (the receiver refuses a frame above either).
    const frameRoom = this.options.maxFrameBytes - 1 - 4;
    let start = 0;
    while (start < batchItems.length) {
      let end = start;
      let bytes = 0;
      while (end < batchItems.length && end - start < this.options.maxBatchMessages) {
        const itemBytes = GROUP_BATCH_ITEM_OVERHEAD + batchItems[end]!.bytes.length;
        if (end > start && bytes + itemBytes > frameRoom) break;
        bytes += itemBytes;
        end++;
      }
      const slice = batchItems.slice(start, end);
      const payload = encodeGroupBatch(slice);
      const snapshots: number[] = [];
      for (let position = start; position < end; position++) if (inlineSnapshot[position]) snapshots.push(batchItems[position]!.group);
      queued.push({ batch: payload, count: end - start, size: payload.length, snapshotGroups: snapshots });
      start = end;
    }
    queued.push(...streams);
    for (const item of queued) {
      const accepted = link !== undefined && peerId !== this.id && link.enqueue(item);
      if (accepted) continue;
      const snapshotGroups = isQueuedBatch(item) ? item.snapshotGroups : item.message.type === MessageType.MsgSnap && item.group !== undefined ? [item.group] : [];
      // Deferred: raft must not be re-entered from inside its own send call.
      setImmediate(() => {
        this.reportUnreachable(peerId);
        for (const group of snapshotGroups) this.reportSnapshotStatus(peerId, 'failure', group);
      });
    }
  }

  /** Adds a peer (or moves it: a changed address replaces the link and drops its queue). */
  addPeer(peerId: number, address: PeerAddress): void {
    if (this.state === 'closed') throw closedError('transport');
    checkNodeId(peerId, 'peerId');
    if (peerId === this.id) throw invalidArgumentError(`peer ${peerId} is this transport's own id`);
    const checked = checkAddress(address, 'address');
    if (this.tls === undefined && !this.insecure && !isLoopbackHost(checked.host)) throw insecureAddressError(`peer ${peerId}`, checked.host);
    const existing = this.links.get(peerId);
    if (existing && existing.address.host === checked.host && existing.address.port === checked.port) return;
    if (existing) this.dropLink(existing);
    const link = this.createLink(peerId, checked);
    if (this.state === 'running') link.start();
  }

  /** Stops sending to a peer; its queued messages are dropped (MsgSnap ones reported as 'failure'). */
  removePeer(peerId: number): void {
    const link = this.links.get(peerId);
    if (link) this.dropLink(link);
  }

  /** What was refused so far (connections, handshakes, frames, budgets), for logs and metrics. */
  refused(): TransportRefusals {
    return { ...this.refusals };
  }

  /**
   * Bytes moved per peer since start (sorted by peer id), and what the shared budgets hold now:
   * frames received but not yet processed, snapshot data reassembled in memory, and bytes staged
   * on disk by streams in flight.
   */
  stats(): TransportStats {
    return {
      peers: [...this.bytes].sort(([a], [b]) => a - b).map(([peer, bytes]) => ({ peer, ...bytes })),
      groupBatches: { ...this.groupBatches },
      bufferedFrameBytes: this.frameBudget.inUse,
      bufferedSnapshotBytes: this.snapshotBudget.inUse,
      stagedBytes: this.stagingBudget.inUse,
    };
  }

  private countBytes(peerId: number, direction: keyof TransportPeerBytes, count: number): void {
    let bytes = this.bytes.get(peerId);
    if (bytes === undefined) {
      bytes = { sent: 0, received: 0 };
      this.bytes.set(peerId, bytes);
    }
    bytes[direction] += count;
  }

  /** Known peers and their queue state. */
  peers(): Map<number, PeerStatus> {
    return new Map([...this.links].map(([peerId, link]) => [peerId, link.status()]));
  }

  /**
   * Stops listening, closes every connection, discards partial inbound streams (removing their
   * staging directories) and drops queued messages. No callback runs once close() is called.
   */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    const server = this.server;
    const serverClosed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    const links = [...this.links.values()];
    this.links.clear();
    await Promise.all([
      ...links.map((link) => link.stop()),
      ...[...this.inbound].map((connection) => connection.destroy()),
    ]);
    this.inbound.clear();
    await serverClosed;
  }

  // -------------------------------------------------------------------------------------------

  private encodeForQueue(message: Message): QueuedMessage {
    if (typeof message !== 'object' || message === null) throw invalidArgumentError('send: every message must be an object');
    // The receiver checks `from` against the handshake and would drop the whole connection. A
    // MsgProp is the one exception: etcd raft forwards a proposal it got from another follower
    // on to its leader with the original `from` (see forwardsOnBehalf).
    if (message.from !== this.id && !forwardsOnBehalf(message)) {
      throw invalidArgumentError(`send: message.from is ${message.from}, not this node (${this.id})`);
    }
    const snapshotData = message.snapshot?.data;
    // Snapshot data travels as bulk chunks, never inside the (size-limited) header frame.
    const wireMessage: Message =
      snapshotData === undefined || message.snapshot === undefined
        ? message
        : { ...message, snapshot: { metadata: message.snapshot.metadata } };
    const bytes = encodeMessage(wireMessage);
    return { message, bytes, snapshotData, size: bytes.length + (snapshotData?.length ?? 0) };
  }

  private createLink(peerId: number, address: PeerAddress): PeerLink {
    checkNodeId(peerId, 'peerId');
    if (peerId === this.id) throw invalidArgumentError(`peer ${peerId} is this transport's own id`);
    const link = new PeerLink(peerId, checkAddress(address, `peers[${peerId}]`), this.linkContext());
    this.links.set(peerId, link);
    return link;
  }

  private dropLink(link: PeerLink): void {
    this.links.delete(link.peerId);
    void link.stop().then((left) => {
      for (const item of left) {
        if (isQueuedBatch(item)) for (const group of item.snapshotGroups) this.reportSnapshotStatus(link.peerId, 'failure', group);
        else if (item.message.type === MessageType.MsgSnap) this.reportSnapshotStatus(link.peerId, 'failure', item.group);
      }
    });
  }

  private linkContext(): LinkContext {
    return {
      localId: this.id,
      clusterId: this.clusterId,
      options: this.options,
      attachmentsFor: this.callbacks.attachmentsFor,
      tls: this.tls,
      unreachable: (peerId) => this.reportUnreachable(peerId),
      snapshotStatus: (peerId, status, group) => this.reportSnapshotStatus(peerId, status, group),
      batchSent: (count) => {
        this.groupBatches.framesSent++;
        this.groupBatches.messagesSent += count;
      },
      error: (error) => this.reportError(error),
      sent: (peerId, count) => this.countBytes(peerId, 'sent', count),
    };
  }

  /**
   * A TCP connection was accepted (before TLS). It is pending until its Hello is accepted: at most
   * `maxPendingConnections` such, `maxPendingConnectionsPerAddress` from one address, and each
   * must finish within `handshakeTimeoutMs`. So a stranger can hold only a few descriptors, for
   * a few seconds, and members (whose connections are one per peer) are never crowded out by
   * other addresses.
   */
  private onRawConnection(socket: Socket): void {
    const address = socket.remoteAddress ?? '?';
    const fromAddress = this.pendingByAddress.get(address) ?? 0;
    if (this.state === 'closed' || this.pendingTotal >= this.options.maxPendingConnections || fromAddress >= this.options.maxPendingConnectionsPerAddress) {
      if (this.state !== 'closed') {
        this.refusals.connectionsOverLimit++;
        this.reportError(new TransportError(TransportErrorCode.HandshakeRefused, `refused a connection from ${address}: too many connections in their handshake`));
      }
      socket.destroy();
      return;
    }
    this.pendingTotal++;
    this.pendingByAddress.set(address, fromAddress + 1);
    let pending = true;
    const release = () => {
      if (!pending) return;
      pending = false;
      clearTimeout(timer);
      this.pendingTotal--;
      const left = (this.pendingByAddress.get(address) ?? 1) - 1;
      if (left <= 0) this.pendingByAddress.delete(address);
      else this.pendingByAddress.set(address, left);
    };
    const timer = setTimeout(() => {
      if (!pending) return;
      this.refusals.handshakeTimeouts++;
      this.reportError(new TransportError(TransportErrorCode.HandshakeRefused, `closed a connection from ${address}: no handshake within ${this.options.handshakeTimeoutMs} ms`));
      release();
      socket.destroy();
    }, this.options.handshakeTimeoutMs);
    socket.once('close', release);
    this.pendingRelease.set(`${address}:${socket.remotePort}`, () => {
      release();
      // Accepted: from now on only silence is bounded (the peer redials when it has something to send).
      socket.setTimeout(this.options.idleTimeoutMs, () => {
        this.refusals.idleTimeouts++;
        socket.destroy();
      });
    });
    socket.once('close', () => this.pendingRelease.delete(`${address}:${socket.remotePort}`));
  }

  private readonly pendingRelease = new Map<string, () => void>();

  private onConnection(socket: Socket, certified: CertifiedIdentity): void {
    if (this.state === 'closed') {
      socket.destroy();
      return;
    }
    const connection = new InboundConnection(socket, this.inboundContext(), this.tls === undefined ? undefined : certified);
    this.inbound.add(connection);
    socket.once('close', () => this.inbound.delete(connection));
  }

  private inboundContext(): InboundContext {
    return {
      localId: this.id,
      clusterId: this.clusterId,
      options: this.options,
      stagingDir: this.stagingDir,
      acceptAttachments: this.acceptAttachments,
      acceptPeer: this.acceptPeer,
      snapshotBudget: this.snapshotBudget,
      stagingBudget: this.stagingBudget,
      frameBudget: this.frameBudget,
      deliver: (message, stagedDirs, snapshotFile) => this.deliver(message, stagedDirs, snapshotFile),
      acceptsGroups: this.callbacks.onGroupMessages !== undefined,
      deliverGroups: (peerId, messages, snapshotFile, batch) => this.deliverGroups(peerId, messages, snapshotFile, batch),
      received: (peerId, count) => this.countBytes(peerId, 'received', count),
      refused: (kind, error) => {
        this.refusals[kind]++;
        this.reportError(error);
      },
      accepted: (connection) => {
        this.pendingRelease.get(`${connection.socket.remoteAddress}:${connection.socket.remotePort}`)?.();
        // A peer that reconnects (e.g. after a restart) supersedes its older inbound connection,
        // which may be half-open; keeping one connection per peer keeps delivery in order.
        for (const other of this.inbound) {
          if (other !== connection && other.peerId === connection.peerId) void other.destroy();
        }
      },
      error: (error) => this.reportError(error),
    };
  }

  private async deliver(message: Message, stagedDirs: ReadonlyMap<number, string>, snapshotFile: StagedSnapshotFile | undefined): Promise<void> {
    if (this.state === 'closed') {
      // Nobody will adopt them: remove instead of leaking staged directories.
      for (const dir of stagedDirs.values()) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      return;
    }
    try {
      await (snapshotFile === undefined ? this.callbacks.onMessage(message, stagedDirs) : this.callbacks.onMessage(message, stagedDirs, snapshotFile));
    } catch (error) {
      this.reportError(asError(error));
    }
  }

  private async deliverGroups(peerId: number, messages: GroupMessage[], snapshotFile: StagedSnapshotFile | undefined, batch: boolean): Promise<void> {
    if (this.state === 'closed' || this.callbacks.onGroupMessages === undefined) return;
    if (batch) {
      this.groupBatches.framesReceived++;
      this.groupBatches.messagesReceived += messages.length;
    }
    try {
      await (snapshotFile === undefined ? this.callbacks.onGroupMessages(peerId, messages) : this.callbacks.onGroupMessages(peerId, messages, snapshotFile));
    } catch (error) {
      this.reportError(asError(error));
    }
  }

  private reportUnreachable(peerId: number): void {
    if (this.state === 'closed') return;
    try {
      this.callbacks.onUnreachable(peerId);
    } catch (error) {
      this.reportError(asError(error));
    }
  }

  private reportSnapshotStatus(peerId: number, status: SnapshotTransferStatus, group?: number): void {
    if (this.state === 'closed') return;
    try {
      if (group === undefined) this.callbacks.onSnapshotStatus?.(peerId, status);
      else this.callbacks.onGroupSnapshotStatus?.(peerId, group, status);
    } catch (error) {
      this.reportError(asError(error));
    }
  }

  private reportError(error: Error): void {
    if (this.state === 'closed') return;
    try {
      this.callbacks.onError?.(error);
    } catch {
      // A throwing error handler must not take the transport down.
    }
  }
}
