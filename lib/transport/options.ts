/** Transport options, their defaults and validation, and small helpers shared by its parts. */
import { checkSafeUnsigned, invalidArgumentError } from '../errors.js';
import { MessageType, type Message } from '../types.js';
import type { AttachmentsProvider } from './attachments.js';
import { TransportError, TransportErrorCode } from './framing.js';

export interface PeerAddress {
  host: string;
  port: number;
}

/** etcd raft's SnapshotTransferStatus, as a string. */
export type SnapshotTransferStatus = 'finish' | 'failure';

export interface BackoffOptions {
  /** First redial delay in ms (before jitter). Default 100. */
  initialMs?: number;
  /** Upper bound of the redial delay in ms. Default 5000. */
  maxMs?: number;
}

export interface TransportOptions {
  /** This node's raft id (> 0). */
  id: number;
  /** Only peers presenting the same cluster id are accepted (and only they accept us). */
  clusterId: string;
  /** Where to accept connections; port 0 picks a free port (see `address` after `start`). */
  listen: PeerAddress;
  /** Initial peers (raft id → address); change later with addPeer / removePeer. */
  peers?: ReadonlyMap<number, PeerAddress>;
  /**
   * A complete message from a peer; `stagedDirs` maps entry index → staged entry directory.
   * With `stagingDir`, a snapshot's data arrives as `snapshotFile` (message.snapshot.data is then
   * absent): read it before the returned promise settles, the transport removes the file then.
   */
  onMessage: (message: Message, stagedDirs: ReadonlyMap<number, string>, snapshotFile?: StagedSnapshotFile) => void | Promise<void>;
  /** A message to `peerId` was (or may have been) lost: call raft's reportUnreachable. */
  onUnreachable: (peerId: number) => void;
  /** Outcome of a MsgSnap sent to `peerId`: call raft's reportSnapshot. */
  onSnapshotStatus?: (peerId: number, status: SnapshotTransferStatus) => void;
  /**
   * Multi-raft (issue 19): the messages of one GroupBatch frame from `peerId`, each with its raft
   * group id, in the order sent (an empty array is the peer's node-level heartbeat); or one group
   * message that came as a stream, with its staged snapshot file (read it before the promise
   * settles). Awaited like onMessage. Without it, GroupBatch and GroupStreamBegin frames are refused.
   */
  onGroupMessages?: (peerId: number, messages: GroupMessage[], snapshotFile?: StagedSnapshotFile) => void | Promise<void>;
  /** Outcome of a group's MsgSnap sent with sendGroupMessages (see onSnapshotStatus). */
  onGroupSnapshotStatus?: (peerId: number, group: number, status: SnapshotTransferStatus) => void;
  /** Messages in one GroupBatch frame, at most (the sender splits; the receiver refuses more). Default 16,384. */
  maxBatchMessages?: number;
  /** Diagnostics: connection-level failures (codes in TransportErrorCode). Never thrown. */
  onError?: (error: Error) => void;
  /** Files to ship with a message's entries (see attachments.ts). Without it nothing is attached. */
  attachmentsFor?: AttachmentsProvider;
  /**
   * Directory for received bulk data (created if missing; same filesystem as the store):
   * snapshot data is written to a file there as it arrives, never held whole in memory, and
   * attachments (when `acceptAttachments`) go to fresh directories there. Without it, snapshot
   * data is reassembled in memory (within `maxBufferedSnapshotBytes`) and attachments are refused.
   */
  stagingDir?: string;
  /** Accept entry attachments (written under `stagingDir`, which it requires). Default false: refused. */
  acceptAttachments?: boolean;
  /** Per-peer queue bound in messages. Default 4096. */
  maxQueuedMessages?: number;
  /** Per-peer queue bound in bytes (a single message larger than this is still accepted into an empty queue). Default 128 MiB. */
  maxQueuedBytes?: number;
  /** Largest frame accepted or sent (kind byte + payload). Default 64 MiB. */
  maxFrameBytes?: number;
  /** Bulk data is sent in chunks of at most this many bytes. Default 1 MiB. */
  chunkBytes?: number;
  /** Largest snapshot data one stream may carry (written to a file under `stagingDir`, else held in memory while reassembled). Default 1 GiB. */
  maxSnapshotBytes?: number;
  /** Redial backoff. */
  backoff?: BackoffOptions;
  /** Connect + handshake must finish within this many ms. Default 5000. */
  connectTimeoutMs?: number;
  /** How long to wait for the receiver's acknowledgement of a MsgSnap stream. Default 30000. */
  snapshotAckTimeoutMs?: number;
  /** A connection whose socket buffer stays full (the peer reads nothing) this long is broken off. Default 15000. */
  writeTimeoutMs?: number;
  /**
   * Mutual TLS (see tls.ts): every connection, both ways, must present a certificate signed by
   * `ca` that names its member id and this cluster. Without it the transport accepts and dials
   * loopback addresses only, unless `insecure` is set.
   */
  tls?: TransportTlsOptions;
  /** Allow plain TCP on non-loopback addresses (no authentication at all: a trusted network only). */
  insecure?: boolean;
  /**
   * Who may complete a handshake: called with the sender id of every Hello (with TLS, the id its
   * certificate proved). The node passes its current membership. Default: every id.
   */
  acceptPeer?: (peerId: number) => boolean;
  /** An inbound connection must finish TLS and Hello within this many ms. Default 5000. */
  handshakeTimeoutMs?: number;
  /** An inbound connection that delivers nothing for this long is closed (the peer redials). Default 300000. */
  idleTimeoutMs?: number;
  /** Inbound connections still in their handshake, in all. Default 64. */
  maxPendingConnections?: number;
  /** Inbound connections still in their handshake, from one remote address. Default 8. */
  maxPendingConnectionsPerAddress?: number;
  /** Snapshot data being reassembled, over every connection at once (bytes actually received). Default 512 MiB. */
  maxBufferedSnapshotBytes?: number;
  /**
   * Attachment bytes one stream may announce (they are written to `stagingDir`). Default 1 GiB.
   * Attachments are refused altogether unless `acceptAttachments` (with a `stagingDir`).
   */
  maxAttachmentBytesPerStream?: number;
  /** Entry directories one stream may stage. Default 1024. */
  maxAttachmentsPerStream?: number;
  /**
   * Bytes written under `stagingDir` by streams still in flight (snapshot files and attachments
   * of every connection, until delivered or removed). Default 2 GiB.
   */
  maxStagedBytes?: number;
  /**
   * Received frames waiting to be processed, over every connection: above it a connection
   * with frames waiting stops reading until they are processed. Default 256 MiB.
   */
  maxBufferedFrameBytes?: number;
}

/** A message of one raft group (multi-raft, issue 19). */
export interface GroupMessage {
  /** The raft group (partition) id, > 0. */
  group: number;
  message: Message;
  /** Set on a leader's last heartbeat before its group quiesces (GroupMessageFlags.Quiesce). */
  quiesce?: boolean;
}

/** Snapshot data a stream wrote under `stagingDir` (see `onMessage`). */
export interface StagedSnapshotFile {
  /** The file: complete (`length` bytes) when delivered; removed once `onMessage` settles. */
  readonly path: string;
  readonly length: number;
  /** Reads the whole file into memory (checks its length). */
  read(): Promise<Uint8Array>;
}

/** PEM (or DER) material for mutual TLS between members. */
export interface TransportTlsOptions {
  /** This member's certificate (it must name this member, see tls.ts). */
  cert: string | Buffer;
  key: string | Buffer;
  /** The cluster's CA: the only issuer whose certificates are accepted. */
  ca: string | Buffer;
}

/** Counters of what the transport refused (for logs and metrics). */
export interface TransportRefusals {
  /** Connections closed at once: too many pending in all or from one address. */
  connectionsOverLimit: number;
  /** Connections that did not finish TLS and Hello in time. */
  handshakeTimeouts: number;
  /** Handshakes refused: wrong cluster, version, receiver, an id that is not a member, or one its certificate does not prove. */
  handshakesRefused: number;
  /** TLS handshakes that failed (no certificate, another CA, …). */
  tlsFailures: number;
  /** Connections closed for a malformed, oversize or out-of-place frame or message. */
  malformedFrames: number;
  /** Connections closed because they were idle for idleTimeoutMs. */
  idleTimeouts: number;
  /** Snapshot streams refused because the snapshot memory budget was used up. */
  snapshotBudgetExceeded: number;
  /** Streams refused because the staging disk budget (`maxStagedBytes`) was used up. */
  stagingBudgetExceeded: number;
}

/** Bytes moved by the transport since it started, per peer (frames as written to or read from the socket). */
export interface TransportPeerBytes {
  sent: number;
  received: number;
}

/** See Transport.stats(). */
export interface TransportStats {
  peers: ({ peer: number } & TransportPeerBytes)[];
  /** GroupBatch frames (and the group messages they carried) sent and received (issue 19). */
  groupBatches: { framesSent: number; messagesSent: number; framesReceived: number; messagesReceived: number };
  bufferedFrameBytes: number;
  bufferedSnapshotBytes: number;
  stagedBytes: number;
}

export interface PeerStatus {
  address: PeerAddress;
  /** True while a handshaken connection to the peer is open. */
  connected: boolean;
  queuedMessages: number;
  queuedBytes: number;
  /** Messages dropped because the queue was full (since the peer was added). */
  droppedMessages: number;
}

export const DEFAULTS = {
  maxQueuedMessages: 4096,
  maxQueuedBytes: 128 * 1024 * 1024,
  chunkBytes: 1024 * 1024,
  maxSnapshotBytes: 1024 * 1024 * 1024,
  backoffInitialMs: 100,
  backoffMaxMs: 5000,
  connectTimeoutMs: 5000,
  snapshotAckTimeoutMs: 30_000,
  writeTimeoutMs: 15_000,
  handshakeTimeoutMs: 5000,
  idleTimeoutMs: 300_000,
  maxPendingConnections: 64,
  maxPendingConnectionsPerAddress: 8,
  maxBufferedSnapshotBytes: 512 * 1024 * 1024,
  maxAttachmentBytesPerStream: 1024 * 1024 * 1024,
  maxAttachmentsPerStream: 1024,
  maxStagedBytes: 2 * 1024 * 1024 * 1024,
  maxBufferedFrameBytes: 256 * 1024 * 1024,
  maxBatchMessages: 16_384,
} as const;

/**
 * Largest frame read before the handshake is accepted: a Hello is at most 1 + 8 + 8 + 2 + 256
 * bytes, so nobody may make us buffer more than this before proving who they are.
 */
export const PRE_HANDSHAKE_MAX_FRAME_BYTES = 4096;

/** Control frames the dialer receives (HelloAccept/Refuse, SnapshotAck) are tiny. */
export const DIALER_MAX_FRAME_BYTES = 64 * 1024;

/** Payloads up to this size are copied into one buffer with their header (one write, one packet). */
export const COALESCE_BYTES = 64 * 1024;

/** Inbound back-pressure: pause reading above HIGH buffered-but-unprocessed bytes, resume below LOW. */
export const INBOUND_HIGH_WATER_BYTES = 8 * 1024 * 1024;
export const INBOUND_LOW_WATER_BYTES = 2 * 1024 * 1024;

export interface ResolvedOptions {
  maxBatchMessages: number;
  maxQueuedMessages: number;
  maxQueuedBytes: number;
  maxFrameBytes: number;
  chunkBytes: number;
  maxSnapshotBytes: number;
  backoffInitialMs: number;
  backoffMaxMs: number;
  connectTimeoutMs: number;
  snapshotAckTimeoutMs: number;
  writeTimeoutMs: number;
  handshakeTimeoutMs: number;
  idleTimeoutMs: number;
  maxPendingConnections: number;
  maxPendingConnectionsPerAddress: number;
  maxBufferedSnapshotBytes: number;
  maxAttachmentBytesPerStream: number;
  maxAttachmentsPerStream: number;
  maxStagedBytes: number;
  maxBufferedFrameBytes: number;
}

export function positiveInteger(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value <= 0) throw invalidArgumentError(`${name} must be a positive integer, got ${value}`);
  return value;
}

export function checkAddress(address: PeerAddress, name: string): PeerAddress {
  if (typeof address !== 'object' || address === null || typeof address.host !== 'string') {
    throw invalidArgumentError(`${name} must be { host: string, port: number }`);
  }
  if (!Number.isInteger(address.port) || address.port < 0 || address.port > 65535) {
    throw invalidArgumentError(`${name}.port must be an integer in 0..65535, got ${address.port}`);
  }
  return { host: address.host, port: address.port };
}

export function checkNodeId(id: number, name: string): number {
  checkSafeUnsigned(id, name);
  if (id === 0) throw invalidArgumentError(`${name} must not be 0 (raft's "no node")`);
  return id;
}

export function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

export function connectionLost(message: string, peerId: number | undefined, cause?: unknown): TransportError {
  return new TransportError(TransportErrorCode.ConnectionLost, message, {
    ...(peerId === undefined ? {} : { peerId }),
    ...(cause === undefined ? {} : { cause }),
  });
}

/**
 * True for the one message raft sends on another node's behalf: a follower forwards a MsgProp
 * it received from another follower to its leader with the original `from` (etcd raft
 * stepFollower). Every other message must come from the connection's own node.
 */
export function forwardsOnBehalf(message: Message): boolean {
  return message.type === MessageType.MsgProp;
}

/** True for an address only this machine can reach (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (bare === 'localhost' || bare === '::1' || bare === '0:0:0:0:0:0:0:1') return true;
  const v4 = bare.startsWith('::ffff:') ? bare.slice('::ffff:'.length) : bare;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

/** A non-loopback address without TLS (and without `insecure`): refused, with what to do. */
export function insecureAddressError(what: string, host: string): Error {
  return invalidArgumentError(
    `${what} address ${host} is not a loopback address, and without TLS nothing would authenticate peers: ` +
      'give the peer TLS files (--peer-cert, --peer-key, --peer-ca), or --insecure on a network you trust completely',
  );
}
