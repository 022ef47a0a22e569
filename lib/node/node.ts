/**
 * ReplicaNode: one member of a replicated key-value cluster. It runs etcd raft's Ready loop
 * (RawNode) over a ReplicaLogStore, carries messages with the Transport, applies committed
 * commands to a KvStateMachine, and serves a tiny HTTP API on loopback.
 *
 * The loop is strictly sequential: one Ready at a time, and RawNode is only touched by the
 * "pump" between Readys. Everything that happens outside (a tick, a message from a peer, a
 * client's proposal, a transport report) is queued in `inbox` and stepped into RawNode by the
 * pump before it asks for the next Ready. For each Ready, in this order:
 *   1. persist: the snapshot (then restore the state machine from it), the entries, then the
 *      hard state: the store refuses a commit above its last index, and a durable commit that
 *      points at entries that are not durable would break a restart;
 *   2. send the messages (only now: a vote or an append acknowledgement promises durability);
 *   3. apply the committed entries (a conf change goes through applyConfChange and its conf
 *      state is saved before the next entry);
 *   4. advance;
 *   5. every `snapshotEvery` applied entries: createSnapshot(applied, confState, state) and
 *      compact(applied - keepEntries), never past the snapshot just taken.
 *
 * Restart: the state machine is restored from the store's snapshot (data + index) and RawNode
 * starts with `applied` = that index, so raft hands out every committed entry after it again.
 *
 * HTTP (127.0.0.1 only):
 *   PUT /kv/<key>     body = value. Proposed here (a follower forwards it to the leader as a
 *                     MsgProp); answers 200 once the put is committed AND applied on this node,
 *                     503 {error, code, lead} when there is no leader, the leader changed
 *                     meanwhile, or it was not applied in time (not acknowledged: it may still
 *                     be applied later; retry it).
 *   DELETE /kv/<key>  likewise.
 *   GET /kv/<key>     this node's applied value (200 text/plain), 404 when absent.
 *   GET /kv           {applied, digest, size, entries: {key: value}} of this node.
 *   GET /status       {id, term, vote, lead, raftState, commit, applied, firstIndex, lastIndex, …}
 */
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer as createHttpsServer } from 'node:https';
import { rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeConfChangeEntry, isEmptySnap, ProgressType, RawNode, SnapshotStatus, type Ready } from '../raft/rawnode.js';
import type { RaftLogger } from '../raft/logger.js';
import { ReplicaLogStore } from '../replica-log-store.js';
import { ErrorCode, ReplicaLogError } from '../errors.js';
import { Transport, type PeerAddress, type StagedSnapshotFile, type TransportRefusals, type TransportStats, type TransportTlsOptions } from '../transport/index.js';
import { stagingPath } from '../wal/layout.js';
import { dropCommitPastLog, refuseInboundMessage, type MessageGuardView } from './message-guard.js';
import { RateLimitedLog } from './rate-limited-log.js';
import type { Registry } from 'prom-client';
import { nodeMetrics, type NodeCounters } from './metrics.js';
import { ConsistencyChecker, decodeConsistencyRecord, encodeConsistencyRecord, type ConsistencyAlarm } from './consistency.js';
import { EntryType, MessageType, type ConfState, type Entry, type HardState, type Message } from '../types.js';
import { KvStateMachine, encodeCommand, type KvCommand } from './state-machine.js';

export interface ReplicaNodeOptions {
  id: number;
  /** The node's store directory. */
  dir: string;
  /** Raft address of every member, this node's own included (it listens there). */
  peers: ReadonlyMap<number, PeerAddress>;
  clusterId?: string;
  /** Port of the HTTP API on 127.0.0.1 (0 picks one; omitted: no HTTP API). */
  httpPort?: number;
  /** Milliseconds per raft tick (default 100). */
  tickMs?: number;
  /** Ticks (default 10 and 1). */
  electionTick?: number;
  heartbeatTick?: number;
  /** Write groups through the store's journal (default true; false: the plain write path). */
  journal?: boolean;
  /** Take a snapshot every this many applied entries (default DEFAULT_SNAPSHOT_EVERY: 10,000, as etcd v3.6). */
  snapshotEvery?: number;
  /** Entries kept in the log behind a snapshot (default DEFAULT_KEEP_ENTRIES: 5,000, as etcd), for slow followers. */
  keepEntries?: number;
  /** How long a proposal waits to be applied here (default 5000 ms). */
  proposalTimeoutMs?: number;
  /** Narration of what the node does (default: stderr with a `[node N]` prefix). */
  log?: (line: string) => void;
  /** Raft's own log (default: silent). */
  raftLogger?: RaftLogger;
  /** Called once when the node stops on an unrecoverable error (the node is closed by then). */
  onFatal?: (error: Error) => void;
  /** Mutual TLS between members (see transport/tls.ts). Without it, loopback addresses only. */
  peerTls?: TransportTlsOptions;
  /** Plain TCP on non-loopback addresses: nothing authenticates peers (a trusted network only). */
  insecure?: boolean;
  /** raft's bound on proposed but uncommitted entry bytes (default 32 MiB; 0: no bound). */
  maxUncommittedEntriesSize?: number;
  /** Proposals waiting to be applied, at most (default 10,000); beyond it PUT answers 503. */
  maxPendingProposals?: number;
  /** Messages, ticks and reports waiting for the loop, at most (default 10,000); peers' messages beyond it are dropped. */
  maxInboxLength?: number;
  /** The leader asks every replica to compare state digests every this many applied entries (default 1000). */
  consistencyCheckEvery?: number;
  /** HTTPS for the HTTP API; with `ca`, clients must present a certificate it signed. */
  httpTls?: { cert: string | Buffer; key: string | Buffer; ca?: string | Buffer };
  /** Every HTTP request must carry `Authorization: Bearer <token>` (except nothing: /status too). */
  httpAuthToken?: string;
}

/** What the node refused from the network, by kind (also in /status). */
export interface ReplicaNodeRefusals {
  /** Messages the guard refused (local types, non-members, terms above the cap, impossible commits, bad snapshots). */
  messages: number;
  /** Messages dropped because the inbox was full. */
  inboxFull: number;
  /** Proposals refused because too many were pending. */
  proposalsOverLimit: number;
}

export interface ReplicaNodeStatus {
  id: number;
  term: number;
  vote: number;
  lead: number;
  raftState: string;
  commit: number;
  applied: number;
  firstIndex: number;
  lastIndex: number;
  snapshotIndex: number;
  keys: number;
  digest: string;
  /** What this node refused: from the network (message guard, inbox) and from its transport. */
  refused: ReplicaNodeRefusals & { transport: TransportRefusals };
  /** Bytes sent to and received from each peer, and what the transport's budgets hold now. */
  transport: TransportStats;
  /** Replica consistency: reports compared, and alarms raised (replicas that disagree). */
  consistency: { compared: number; alarms: ConsistencyAlarm[] };
}

/**
 * A proposal that was not acknowledged (no leader, dropped, leader changed, timed out, node
 * stopping). It may or may not be applied later: retry it (puts are idempotent).
 */
export class ProposalError extends Error {
  readonly code: 'ERR_NO_LEADER' | 'ERR_PROPOSAL_DROPPED' | 'ERR_LEADER_CHANGED' | 'ERR_TIMEOUT' | 'ERR_STOPPED' | 'ERR_OVERLOADED';
  readonly lead: number;
  constructor(code: ProposalError['code'], message: string, lead: number) {
    super(message);
    this.name = 'ProposalError';
    this.code = code;
    this.lead = lead;
  }
}

interface Waiter {
  resolve: (index: number) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

const MAX_BODY_BYTES = 1024 * 1024;

/**
 * etcd v3.6's defaults (--snapshot-count 10,000; 5,000 entries kept for slow followers). A
 * snapshot rewrites the whole state: every 100 entries it was the node's main cost (issue 18).
 */
export const DEFAULT_SNAPSHOT_EVERY = 10_000;
export const DEFAULT_KEEP_ENTRIES = 5_000;

/** Messages that acknowledge durable state: sent only once this Ready is persisted. */
const ACKNOWLEDGES_DURABLE_STATE: ReadonlySet<MessageType> = new Set([MessageType.MsgAppResp, MessageType.MsgVoteResp, MessageType.MsgPreVoteResp]);

export class ReplicaNode {
  readonly id: number;
  readonly store: ReplicaLogStore;
  readonly stateMachine: KvStateMachine;
  private readonly raw: RawNode;
  private readonly transport: Transport;
  private readonly options: Required<Pick<ReplicaNodeOptions, 'tickMs' | 'electionTick' | 'snapshotEvery' | 'keepEntries' | 'proposalTimeoutMs'>>;
  private readonly log: (line: string) => void;
  private readonly onFatal: ((error: Error) => void) | undefined;

  private state: 'running' | 'stopping' | 'stopped' = 'running';
  private readonly inbox: (() => void)[] = [];
  private pendingTicks = 0;
  private pumpRunning: Promise<void> | undefined;
  private tickTimer: NodeJS.Timeout | undefined;
  private httpServer: Server | undefined;
  private httpPort: number | undefined;
  private readonly waiters = new Map<string, Waiter>();
  private lead = 0;
  private raftState = 'StateFollower';
  private lastSnapshotIndex: number;
  /** The snapshot being saved beside the Ready loop (see maybeSnapshot). */
  private snapshotting: Promise<void> | undefined;
  /** Raft's latest hard state; the store's may lag by the commit only (see handleReady). */
  private latestHardState: HardState;
  private closing: Promise<void> | undefined;
  /** Ids of the current configuration (voters, learners, joint halves), kept as conf changes apply. */
  private members = new Set<number>();
  /** Configured peers: accepted while this node has no configuration yet (it is joining). */
  private readonly configuredPeers: ReadonlySet<number>;
  private readonly refusals: ReplicaNodeRefusals = { messages: 0, inboxFull: 0, proposalsOverLimit: 0 };
  /** Settles when the snapshot file being read (see receive) is in memory. */
  private snapshotRead: Promise<void> = Promise.resolve();
  private readonly refusalLog: RateLimitedLog;
  private readonly maxPendingProposals: number;
  private readonly maxInboxLength: number;
  private readonly consistency: ConsistencyChecker;
  /** For /metrics (see metrics.ts). */
  private readonly metricCounters: NodeCounters = { leaderChanges: 0, proposals: new Map(), snapshots: 0, compactions: 0 };
  private readonly metrics: Registry = nodeMetrics({
    status: () => this.status(),
    counters: () => this.metricCounters,
    storeStats: () => this.store.stats(),
  });

  private constructor(options: ReplicaNodeOptions, store: ReplicaLogStore, stateMachine: KvStateMachine, raw: RawNode, transport: Transport) {
    this.id = options.id;
    this.store = store;
    this.stateMachine = stateMachine;
    this.raw = raw;
    this.transport = transport;
    this.options = {
      tickMs: options.tickMs ?? 100,
      electionTick: options.electionTick ?? 10,
      snapshotEvery: options.snapshotEvery ?? DEFAULT_SNAPSHOT_EVERY,
      keepEntries: options.keepEntries ?? DEFAULT_KEEP_ENTRIES,
      proposalTimeoutMs: options.proposalTimeoutMs ?? 5000,
    };
    this.log = options.log ?? ((line) => process.stderr.write(`${new Date().toISOString()} [node ${options.id}] ${line}\n`));
    this.onFatal = options.onFatal;
    this.lastSnapshotIndex = store.snapshot().metadata.index;
    this.latestHardState = store.initialState().hardState;
    this.configuredPeers = new Set([...options.peers.keys()].filter((peerId) => peerId !== options.id));
    this.setMembers(store.initialState().confState);
    this.refusalLog = new RateLimitedLog(this.log, 10_000);
    this.maxPendingProposals = options.maxPendingProposals ?? 10_000;
    this.maxInboxLength = options.maxInboxLength ?? 10_000;
    this.consistency = new ConsistencyChecker(options.id, options.consistencyCheckEvery ?? 1000);
    // No check before the first `every` entries after a start (the log before it is settled).
    this.consistency.lastRequestedAt = store.initialState().hardState.commit;
  }

  private setMembers(confState: ConfState): void {
    this.members = new Set([...confState.voters, ...confState.learners, ...confState.votersOutgoing, ...confState.learnersNext]);
  }

  /** Who may connect and speak: the configuration's members, or the configured peers while joining. */
  private isMember(peerId: number): boolean {
    if (peerId === this.id) return false;
    return this.members.size === 0 ? this.configuredPeers.has(peerId) : this.members.has(peerId);
  }

  /** Opens the store, restores the state, starts raft, the transport, the HTTP API and the ticks. */
  static async start(options: ReplicaNodeOptions): Promise<ReplicaNode> {
    const own = options.peers.get(options.id);
    if (own === undefined) throw new Error(`peers must include this node's own address (id ${options.id})`);
    // The store first: opening it empties staging/, where the transport stages received files.
    // Journal mode (lib/wal/journal.ts): each Ready's entries and hard state are durable with one
    // record; the entry directories follow behind (issue 18: the node's main storage cost).
    const store = await ReplicaLogStore.open({ dir: options.dir, journal: options.journal ?? true });
    let transport: Transport | undefined;
    try {
      if (store.status === 'needs-backfill') {
        // No hard state yet: a pre-Raft log (migrated or not) that no seed bootstrap took over.
        throw new Error(`${store.dir} holds a log without a hard state (a pre-Raft log): migrate it and bootstrap it as a seed first`);
      }
      const snapshot = store.snapshot();
      const hardState = store.initialState().hardState;
      if (snapshot.metadata.index > hardState.commit) {
        // A crash between applySnapshot and the hard state of the same Ready: a received
        // snapshot only ever holds committed entries, so its index is a valid commit (and the
        // log ends there). Without this, raft refuses applied > commit. A term raised to the
        // snapshot's carries no vote: no vote in that term was persisted, so none was sent.
        const term = Math.max(hardState.term, snapshot.metadata.term);
        await store.setHardState({ term, vote: term === hardState.term ? hardState.vote : 0, commit: snapshot.metadata.index });
      }
      let stateMachine: KvStateMachine;
      try {
        stateMachine = KvStateMachine.fromSnapshot(snapshot.data, snapshot.metadata.index);
      } catch (error) {
        // Snapshots are checked before they are saved, so this is damage on disk (or a snapshot
        // saved by an older version). The log cannot rebuild what the snapshot replaced.
        throw new ReplicaLogError(
          ErrorCode.Corrupt,
          `${store.dir}: the stored snapshot at index ${snapshot.metadata.index} cannot be restored (${(error as Error).message}). ` +
            `This replica must be rebuilt from its peers: run "replicalog discard-snapshot ${store.dir}" (it moves the directory aside and ` +
            `creates a store with the configuration, term and vote only), then start the node again: it receives a snapshot from the leader.`,
          { path: store.dir, index: snapshot.metadata.index, cause: error },
        );
      }
      const raw = new RawNode({
        id: options.id,
        storage: store,
        electionTick: options.electionTick ?? 10,
        heartbeatTick: options.heartbeatTick ?? 1,
        // The state machine holds everything up to the snapshot; raft re-delivers the rest.
        applied: stateMachine.applied,
        preVote: true,
        checkQuorum: true,
        maxSizePerMsg: 1024 * 1024,
        maxCommittedSizePerReady: 4 * 1024 * 1024,
        maxInflightMsgs: 256,
        // A flood of proposals is refused by raft itself once this many bytes wait for a commit.
        maxUncommittedEntriesSize: options.maxUncommittedEntriesSize ?? 32 * 1024 * 1024,
        ...(options.raftLogger === undefined ? {} : { logger: options.raftLogger }),
      });
      let node: ReplicaNode | undefined;
      const peers = new Map([...options.peers].filter(([peerId]) => peerId !== options.id));
      transport = new Transport({
        id: options.id,
        clusterId: options.clusterId ?? 'replicalog',
        listen: own,
        peers,
        // Received snapshot data is written to a file under staging/ as it arrives (never held
        // whole by the transport). Attachments stay refused: this node never uses them.
        stagingDir: stagingPath(store.dir),
        acceptAttachments: false,
        ...(options.peerTls === undefined ? {} : { tls: options.peerTls }),
        ...(options.insecure === true ? { insecure: true } : {}),
        acceptPeer: (peerId) => node?.isMember(peerId) ?? false,
        onError: (error) => node?.refusalLog.note((error as { code?: string }).code ?? 'transport', `transport: ${error.message}`),
        onMessage: (message, stagedDirs, snapshotFile) => node?.receive(message, stagedDirs, snapshotFile),
        onUnreachable: (peerId) => node?.enqueue(() => node?.raw.reportUnreachable(peerId)),
        onSnapshotStatus: (peerId, status) => {
          node?.log(`snapshot to node ${peerId}: ${status}`);
          node?.enqueue(() => node?.raw.reportSnapshot(peerId, status === 'finish' ? SnapshotStatus.SnapshotFinish : SnapshotStatus.SnapshotFailure));
        },
      });
      node = new ReplicaNode(options, store, stateMachine, raw, transport);
      await transport.start();
      if (options.httpPort !== undefined) await node.startHttp(options.httpPort, options.httpTls, options.httpAuthToken);
      node.log(
        `started: log ${store.firstIndex()}..${store.lastIndex()}, snapshot ${snapshot.metadata.index}, commit ${store.initialState().hardState.commit}, ` +
          `voters [${store.initialState().confState.voters.join(',')}], raft on ${own.host}:${own.port} (${options.peerTls !== undefined ? 'mutual TLS' : options.insecure === true ? 'plain TCP, INSECURE' : 'plain TCP, loopback only'})` +
          (node.httpPort === undefined ? '' : `, http on 127.0.0.1:${node.httpPort}`),
      );
      node.tickTimer = setInterval(() => {
        node!.pendingTicks++;
        node!.kick();
      }, node.options.tickMs);
      node.kick();
      return node;
    } catch (error) {
      await transport?.close().catch(() => {});
      await store.close().catch(() => {});
      throw error;
    }
  }

  /** The HTTP API's port, when it runs. */
  get httpAddress(): PeerAddress | undefined {
    return this.httpPort === undefined ? undefined : { host: '127.0.0.1', port: this.httpPort };
  }

  get leader(): number {
    return this.lead;
  }

  get isLeader(): boolean {
    return this.raftState === 'StateLeader';
  }

  status(): ReplicaNodeStatus {
    const basic = this.raw.basicStatus();
    return {
      id: this.id,
      term: basic.term,
      vote: basic.vote,
      lead: basic.lead,
      raftState: basic.raftState,
      commit: basic.commit,
      applied: this.stateMachine.applied,
      firstIndex: this.state === 'stopped' ? 0 : this.store.firstIndex(),
      lastIndex: this.state === 'stopped' ? 0 : this.store.lastIndex(),
      snapshotIndex: this.lastSnapshotIndex,
      keys: this.stateMachine.size,
      digest: this.stateMachine.digest(),
      refused: { ...this.refusals, transport: this.transport.refused() },
      transport: this.transport.stats(),
      consistency: { compared: this.consistency.compared, alarms: [...this.consistency.alarms] },
    };
  }

  get(key: string): string | undefined {
    return this.stateMachine.get(key);
  }

  /** Resolves with the entry's index once the put is committed and applied on this node. */
  put(key: string, value: string, requestId: string = randomUUID()): Promise<number> {
    return this.propose({ op: 'put', key, value, requestId });
  }

  delete(key: string, requestId: string = randomUUID()): Promise<number> {
    return this.propose({ op: 'delete', key, requestId });
  }

  /** Proposes `command` (a follower forwards it to the leader) and waits until it is applied here. */
  propose(command: KvCommand): Promise<number> {
    if (this.state !== 'running') return Promise.reject(new ProposalError('ERR_STOPPED', 'the node is stopping', this.lead));
    if (this.lead === 0) return Promise.reject(new ProposalError('ERR_NO_LEADER', 'no leader known', 0));
    if (this.waiters.has(command.requestId)) return Promise.reject(new Error(`request ${command.requestId} is already pending`));
    if (this.waiters.size >= this.maxPendingProposals) {
      this.refusals.proposalsOverLimit++;
      return Promise.reject(new ProposalError('ERR_OVERLOADED', `${this.waiters.size} proposals are already pending: retry later`, this.lead));
    }
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.settle(command.requestId, new ProposalError('ERR_TIMEOUT', `not applied within ${this.options.proposalTimeoutMs} ms`, this.lead));
      }, this.options.proposalTimeoutMs);
      this.waiters.set(command.requestId, { resolve, reject, timer });
      this.enqueue(() => {
        try {
          this.raw.propose(encodeCommand(command));
        } catch (error) {
          this.settle(command.requestId, new ProposalError('ERR_PROPOSAL_DROPPED', (error as Error).message, this.lead));
        }
      });
    });
  }

  /**
   * Stops: no more ticks or requests, lets the Ready in progress finish, then closes the
   * transport (after the last send) and the store (after the last write).
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    if (this.state === 'running') this.state = 'stopping';
    clearInterval(this.tickTimer);
    const server = this.httpServer;
    if (server !== undefined) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    await this.pumpRunning?.catch(() => {});
    await this.snapshotting;
    await this.saveDeferredCommit().catch(() => {});
    for (const requestId of [...this.waiters.keys()]) this.settle(requestId, new ProposalError('ERR_STOPPED', 'the node stopped', this.lead));
    await this.transport.close().catch(() => {});
    await this.store.close().catch(() => {});
    this.state = 'stopped';
    this.log('stopped');
  }

  // ---------------------------------------------------------------- the loop

  /** Queued for after this Ready's advance (the inbox is only drained between Readys). */
  private enqueueAfterReady(action: () => void): void {
    if (this.state === 'running') this.inbox.push(action);
  }

  private enqueue(action: () => void): void {
    if (this.state !== 'running') return;
    this.inbox.push(action);
    this.kick();
  }

  /**
   * A message from a peer: staged attachment directories are not used (no attachments are sent).
   * It is checked by the message guard when the loop steps it (not on arrival: the guard compares
   * with the log as raft has it then), and dropped when the inbox is full (raft retransmits).
   */
  private async receive(message: Message, stagedDirs: ReadonlyMap<number, string>, snapshotFile?: StagedSnapshotFile): Promise<void> {
    for (const dir of stagedDirs.values()) void rm(dir, { recursive: true, force: true });
    if (this.inbox.length >= this.maxInboxLength) {
      this.refusals.inboxFull++;
      this.refusalLog.note('inbox-full', `dropped a message from node ${message.from}: the inbox holds ${this.inbox.length} items`);
      return;
    }
    if (snapshotFile !== undefined && message.snapshot !== undefined) {
      // The transport staged the data in a file and removes it when this returns: read it back
      // once, here (raft and the store need it in memory). One snapshot at a time, so two peers'
      // snapshots never sit in memory together on their way in.
      const previous = this.snapshotRead;
      let done!: () => void;
      this.snapshotRead = new Promise<void>((resolve) => (done = resolve));
      try {
        await previous;
        message.snapshot.data = await snapshotFile.read();
      } catch (error) {
        this.log(`dropped a snapshot from node ${message.from}: ${(error as Error).message}`);
        return;
      } finally {
        done();
      }
    }
    this.enqueue(() => {
      const view = this.guardView();
      const adjusted = dropCommitPastLog(message, view);
      if (adjusted.refusal !== undefined) {
        this.refusals.messages++;
        this.refusalLog.note(`guard:${message.from}:commit`, `node ${message.from} (term ${message.term}): ${adjusted.refusal}`);
        message = adjusted.message;
      }
      const refusal = refuseInboundMessage(message, view);
      if (refusal !== undefined) {
        this.refusals.messages++;
        this.refusalLog.note(`guard:${message.from}:${message.type}`, `refused ${MessageType[message.type] ?? message.type} from node ${message.from} (term ${message.term}): ${refusal}`);
        return;
      }
      try {
        this.raw.step(message);
      } catch (error) {
        // e.g. a response from a peer that is not in the configuration: drop it.
        this.log(`dropped a message from node ${message.from}: ${(error as Error).message}`);
      }
      this.handOverIfFollowerLostLog(message);
    });
  }

  /** When this node last handed leadership over for a follower that lost its log (ms). */
  private lostLogHandOverAt = 0;

  /**
   * A follower that rejects an append with its log ending below what it acknowledged before has
   * lost its log (rebuilt by `replicalog discard-snapshot`, or a disk that lost writes). raft
   * never lowers what it believes a follower holds, so this leader would probe it at the old
   * index forever; a new leader starts every follower from scratch and sends it a snapshot. So
   * leadership goes to the most up-to-date other voter, at most once per election timeout.
   */
  private handOverIfFollowerLostLog(message: Message): void {
    if (!this.isLeader || message.type !== MessageType.MsgAppResp || !message.reject) return;
    let acknowledged = 0;
    let transferee = 0;
    let transfereeMatch = -1;
    this.raw.withProgress((id, type, progress) => {
      if (id === message.from) acknowledged = progress.match;
      else if (id !== this.id && type === ProgressType.ProgressTypePeer && progress.match > transfereeMatch) {
        transferee = id;
        transfereeMatch = progress.match;
      }
    });
    if (message.rejectHint >= acknowledged || transferee === 0) return;
    const now = Date.now();
    if (now - this.lostLogHandOverAt < 2 * this.options.electionTick * this.options.tickMs) return;
    this.lostLogHandOverAt = now;
    this.log(
      `node ${message.from} lost its log (it ends at ${message.rejectHint}, below the ${acknowledged} it acknowledged): ` +
        `handing leadership to node ${transferee}, a new leader catches it up by snapshot`,
    );
    this.raw.transferLeader(transferee);
  }

  /** This node as the message guard sees it, at the moment a message is stepped. */
  private guardView(): MessageGuardView {
    return {
      localId: this.id,
      isMember: (peerId) => this.isMember(peerId),
      // Readys are persisted before the inbox is drained, so the store's log is raft's log here.
      lastIndex: this.store.lastIndex(),
      leader: this.raw.basicStatus().lead,
      checkSnapshotData: (data, index) => {
        try {
          KvStateMachine.checkSnapshot(data, index);
          return undefined;
        } catch (error) {
          return `the snapshot at index ${index} cannot be restored: ${(error as Error).message}`;
        }
      },
    };
  }

  private hasWork(): boolean {
    return this.inbox.length > 0 || this.pendingTicks > 0 || this.raw.hasReady();
  }

  /** Starts the pump unless it runs; it loops until there is nothing left to do. */
  private kick(): void {
    if (this.pumpRunning !== undefined || this.state !== 'running') return;
    this.pumpRunning = this.pump().then(
      () => {
        this.pumpRunning = undefined;
        // Work queued between the pump's last check and now.
        if (this.state === 'running' && this.hasWork()) this.kick();
      },
      (error: unknown) => {
        this.pumpRunning = undefined;
        this.fail(error instanceof Error ? error : new Error(String(error)));
      },
    );
  }

  private async pump(): Promise<void> {
    while (this.state === 'running') {
      this.drainInbox();
      if (!this.raw.hasReady()) return;
      const ready = this.raw.ready();
      await this.handleReady(ready);
      // Everything in the Ready is persisted and applied: raft may now forget it.
      this.raw.advance(ready);
      this.maybeRequestConsistencyCheck();
      this.maybeSnapshot();
    }
  }

  /** Ticks, messages, proposals and reports: synchronous RawNode calls, between Readys only. */
  private drainInbox(): void {
    // A node whose log is empty joined without data: it must not campaign (see bootstrap.ts),
    // so it does not tick until a leader gave it a snapshot or entries.
    const mayTick = this.store.lastIndex() > 0;
    // After a long stall (a slow fsync) do not fire a burst of ticks that would start an
    // election at once: at most half an election timeout.
    const ticks = Math.min(this.pendingTicks, Math.max(1, Math.floor(this.options.electionTick / 2)));
    this.pendingTicks = 0;
    if (mayTick) for (let tick = 0; tick < ticks; tick++) this.raw.tick();
    while (this.inbox.length > 0) this.inbox.shift()!();
  }

  private async handleReady(ready: Ready): Promise<void> {
    if (ready.softState !== undefined) {
      if (ready.softState.lead !== this.lead || ready.softState.raftState !== this.raftState) {
        this.log(`${ready.softState.raftState.replace('State', '').toLowerCase()} (leader ${ready.softState.lead || 'unknown'}, term ${this.raw.basicStatus().term})`);
      }
      const lostLeader = this.lead !== 0 && ready.softState.lead !== this.lead;
      if (ready.softState.lead !== this.lead && ready.softState.lead !== 0) this.metricCounters.leaderChanges++;
      this.lead = ready.softState.lead;
      this.raftState = ready.softState.raftState;
      if (lostLeader) {
        // A proposal forwarded to a leader that is gone is most likely lost: answer now (503)
        // rather than at the timeout, so clients retry with the new leader. It may still be
        // committed by the next leader; a retried put is then applied twice, harmlessly.
        for (const requestId of [...this.waiters.keys()]) {
          this.settle(requestId, new ProposalError('ERR_LEADER_CHANGED', 'the leader changed while the proposal was pending: retry', this.lead));
        }
      }
    }
    // 1. Persist. The snapshot first: it resets the log, the entries (if any) follow it.
    if (ready.snapshot !== undefined && !isEmptySnap(ready.snapshot)) {
      const snapshot = ready.snapshot;
      await this.store.applySnapshot(snapshot);
      this.stateMachine.restore(snapshot.data, snapshot.metadata.index);
      this.setMembers(snapshot.metadata.confState);
      this.lastSnapshotIndex = snapshot.metadata.index;
      this.log(`installed a snapshot at index ${snapshot.metadata.index} (term ${snapshot.metadata.term}, ${this.stateMachine.size} keys)`);
    }
    // A leader sends its appends, heartbeats and snapshots BEFORE its own log is durable, so the
    // followers write in parallel with it (Raft thesis 10.2.1; etcd's server does the same). Safe
    // because raft counts the leader's own copy toward a commit only on advance(), after the
    // persist below. Responses that acknowledge durable state (votes, append responses) always
    // wait for the persist.
    let afterPersist = ready.messages;
    if (this.raftState === 'StateLeader' && ready.messages.length > 0) {
      const early = ready.messages.filter((message) => !ACKNOWLEDGES_DURABLE_STATE.has(message.type));
      afterPersist = ready.messages.filter((message) => ACKNOWLEDGES_DURABLE_STATE.has(message.type));
      if (early.length > 0) this.send(early);
    }
    // Entries and hard state called in one tick: the store checks them in this order (a commit
    // may cover the new entries) and flushes them as ONE write group, entries first.
    // A hard state that only moves the commit is not made durable on its own (etcd's MustSync):
    // the commit is volatile in Raft and relearnt from the leader after a restart. It rides with
    // the next write that must be durable (entries, a new term or vote, a snapshot), or is saved
    // when the node snapshots or stops. Only term and vote must never be lost.
    if (ready.hardState !== undefined) this.latestHardState = ready.hardState;
    const latest = this.latestHardState;
    const saved = this.store.initialState().hardState;
    const changed = latest.term !== saved.term || latest.vote !== saved.vote || latest.commit !== saved.commit;
    const mustSync = ready.entries.length > 0 || latest.term !== saved.term || latest.vote !== saved.vote;
    const persisted: Promise<void>[] = [];
    if (ready.entries.length > 0) persisted.push(this.store.append(ready.entries));
    if (changed && mustSync) persisted.push(this.store.setHardState(latest));
    await Promise.all(persisted);
    // 2. Send, now that what the messages promise is durable.
    if (afterPersist.length > 0) this.send(afterPersist);
    // 3. Apply.
    for (const entry of ready.committedEntries) await this.applyEntry(entry);
  }

  /**
   * Hands messages to the transport. If it refuses the batch (it validates every message
   * first), they are lost as if the network dropped them: raft retransmits, and is told so,
   * including the snapshot failure without which a follower would stay paused forever.
   */
  private send(messages: Message[]): void {
    try {
      this.transport.send(messages);
    } catch (error) {
      this.log(`the transport refused ${messages.length} messages: ${(error as Error).message}`);
      for (const message of messages) {
        this.enqueueAfterReady(() => {
          this.raw.reportUnreachable(message.to);
          if (message.type === MessageType.MsgSnap) this.raw.reportSnapshot(message.to, SnapshotStatus.SnapshotFailure);
        });
      }
    }
  }

  private async applyEntry(entry: Entry): Promise<void> {
    if (entry.index <= this.stateMachine.applied) return; // already in the restored state
    if (entry.type === EntryType.ConfChange || entry.type === EntryType.ConfChangeV2) {
      const change = decodeConfChangeEntry(entry);
      if (change !== undefined) {
        const confState = this.raw.applyConfChange(change);
        // Saved before the next entry is applied: initialState() must match the applied index.
        await this.store.setConfState(confState);
        this.setMembers(confState);
        this.log(`configuration at index ${entry.index}: voters [${confState.voters.join(',')}]`);
      }
    }
    const result = this.stateMachine.apply(entry);
    if (result.command !== undefined) this.settle(result.command.requestId, undefined, entry.index);
    else if (entry.type === EntryType.Normal) this.applyConsistencyRecord(entry);
  }

  /** A consistency check entry (see consistency.ts): record and report, or compare. */
  private applyConsistencyRecord(entry: Entry): void {
    const record = decodeConsistencyRecord(entry.data);
    if (record === undefined) return;
    if (record.consistency === 'request') {
      const report = this.consistency.onRequest(entry.index, this.stateMachine.digest());
      // After this Ready (raft is not re-entered while it is being handled); a lost report only
      // means one comparison fewer.
      this.enqueueAfterReady(() => this.proposeQuietly(encodeConsistencyRecord(report)));
      return;
    }
    const alarm = this.consistency.onReport(record);
    if (alarm !== undefined) {
      this.log(
        `ALARM: replicas disagree at index ${alarm.index}: this node's state digest is ${alarm.ours}, node ${alarm.node}'s is ${alarm.theirs}; ` +
          `compare their logs with "replicalog verify ${this.store.dir} --against <node ${alarm.node}'s directory>" and rebuild the damaged replica`,
      );
    }
  }

  /** A proposal nobody waits for (a check): dropped silently when raft refuses it. */
  private proposeQuietly(data: Uint8Array): void {
    try {
      this.raw.propose(data);
    } catch {
      // no leader, or a full uncommitted budget: the next check will do
    }
  }

  /** The leader asks for a consistency check every `consistencyCheckEvery` applied entries. */
  private maybeRequestConsistencyCheck(): void {
    if (!this.isLeader || !this.consistency.due(this.stateMachine.applied)) return;
    this.consistency.lastRequestedAt = this.stateMachine.applied;
    this.enqueueAfterReady(() => this.proposeQuietly(encodeConsistencyRecord({ consistency: 'request', requestId: randomUUID() })));
  }

  private settle(requestId: string, error: Error | undefined, index = 0): void {
    const waiter = this.waiters.get(requestId);
    if (waiter === undefined) return;
    const result = error === undefined ? 'ok' : ((error as { code?: string }).code ?? 'error');
    this.metricCounters.proposals.set(result, (this.metricCounters.proposals.get(result) ?? 0) + 1);
    this.waiters.delete(requestId);
    clearTimeout(waiter.timer);
    if (error === undefined) waiter.resolve(index);
    else waiter.reject(error);
  }

  /** Saves a commit that only raft's latest hard state holds yet (see handleReady). */
  private async saveDeferredCommit(): Promise<void> {
    const saved = this.store.initialState().hardState;
    if (this.latestHardState.commit > saved.commit && this.latestHardState.term === saved.term && this.latestHardState.vote === saved.vote) {
      await this.store.setHardState(this.latestHardState);
    }
  }

  /** Every snapshotEvery applied entries: snapshot the state, then compact behind it. */
  /**
   * Starts a snapshot when one is due, unless one is being saved. The state is serialised here,
   * synchronously, as of `applied`; saving it (the data file, then the metadata and the
   * compaction) runs beside the Ready loop, which goes on meanwhile: the store writes the data
   * file beside its queue, so appends do not wait for it (issue 18: no stall every N entries).
   */
  private maybeSnapshot(): void {
    if (this.snapshotting !== undefined) return;
    const applied = this.stateMachine.applied;
    if (applied - this.lastSnapshotIndex < this.options.snapshotEvery) return;
    // The saved conf state is the one as of `applied` (conf changes are saved when applied).
    const confState = this.store.initialState().confState;
    const data = this.stateMachine.snapshot();
    const keys = this.stateMachine.size;
    this.snapshotting = this.saveSnapshot(applied, confState, data, keys).then(
      () => {
        this.snapshotting = undefined;
      },
      (error: unknown) => {
        this.snapshotting = undefined;
        this.fail(error instanceof Error ? error : new Error(String(error)));
      },
    );
  }

  private async saveSnapshot(applied: number, confState: ConfState, data: Uint8Array, keys: number): Promise<void> {
    // The commit must cover the snapshot in the store before it does (a restart needs commit >= applied).
    await this.saveDeferredCommit();
    await this.store.createSnapshot(applied, confState, data);
    this.lastSnapshotIndex = applied;
    this.metricCounters.snapshots++;
    const compactTo = applied - this.options.keepEntries;
    // Never past the snapshot just taken (compactTo < applied), and only forward.
    if (compactTo > this.store.firstIndex() - 1) {
      await this.store.compact(compactTo);
      this.metricCounters.compactions++;
    }
    this.log(`snapshot at index ${applied} (${keys} keys); log now ${this.store.firstIndex()}..${this.store.lastIndex()}`);
  }

  private fail(error: Error): void {
    if (this.state !== 'running') return;
    this.log(`FATAL: ${error.stack ?? error.message}`);
    void this.close().then(() => this.onFatal?.(error));
  }

  // ---------------------------------------------------------------- HTTP

  private async startHttp(port: number, tls: ReplicaNodeOptions['httpTls'], authToken: string | undefined): Promise<void> {
    this.httpAuthToken = authToken === undefined ? undefined : Buffer.from(authToken, 'utf8');
    const handler = (request: IncomingMessage, response: ServerResponse): void => {
      this.serveHttp(request, response).catch((error: unknown) => {
        if (error instanceof BodyTooLargeError) {
          if (!response.headersSent) this.reply(response, 413, { error: error.message, code: 'ERR_BODY_TOO_LARGE' }, { connection: 'close' });
          // Let the client read the answer: discard what it still sends, and cut it off soon
          // after (it may never stop sending).
          request.resume();
          response.once('finish', () => setTimeout(() => request.destroy(), 1000).unref());
        } else if (!response.headersSent) this.reply(response, 500, { error: (error as Error).message });
        else response.destroy();
      });
    };
    const server =
      tls === undefined
        ? createServer(handler)
        : createHttpsServer({ cert: tls.cert, key: tls.key, ...(tls.ca === undefined ? {} : { ca: tls.ca, requestCert: true, rejectUnauthorized: true }) }, handler);
    // Bounded: slow or idle clients cannot hold sockets for long, and there are only so many.
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    server.keepAliveTimeout = 5_000;
    server.maxConnections = 1024;
    this.httpServer = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.httpPort = (server.address() as AddressInfo).port;
  }

  private httpAuthToken: Buffer | undefined;

  /**
   * GET /kv: {applied, digest, size, entries: {key: value, …}} written pair by pair, waiting for
   * the socket to drain, so a large state never becomes one string. The pairs are a copy taken
   * at the start (the state moves on while the response is written).
   */
  private async streamState(response: ServerResponse): Promise<void> {
    const pairs = this.stateMachine.entries();
    response.writeHead(200, { 'content-type': 'application/json' });
    const write = async (text: string): Promise<void> => {
      if (!response.write(text)) await new Promise<void>((resolve) => response.once('drain', resolve));
    };
    await write(`{"applied":${this.stateMachine.applied},"digest":${JSON.stringify(this.stateMachine.digest())},"size":${pairs.length},"entries":{`);
    for (let position = 0; position < pairs.length; position++) {
      if (response.destroyed) return;
      const [key, value] = pairs[position]!;
      await write(`${position === 0 ? '' : ','}${JSON.stringify(key)}:${JSON.stringify(value)}`);
    }
    response.end('}}\n');
  }

  private reply(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body) + '\n';
    response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
    response.end(text);
  }

  /**
   * The Host header must name this server's own address: a page on another site whose name
   * resolves to 127.0.0.1 (DNS rebinding) sends its own name and is refused.
   */
  private hostAllowed(host: string | undefined): boolean {
    if (host === undefined || this.httpPort === undefined) return false;
    const port = String(this.httpPort);
    return host === `127.0.0.1:${port}` || host === `localhost:${port}` || host === `[::1]:${port}`;
  }

  private authorized(header: string | undefined): boolean {
    const expected = this.httpAuthToken;
    if (expected === undefined) return true;
    if (header === undefined || !header.startsWith('Bearer ')) return false;
    const given = Buffer.from(header.slice('Bearer '.length), 'utf8');
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  private async serveHttp(request: IncomingMessage, response: ServerResponse): Promise<void> {
    if (!this.hostAllowed(request.headers.host)) {
      return this.reply(response, 421, { error: 'the Host header does not name this server (127.0.0.1, localhost or [::1] with its port)', code: 'ERR_HOST' });
    }
    if (!this.authorized(request.headers.authorization)) {
      return this.reply(response, 401, { error: 'a valid bearer token is required', code: 'ERR_UNAUTHORIZED' }, { 'www-authenticate': 'Bearer' });
    }
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    const method = request.method ?? 'GET';
    if (url.pathname === '/status' && method === 'GET') return this.reply(response, 200, this.status());
    if (url.pathname === '/metrics' && method === 'GET') {
      const text = await this.metrics.metrics();
      response.writeHead(200, { 'content-type': this.metrics.contentType, 'content-length': Buffer.byteLength(text) });
      response.end(text);
      return;
    }
    if (url.pathname === '/kv' && method === 'GET') return this.streamState(response);
    if (!url.pathname.startsWith('/kv/') || url.pathname.length === 4) return this.reply(response, 404, { error: 'not found' });
    const key = decodeURIComponent(url.pathname.slice(4));
    if (method === 'GET') {
      const value = this.stateMachine.get(key);
      if (value === undefined) return this.reply(response, 404, { error: 'no such key', key });
      response.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      response.end(value);
      return;
    }
    if (method !== 'PUT' && method !== 'DELETE') return this.reply(response, 405, { error: `method ${method} not allowed` });
    const body = method === 'PUT' ? await readBody(request) : '';
    const header = request.headers['x-request-id'];
    const requestId = typeof header === 'string' && header !== '' ? header : randomUUID();
    try {
      const index = method === 'PUT' ? await this.put(key, body, requestId) : await this.delete(key, requestId);
      this.reply(response, 200, { ok: true, key, index, node: this.id, lead: this.lead });
    } catch (error) {
      if (error instanceof ProposalError) {
        this.reply(response, 503, { error: error.message, code: error.code, lead: error.lead, node: this.id }, { 'retry-after': '1' });
      } else {
        throw error;
      }
    }
  }
}

class BodyTooLargeError extends Error {}

async function readBody(request: IncomingMessage): Promise<string> {
  const announced = Number(request.headers['content-length'] ?? 0);
  if (announced > MAX_BODY_BYTES) throw new BodyTooLargeError(`request body of ${announced} bytes is above the limit of ${MAX_BODY_BYTES}`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > MAX_BODY_BYTES) throw new BodyTooLargeError(`request body above the limit of ${MAX_BODY_BYTES} bytes`);
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
