/**
 * ReplicaNode: one member of a replicated key-value cluster. Since issue 19 it hosts many raft
 * groups (multi-raft, as CockroachDB and TiKV do): one RaftGroup per partition (group.ts: its
 * RawNode, ReplicaLogStore, KvStateMachine and Ready loop), over what the process shares:
 *
 *   - the storage: with `partitions` (or an opened `storage`), `dir` is a ReplicaLogStorage and
 *     each group's store is one of its partitions (one lock, one KV, one write pipeline: the
 *     hard states of every group written in one turn go in one synced batch). Without it, `dir`
 *     is a single ReplicaLogStore and the node hosts partition 1 alone (the layout before 19);
 *   - the transport: one connection per peer. Every message a group hands over during one
 *     event-loop turn is queued in `outbox`, and the turn ends with ONE GroupBatch frame per peer
 *     (each message tagged with its group id);
 *   - the tick timer and liveness: every tick each peer gets one frame (the coalesced heartbeats
 *     of the groups still awake, or an empty batch: the node-level heartbeat), so liveness costs
 *     O(peers), not O(groups). Only awake groups tick; an idle group quiesces (group.ts). When a
 *     peer's frames stop for two election timeouts, the groups that quiesced under it as leader
 *     wake up, tick and may elect a new leader;
 *   - the HTTP API on loopback.
 *
 * HTTP (127.0.0.1 only); `/p/<partition>/…` addresses one partition, the routes without it
 * address partition 1:
 *   PUT /kv/<key>     body = value. Proposed here (a follower forwards it to the leader as a
 *                     MsgProp); answers 200 once the put is committed AND applied on this node,
 *                     503 {error, code, lead} when there is no leader, the leader changed
 *                     meanwhile, or it was not applied in time (not acknowledged: it may still
 *                     be applied later; retry it).
 *   DELETE /kv/<key>  likewise.
 *   GET /kv/<key>     this node's applied value (200 text/plain), 404 when absent.
 *   GET /kv           {applied, digest, size, entries: {key: value}} of this node.
 *   GET /status       partition 1's {term, lead, raftState, commit, applied, …} and the node's
 *                     groups {count, leading, quiesced, awake}, peers' liveness and transport.
 *   GET /p/<partition>/status   one partition's raft status.
 *   An unknown partition answers 404 {code: 'ERR_NO_SUCH_PARTITION'}.
 */
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer as createHttpsServer } from 'node:https';
import { rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { RaftLogger } from '../raft/logger.js';
import { ReplicaLogStore } from '../replica-log-store.js';
import { ReplicaLogStorage } from '../storage.js';
import { SnapshotStatus } from '../raft/rawnode.js';
import { Transport, type GroupMessage, type PeerAddress, type StagedSnapshotFile, type TransportRefusals, type TransportStats, type TransportTlsOptions } from '../transport/index.js';
import { stagingPath } from '../wal/layout.js';
import { RateLimitedLog } from './rate-limited-log.js';
import type { Registry } from 'prom-client';
import { nodeMetrics, type NodeCounters } from './metrics.js';
import type { ConsistencyAlarm } from './consistency.js';
import { MessageType, type Message } from '../types.js';
import type { KvCommand, KvStateMachine } from './state-machine.js';
import { ProposalError, RaftGroup, type GroupHost, type GroupSettings, type ReplicaNodeRefusals } from './group.js';

export { ProposalError, type ReplicaNodeRefusals } from './group.js';

export interface ReplicaNodeOptions {
  id: number;
  /** The node's data directory: a store (without `partitions`) or a storage (with it). */
  dir: string;
  /**
   * Host partitions 1..N, as a ReplicaLogStorage in `dir` (issue 19). Omitted: `dir` is a
   * single store holding partition 1 (the layout before issue 19).
   */
  partitions?: number;
  /** An opened storage to host partitions 1..`partitions` from (the node closes it); `dir` is then ignored. */
  storage?: ReplicaLogStorage;
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
  /**
   * Write groups through each store's journal (default: true for a single store; false for a
   * storage, whose partitions share the storage's KV batches and syncfs passes instead).
   */
  journal?: boolean;
  /** Consider a snapshot every this many applied entries (default DEFAULT_SNAPSHOT_EVERY: 10,000, as etcd v3.6). */
  snapshotEvery?: number;
  /**
   * Take it only once the entry data applied since the last snapshot is at least this many
   * times that snapshot's size (default DEFAULT_SNAPSHOT_LOG_RATIO: 1; 0: every `snapshotEvery`
   * entries whatever the state's size). Bounds what snapshots cost per byte put; the log kept
   * and replayed at a restart is then up to about this many times the state.
   */
  snapshotLogRatio?: number;
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
  /** raft's bound on proposed but uncommitted entry bytes, per group (default 32 MiB; 0: no bound). */
  maxUncommittedEntriesSize?: number;
  /** Proposals waiting to be applied over every group, at most (default 10,000); beyond it PUT answers 503. */
  maxPendingProposals?: number;
  /** Messages, ticks and reports waiting in one group's loop, at most (default 10,000); peers' messages beyond it are dropped. */
  maxInboxLength?: number;
  /** ... and in every group's loop together (default 200,000). */
  maxInboxTotal?: number;
  /** The leader asks every replica to compare state digests every this many applied entries (default 1000). */
  consistencyCheckEvery?: number;
  /** Idle groups quiesce: stop ticking until a message or a proposal wakes them (default true; false only to measure what it saves). */
  quiesce?: boolean;
  /**
   * etcd raft's AsyncStorageWrites (default true): the Ready loop hands writes and applies to
   * local storage threads and never waits for the disk (group.ts). false: the classic loop that
   * persists each Ready before the next (only to measure what async writes save).
   */
  asyncStorageWrites?: boolean;
  /** HTTPS for the HTTP API; with `ca`, clients must present a certificate it signed. */
  httpTls?: { cert: string | Buffer; key: string | Buffer; ca?: string | Buffer };
  /** Every HTTP request must carry `Authorization: Bearer <token>` (except nothing: /status too). */
  httpAuthToken?: string;
}

/** The node's groups at a glance (no per-group series: a node may host 100,000). */
export interface ReplicaNodeGroups {
  count: number;
  /** Groups whose leader is this node. */
  leading: number;
  /** Groups that stopped ticking (quiesced); `awake` = count - quiesced. */
  quiesced: number;
  awake: number;
  /** Groups that know no leader. */
  withoutLeader: number;
}

export interface ReplicaNodeStatus {
  id: number;
  /** The partition the fields below describe (1 on /status). */
  partition: number;
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
  /** This group has stopped ticking (see group.ts). */
  quiesced: boolean;
  /** Every group hosted here. */
  groups: ReplicaNodeGroups;
  /** Peers whose node-level heartbeats arrived within an election timeout. */
  livePeers: number[];
  /** What this node refused: from the network (message guard, inbox, unknown groups) and from its transport. */
  refused: ReplicaNodeRefusals & { transport: TransportRefusals };
  /** Bytes sent to and received from each peer, GroupBatch frames and messages, and the transport's budgets. */
  transport: TransportStats;
  /** Replica consistency of this group: reports compared, and alarms raised (replicas that disagree). */
  consistency: { compared: number; alarms: ConsistencyAlarm[] };
}

const MAX_BODY_BYTES = 1024 * 1024;

/** Groups above this many: state changes are counted in /status, not narrated line by line. */
const NARRATED_GROUPS = 16;

/** Partition stores opened at the same time at start. */
const OPEN_CONCURRENCY = 32;

/** Upper bound of `partitions` (group ids are partition ids 1..N). */
export const MAX_PARTITIONS = 1_000_000;

/**
 * etcd v3.6's defaults (--snapshot-count 10,000; 5,000 entries kept for slow followers). A
 * snapshot rewrites the whole state: every 100 entries it was the node's main cost (issue 18).
 */
export const DEFAULT_SNAPSHOT_EVERY = 10_000;
export const DEFAULT_KEEP_ENTRIES = 5_000;
/**
 * A snapshot once the log since the last one holds as many bytes as it (issue 18: every 10,000
 * entries of a state of tens of MB cost a 3-node cluster a third of its throughput).
 */
export const DEFAULT_SNAPSHOT_LOG_RATIO = 1;

export class ReplicaNode implements GroupHost {
  readonly id: number;
  private readonly groups = new Map<number, RaftGroup>();
  private readonly storage: ReplicaLogStorage | undefined;
  private transport!: Transport;
  readonly settings: GroupSettings;
  private readonly writeLog: (line: string) => void;
  private readonly onFatal: ((error: Error) => void) | undefined;
  readonly raftLogger: RaftLogger | undefined;

  private state: 'running' | 'stopping' | 'stopped' = 'running';
  private tickTimer: NodeJS.Timeout | undefined;
  private httpServer: Server | undefined;
  private httpPort: number | undefined;
  private closing: Promise<void> | undefined;
  /** Configured peers (the raft addresses given), this node excluded. */
  private readonly peerIds: ReadonlySet<number>;
  readonly refusals: ReplicaNodeRefusals = { messages: 0, inboxFull: 0, proposalsOverLimit: 0, unknownGroups: 0 };
  readonly refusalLog: RateLimitedLog;
  inboxTotal = 0;
  pendingProposals = 0;
  /** Settles when the snapshot file being read (see receiveGroupMessages) is in memory. */
  private snapshotRead: Promise<void> = Promise.resolve();
  /** Groups that tick (not quiesced). */
  private readonly awake = new Set<RaftGroup>();
  /** Quiesced groups by the peer they quiesced under as leader (woken when it goes silent). */
  private readonly quiescedUnder = new Map<number, Set<RaftGroup>>();
  private quiescedCount = 0;
  /** Messages handed over this turn, by peer: one GroupBatch frame each when the turn ends. */
  private outbox = new Map<number, GroupMessage[]>();
  private flushScheduled = false;
  /** A tick passed: every peer gets a frame at the end of this turn (the node-level heartbeat). */
  private heartbeatDue = false;
  /** When each peer's last frame arrived (ms), and the peers silent for an election timeout. */
  private readonly lastHeard = new Map<number, number>();
  private readonly silentPeers = new Set<number>();
  /** For /metrics (see metrics.ts). */
  readonly counters: NodeCounters = { leaderChanges: 0, proposals: new Map(), snapshots: 0, compactions: 0, wakes: 0, quiesces: 0 };
  private readonly metrics: Registry = nodeMetrics({
    status: () => this.status(),
    counters: () => this.counters,
    storeStats: () => this.defaultGroup.store.stats(),
    storageStats: () => this.storage?.stats(),
  });

  private constructor(options: ReplicaNodeOptions, storage: ReplicaLogStorage | undefined, groupCount: number) {
    this.id = options.id;
    this.storage = storage;
    this.settings = {
      tickMs: options.tickMs ?? 100,
      electionTick: options.electionTick ?? 10,
      heartbeatTick: options.heartbeatTick ?? 1,
      snapshotEvery: options.snapshotEvery ?? DEFAULT_SNAPSHOT_EVERY,
      snapshotLogRatio: options.snapshotLogRatio ?? DEFAULT_SNAPSHOT_LOG_RATIO,
      keepEntries: options.keepEntries ?? DEFAULT_KEEP_ENTRIES,
      proposalTimeoutMs: options.proposalTimeoutMs ?? 5000,
      maxUncommittedEntriesSize: options.maxUncommittedEntriesSize ?? 32 * 1024 * 1024,
      consistencyCheckEvery: options.consistencyCheckEvery ?? 1000,
      maxInboxLength: options.maxInboxLength ?? 10_000,
      maxInboxTotal: options.maxInboxTotal ?? 200_000,
      maxPendingProposals: options.maxPendingProposals ?? 10_000,
      narrate: groupCount <= NARRATED_GROUPS,
      multiGroup: groupCount > 1,
      quiesce: options.quiesce ?? true,
      asyncStorageWrites: options.asyncStorageWrites ?? true,
    };
    this.raftLogger = options.raftLogger;
    this.writeLog = options.log ?? ((line) => process.stderr.write(`${new Date().toISOString()} [node ${options.id}] ${line}\n`));
    this.onFatal = options.onFatal;
    this.peerIds = new Set([...options.peers.keys()].filter((peerId) => peerId !== options.id));
    this.refusalLog = new RateLimitedLog(this.writeLog, 10_000);
    const now = Date.now();
    // Every peer counts as live at start: groups quiesced before a restart are awake anyway.
    for (const peerId of this.peerIds) this.lastHeard.set(peerId, now);
  }

  /** GroupHost (group.ts): this node's raft id. */
  get nodeId(): number {
    return this.id;
  }

  get running(): boolean {
    return this.state === 'running';
  }

  log(line: string): void {
    this.writeLog(line);
  }

  isConfiguredPeer(peerId: number): boolean {
    return this.peerIds.has(peerId);
  }

  isPeerLive(peerId: number): boolean {
    return !this.silentPeers.has(peerId);
  }

  /** Who may connect: a member of some group's configuration (every group has the same members today). */
  private isMember(peerId: number): boolean {
    const first = this.groups.get(1);
    if (first !== undefined && first.isMember(peerId)) return true;
    for (const group of this.groups.values()) if (group.isMember(peerId)) return true;
    return false;
  }

  /** Opens the stores, restores the groups, starts the transport, the HTTP API and the ticks. */
  static async start(options: ReplicaNodeOptions): Promise<ReplicaNode> {
    const own = options.peers.get(options.id);
    if (own === undefined) throw new Error(`peers must include this node's own address (id ${options.id})`);
    const partitions = options.partitions ?? 1;
    if (!Number.isSafeInteger(partitions) || partitions < 1 || partitions > MAX_PARTITIONS) {
      throw new Error(`partitions must be an integer in 1..${MAX_PARTITIONS}, got ${partitions}`);
    }
    const ratio = options.snapshotLogRatio;
    if (ratio !== undefined && !(Number.isFinite(ratio) && ratio >= 0)) {
      throw new Error(`snapshotLogRatio must be a finite number >= 0, got ${ratio}`);
    }
    const storageMode = options.storage !== undefined || options.partitions !== undefined;
    // The stores first: opening one empties its staging/, where the transport stages received files.
    let storage: ReplicaLogStorage | undefined;
    const stores: ReplicaLogStore[] = [];
    let node: ReplicaNode | undefined;
    try {
      if (storageMode) {
        storage = options.storage ?? (await ReplicaLogStorage.open({ dir: options.dir }));
        node = new ReplicaNode(options, storage, partitions);
        const journal = options.journal ?? false;
        let next = 1;
        const opener = async (): Promise<void> => {
          while (next <= partitions) {
            const partitionId = next++;
            const store = await storage!.openPartition(partitionId, { journal });
            stores.push(store);
            if (store.status !== 'bootstrapped' && store.initialState().confState.voters.length === 0 && store.lastIndex() === 0 && store.pendingBackfill === 0) {
              throw new Error(`partition ${partitionId} of ${storage!.dir} has no raft state: start the node once with --bootstrap (every partition 1..${partitions} is prepared then)`);
            }
            node!.groups.set(partitionId, await RaftGroup.open(node!, partitionId, store));
          }
        };
        await Promise.all(Array.from({ length: Math.min(OPEN_CONCURRENCY, partitions) }, () => opener()));
      } else {
        // Journal mode (lib/wal/journal.ts): each Ready's entries and hard state are durable with
        // one record; the entry directories follow behind (issue 18: the node's main storage cost).
        const store = await ReplicaLogStore.open({ dir: options.dir, journal: options.journal ?? true });
        stores.push(store);
        node = new ReplicaNode(options, undefined, 1);
        node.groups.set(1, await RaftGroup.open(node, 1, store));
      }
      for (const group of node.groups.values()) node.awake.add(group);
      // Received snapshot data is staged in a file as it arrives (never held whole by the transport).
      const stagingDir = storage === undefined ? stagingPath(stores[0]!.dir) : join(storage.dir, 'node-staging');
      if (storage !== undefined) await rm(stagingDir, { recursive: true, force: true });
      const started = node;
      const peers = new Map([...options.peers].filter(([peerId]) => peerId !== options.id));
      started.transport = new Transport({
        id: options.id,
        clusterId: options.clusterId ?? 'replicalog',
        listen: own,
        peers,
        stagingDir,
        // Attachments stay refused: this node never uses them.
        acceptAttachments: false,
        ...(options.peerTls === undefined ? {} : { tls: options.peerTls }),
        ...(options.insecure === true ? { insecure: true } : {}),
        acceptPeer: (peerId) => started.isMember(peerId),
        onError: (error) => started.refusalLog.note((error as { code?: string }).code ?? 'transport', `transport: ${error.message}`),
        // A peer of the version before issue 19 sends plain Message frames: partition 1's.
        onMessage: async (message, stagedDirs, snapshotFile) => {
          for (const dir of stagedDirs.values()) void rm(dir, { recursive: true, force: true });
          await started.receiveGroupMessages(message.from, [{ group: 1, message }], snapshotFile);
        },
        onGroupMessages: (peerId, messages, snapshotFile) => started.receiveGroupMessages(peerId, messages, snapshotFile),
        onUnreachable: (peerId) => {
          // Quiesced groups sent nothing that could be lost but their quiesce heartbeats.
          for (const group of started.awake) group.report((raw) => raw.reportUnreachable(peerId));
        },
        onSnapshotStatus: (peerId, status) => started.groups.get(1)?.reportSnapshotStatus(peerId, status === 'finish'),
        onGroupSnapshotStatus: (peerId, group, status) => {
          if (started.settings.narrate) started.log(`snapshot of partition ${group} to node ${peerId}: ${status}`);
          started.groups.get(group)?.report((raw) => raw.reportSnapshot(peerId, status === 'finish' ? SnapshotStatus.SnapshotFinish : SnapshotStatus.SnapshotFailure));
        },
      });
      await started.transport.start();
      if (options.httpPort !== undefined) await started.startHttp(options.httpPort, options.httpTls, options.httpAuthToken);
      const first = started.defaultGroup.store;
      started.log(
        `started: ${started.groups.size === 1 ? `log ${first.firstIndex()}..${first.lastIndex()}, snapshot ${first.snapshot().metadata.index}, commit ${first.initialState().hardState.commit}, voters [${first.initialState().confState.voters.join(',')}]` : `${started.groups.size} partitions of storage ${storage!.dir}`}, ` +
          `raft on ${own.host}:${own.port} (${options.peerTls !== undefined ? 'mutual TLS' : options.insecure === true ? 'plain TCP, INSECURE' : 'plain TCP, loopback only'})` +
          (started.httpPort === undefined ? '' : `, http on 127.0.0.1:${started.httpPort}`),
      );
      started.tickTimer = setInterval(() => started.onTick(), started.settings.tickMs);
      for (const group of started.groups.values()) group.kick();
      return started;
    } catch (error) {
      if (node !== undefined) node.state = 'stopped';
      await node?.transport?.close().catch(() => {});
      await Promise.allSettled(stores.map((store) => store.close()));
      await storage?.close().catch(() => {});
      throw error;
    }
  }

  /** Partition 1: what the routes without /p/<partition> and the single-group accessors address. */
  private get defaultGroup(): RaftGroup {
    return this.groups.get(1) ?? this.groups.values().next().value!;
  }

  /** Partition 1's store and state machine (the single-group accessors of before issue 19). */
  get store(): ReplicaLogStore {
    return this.defaultGroup.store;
  }

  get stateMachine(): KvStateMachine {
    return this.defaultGroup.stateMachine;
  }

  /** The partitions hosted here, ascending. */
  get partitions(): number[] {
    return [...this.groups.keys()].sort((a, b) => a - b);
  }

  /** The HTTP API's port, when it runs. */
  get httpAddress(): PeerAddress | undefined {
    return this.httpPort === undefined ? undefined : { host: '127.0.0.1', port: this.httpPort };
  }

  get leader(): number {
    return this.defaultGroup.lead;
  }

  get isLeader(): boolean {
    return this.defaultGroup.isLeader;
  }

  /** The leader of `partition` as known here (0: none), undefined for a partition not hosted here. */
  leaderOf(partition: number): number | undefined {
    return this.groups.get(partition)?.lead;
  }

  groupsSummary(): ReplicaNodeGroups {
    let leading = 0;
    let withoutLeader = 0;
    for (const group of this.groups.values()) {
      if (group.isLeader) leading++;
      if (group.lead === 0) withoutLeader++;
    }
    return { count: this.groups.size, leading, quiesced: this.quiescedCount, awake: this.groups.size - this.quiescedCount, withoutLeader };
  }

  /** Partition 1's status (or `partition`'s), with the node's groups, liveness, refusals and transport. */
  status(partition = 1): ReplicaNodeStatus {
    const group = partition === 1 ? this.defaultGroup : this.groups.get(partition);
    if (group === undefined) throw new Error(`partition ${partition} is not hosted on node ${this.id}`);
    const basic = group.raw.basicStatus();
    const open = this.state !== 'stopped';
    return {
      id: this.id,
      partition: group.id,
      term: basic.term,
      vote: basic.vote,
      lead: basic.lead,
      raftState: basic.raftState,
      commit: basic.commit,
      applied: group.stateMachine.applied,
      firstIndex: open ? group.store.firstIndex() : 0,
      lastIndex: open ? group.store.lastIndex() : 0,
      snapshotIndex: group.lastSnapshotIndex,
      keys: group.stateMachine.size,
      digest: group.stateMachine.digest(),
      quiesced: group.isQuiesced,
      groups: this.groupsSummary(),
      livePeers: [...this.peerIds].filter((peerId) => !this.silentPeers.has(peerId)).sort((a, b) => a - b),
      refused: { ...this.refusals, transport: this.transport.refused() },
      transport: this.transport.stats(),
      consistency: { compared: group.consistency.compared, alarms: [...group.consistency.alarms] },
    };
  }

  get(key: string, partition = 1): string | undefined {
    return this.requireGroup(partition).stateMachine.get(key);
  }

  /** Resolves with the entry's index once the put is committed and applied on this node. */
  put(key: string, value: string, requestId: string = randomUUID(), partition = 1): Promise<number> {
    return this.propose({ op: 'put', key, value, requestId }, partition);
  }

  delete(key: string, requestId: string = randomUUID(), partition = 1): Promise<number> {
    return this.propose({ op: 'delete', key, requestId }, partition);
  }

  /** Proposes `command` in `partition` (a follower forwards it to the leader) and waits until it is applied here. */
  propose(command: KvCommand, partition = 1): Promise<number> {
    const group = this.groups.get(partition);
    if (group === undefined) return Promise.reject(new Error(`partition ${partition} is not hosted on node ${this.id}`));
    return group.propose(command);
  }

  private requireGroup(partition: number): RaftGroup {
    const group = this.groups.get(partition);
    if (group === undefined) throw new Error(`partition ${partition} is not hosted on node ${this.id}`);
    return group;
  }

  /**
   * Stops: no more ticks or requests, lets the Readys in progress finish, then closes the
   * transport (after the last send) and the stores (after the last write).
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
    const groups = [...this.groups.values()];
    // The Readys in progress and what the storage threads hold are written (and acknowledged).
    await Promise.all(groups.map((group) => group.settled()));
    await Promise.all(groups.map((group) => group.snapshotting));
    await Promise.all(groups.map((group) => group.saveDeferredCommit().catch(() => {})));
    for (const group of groups) group.settleAll(new ProposalError('ERR_STOPPED', 'the node stopped', group.lead));
    // What the last Readys handed over goes out before the transport closes.
    this.flush();
    await this.transport.close().catch(() => {});
    await Promise.all(groups.map((group) => group.store.close().catch(() => {})));
    await this.storage?.close().catch(() => {});
    this.state = 'stopped';
    this.log('stopped');
  }

  fail(error: Error): void {
    if (this.state !== 'running') return;
    this.log(`FATAL: ${error.stack ?? error.message}`);
    void this.close().then(() => this.onFatal?.(error));
  }

  // ---------------------------------------------------------------- ticks, liveness, quiescence

  private onTick(): void {
    if (this.state !== 'running') return;
    this.checkLiveness();
    // Every peer hears from this node once per tick, whatever the groups do (see flush).
    this.heartbeatDue = true;
    this.scheduleFlush();
    // A copy: a tick may quiesce the group (and so change the set).
    for (const group of [...this.awake]) group.tick();
  }

  /**
   * A peer silent for an election timeout is down: the groups quiesced under it as leader wake
   * (they tick, time out and elect a leader among the live members).
   */
  private checkLiveness(): void {
    const now = Date.now();
    // Two election timeouts: a busy peer (a long fsync, a burst of elections) must not look dead,
    // which would wake its groups and start elections against a live leader.
    const timeoutMs = 2 * this.settings.electionTick * this.settings.tickMs;
    for (const peerId of this.peerIds) {
      const silent = now - (this.lastHeard.get(peerId) ?? 0) > timeoutMs;
      if (silent && !this.silentPeers.has(peerId)) {
        this.silentPeers.add(peerId);
        const quiesced = this.quiescedUnder.get(peerId);
        this.log(`node ${peerId} is silent (no frame for ${timeoutMs} ms): waking the ${quiesced?.size ?? 0} groups quiesced under it`);
        for (const group of [...(quiesced ?? [])]) group.wake();
      } else if (!silent && this.silentPeers.has(peerId)) {
        this.silentPeers.delete(peerId);
        this.log(`node ${peerId} is back`);
      }
    }
  }

  quiesced(group: RaftGroup): void {
    this.awake.delete(group);
    this.quiescedCount++;
    this.counters.quiesces++;
    if (group.quiescedUnder !== this.id) {
      let set = this.quiescedUnder.get(group.quiescedUnder);
      if (set === undefined) {
        set = new Set();
        this.quiescedUnder.set(group.quiescedUnder, set);
      }
      set.add(group);
    }
  }

  woke(group: RaftGroup): void {
    this.awake.add(group);
    this.quiescedCount--;
    this.counters.wakes++;
    this.quiescedUnder.get(group.quiescedUnder)?.delete(group);
  }

  // ---------------------------------------------------------------- messages

  /** Queues a group's messages; the turn ends with one frame per peer (flush). */
  send(group: RaftGroup, messages: readonly Message[], quiesce = false): void {
    for (const message of messages) {
      let queue = this.outbox.get(message.to);
      if (queue === undefined) {
        queue = [];
        this.outbox.set(message.to, queue);
      }
      queue.push(quiesce ? { group: group.id, message, quiesce: true } : { group: group.id, message });
    }
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // setImmediate: after this turn's I/O callbacks, so every group whose write completed in
    // this turn has handed its messages over.
    setImmediate(() => this.flush());
  }

  /**
   * One GroupBatch frame per peer with everything queued this turn; with a tick due, every peer
   * gets one even when empty (the node-level heartbeat). If the transport refuses a batch (it
   * validates every message first), its messages are lost as if the network dropped them: raft
   * retransmits, and is told so, including the snapshot failure without which a follower would
   * stay paused forever.
   */
  private flush(): void {
    this.flushScheduled = false;
    const outbox = this.outbox;
    this.outbox = new Map();
    const heartbeat = this.heartbeatDue;
    this.heartbeatDue = false;
    if (this.state === 'stopped') return;
    const targets = new Set<number>(outbox.keys());
    if (heartbeat && this.state === 'running') for (const peerId of this.peerIds) targets.add(peerId);
    for (const peerId of targets) {
      const messages = outbox.get(peerId) ?? [];
      try {
        this.transport.sendGroupMessages(peerId, messages);
      } catch (error) {
        this.log(`the transport refused ${messages.length} messages to node ${peerId}: ${(error as Error).message}`);
        for (const { group: groupId, message } of messages) {
          this.groups.get(groupId)?.report((raw) => {
            raw.reportUnreachable(message.to);
            if (message.type === MessageType.MsgSnap) raw.reportSnapshot(message.to, SnapshotStatus.SnapshotFailure);
          });
        }
      }
    }
  }

  /**
   * Group messages from a peer (a GroupBatch frame, or one streamed message with its staged
   * snapshot file). The peer is alive. A message for a group not hosted here is refused and
   * counted, and creates nothing.
   */
  private async receiveGroupMessages(peerId: number, messages: GroupMessage[], snapshotFile?: StagedSnapshotFile): Promise<void> {
    if (this.state !== 'running') return;
    this.lastHeard.set(peerId, Date.now());
    for (const { group: groupId, message, quiesce } of messages) {
      const group = this.groups.get(groupId);
      if (group === undefined) {
        this.refusals.unknownGroups++;
        this.refusalLog.note(`unknown-group:${peerId}`, `refused a message from node ${peerId} for partition ${groupId}, which this node does not host`);
        continue;
      }
      if (snapshotFile !== undefined && message.snapshot !== undefined) {
        // The transport staged the data in a file and removes it when this returns: read it back
        // once, here (raft and the store need it in memory). One snapshot at a time, so two
        // peers' snapshots never sit in memory together on their way in.
        const previous = this.snapshotRead;
        let done!: () => void;
        this.snapshotRead = new Promise<void>((resolve) => (done = resolve));
        try {
          await previous;
          message.snapshot.data = await snapshotFile.read();
        } catch (error) {
          this.log(`dropped a snapshot of partition ${groupId} from node ${peerId}: ${(error as Error).message}`);
          continue;
        } finally {
          done();
        }
      }
      group.receive(message, quiesce === true);
    }
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
  private async streamState(response: ServerResponse, stateMachine: KvStateMachine): Promise<void> {
    const pairs = stateMachine.entries();
    response.writeHead(200, { 'content-type': 'application/json' });
    const write = async (text: string): Promise<void> => {
      if (!response.write(text)) await new Promise<void>((resolve) => response.once('drain', resolve));
    };
    await write(`{"applied":${stateMachine.applied},"digest":${JSON.stringify(stateMachine.digest())},"size":${pairs.length},"entries":{`);
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
    // /p/<partition>/<route>: a partition id as written in decimal (no sign, no leading zero).
    let group = this.defaultGroup;
    let path = url.pathname;
    if (path.startsWith('/p/')) {
      const match = /^\/p\/([1-9][0-9]{0,15})(\/.*)?$/.exec(path);
      const partition = match === null ? undefined : Number(match[1]);
      const found = partition === undefined || !Number.isSafeInteger(partition) ? undefined : this.groups.get(partition);
      if (found === undefined) {
        return this.reply(response, 404, {
          error: `no partition ${JSON.stringify(decodeURIComponent(path.slice(3).split('/')[0] ?? ''))} on node ${this.id} (it hosts partitions 1..${this.groups.size})`,
          code: 'ERR_NO_SUCH_PARTITION',
        });
      }
      group = found;
      path = match![2] ?? '/';
      if (path === '/status' && method === 'GET') return this.reply(response, 200, this.status(found.id));
    }
    if (path === '/kv' && method === 'GET') return this.streamState(response, group.stateMachine);
    if (!path.startsWith('/kv/') || path.length === 4) return this.reply(response, 404, { error: 'not found' });
    const key = decodeURIComponent(path.slice(4));
    if (method === 'GET') {
      const value = group.stateMachine.get(key);
      if (value === undefined) return this.reply(response, 404, { error: 'no such key', key, partition: group.id });
      response.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      response.end(value);
      return;
    }
    if (method !== 'PUT' && method !== 'DELETE') return this.reply(response, 405, { error: `method ${method} not allowed` });
    const body = method === 'PUT' ? await readBody(request) : '';
    const header = request.headers['x-request-id'];
    const requestId = typeof header === 'string' && header !== '' ? header : randomUUID();
    try {
      const command: KvCommand = method === 'PUT' ? { op: 'put', key, value: body, requestId } : { op: 'delete', key, requestId };
      const index = await group.propose(command);
      this.reply(response, 200, { ok: true, key, index, node: this.id, lead: group.lead, partition: group.id });
    } catch (error) {
      if (error instanceof ProposalError) {
        this.reply(response, 503, { error: error.message, code: error.code, lead: error.lead, node: this.id, partition: group.id }, { 'retry-after': '1' });
      } else {
        throw error;
      }
    }
  }
}

class BodyTooLargeError extends Error {}

/**
 * The request body as UTF-8, at most MAX_BODY_BYTES. Read with 'data'/'end' listeners: the
 * stream's async iterator cost a put several promises and an iterator object (about 2 % of a
 * leader's CPU at 3xC=64, issue 18).
 */
function readBody(request: IncomingMessage): Promise<string> {
  const announced = Number(request.headers['content-length'] ?? 0);
  if (announced > MAX_BODY_BYTES) return Promise.reject(new BodyTooLargeError(`request body of ${announced} bytes is above the limit of ${MAX_BODY_BYTES}`));
  return new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = () => {
      request.off('data', onData);
      request.off('end', onEnd);
      request.off('error', onError);
      request.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        stop();
        reject(new BodyTooLargeError(`request body above the limit of ${MAX_BODY_BYTES} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      stop();
      resolve((chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)).toString('utf8'));
    };
    const onError = (error: Error) => {
      stop();
      reject(error);
    };
    // A client gone before the end of its body: nothing to answer.
    const onClose = () => {
      stop();
      reject(new Error('the request was closed before its body ended'));
    };
    request.on('data', onData);
    request.on('end', onEnd);
    request.on('error', onError);
    request.on('close', onClose);
  });
}
