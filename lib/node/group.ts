/**
 * RaftGroup: one raft group (one partition) of a multi-raft ReplicaNode (issue 19): its RawNode,
 * its ReplicaLogStore, its KvStateMachine and its Ready loop. The node (node.ts) owns what every
 * group shares: the transport (messages leave through `host.send`, batched per peer per loop
 * turn), the tick timer, node-level liveness, the HTTP API and the limits.
 *
 * RawNode is only stepped by the "pump". Everything that happens outside (a tick, a message from
 * a peer, a client's proposal, a transport report, a storage thread's response) is queued in
 * `inbox` and stepped into RawNode by the pump before it asks for the next Ready.
 *
 * Asynchronous storage writes (the default; etcd raft v3.6's AsyncStorageWrites): the pump never
 * waits for the disk. Each Ready's messages go where they are addressed: peers' messages to the
 * transport at once (nothing in them promises durability), the MsgStorageAppend to the local
 * append "thread" and the MsgStorageApply to the local apply "thread" (two queues, each worked
 * off in order by one async loop). The append thread writes every MsgStorageAppend queued
 * since its last write as ONE store write group (snapshot, entries, hard state, in that order),
 * and only once it is durable delivers the responses they carry: append and vote responses to
 * peers, the MsgStorageAppendResp (and a leader's own MsgAppResp) back to raft through the inbox.
 * The apply thread applies committed entries (raft hands out only durable ones in this mode) and
 * steps the MsgStorageApplyResp. So a leader steps its followers' acknowledgements, commits and
 * applies while its own next write group is being made durable, and it keeps ticking through a
 * slow fsync (issue 18).
 *
 * Synchronous mode (`asyncStorageWrites: false`, etcd's classic loop): one Ready at a time, and
 * for each Ready, in this order:
 *   1. persist: the snapshot (then restore the state machine from it), the entries, then the
 *      hard state: the store refuses a commit above its last index, and a durable commit that
 *      points at entries that are not durable would break a restart;
 *   2. send the messages (only now: a vote or an append acknowledgement promises durability);
 *   3. apply the committed entries (a conf change goes through applyConfChange and its conf
 *      state is saved before the next entry);
 *   4. advance;
 *   5. every `snapshotEvery` applied entries (both modes): prepareSnapshotData(applied, state),
 *      then createSnapshot(applied, confState, prepared) and compact(applied - keepEntries),
 *      never past the snapshot just taken.
 * Groups run their pumps side by side: their writes meet in the storage's shared pipeline (one
 * synced KV batch and one syncfs pass for every group writing in the same turn).
 *
 * Quiescence (CockroachDB): a leader whose followers all hold its whole log (match == last index
 * == commit, everything applied, nothing proposed or pending) stops ticking and tells the
 * followers with one last heartbeat flagged `quiesce`; a follower that holds exactly that log
 * stops ticking too. A quiesced group costs nothing per tick. Any message for it (but a heartbeat
 * response), a proposal, or its leader's node going silent (node.ts) wakes it.
 */
import { randomUUID } from 'node:crypto';
import { decodeConfChangeEntry, isEmptySnap, ProgressType, RawNode, SnapshotStatus, type Ready } from '../raft/rawnode.js';
import { LOCAL_APPEND_THREAD, LOCAL_APPLY_THREAD } from '../raft/util.js';
import type { RaftLogger } from '../raft/logger.js';
import type { ReplicaLogStore } from '../replica-log-store.js';
import { ErrorCode, ReplicaLogError } from '../errors.js';
import { dropCommitPastLog, refuseInboundMessage, type MessageGuardView } from './message-guard.js';
import type { RateLimitedLog } from './rate-limited-log.js';
import type { NodeCounters } from './metrics.js';
import { ConsistencyChecker, decodeConsistencyRecord, encodeConsistencyRecord } from './consistency.js';
import { EntryType, MessageType, type ConfState, type Entry, type HardState, type Message, type Snapshot } from '../types.js';
import { KvStateMachine, commandEntries, type KvCommand } from './state-machine.js';

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

/** What the node refused from the network, by kind (also in /status). */
export interface ReplicaNodeRefusals {
  /** Messages the guard refused (local types, non-members, terms above the cap, impossible commits, bad snapshots). */
  messages: number;
  /** Messages dropped because an inbox was full. */
  inboxFull: number;
  /** Proposals refused because too many were pending. */
  proposalsOverLimit: number;
  /** Messages for a group (partition) this node does not host: dropped, nothing created. */
  unknownGroups: number;
}

export interface GroupSettings {
  tickMs: number;
  electionTick: number;
  heartbeatTick: number;
  snapshotEvery: number;
  /**
   * A snapshot is taken at one of this node's `snapshotEvery` points only once the entry data
   * applied since the last snapshot is at least this many times that snapshot's size (0: at
   * every point). See maybeSnapshot.
   */
  snapshotLogRatio: number;
  keepEntries: number;
  proposalTimeoutMs: number;
  maxUncommittedEntriesSize: number;
  consistencyCheckEvery: number;
  /** Messages, ticks and reports waiting in one group's inbox, at most. */
  maxInboxLength: number;
  /** ... and in every group's inbox together. */
  maxInboxTotal: number;
  /** Proposals waiting to be applied over every group, at most. */
  maxPendingProposals: number;
  /** Narrate state changes of this group (off with many groups: counted in /status instead). */
  narrate: boolean;
  /** More than one group: log lines name the partition. */
  multiGroup: boolean;
  /** Idle groups quiesce (default true; false only to measure what quiescence saves). */
  quiesce: boolean;
  /** etcd's AsyncStorageWrites: the Ready loop does not wait for the disk (see the header; default true). */
  asyncStorageWrites: boolean;
}

/** What a group needs from its node. */
export interface GroupHost {
  readonly nodeId: number;
  readonly settings: GroupSettings;
  readonly counters: NodeCounters;
  readonly refusals: ReplicaNodeRefusals;
  readonly refusalLog: RateLimitedLog;
  readonly raftLogger: RaftLogger | undefined;
  /** Items waiting in every group's inbox, and proposals pending over every group. */
  inboxTotal: number;
  pendingProposals: number;
  readonly running: boolean;
  log(line: string): void;
  /** Queues messages for the transport: sent per peer in one frame at the end of this turn. */
  send(group: RaftGroup, messages: readonly Message[], quiesce?: boolean): void;
  fail(error: Error): void;
  /** Configured peers: accepted while a group has no configuration yet (it is joining). */
  isConfiguredPeer(peerId: number): boolean;
  /** False once a peer's node-level heartbeats stopped for an election timeout. */
  isPeerLive(peerId: number): boolean;
  quiesced(group: RaftGroup): void;
  woke(group: RaftGroup): void;
}

interface Waiter {
  resolve: (index: number) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/** Work for the local append thread: raft's MsgStorageAppend, or a request to save a deferred commit. */
type AppendWork = { message: Message } | { saveCommit: { resolve: () => void; reject: (error: Error) => void } };

/** Messages that acknowledge durable state: sent only once this Ready is persisted. */
const ACKNOWLEDGES_DURABLE_STATE: ReadonlySet<MessageType> = new Set([MessageType.MsgAppResp, MessageType.MsgVoteResp, MessageType.MsgPreVoteResp]);

export class RaftGroup {
  readonly id: number;
  readonly store: ReplicaLogStore;
  readonly stateMachine: KvStateMachine;
  readonly raw: RawNode;
  private readonly host: GroupHost;

  private readonly inbox: (() => void)[] = [];
  private pendingTicks = 0;
  pumpRunning: Promise<void> | undefined;
  private readonly waiters = new Map<string, Waiter>();
  /** Proposals waiting for the inbox's next drain, where proposeBatch() steps them together. */
  private readonly proposalBatch: KvCommand[] = [];
  lead = 0;
  raftState = 'StateFollower';
  lastSnapshotIndex: number;
  /** The data size of the latest snapshot taken or installed (bytes). */
  private lastSnapshotBytes: number;
  /** Entry data applied above the latest snapshot taken or installed (bytes; rebuilt by the replay at start). */
  private logBytesSinceSnapshot = 0;
  /** The next applied index at which maybeSnapshot considers a snapshot (a point of this node's grid). */
  private snapshotCheckAt: number;
  /** The snapshot being saved beside the Ready loop (see maybeSnapshot). */
  snapshotting: Promise<void> | undefined;
  /** Raft's latest hard state; the store's may lag by the commit only (see handleReady). */
  private latestHardState: HardState;
  /** Ids of the current configuration (voters, learners, joint halves), kept as conf changes apply. */
  private members = new Set<number>();
  readonly consistency: ConsistencyChecker;
  /** Not ticking (see the header); `quiescedUnder` is the leader it quiesced under (this node: its own id). */
  isQuiesced = false;
  quiescedUnder = 0;
  /** A leader's quiesce heartbeat was stepped: quiesce once its Ready is handled, if still caught up. */
  private quiesceRequestedBy = 0;
  /** When this group last handed leadership over for a follower that lost its log (ms). */
  private lostLogHandOverAt = 0;
  /** Async storage writes: the local append and apply threads' queues, and their running loops. */
  private readonly appendQueue: AppendWork[] = [];
  private readonly applyQueue: Message[] = [];
  appending: Promise<void> | undefined;
  applying: Promise<void> | undefined;
  /**
   * The highest snapshot index raft restored and handed to the append thread (or, synchronous,
   * persisted). raft's configuration and log are already the snapshot's: committed entries at or
   * below it that the apply thread has not reached yet are covered by it and must not be applied
   * (an old conf change would overwrite the snapshot's configuration in raft and in the store),
   * and a local snapshot at or below it is moot (saveSnapshot).
   */
  private restoredThrough = 0;

  constructor(host: GroupHost, id: number, store: ReplicaLogStore, stateMachine: KvStateMachine) {
    this.host = host;
    this.id = id;
    this.store = store;
    this.stateMachine = stateMachine;
    const settings = host.settings;
    this.raw = new RawNode({
      id: host.nodeId,
      storage: store,
      electionTick: settings.electionTick,
      heartbeatTick: settings.heartbeatTick,
      // The state machine holds everything up to the snapshot; raft re-delivers the rest.
      applied: stateMachine.applied,
      preVote: true,
      checkQuorum: true,
      maxSizePerMsg: 1024 * 1024,
      maxCommittedSizePerReady: 4 * 1024 * 1024,
      maxInflightMsgs: 256,
      // A flood of proposals is refused by raft itself once this many bytes wait for a commit.
      maxUncommittedEntriesSize: settings.maxUncommittedEntriesSize,
      asyncStorageWrites: settings.asyncStorageWrites,
      ...(host.raftLogger === undefined ? {} : { logger: host.raftLogger }),
    });
    this.lastSnapshotIndex = store.snapshot().metadata.index;
    this.lastSnapshotBytes = store.snapshot().data?.length ?? 0;
    this.snapshotCheckAt = nextSnapshotAt(this.lastSnapshotIndex, settings.snapshotEvery, host.nodeId);
    this.latestHardState = store.initialState().hardState;
    this.setMembers(store.initialState().confState);
    this.consistency = new ConsistencyChecker(host.nodeId, settings.consistencyCheckEvery);
    // No check before the first `every` entries after a start (the log before it is settled).
    this.consistency.lastRequestedAt = store.initialState().hardState.commit;
  }

  /**
   * Opens a group on an opened store: repairs a snapshot above the commit (a crash between
   * applySnapshot and its hard state) and restores the state machine from the snapshot.
   */
  static async open(host: GroupHost, id: number, store: ReplicaLogStore): Promise<RaftGroup> {
    if (store.status === 'needs-backfill') {
      // No hard state yet: a pre-Raft log (migrated or not) that no seed bootstrap took over.
      throw new Error(`${store.dir} holds a log without a hard state (a pre-Raft log): migrate it and bootstrap it as a seed first`);
    }
    const snapshot = store.snapshot();
    const hardState = store.initialState().hardState;
    if (snapshot.metadata.index > hardState.commit) {
      // A received snapshot only ever holds committed entries, so its index is a valid commit
      // (and the log ends there). Without this, raft refuses applied > commit. A term raised to
      // the snapshot's carries no vote: no vote in that term was persisted, so none was sent.
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
    return new RaftGroup(host, id, store, stateMachine);
  }

  private log(line: string): void {
    this.host.log(this.host.settings.multiGroup ? `partition ${this.id}: ${line}` : line);
  }

  private setMembers(confState: ConfState): void {
    this.members = new Set([...confState.voters, ...confState.learners, ...confState.votersOutgoing, ...confState.learnersNext]);
  }

  /** Who may speak in this group: its configuration's members, or the configured peers while joining. */
  isMember(peerId: number): boolean {
    if (peerId === this.host.nodeId) return false;
    return this.members.size === 0 ? this.host.isConfiguredPeer(peerId) : this.members.has(peerId);
  }

  get isLeader(): boolean {
    return this.raftState === 'StateLeader';
  }

  get pendingProposals(): number {
    return this.waiters.size;
  }

  // ---------------------------------------------------------------- proposals

  /** Proposes `command` (a follower forwards it to the leader) and waits until it is applied here. */
  propose(command: KvCommand): Promise<number> {
    if (!this.host.running) return Promise.reject(new ProposalError('ERR_STOPPED', 'the node is stopping', this.lead));
    // A proposal wakes a quiesced group (it must tick again to replicate and time out).
    this.wake();
    if (this.lead === 0) return Promise.reject(new ProposalError('ERR_NO_LEADER', 'no leader known', 0));
    if (this.waiters.has(command.requestId)) return Promise.reject(new Error(`request ${command.requestId} is already pending`));
    if (this.host.pendingProposals >= this.host.settings.maxPendingProposals) {
      this.host.refusals.proposalsOverLimit++;
      return Promise.reject(new ProposalError('ERR_OVERLOADED', `${this.host.pendingProposals} proposals are already pending: retry later`, this.lead));
    }
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.settle(command.requestId, new ProposalError('ERR_TIMEOUT', `not applied within ${this.host.settings.proposalTimeoutMs} ms`, this.lead));
      }, this.host.settings.proposalTimeoutMs);
      this.waiters.set(command.requestId, { resolve, reject, timer });
      this.host.pendingProposals++;
      // Proposals made before the inbox is drained go to raft together (proposeBatch).
      this.proposalBatch.push(command);
      // After this turn: every request that arrived in it joins the batch (each HTTP request is
      // its own callback, so a microtask would step them one by one).
      if (this.proposalBatch.length === 1) this.enqueue(() => this.proposeBatch(), true);
    });
  }

  /**
   * Steps every proposal queued since the last drain as ONE MsgProp: one append to the leader's
   * log and one MsgApp per follower for the whole batch (a follower forwards it as one message),
   * where a MsgProp per proposal cost a MsgApp and a MsgAppResp per proposal and follower.
   * Raft accepts or drops the batch as a whole. The commands travel as few entries
   * (commandEntries): every entry costs each replica a directory and two files.
   */
  private proposeBatch(): void {
    const batch = this.proposalBatch.splice(0);
    if (batch.length === 0) return;
    try {
      this.raw.proposeMany(commandEntries(batch));
    } catch (error) {
      for (const command of batch) this.settle(command.requestId, new ProposalError('ERR_PROPOSAL_DROPPED', (error as Error).message, this.lead));
    }
  }

  settle(requestId: string, error: Error | undefined, index = 0): void {
    const waiter = this.waiters.get(requestId);
    if (waiter === undefined) return;
    const result = error === undefined ? 'ok' : ((error as { code?: string }).code ?? 'error');
    this.host.counters.proposals.set(result, (this.host.counters.proposals.get(result) ?? 0) + 1);
    this.waiters.delete(requestId);
    this.host.pendingProposals--;
    clearTimeout(waiter.timer);
    if (error === undefined) waiter.resolve(index);
    else waiter.reject(error);
  }

  settleAll(error: ProposalError): void {
    for (const requestId of [...this.waiters.keys()]) this.settle(requestId, error);
  }

  // ---------------------------------------------------------------- the loop

  /** A tick from the node's timer (only awake groups get them). */
  tick(): void {
    if (this.isQuiesced || !this.host.running) return;
    if (this.host.settings.quiesce && this.maybeQuiesce()) return;
    this.pendingTicks++;
    this.kick();
  }

  /** Queues `action` for the pump; `afterTurn`: start it after this turn's other callbacks (see kick). */
  enqueue(action: () => void, afterTurn = false): void {
    if (!this.host.running) return;
    this.inbox.push(action);
    this.host.inboxTotal++;
    this.kick(afterTurn);
  }

  /** A report from the transport (unreachable, snapshot status): stepped, never wakes the group. */
  report(action: (raw: RawNode) => void): void {
    this.enqueue(() => action(this.raw));
  }

  reportSnapshotStatus(peerId: number, finished: boolean): void {
    this.report((raw) => raw.reportSnapshot(peerId, finished ? SnapshotStatus.SnapshotFinish : SnapshotStatus.SnapshotFailure));
  }

  /**
   * A message from a peer (its snapshot data, if any, already in memory). Checked by the message
   * guard when the loop steps it (the guard compares with the log as raft has it then), and
   * dropped when an inbox is full (raft retransmits). Wakes a quiesced group, except a heartbeat
   * response (the answer to the quiesce heartbeat itself) and a quiesce heartbeat.
   */
  receive(message: Message, quiesce: boolean): void {
    const settings = this.host.settings;
    if (this.inbox.length >= settings.maxInboxLength || this.host.inboxTotal >= settings.maxInboxTotal) {
      this.host.refusals.inboxFull++;
      this.host.refusalLog.note('inbox-full', `dropped a message from node ${message.from}: the inbox of partition ${this.id} holds ${this.inbox.length} items (${this.host.inboxTotal} in all)`);
      return;
    }
    if (!quiesce && message.type !== MessageType.MsgHeartbeatResp) this.wake();
    this.enqueue(() => {
      const view = this.guardView();
      const adjusted = dropCommitPastLog(message, view);
      if (adjusted.refusal !== undefined) {
        this.host.refusals.messages++;
        this.host.refusalLog.note(`guard:${message.from}:commit`, `node ${message.from} (term ${message.term}, partition ${this.id}): ${adjusted.refusal}`);
        message = adjusted.message;
      }
      const refusal = refuseInboundMessage(message, view);
      if (refusal !== undefined) {
        this.host.refusals.messages++;
        this.host.refusalLog.note(
          `guard:${message.from}:${message.type}`,
          `refused ${MessageType[message.type] ?? message.type} from node ${message.from} (term ${message.term}, partition ${this.id}): ${refusal}`,
        );
        return;
      }
      try {
        this.raw.step(message);
      } catch (error) {
        // e.g. a response from a peer that is not in the configuration: drop it.
        this.log(`dropped a message from node ${message.from}: ${(error as Error).message}`);
        return;
      }
      if (quiesce && message.type === MessageType.MsgHeartbeat) this.quiesceRequestedBy = message.from;
      this.handOverIfFollowerLostLog(message);
    });
  }

  /** Resolves once the pump and both storage threads have stopped (a stopping node waits for it). */
  async settled(): Promise<void> {
    for (;;) {
      const running = [this.pumpRunning, this.appending, this.applying].filter((work) => work !== undefined);
      if (running.length === 0) return;
      await Promise.all(running.map((work) => work.catch(() => {})));
    }
  }

  /** Starts ticking again (no-op when awake). */
  wake(): void {
    if (!this.isQuiesced) return;
    this.isQuiesced = false;
    this.host.woke(this);
    this.quiescedUnder = 0;
  }

  private quiesce(under: number): void {
    this.isQuiesced = true;
    this.quiescedUnder = under;
    this.pendingTicks = 0;
    this.host.quiesced(this);
  }

  /** Idle here: nothing queued, nothing to hand out, nothing pending, everything applied. */
  private isIdle(): boolean {
    return (
      this.pumpRunning === undefined &&
      this.appending === undefined &&
      this.applying === undefined &&
      this.inbox.length === 0 &&
      this.waiters.size === 0 &&
      this.snapshotting === undefined &&
      !this.raw.hasReady() &&
      this.stateMachine.applied >= this.raw.basicStatus().commit
    );
  }

  /**
   * On a leader's tick: quiesce when every live follower holds the whole log and knows it is
   * committed. Sends the quiesce heartbeats itself (raft would send plain ones on its next tick).
   */
  private maybeQuiesce(): boolean {
    if (!this.isLeader || !this.isIdle()) return false;
    const status = this.raw.basicStatus();
    const lastIndex = this.raftLastIndex();
    if (status.leadTransferee !== 0 || status.commit !== lastIndex || lastIndex === 0) return false;
    let caughtUp = true;
    const followers: { id: number; match: number }[] = [];
    this.raw.withProgress((id, type, progress) => {
      if (id === this.host.nodeId) return;
      followers.push({ id, match: progress.match });
      // A follower whose node is down does not hold the group awake; it wakes the group with a
      // (pre-)vote or a heartbeat response when it comes back.
      if (type === ProgressType.ProgressTypePeer && progress.match !== lastIndex && this.host.isPeerLive(id)) caughtUp = false;
    });
    if (!caughtUp) return false;
    const heartbeats: Message[] = followers.map(({ id, match }) => ({
      type: MessageType.MsgHeartbeat,
      to: id,
      from: this.host.nodeId,
      term: status.term,
      logTerm: 0,
      index: 0,
      entries: [],
      // etcd's heartbeat: min(match, committed): never a commit the follower may not hold.
      commit: Math.min(match, status.commit),
      vote: 0,
      reject: false,
      rejectHint: 0,
      responses: [],
    }));
    if (heartbeats.length > 0) this.host.send(this, heartbeats, true);
    this.quiesce(this.host.nodeId);
    return true;
  }

  /** After a quiesce heartbeat was stepped and its Ready handled: follow the leader into quiescence. */
  private maybeFollowIntoQuiescence(): void {
    const leader = this.quiesceRequestedBy;
    this.quiesceRequestedBy = 0;
    if (leader === 0 || this.isQuiesced || this.raftState !== 'StateFollower' || this.lead !== leader) return;
    if (!this.isIdle() || !this.host.isPeerLive(leader)) return;
    const status = this.raw.basicStatus();
    if (status.commit !== this.raftLastIndex()) return;
    this.quiesce(leader);
  }

  private hasWork(): boolean {
    return this.inbox.length > 0 || this.pendingTicks > 0 || this.raw.hasReady();
  }

  /**
   * Starts the pump unless it runs; it loops until there is nothing left to do. It starts a
   * microtask later, so a pump that never waits (async writes) is never entered again from
   * inside itself and everything queued in the same callback (a frame's messages) goes into one
   * Ready; `afterTurn` (proposals): after this turn's other I/O callbacks (setImmediate).
   */
  kick(afterTurn = false): void {
    if (this.pumpRunning !== undefined || !this.host.running) return;
    const start = afterTurn ? new Promise<void>((resolve) => setImmediate(resolve)) : Promise.resolve();
    this.pumpRunning = start
      .then(() => this.pump())
      .then(
        () => {
          this.pumpRunning = undefined;
          this.afterWork();
        },
        (error: unknown) => {
          this.pumpRunning = undefined;
          this.host.fail(error instanceof Error ? error : new Error(String(error)));
        },
      );
  }

  /** The pump or a storage thread stopped: work queued meanwhile, or follow the leader into quiescence. */
  private afterWork(): void {
    if (this.host.running && this.hasWork()) this.kick();
    else if (this.quiesceRequestedBy !== 0 && this.pumpRunning === undefined && this.appending === undefined && this.applying === undefined) {
      this.maybeFollowIntoQuiescence();
    }
  }

  private async pump(): Promise<void> {
    while (this.host.running) {
      this.drainInbox();
      if (!this.raw.hasReady()) return;
      const ready = this.raw.ready();
      if (this.host.settings.asyncStorageWrites) {
        // No advance: the storage threads' responses tell raft what is durable and applied.
        this.routeReady(ready);
        continue;
      }
      await this.handleReady(ready);
      // Everything in the Ready is persisted and applied: raft may now forget it.
      this.raw.advance(ready);
      this.maybeRequestConsistencyCheck();
      this.maybeSnapshot();
    }
  }

  /**
   * Async storage writes: hands a Ready's messages to the transport and the local storage
   * threads (see the header). Synchronous: nothing here waits.
   */
  private routeReady(ready: Ready): void {
    this.noteSoftState(ready);
    const network: Message[] = [];
    for (const message of ready.messages) {
      if (message.to === LOCAL_APPEND_THREAD) {
        const snapshot = message.snapshot;
        // raft restored it when it stepped the MsgSnap (before this Ready): see restoredThrough.
        if (snapshot !== undefined && !isEmptySnap(snapshot)) this.restoredThrough = Math.max(this.restoredThrough, snapshot.metadata.index);
        this.appendQueue.push({ message });
      } else if (message.to === LOCAL_APPLY_THREAD) {
        this.applyQueue.push(message);
      } else {
        network.push(message);
      }
    }
    // Nothing raft puts in a Ready's own messages promises durability in this mode (those
    // responses ride in the MsgStorageAppend): a leader's appends go out before its own write.
    if (network.length > 0) this.host.send(this, network);
    if (this.appendQueue.length > 0) this.kickAppendThread();
    if (this.applyQueue.length > 0) this.kickApplyThread();
  }

  private kickAppendThread(): void {
    if (this.appending !== undefined) return;
    this.appending = this.runThread(
      () => this.runAppendThread(),
      (succeeded) => {
        this.appending = undefined;
        // Queued after the loop found its queue empty, before it ended (kickAppendThread saw it
        // still running): a snapshot's saveDeferredCommit while the node stops waited forever.
        if (succeeded && this.appendQueue.length > 0) this.kickAppendThread();
      },
      (failure) => {
        // Nothing queued behind a failed write may be written or acknowledged.
        for (const work of this.appendQueue.splice(0)) if ('saveCommit' in work) work.saveCommit.reject(failure);
      },
    );
  }

  /** Runs a storage thread's loop; once it ends, `ended`, then more work or quiescence; a failure stops the node. */
  private runThread(loop: () => Promise<void>, ended: (succeeded: boolean) => void, dropQueued: (failure: Error) => void): Promise<void> {
    return loop().then(
      () => {
        ended(true);
        this.afterWork();
      },
      (error: unknown) => {
        ended(false);
        const failure = error instanceof Error ? error : new Error(String(error));
        dropQueued(failure);
        this.host.fail(failure);
      },
    );
  }

  /** The local append thread: one write group for everything queued, then its responses, in order. */
  private async runAppendThread(): Promise<void> {
    while (this.appendQueue.length > 0) {
      const batch = this.appendQueue.splice(0);
      try {
        await this.writeAppendBatch(batch);
      } catch (error) {
        for (const work of batch) if ('saveCommit' in work) work.saveCommit.reject(error as Error);
        throw error;
      }
    }
  }

  private async writeAppendBatch(batch: readonly AppendWork[]): Promise<void> {
    const writes: Promise<void>[] = [];
    const messages: Message[] = [];
    let hasEntries = false;
    let saveCommit = false;
    // Each call queues in the store in call order, and the store flushes the appends and the hard
    // state called in one turn as one write group (entries first).
    for (const work of batch) {
      if ('saveCommit' in work) {
        saveCommit = true;
        continue;
      }
      const message = work.message;
      messages.push(message);
      const snapshot = message.snapshot;
      if (snapshot !== undefined && !isEmptySnap(snapshot)) {
        // The state machine takes the snapshot's state once the store holds it durably.
        writes.push(this.store.applySnapshot(snapshot).then(() => this.installedSnapshot(snapshot.data, snapshot.metadata)));
      }
      if (message.entries.length > 0) {
        hasEntries = true;
        writes.push(this.store.append(message.entries));
      }
      // A hard state rides in the message's term/vote/commit (all 0: unchanged).
      if (message.term !== 0 || message.vote !== 0 || message.commit !== 0) {
        this.latestHardState = { term: message.term, vote: message.vote, commit: message.commit };
      }
    }
    const hardState = this.hardStateToWrite(hasEntries, saveCommit);
    if (hardState !== undefined) writes.push(this.store.setHardState(hardState));
    await Promise.all(writes);
    // Durable: deliver what it promised, in raft's order. Responses to this node go through the
    // inbox (stepped by the pump), the rest to the transport.
    const local: Message[] = [];
    const network: Message[] = [];
    for (const message of messages) {
      for (const response of message.responses) (response.to === this.host.nodeId ? local : network).push(response);
    }
    if (network.length > 0) this.host.send(this, network);
    if (local.length > 0) this.enqueue(() => this.stepLocal(local));
    for (const work of batch) if ('saveCommit' in work) work.saveCommit.resolve();
  }

  /**
   * The hard state to write with a write group, if any. A hard state that only moves the commit
   * is not made durable on its own (etcd's MustSync): the commit is volatile in Raft and
   * relearnt from the leader after a restart. It rides with the next write that must be durable
   * (entries, a new term or vote, a snapshot), or is saved when asked (a snapshot, a stop).
   * Only term and vote must never be lost.
   */
  private hardStateToWrite(hasEntries: boolean, saveCommit: boolean): HardState | undefined {
    const latest = this.latestHardState;
    const saved = this.store.initialState().hardState;
    const changed = latest.term !== saved.term || latest.vote !== saved.vote || latest.commit !== saved.commit;
    const mustSync = hasEntries || saveCommit || latest.term !== saved.term || latest.vote !== saved.vote;
    return changed && mustSync ? latest : undefined;
  }

  /** Steps the storage threads' responses (raft's own messages: no guard). */
  private stepLocal(responses: readonly Message[]): void {
    for (const response of responses) this.raw.step(response);
  }

  private kickApplyThread(): void {
    if (this.applying !== undefined) return;
    this.applying = this.runThread(
      () => this.runApplyThread(),
      (succeeded) => {
        this.applying = undefined;
        // The same window as the append thread's (above).
        if (succeeded && this.applyQueue.length > 0) this.kickApplyThread();
      },
      () => (this.applyQueue.length = 0),
    );
  }

  /** The local apply thread: committed (and durable) entries in order, then raft hears of it. */
  private async runApplyThread(): Promise<void> {
    while (this.applyQueue.length > 0) {
      const message = this.applyQueue.shift()!;
      for (const entry of message.entries) {
        // Covered by a snapshot raft restored meanwhile (checked at each entry: an await below
        // lets the pump step a MsgSnap).
        if (entry.index <= this.restoredThrough) continue;
        await this.applyEntry(entry);
      }
      const responses = message.responses;
      this.enqueue(() => this.stepLocal(responses));
      this.maybeRequestConsistencyCheck();
      this.maybeSnapshot();
    }
  }

  /** Ticks, messages, proposals and reports: synchronous RawNode calls, between Readys only. */
  private drainInbox(): void {
    // A group whose log is empty joined without data: it must not campaign (see bootstrap.ts),
    // so it does not tick until a leader gave it a snapshot or entries.
    const mayTick = this.raftLastIndex() > 0;
    // After a long stall (a slow fsync) do not fire a burst of ticks that would start an
    // election at once: at most half an election timeout.
    const ticks = Math.min(this.pendingTicks, Math.max(1, Math.floor(this.host.settings.electionTick / 2)));
    this.pendingTicks = 0;
    if (mayTick) for (let tick = 0; tick < ticks; tick++) this.raw.tick();
    const count = this.inbox.length;
    this.host.inboxTotal -= count;
    // Actions may queue more (after-Ready work): only those queued before are run now.
    for (const action of this.inbox.splice(0, count)) action();
  }

  /** The last index of raft's log, entries not yet durable included (the store's may lag with async writes). */
  private raftLastIndex(): number {
    return this.raw.raft.raftLog.lastIndex();
  }

  /** Leader and role changes: narrated, counted; a lost leader answers the pending proposals. */
  private noteSoftState(ready: Ready): void {
    if (ready.softState !== undefined) {
      if (this.host.settings.narrate && (ready.softState.lead !== this.lead || ready.softState.raftState !== this.raftState)) {
        this.log(`${ready.softState.raftState.replace('State', '').toLowerCase()} (leader ${ready.softState.lead || 'unknown'}, term ${this.raw.basicStatus().term})`);
      }
      const lostLeader = this.lead !== 0 && ready.softState.lead !== this.lead;
      if (ready.softState.lead !== this.lead && ready.softState.lead !== 0) this.host.counters.leaderChanges++;
      this.lead = ready.softState.lead;
      this.raftState = ready.softState.raftState;
      if (lostLeader) {
        // A proposal forwarded to a leader that is gone is most likely lost: answer now (503)
        // rather than at the timeout, so clients retry with the new leader. It may still be
        // committed by the next leader; a retried put is then applied twice, harmlessly.
        this.settleAll(new ProposalError('ERR_LEADER_CHANGED', 'the leader changed while the proposal was pending: retry', this.lead));
      }
    }
    // A quiesced group that has messages to send is not idle any more (e.g. a leader that learnt
    // from a heartbeat response that a follower is behind).
    if (this.isQuiesced && ready.messages.length > 0) this.wake();
  }

  /** Synchronous mode: persist, send, apply one Ready (see the header). */
  private async handleReady(ready: Ready): Promise<void> {
    this.noteSoftState(ready);
    // 1. Persist. The snapshot first: it resets the log, the entries (if any) follow it.
    if (ready.snapshot !== undefined && !isEmptySnap(ready.snapshot)) {
      const snapshot = ready.snapshot;
      this.restoredThrough = Math.max(this.restoredThrough, snapshot.metadata.index);
      await this.store.applySnapshot(snapshot);
      this.installedSnapshot(snapshot.data, snapshot.metadata);
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
      if (early.length > 0) this.host.send(this, early);
    }
    // Entries and hard state called in one tick: the store checks them in this order (a commit
    // may cover the new entries) and flushes them as ONE write group, entries first.
    if (ready.hardState !== undefined) this.latestHardState = ready.hardState;
    const persisted: Promise<void>[] = [];
    if (ready.entries.length > 0) persisted.push(this.store.append(ready.entries));
    const hardState = this.hardStateToWrite(ready.entries.length > 0, false);
    if (hardState !== undefined) persisted.push(this.store.setHardState(hardState));
    await Promise.all(persisted);
    // 2. Send, now that what the messages promise is durable.
    if (afterPersist.length > 0) this.host.send(this, afterPersist);
    // 3. Apply.
    for (const entry of ready.committedEntries) await this.applyEntry(entry);
  }

  /** The store holds a snapshot from the leader durably: the state machine and members follow it. */
  private installedSnapshot(data: Uint8Array | undefined, metadata: Snapshot['metadata']): void {
    this.stateMachine.restore(data, metadata.index);
    this.setMembers(metadata.confState);
    this.lastSnapshotIndex = metadata.index;
    this.lastSnapshotBytes = data?.length ?? 0;
    this.logBytesSinceSnapshot = 0;
    this.snapshotCheckAt = nextSnapshotAt(metadata.index, this.host.settings.snapshotEvery, this.host.nodeId);
    if (this.host.settings.narrate) this.log(`installed a snapshot at index ${metadata.index} (term ${metadata.term}, ${this.stateMachine.size} keys)`);
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
    // Entries at or below a snapshot are not counted (a restart replays only those above it).
    if (entry.index > this.lastSnapshotIndex) this.logBytesSinceSnapshot += entry.data?.length ?? 0;
    if (result.commands !== undefined) for (const command of result.commands) this.settle(command.requestId, undefined, entry.index);
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
      this.enqueue(() => this.proposeQuietly(encodeConsistencyRecord(report)));
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
    this.enqueue(() => this.proposeQuietly(encodeConsistencyRecord({ consistency: 'request', requestId: randomUUID() })));
  }

  /**
   * Saves a commit that only raft's latest hard state holds yet (see hardStateToWrite). With
   * async writes the append thread does it, after every MsgStorageAppend queued before: only
   * it knows which hard state goes with the entries it has written.
   */
  async saveDeferredCommit(): Promise<void> {
    if (this.host.settings.asyncStorageWrites) {
      await new Promise<void>((resolve, reject) => {
        this.appendQueue.push({ saveCommit: { resolve, reject } });
        this.kickAppendThread();
      });
      return;
    }
    const saved = this.store.initialState().hardState;
    if (this.latestHardState.commit > saved.commit && this.latestHardState.term === saved.term && this.latestHardState.vote === saved.vote) {
      await this.store.setHardState(this.latestHardState);
    }
  }

  /**
   * Starts a snapshot when one is due, unless one is being saved. The state is taken here,
   * synchronously, as of `applied`, and encoded a slice at a time; saving it (the data file, then the metadata and the
   * compaction) runs beside the Ready loop, which goes on meanwhile: the store writes the data
   * file beside its queue, so appends do not wait for it (issue 18: no stall every N entries).
   */
  private maybeSnapshot(): void {
    if (this.snapshotting !== undefined) return;
    const applied = this.stateMachine.applied;
    // A snapshot from the leader is on its way into the store and the state machine: it replaces
    // whatever would be saved now.
    if (this.restoredThrough > applied) return;
    const { snapshotEvery, snapshotLogRatio } = this.host.settings;
    if (applied < this.snapshotCheckAt) return;
    // A snapshot costs the whole state (encoded, written, fsynced): taken every `snapshotEvery`
    // entries whatever the state's size, it cost every put O(state / snapshotEvery), which grew
    // without bound with the state (issue 18: 3xC=64 fell by a third as a benchmark's state
    // grew to tens of MB). So a point is skipped until the log since the last snapshot is at
    // least `snapshotLogRatio` times that snapshot's size: each snapshot's cost is then paid by
    // at least as many bytes of entries, a bounded cost per byte put, and the log kept on disk
    // and replayed at a restart is at most about that many times the state (Redis rewrites its
    // append-only file on the same rule). The next chance is this node's next grid point, so
    // the members' snapshots stay apart (nextSnapshotAt).
    if (this.logBytesSinceSnapshot < this.lastSnapshotBytes * snapshotLogRatio) {
      while (this.snapshotCheckAt <= applied) this.snapshotCheckAt += snapshotEvery;
      return;
    }
    this.snapshotCheckAt = nextSnapshotAt(applied, snapshotEvery, this.host.nodeId);
    this.logBytesSinceSnapshot = 0;
    // The saved conf state is the one as of `applied` (conf changes are saved when applied).
    const confState = this.store.initialState().confState;
    // The state as of `applied`, taken now and encoded in slices while the loop goes on.
    const data = this.stateMachine.snapshotInSlices();
    const keys = this.stateMachine.size;
    this.snapshotting = data.then((bytes) => this.saveSnapshot(applied, confState, bytes, keys)).then(
      () => {
        this.snapshotting = undefined;
      },
      (error: unknown) => {
        this.snapshotting = undefined;
        this.host.fail(error instanceof Error ? error : new Error(String(error)));
      },
    );
  }

  private async saveSnapshot(applied: number, confState: ConfState, data: Uint8Array, keys: number): Promise<void> {
    // The data file is written first, outside the store's write queue: only the KV record that
    // names it takes a turn there, so this node's appends do not wait for the whole state to
    // reach the disk (issue 18: a leader answered no put for half a second at each snapshot).
    const preparing = this.store.prepareSnapshotData(applied, data);
    // The commit must cover the snapshot in the store before it does (a restart needs commit >= applied).
    const [, prepared] = await Promise.all([this.saveDeferredCommit(), preparing]);
    // A snapshot from the leader can be installed while this one is saved (the storage thread, or
    // the next Ready, does not wait for it): the store then refuses this older snapshot
    // (ERR_SNAP_OUT_OF_DATE) or a compaction below the received one (ERR_COMPACTED). The
    // received snapshot covers both: skip them. A soak run stopped a follower on this.
    if (!(await this.unlessSuperseded(this.store.createSnapshot(applied, confState, prepared), applied, ErrorCode.SnapOutOfDate))) return;
    if (applied > this.lastSnapshotIndex) {
      this.lastSnapshotIndex = applied;
      this.lastSnapshotBytes = data.length;
    }
    this.host.counters.snapshots++;
    const compactTo = applied - this.host.settings.keepEntries;
    // Never past the snapshot just taken (compactTo < applied), and only forward.
    if (compactTo > this.store.firstIndex() - 1 && (await this.unlessSuperseded(this.store.compact(compactTo), compactTo, ErrorCode.Compacted))) {
      this.host.counters.compactions++;
    }
    if (this.host.settings.narrate) this.log(`snapshot at index ${applied} (${keys} keys); log now ${this.store.firstIndex()}..${this.store.lastIndex()}`);
  }

  /**
   * Waits for `write`; false when the store refused it with `code` because a snapshot from the
   * leader at or above `index` was installed meanwhile (any other failure is thrown).
   */
  private async unlessSuperseded(write: Promise<unknown>, index: number, code: ErrorCode): Promise<boolean> {
    try {
      await write;
      return true;
    } catch (error) {
      if ((error as { code?: string }).code !== code || this.restoredThrough < index) throw error;
      if (this.host.settings.narrate) this.log(`snapshot at index ${index} skipped: the leader's snapshot at ${this.restoredThrough} was installed meanwhile`);
      return false;
    }
  }

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
      else if (id !== this.host.nodeId && type === ProgressType.ProgressTypePeer && progress.match > transfereeMatch) {
        transferee = id;
        transfereeMatch = progress.match;
      }
    });
    if (message.rejectHint >= acknowledged || transferee === 0) return;
    const now = Date.now();
    if (now - this.lostLogHandOverAt < 2 * this.host.settings.electionTick * this.host.settings.tickMs) return;
    this.lostLogHandOverAt = now;
    this.log(
      `node ${message.from} lost its log (it ends at ${message.rejectHint}, below the ${acknowledged} it acknowledged): ` +
        `handing leadership to node ${transferee}, a new leader catches it up by snapshot`,
    );
    this.raw.transferLeader(transferee);
  }

  /** This group as the message guard sees it, at the moment a message is stepped. */
  private guardView(): MessageGuardView {
    return {
      localId: this.host.nodeId,
      isMember: (peerId) => this.isMember(peerId),
      // raft's log, entries still being written included (with async writes the store's lags).
      lastIndex: this.raftLastIndex(),
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
}

/**
 * The applied index at which a node takes its next snapshot: the first point of its own grid
 * (every `every` entries, shifted by a quarter of `every` per node id, so three members snapshot
 * at three different indexes) at least half an interval past the last snapshot. All members
 * snapshotting at the same index saturated the CPU of all of them at once, and no quorum was
 * left to commit (issue 18: a stall of about a second at every snapshot); one member at a time
 * leaves the other two to commit. The interval stays `every` on average and at most 1.5x.
 */
export function nextSnapshotAt(lastSnapshotIndex: number, every: number, nodeId: number): number {
  const phase = ((nodeId - 1) % 4) * Math.floor(every / 4);
  const offset = (((lastSnapshotIndex - phase) % every) + every) % every;
  let next = lastSnapshotIndex - offset + every;
  if (next - lastSnapshotIndex < every / 2) next += every;
  return next;
}

