/**
 * Port of etcd raft v3.6 raft.go: the Raft state machine (election, replication, commit,
 * snapshots, membership changes, ReadIndex, leadership transfer, ForgetLeader).
 *
 * Storage writes are synchronous or asynchronous as RawNode decides (raft itself only sends
 * acknowledgements through msgsAfterAppend and steps the storage responses). Go panics are
 * thrown as Errors with Go's message; errors Go returns from Step are returned here as a
 * RaftError (RawNode turns them into throws). Storage errors other than the etcd sentinels are
 * rethrown unchanged and leave the node unusable.
 */
import { decodeConfChange, decodeConfChangeV2 } from '../codec.js';
import { ErrorCode } from '../errors.js';
import {
  EntryType,
  MessageType,
  NO_LIMIT,
  emptySnapshot,
  isEmptyHardState,
  type ConfChangeV2,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type Snapshot,
  type Storage,
} from '../types.js';
import {
  Changer,
  type ConfChangeI,
  asV2,
  confStateEquivalent,
  enterJoint,
  goConfChangeString,
  goConfStateString,
  leaveJoint,
  marshalConfChange,
  restore,
} from './confchange.js';
import { RaftLog, hasErrorCode, isOutOfBoundsError } from './log.js';
import { getDefaultLogger, raftPanic, type RaftLogger } from './logger.js';
import { VoteResult, jointConfigIds, jointVoteResult } from './quorum.js';
import { ReadOnly, ReadOnlyOption, type ReadState } from './read-only.js';
import { Config as TrackerConfig, Inflights, Progress, ProgressTracker, StateType as ProgressState, type ProgressMap } from './tracker.js';
import {
  NONE,
  isLocalMsgTarget,
  newMessage,
  payloadsSize,
  entsSize,
  voteRespMsgType,
  type EntryId,
  type LogSlice,
} from './util.js';

/** The role of a node. Values match Go's raft.StateType. */
export enum StateType {
  StateFollower = 0,
  StateCandidate = 1,
  StateLeader = 2,
  StatePreCandidate = 3,
}

export function raftStateToString(state: StateType): string {
  return StateType[state] ?? `StateType(${String(state)})`;
}

/**
 * Errors Go's RawNode methods return (not panics), plus ERR_STOPPED: every call on a RawNode
 * that already failed with a storage error or a raft panic (Go's "raft: stopped").
 */
export type RaftErrorCode =
  | 'ERR_PROPOSAL_DROPPED'
  | 'ERR_STEP_LOCAL_MSG'
  | 'ERR_STEP_PEER_NOT_FOUND'
  | 'ERR_STOPPED'
  /** ready() again before advance() of the Ready it returned (etcd panics): nothing changed. */
  | 'ERR_READY_NOT_ADVANCED'
  /** bootstrap() of a storage that already holds a log (a restart), or without peers. */
  | 'ERR_BOOTSTRAP'
  /** advance() on a RawNode with asyncStorageWrites (etcd panics): nothing changed. */
  | 'ERR_ADVANCE_ASYNC'
  /** A RaftConfig Go's Config.validate refuses (Go's message), or a value Go's types cannot hold. */
  | 'ERR_CONFIG';

export class RaftError extends Error {
  readonly code: RaftErrorCode;
  constructor(code: RaftErrorCode, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'RaftError';
    this.code = code;
  }
}

export const ERR_PROPOSAL_DROPPED_MESSAGE = 'raft proposal dropped';

export function proposalDroppedError(): RaftError {
  return new RaftError('ERR_PROPOSAL_DROPPED', ERR_PROPOSAL_DROPPED_MESSAGE);
}

type CampaignType = 'CampaignPreElection' | 'CampaignElection' | 'CampaignTransfer';
const CAMPAIGN_TRANSFER_CONTEXT = new TextEncoder().encode('CampaignTransfer');

function bytesEqual(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  const left = a ?? new Uint8Array();
  const right = b ?? new Uint8Array();
  if (left.length !== right.length) return false;
  for (let i = 0; i < left.length; i++) if (left[i] !== right[i]) return false;
  return true;
}

function hex(id: number): string {
  return id.toString(16);
}

function typeName(type: MessageType): string {
  return MessageType[type] ?? String(type);
}

/** Configuration of a raft node (Go's raft.Config, camelCase). */
export interface RaftConfig {
  /** This node's id; not 0. */
  id: number;
  /** Ticks without hearing from a leader before campaigning; must exceed heartbeatTick. */
  electionTick: number;
  /** Ticks between leader heartbeats; > 0. */
  heartbeatTick: number;
  storage: Storage;
  /** The last applied index, on restart (0: start from the storage's first index - 1). */
  applied?: number;
  /**
   * Byte limit (encoded entry sizes) of one MsgApp. Omitted: no limit. 0 (explicit): one entry
   * per message, as in Go.
   */
  maxSizePerMsg?: number;
  /** Byte limit of committed entries handed out per Ready (omitted or 0: maxSizePerMsg). */
  maxCommittedSizePerReady?: number;
  /** Limit on uncommitted payload bytes on a leader (omitted or 0: no limit). */
  maxUncommittedEntriesSize?: number;
  /** In-flight MsgApps per follower (omitted: 256; Go has no default and requires > 0). */
  maxInflightMsgs?: number;
  /** In-flight bytes per follower (omitted or 0: no limit). */
  maxInflightBytes?: number;
  checkQuorum?: boolean;
  preVote?: boolean;
  readOnlyOption?: ReadOnlyOption;
  logger?: RaftLogger;
  disableProposalForwarding?: boolean;
  disableConfChangeValidation?: boolean;
  stepDownOnRemoval?: boolean;
  /**
   * etcd's AsyncStorageWrites (read by RawNode): the Ready's writes and applies are handed to
   * local append/apply threads as MsgStorageAppend / MsgStorageApply messages, whose responses
   * are stepped back once done, and advance() must not be called. Default false.
   */
  asyncStorageWrites?: boolean;
  /** Source of randomness in [0, 1) for election timeouts (default Math.random); tests pass a seeded one. */
  random?: () => number;
}

/** The validated configuration with every default filled in. */
interface ResolvedConfig {
  id: number;
  electionTick: number;
  heartbeatTick: number;
  storage: Storage;
  applied: number;
  maxSizePerMsg: number;
  maxCommittedSizePerReady: number;
  maxUncommittedEntriesSize: number;
  maxInflightMsgs: number;
  maxInflightBytes: number;
  checkQuorum: boolean;
  preVote: boolean;
  readOnlyOption: ReadOnlyOption;
  logger: RaftLogger;
  disableProposalForwarding: boolean;
  disableConfChangeValidation: boolean;
  stepDownOnRemoval: boolean;
  random: () => number;
}

export const DEFAULT_MAX_INFLIGHT_MSGS = 256;

function configError(message: string): RaftError {
  return new RaftError('ERR_CONFIG', message);
}

/**
 * Refuses what Go's types cannot hold: ids and sizes are uint64, ticks are int. A size may be
 * NO_LIMIT (Infinity, Go's math.MaxUint64).
 */
function checkConfigNumber(name: string, value: unknown, kind: 'count' | 'size'): void {
  if (value === undefined) return;
  const valid =
    typeof value === 'number' && (Number.isSafeInteger(value) ? value >= 0 : kind === 'size' && value === Number.POSITIVE_INFINITY);
  if (!valid) throw configError(`${name} must be a non-negative integer${kind === 'size' ? ' or NO_LIMIT' : ''} (got ${String(value)})`);
}

/**
 * Go's Config.validate: the same checks in the same order, with Go's messages (as RaftError
 * ERR_CONFIG), and the same defaults for the same values (0 for a size means what it means in
 * Go). Where JavaScript can omit an option that Go would see as 0, two defaults differ:
 * maxSizePerMsg omitted is NO_LIMIT (Go's 0 is one entry per message; pass 0 for that), and
 * maxInflightMsgs omitted is 256 (Go refuses 0). Returns the config with every default filled in.
 */
export function validateConfig(c: RaftConfig): ResolvedConfig {
  checkConfigNumber('id', c.id, 'count');
  checkConfigNumber('heartbeatTick', c.heartbeatTick, 'count');
  checkConfigNumber('electionTick', c.electionTick, 'count');
  checkConfigNumber('applied', c.applied, 'count');
  checkConfigNumber('maxSizePerMsg', c.maxSizePerMsg, 'size');
  checkConfigNumber('maxCommittedSizePerReady', c.maxCommittedSizePerReady, 'size');
  checkConfigNumber('maxUncommittedEntriesSize', c.maxUncommittedEntriesSize, 'size');
  checkConfigNumber('maxInflightMsgs', c.maxInflightMsgs, 'count');
  checkConfigNumber('maxInflightBytes', c.maxInflightBytes, 'size');
  if (c.id === NONE) throw configError('cannot use none as id');
  if (isLocalMsgTarget(c.id)) throw configError('cannot use local target as id');
  if (!(c.heartbeatTick > 0)) throw configError('heartbeat tick must be greater than 0');
  if (!(c.electionTick > c.heartbeatTick)) throw configError('election tick must be greater than heartbeat tick');
  if (c.storage === undefined || c.storage === null) throw configError('storage cannot be nil');
  const maxSizePerMsg = c.maxSizePerMsg ?? NO_LIMIT;
  const maxUncommittedEntriesSize = c.maxUncommittedEntriesSize || NO_LIMIT;
  // Go: MaxCommittedSizePerReady defaults to MaxSizePerMsg (they were once the same parameter).
  const maxCommittedSizePerReady = c.maxCommittedSizePerReady || maxSizePerMsg;
  const maxInflightMsgs = c.maxInflightMsgs ?? DEFAULT_MAX_INFLIGHT_MSGS;
  if (!(maxInflightMsgs > 0)) throw configError('max inflight messages must be greater than 0');
  let maxInflightBytes = c.maxInflightBytes ?? 0;
  if (maxInflightBytes === 0) maxInflightBytes = NO_LIMIT;
  else if (maxInflightBytes < maxSizePerMsg) throw configError('max inflight bytes must be >= max message size');
  const readOnlyOption = c.readOnlyOption ?? ReadOnlyOption.ReadOnlySafe;
  if (readOnlyOption === ReadOnlyOption.ReadOnlyLeaseBased && c.checkQuorum !== true) {
    throw configError('CheckQuorum must be enabled when ReadOnlyOption is ReadOnlyLeaseBased');
  }
  return {
    id: c.id,
    electionTick: c.electionTick,
    heartbeatTick: c.heartbeatTick,
    storage: c.storage,
    applied: c.applied ?? 0,
    maxSizePerMsg,
    maxCommittedSizePerReady,
    maxUncommittedEntriesSize,
    maxInflightMsgs,
    maxInflightBytes,
    checkQuorum: c.checkQuorum ?? false,
    preVote: c.preVote ?? false,
    readOnlyOption,
    logger: c.logger ?? getDefaultLogger(),
    disableProposalForwarding: c.disableProposalForwarding ?? false,
    disableConfChangeValidation: c.disableConfChangeValidation ?? false,
    stepDownOnRemoval: c.stepDownOnRemoval ?? false,
    random: c.random ?? Math.random,
  };
}

/** Volatile state: the known leader and this node's role. */
export interface RaftSoftState {
  lead: number;
  raftState: StateType;
}

/** Go's confChangeToMsg: a MsgProp carrying the encoded change (undefined: leave joint). */
export function confChangeToMsg(cc: ConfChangeI | undefined): Message {
  const { type, data } = marshalConfChange(cc);
  const entry: Entry = { type, term: 0, index: 0 };
  if (data !== undefined) entry.data = data;
  return newMessage({ type: MessageType.MsgProp, entries: [entry] });
}

/** Decodes a conf-change entry's payload (nil data decodes as the empty change). */
function decodeConfChangeEntry(entry: Entry): ConfChangeI | undefined {
  const data = entry.data ?? new Uint8Array();
  if (entry.type === EntryType.ConfChange) return decodeConfChange(data);
  if (entry.type === EntryType.ConfChangeV2) return decodeConfChangeV2(data);
  return undefined;
}

export type StepFunction = (m: Message) => RaftError | undefined;

export class Raft {
  id: number;
  term = 0;
  vote = 0;
  readStates: ReadState[] = [];
  raftLog: RaftLog;
  maxMsgSize: number;
  maxUncommittedSize: number;
  trk: ProgressTracker;
  state: StateType = StateType.StateFollower;
  /** Whether this node is a learner in the current config. */
  isLearner = false;
  /** Messages to send once the current Ready's writes are done (they do not depend on them). */
  msgs: Message[] = [];
  /**
   * Messages that may only be sent after the Ready's entries/hard state are durable
   * (MsgAppResp, MsgVoteResp, MsgPreVoteResp); self-addressed ones are stepped on Advance.
   */
  msgsAfterAppend: Message[] = [];
  lead = NONE;
  /** The node leadership is being transferred to (NONE when no transfer is in progress). */
  leadTransferee = NONE;
  /**
   * Only one conf change may be pending (in the log, not yet applied) at a time: this is the
   * index of the latest one, or the leader's last index at election (conservatively).
   */
  pendingConfIndex = 0;
  disableConfChangeValidation: boolean;
  /** Payload bytes of uncommitted entries in the leader's log (approximate, leader only). */
  uncommittedSize = 0;
  readOnly: ReadOnly;
  /** Ticks since the last election timeout (leader/candidate) or valid leader message (follower). */
  electionElapsed = 0;
  /** Ticks since the last heartbeat (leader only). */
  heartbeatElapsed = 0;
  checkQuorum: boolean;
  preVote: boolean;
  heartbeatTimeout: number;
  electionTimeout: number;
  /** Random in [electionTimeout, 2*electionTimeout - 1], reset on every state change. */
  randomizedElectionTimeout = 0;
  disableProposalForwarding: boolean;
  stepDownOnRemoval: boolean;
  logger: RaftLogger;
  /** ReadIndex requests received before the leader committed an entry of its term. */
  pendingReadIndexMessages: Message[] = [];
  private random: () => number;
  private tickFunction: () => void;
  /** The role-specific step function (stepLeader/stepCandidate/stepFollower); tests may replace it. */
  stepFunction: StepFunction;

  constructor(config: RaftConfig) {
    const c = validateConfig(config);
    this.logger = c.logger;
    this.raftLog = new RaftLog(c.storage, c.logger, c.maxCommittedSizePerReady);
    const { hardState, confState } = c.storage.initialState();
    this.id = c.id;
    this.maxMsgSize = c.maxSizePerMsg;
    this.maxUncommittedSize = c.maxUncommittedEntriesSize;
    this.trk = new ProgressTracker(c.maxInflightMsgs, c.maxInflightBytes);
    this.electionTimeout = c.electionTick;
    this.heartbeatTimeout = c.heartbeatTick;
    this.checkQuorum = c.checkQuorum;
    this.preVote = c.preVote;
    this.readOnly = new ReadOnly(c.readOnlyOption);
    this.disableProposalForwarding = c.disableProposalForwarding;
    this.disableConfChangeValidation = c.disableConfChangeValidation;
    this.stepDownOnRemoval = c.stepDownOnRemoval;
    this.random = c.random;
    this.tickFunction = () => this.tickElection();
    this.stepFunction = (m) => this.stepFollower(m);

    const lastId = this.raftLog.lastEntryId();
    const [cfg, progress] = restore(new Changer(this.trk, lastId.index), confState);
    this.assertConfStatesEquivalent(confState, this.switchToConfig(cfg, progress));

    if (!isEmptyHardState(hardState)) this.loadState(hardState);
    if (c.applied > 0) this.raftLog.appliedTo(c.applied, 0);
    this.becomeFollower(this.term, NONE);

    this.logger.info(
      `newRaft ${hex(this.id)} [peers: [${this.trk.voterNodes().map(hex).join(',')}], term: ${this.term}, ` +
        `commit: ${this.raftLog.committed}, applied: ${this.raftLog.applied}, lastindex: ${lastId.index}, lastterm: ${lastId.term}]`,
    );
  }

  private assertConfStatesEquivalent(a: ConfState, b: ConfState): void {
    const error = confStateEquivalent(a, b);
    if (error !== undefined) raftPanic(this.logger, error.message);
  }

  hasLeader(): boolean {
    return this.lead !== NONE;
  }

  softState(): RaftSoftState {
    return { lead: this.lead, raftState: this.state };
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.raftLog.committed };
  }

  tick(): void {
    this.tickFunction();
  }

  /**
   * Queues `message` for sending (a copy: the caller's object is not changed). Sets `from`, and
   * `term` for everything but proposals and read-index requests (which carry term 0 so that
   * they are treated as local when forwarded).
   */
  send(message: Message): void {
    const m: Message = { ...message };
    if (m.from === NONE) m.from = this.id;
    if (
      m.type === MessageType.MsgVote ||
      m.type === MessageType.MsgVoteResp ||
      m.type === MessageType.MsgPreVote ||
      m.type === MessageType.MsgPreVoteResp
    ) {
      // Vote messages carry the term they are for (a future term for pre-votes), set by the caller.
      if (m.term === 0) raftPanic(this.logger, `term should be set when sending ${typeName(m.type)}`);
    } else {
      if (m.term !== 0) raftPanic(this.logger, `term should not be set when sending ${typeName(m.type)} (was ${m.term})`);
      if (m.type !== MessageType.MsgProp && m.type !== MessageType.MsgReadIndex) m.term = this.term;
    }
    if (m.type === MessageType.MsgAppResp || m.type === MessageType.MsgVoteResp || m.type === MessageType.MsgPreVoteResp) {
      // These acknowledge state that must be durable first (entries, term, vote).
      this.msgsAfterAppend.push(m);
    } else {
      if (m.to === this.id) raftPanic(this.logger, `message should not be self-addressed when sending ${typeName(m.type)}`);
      this.msgs.push(m);
    }
  }

  /** Sends a MsgApp (possibly empty, as a probe or commit update) to `to`. */
  sendAppend(to: number): void {
    this.maybeSendAppend(to, true);
  }

  /**
   * Sends a MsgApp with new entries to `to` unless its flow is paused; with sendIfEmpty false,
   * sends nothing when there is nothing new. Falls back to a snapshot when the entries or the
   * previous term are compacted. Returns whether a message was sent.
   */
  maybeSendAppend(to: number, sendIfEmpty: boolean): boolean {
    const pr = this.trk.progress.get(to)!;
    if (pr.isPaused()) return false;

    const prevIndex = pr.next - 1;
    let prevTerm: number;
    try {
      prevTerm = this.raftLog.term(prevIndex);
    } catch (error) {
      if (isOutOfBoundsError(error)) return this.maybeSendSnapshot(to, pr);
      throw error;
    }

    let entries: Entry[] = [];
    let compacted = false;
    // In StateReplicate with a full window, only an empty MsgApp (commit update) may go out.
    if (pr.state !== ProgressState.StateReplicate || !pr.inflights.full()) {
      try {
        entries = this.raftLog.entries(pr.next, this.maxMsgSize);
      } catch (error) {
        if (!hasErrorCode(error, ErrorCode.Compacted)) throw error;
        compacted = true;
      }
    }
    if (entries.length === 0 && !sendIfEmpty) return false;
    // The entries were compacted: send a snapshot instead.
    if (compacted) return this.maybeSendSnapshot(to, pr);

    this.send(
      newMessage({
        to,
        type: MessageType.MsgApp,
        index: prevIndex,
        logTerm: prevTerm,
        entries,
        commit: this.raftLog.committed,
      }),
    );
    pr.sentEntries(entries.length, payloadsSize(entries));
    pr.setSentCommit(this.raftLog.committed);
    return true;
  }

  /** Sends the latest snapshot to `to` if it is recently active; returns whether it did. */
  maybeSendSnapshot(to: number, pr: Progress): boolean {
    if (!pr.recentActive) {
      this.logger.debug(`ignore sending snapshot to ${hex(to)} since it is not recently active`);
      return false;
    }
    let snapshot: Snapshot;
    try {
      snapshot = this.raftLog.snapshot();
    } catch (error) {
      if (hasErrorCode(error, ErrorCode.SnapshotTemporarilyUnavailable)) {
        this.logger.debug(`${hex(this.id)} failed to send snapshot to ${hex(to)} because snapshot is temporarily unavailable`);
        return false;
      }
      throw error;
    }
    if (snapshot.metadata.index === 0) raftPanic(this.logger, 'need non-empty snapshot');
    const { index, term } = snapshot.metadata;
    this.logger.debug(
      `${hex(this.id)} [firstindex: ${this.raftLog.firstIndex()}, commit: ${this.raftLog.committed}] sent snapshot[index: ${index}, term: ${term}] to ${hex(to)} [${pr.toString()}]`,
    );
    pr.becomeSnapshot(index);
    this.logger.debug(`${hex(this.id)} paused sending replication messages to ${hex(to)} [${pr.toString()}]`);
    this.send(newMessage({ to, type: MessageType.MsgSnap, snapshot }));
    return true;
  }

  /** Heartbeat to `to`; its commit is capped at the follower's match (it may not have the entries). */
  sendHeartbeat(to: number, context: Uint8Array | undefined): void {
    const pr = this.trk.progress.get(to)!;
    const commit = Math.min(pr.match, this.raftLog.committed);
    const m = newMessage({ to, type: MessageType.MsgHeartbeat, commit });
    if (context !== undefined) m.context = context;
    this.send(m);
    pr.setSentCommit(commit);
  }

  bcastAppend(): void {
    this.trk.visit((id) => {
      if (id !== this.id) this.sendAppend(id);
    });
  }

  bcastHeartbeat(): void {
    const lastContext = this.readOnly.lastPendingRequestCtx();
    this.bcastHeartbeatWithCtx(lastContext === undefined || lastContext.length === 0 ? undefined : lastContext);
  }

  bcastHeartbeatWithCtx(context: Uint8Array | undefined): void {
    this.trk.visit((id) => {
      if (id !== this.id) this.sendHeartbeat(id, context);
    });
  }

  /** The application applied up to `index` (`size` bytes); may start leaving a joint config. */
  appliedTo(index: number, size: number): void {
    const oldApplied = this.raftLog.applied;
    const newApplied = Math.max(index, oldApplied);
    this.raftLog.appliedTo(newApplied, size);

    if (this.trk.config.autoLeave && newApplied >= this.pendingConfIndex && this.state === StateType.StateLeader) {
      // The joint config's entering change is applied: propose leaving it (an empty V2 change).
      // pendingConfIndex is set by the proposal, so this happens at most once.
      const error = this.step(confChangeToMsg(undefined));
      if (error !== undefined) {
        this.logger.debug(`not initiating automatic transition out of joint configuration ${this.trk.config.toString()}: ${error.message}`);
      } else {
        this.logger.info(`initiating automatic transition out of joint configuration ${this.trk.config.toString()}`);
      }
    }
  }

  appliedSnap(snapshot: Snapshot): void {
    const index = snapshot.metadata.index;
    this.raftLog.stableSnapTo(index);
    this.appliedTo(index, 0);
  }

  /** Advances commit to the quorum-acknowledged index if that entry is from the current term. */
  maybeCommit(): boolean {
    return this.raftLog.maybeCommit({ term: this.term, index: this.trk.committed() });
  }

  reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.abortLeaderTransfer();
    this.trk.resetVotes();
    const lastIndex = this.raftLog.lastIndex();
    this.trk.visit((id, pr) => {
      const fresh = new Progress({
        match: 0,
        next: lastIndex + 1,
        inflights: new Inflights(this.trk.maxInflight, this.trk.maxInflightBytes),
        isLearner: pr.isLearner,
      });
      if (id === this.id) fresh.match = lastIndex;
      this.trk.progress.set(id, fresh);
    });
    this.pendingConfIndex = 0;
    this.uncommittedSize = 0;
    this.readOnly = new ReadOnly(this.readOnly.option);
  }

  /** Appends proposals at the end of the leader's log (assigning term/index); false if dropped. */
  appendEntry(entries: Entry[]): boolean {
    let lastIndex = this.raftLog.lastIndex();
    const stamped = entries.map((entry, i): Entry => ({ ...entry, term: this.term, index: lastIndex + 1 + i }));
    if (!this.increaseUncommittedSize(stamped)) {
      this.logger.warn(
        `${hex(this.id)} appending new entries to log would exceed uncommitted entry size limit; dropping proposal`,
      );
      return false;
    }
    lastIndex = this.raftLog.append(stamped);
    // The leader acknowledges its own entries once they are durable (stepped on Advance).
    this.send(newMessage({ to: this.id, type: MessageType.MsgAppResp, index: lastIndex }));
    return true;
  }

  /** Follower/candidate tick: campaign after the randomized election timeout. */
  tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.pastElectionTimeout()) {
      this.electionElapsed = 0;
      const error = this.step(newMessage({ from: this.id, type: MessageType.MsgHup }));
      if (error !== undefined) this.logger.debug(`error occurred during election: ${error.message}`);
    }
  }

  /** Leader tick: heartbeats, and the check-quorum / transfer timeout every election timeout. */
  tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0;
      if (this.checkQuorum) {
        const error = this.step(newMessage({ from: this.id, type: MessageType.MsgCheckQuorum }));
        if (error !== undefined) this.logger.debug(`error occurred during checking sending heartbeat: ${error.message}`);
      }
      // A transfer that did not finish within an election timeout is abandoned.
      if (this.state === StateType.StateLeader && this.leadTransferee !== NONE) this.abortLeaderTransfer();
    }
    if (this.state !== StateType.StateLeader) return;
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0;
      const error = this.step(newMessage({ from: this.id, type: MessageType.MsgBeat }));
      if (error !== undefined) this.logger.debug(`error occurred during checking sending heartbeat: ${error.message}`);
    }
  }

  becomeFollower(term: number, lead: number): void {
    this.stepFunction = (m) => this.stepFollower(m);
    this.reset(term);
    this.tickFunction = () => this.tickElection();
    this.lead = lead;
    this.state = StateType.StateFollower;
    this.logger.info(`${hex(this.id)} became follower at term ${this.term}`);
  }

  becomeCandidate(): void {
    if (this.state === StateType.StateLeader) throw new Error('invalid transition [leader -> candidate]');
    this.stepFunction = (m) => this.stepCandidate(m);
    this.reset(this.term + 1);
    this.tickFunction = () => this.tickElection();
    this.vote = this.id;
    this.state = StateType.StateCandidate;
    this.logger.info(`${hex(this.id)} became candidate at term ${this.term}`);
  }

  becomePreCandidate(): void {
    if (this.state === StateType.StateLeader) throw new Error('invalid transition [leader -> pre-candidate]');
    // A pre-candidate changes neither term nor vote, so it does not call reset.
    this.stepFunction = (m) => this.stepCandidate(m);
    this.trk.resetVotes();
    this.tickFunction = () => this.tickElection();
    this.lead = NONE;
    this.state = StateType.StatePreCandidate;
    this.logger.info(`${hex(this.id)} became pre-candidate at term ${this.term}`);
  }

  becomeLeader(): void {
    if (this.state === StateType.StateFollower) throw new Error('invalid transition [follower -> leader]');
    this.stepFunction = (m) => this.stepLeader(m);
    this.reset(this.term);
    this.tickFunction = () => this.tickHeartbeat();
    this.lead = this.id;
    this.state = StateType.StateLeader;
    // The leader's own progress is always replicating and active.
    const pr = this.trk.progress.get(this.id)!;
    pr.becomeReplicate();
    pr.recentActive = true;
    // Any conf change in the uncommitted tail might be unapplied: block new ones until the
    // whole current log is applied.
    this.pendingConfIndex = this.raftLog.lastIndex();
    // The empty entry of the new term lets the leader commit earlier entries (§5.4.2).
    if (!this.appendEntry([{ type: EntryType.Normal, term: 0, index: 0 }])) {
      raftPanic(this.logger, 'empty entry was dropped');
    }
    this.logger.info(`${hex(this.id)} became leader at term ${this.term}`);
  }

  hup(campaignType: CampaignType): void {
    if (this.state === StateType.StateLeader) {
      this.logger.debug(`${hex(this.id)} ignoring MsgHup because already leader`);
      return;
    }
    if (!this.promotable()) {
      this.logger.warn(`${hex(this.id)} is unpromotable and can not campaign`);
      return;
    }
    if (this.hasUnappliedConfChanges()) {
      this.logger.warn(
        `${hex(this.id)} cannot campaign at term ${this.term} since there are still pending configuration changes to apply`,
      );
      return;
    }
    this.logger.info(`${hex(this.id)} is starting a new election at term ${this.term}`);
    this.campaign(campaignType);
  }

  /** Whether a committed but unapplied entry is a conf change (then campaigning must wait). */
  hasUnappliedConfChanges(): boolean {
    if (this.raftLog.applied >= this.raftLog.committed) return false;
    let found = false;
    const lo = this.raftLog.applied + 1;
    const hi = this.raftLog.committed + 1;
    try {
      this.raftLog.scan(lo, hi, this.raftLog.maxApplyingEntsSize, (entries) => {
        for (const entry of entries) {
          if (entry.type === EntryType.ConfChange || entry.type === EntryType.ConfChangeV2) {
            found = true;
            return false;
          }
        }
        return true;
      });
    } catch (error) {
      raftPanic(this.logger, `error scanning unapplied entries [${lo}, ${hi}): ${(error as Error).message}`);
    }
    return found;
  }

  /** Starts an election (or pre-election) and asks every voter for its vote. */
  campaign(campaignType: CampaignType): void {
    if (!this.promotable()) {
      this.logger.warn(`${hex(this.id)} is unpromotable; campaign() should have been called`);
    }
    let term: number;
    let voteMsg: MessageType;
    if (campaignType === 'CampaignPreElection') {
      this.becomePreCandidate();
      voteMsg = MessageType.MsgPreVote;
      // Pre-votes are requested for the next term without incrementing ours.
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      voteMsg = MessageType.MsgVote;
      term = this.term;
    }
    const ids = [...jointConfigIds(this.trk.config.voters)].sort((a, b) => a - b);
    for (const id of ids) {
      if (id === this.id) {
        // Our own vote, counted once it is durable (stepped on Advance).
        this.send(newMessage({ to: id, term, type: voteRespMsgType(voteMsg) }));
        continue;
      }
      const last = this.raftLog.lastEntryId();
      this.logger.info(
        `${hex(this.id)} [logterm: ${last.term}, index: ${last.index}] sent ${typeName(voteMsg)} request to ${hex(id)} at term ${this.term}`,
      );
      const m = newMessage({ to: id, term, type: voteMsg, index: last.index, logTerm: last.term });
      if (campaignType === 'CampaignTransfer') m.context = CAMPAIGN_TRANSFER_CONTEXT.slice();
      this.send(m);
    }
  }

  private poll(id: number, type: MessageType, granted: boolean): { granted: number; rejected: number; result: VoteResult } {
    if (granted) this.logger.info(`${hex(this.id)} received ${typeName(type)} from ${hex(id)} at term ${this.term}`);
    else this.logger.info(`${hex(this.id)} received ${typeName(type)} rejection from ${hex(id)} at term ${this.term}`);
    this.trk.recordVote(id, granted);
    return this.trk.tallyVotes();
  }

  /** Go's raft.Step: handles one message; returns the error Go would return (not thrown). */
  step(m: Message): RaftError | undefined {
    // Term handling first.
    if (m.term === 0) {
      // Local message.
    } else if (m.term > this.term) {
      if (m.type === MessageType.MsgVote || m.type === MessageType.MsgPreVote) {
        const force = bytesEqual(m.context, CAMPAIGN_TRANSFER_CONTEXT);
        const inLease = this.checkQuorum && this.lead !== NONE && this.electionElapsed < this.electionTimeout;
        if (!force && inLease) {
          // We heard from a leader within the minimum election timeout: ignore the vote
          // request (do not update the term, do not grant), so a partitioned node rejoining
          // cannot disrupt a healthy leader.
          const last = this.raftLog.lastEntryId();
          this.logger.info(
            `${hex(this.id)} [logterm: ${last.term}, index: ${last.index}, vote: ${hex(this.vote)}] ignored ${typeName(m.type)} from ${hex(m.from)} [logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}: lease is not expired (remaining ticks: ${this.electionTimeout - this.electionElapsed})`,
          );
          return undefined;
        }
      }
      if (m.type === MessageType.MsgPreVote) {
        // Never change our term in response to a PreVote.
      } else if (m.type === MessageType.MsgPreVoteResp && !m.reject) {
        // A granted pre-vote carries the future term we asked for; we bump our term when
        // the pre-election wins. A rejection with a higher term means we are behind.
      } else {
        this.logger.info(
          `${hex(this.id)} [term: ${this.term}] received a ${typeName(m.type)} message with higher term from ${hex(m.from)} [term: ${m.term}]`,
        );
        if (m.type === MessageType.MsgApp || m.type === MessageType.MsgHeartbeat || m.type === MessageType.MsgSnap) {
          this.becomeFollower(m.term, m.from);
        } else {
          this.becomeFollower(m.term, NONE);
        }
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === MessageType.MsgHeartbeat || m.type === MessageType.MsgApp)) {
        // A stale leader (e.g. after a partition) would never learn it was deposed if we
        // ignored it, since our higher-term vote requests are ignored in its lease. Answer so
        // it steps down.
        this.send(newMessage({ to: m.from, type: MessageType.MsgAppResp }));
      } else if (m.type === MessageType.MsgPreVote) {
        // Reject so the pre-candidate learns our newer term instead of waiting forever.
        const last = this.raftLog.lastEntryId();
        this.logger.info(
          `${hex(this.id)} [logterm: ${last.term}, index: ${last.index}, vote: ${hex(this.vote)}] rejected ${typeName(m.type)} from ${hex(m.from)} [logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}`,
        );
        this.send(newMessage({ to: m.from, term: this.term, type: MessageType.MsgPreVoteResp, reject: true }));
      } else if (m.type === MessageType.MsgStorageAppendResp) {
        if (m.index !== 0) {
          // Entries written under an older term may have been overwritten since (ABA): ignore.
          this.logger.info(
            `${hex(this.id)} [term: ${this.term}] ignored entry appends from a ${typeName(m.type)} message with lower term [term: ${m.term}]`,
          );
        }
        // The snapshot write is still valid whatever the term.
        if (m.snapshot !== undefined) this.appliedSnap(m.snapshot);
      } else {
        this.logger.info(
          `${hex(this.id)} [term: ${this.term}] ignored a ${typeName(m.type)} message with lower term from ${hex(m.from)} [term: ${m.term}]`,
        );
      }
      return undefined;
    }

    switch (m.type) {
      case MessageType.MsgHup:
        this.hup(this.preVote ? 'CampaignPreElection' : 'CampaignElection');
        break;
      case MessageType.MsgStorageAppendResp:
        if (m.index !== 0) this.raftLog.stableTo({ term: m.logTerm, index: m.index });
        if (m.snapshot !== undefined) this.appliedSnap(m.snapshot);
        break;
      case MessageType.MsgStorageApplyResp:
        if (m.entries.length > 0) {
          const index = m.entries[m.entries.length - 1]!.index;
          this.appliedTo(index, entsSize(m.entries));
          this.reduceUncommittedSize(payloadsSize(m.entries));
        }
        break;
      case MessageType.MsgVote:
      case MessageType.MsgPreVote: {
        // We can vote if this is a repeat of a vote we cast, or we have not voted and know of
        // no leader in this term, or this is a pre-vote for a future term.
        const canVote =
          this.vote === m.from ||
          (this.vote === NONE && this.lead === NONE) ||
          (m.type === MessageType.MsgPreVote && m.term > this.term);
        const lastId = this.raftLog.lastEntryId();
        const candidateLastId: EntryId = { term: m.logTerm, index: m.index };
        if (canVote && this.raftLog.isUpToDate(candidateLastId)) {
          // The response carries the message's term (for a pre-vote, the future term the
          // candidate will use), not ours.
          this.logger.info(
            `${hex(this.id)} [logterm: ${lastId.term}, index: ${lastId.index}, vote: ${hex(this.vote)}] cast ${typeName(m.type)} for ${hex(m.from)} [logterm: ${candidateLastId.term}, index: ${candidateLastId.index}] at term ${this.term}`,
          );
          this.send(newMessage({ to: m.from, term: m.term, type: voteRespMsgType(m.type) }));
          if (m.type === MessageType.MsgVote) {
            // Only record real votes.
            this.electionElapsed = 0;
            this.vote = m.from;
          }
        } else {
          this.logger.info(
            `${hex(this.id)} [logterm: ${lastId.term}, index: ${lastId.index}, vote: ${hex(this.vote)}] rejected ${typeName(m.type)} from ${hex(m.from)} [logterm: ${candidateLastId.term}, index: ${candidateLastId.index}] at term ${this.term}`,
          );
          this.send(newMessage({ to: m.from, term: this.term, type: voteRespMsgType(m.type), reject: true }));
        }
        break;
      }
      default:
        return this.stepFunction(m);
    }
    return undefined;
  }

  private stepLeader(m: Message): RaftError | undefined {
    // Messages that need no progress of the sender.
    switch (m.type) {
      case MessageType.MsgBeat:
        this.bcastHeartbeat();
        return undefined;
      case MessageType.MsgCheckQuorum:
        if (!this.trk.quorumActive()) {
          this.logger.warn(`${hex(this.id)} stepped down to follower since quorum is not active`);
          this.becomeFollower(this.term, NONE);
        }
        // Activity is measured per election timeout: start a new window.
        this.trk.visit((id, pr) => {
          if (id !== this.id) pr.recentActive = false;
        });
        return undefined;
      case MessageType.MsgProp: {
        if (m.entries.length === 0) raftPanic(this.logger, `${hex(this.id)} stepped empty MsgProp`);
        // We were removed from the configuration: drop proposals.
        if (!this.trk.progress.has(this.id)) return proposalDroppedError();
        if (this.leadTransferee !== NONE) {
          this.logger.debug(
            `${hex(this.id)} [term ${this.term}] transfer leadership to ${hex(this.leadTransferee)} is in progress; dropping proposal`,
          );
          return proposalDroppedError();
        }
        const entries = m.entries.slice();
        for (let i = 0; i < entries.length; i++) {
          const cc = decodeConfChangeEntry(entries[i]!);
          if (cc === undefined) continue;
          const alreadyPending = this.pendingConfIndex > this.raftLog.applied;
          const alreadyJoint = this.trk.config.voters[1].size > 0;
          const wantsLeaveJoint = asV2(cc).changes.length === 0;
          let failedCheck = '';
          if (alreadyPending) {
            failedCheck = `possible unapplied conf change at index ${this.pendingConfIndex} (applied to ${this.raftLog.applied})`;
          } else if (alreadyJoint && !wantsLeaveJoint) {
            failedCheck = 'must transition out of joint config first';
          } else if (!alreadyJoint && wantsLeaveJoint) {
            failedCheck = 'not in joint state; refusing empty conf change';
          }
          if (failedCheck !== '' && !this.disableConfChangeValidation) {
            this.logger.info(
              `${hex(this.id)} ignoring conf change ${goConfChangeString(cc)} at config ${this.trk.config.toString()}: ${failedCheck}`,
            );
            // Keep the slot (the proposer's index bookkeeping) but make it a no-op.
            entries[i] = { type: EntryType.Normal, term: 0, index: 0 };
          } else {
            this.pendingConfIndex = this.raftLog.lastIndex() + i + 1;
          }
        }
        if (!this.appendEntry(entries)) return proposalDroppedError();
        this.bcastAppend();
        return undefined;
      }
      case MessageType.MsgReadIndex:
        // A single voter can answer at once: it is the quorum.
        if (this.trk.isSingleton()) {
          const response = this.responseToReadIndexReq(m, this.raftLog.committed);
          if (response.to !== NONE) this.send(response);
          return undefined;
        }
        // Until the leader commits an entry of its term it does not know the commit index.
        if (!this.committedEntryInCurrentTerm()) {
          this.pendingReadIndexMessages.push(m);
          return undefined;
        }
        this.sendMsgReadIndexResponse(m);
        return undefined;
      case MessageType.MsgForgetLeader:
        return undefined; // no-op on the leader
      default:
        break;
    }

    // Messages from a follower: they need its progress.
    const pr = this.trk.progress.get(m.from);
    if (pr === undefined) {
      this.logger.debug(`${hex(this.id)} no progress available for ${hex(m.from)}`);
      return undefined;
    }
    switch (m.type) {
      case MessageType.MsgAppResp:
        this.handleAppendResponse(m, pr);
        break;
      case MessageType.MsgHeartbeatResp:
        pr.recentActive = true;
        pr.msgAppFlowPaused = false;
        // A lagging or probing follower gets entries on every heartbeat response.
        if (pr.match < this.raftLog.lastIndex() || pr.state === ProgressState.StateProbe) this.sendAppend(m.from);
        if (this.readOnly.option !== ReadOnlyOption.ReadOnlySafe || m.context === undefined || m.context.length === 0) {
          return undefined;
        }
        {
          const acks = this.readOnly.recvAck(m.from, m.context);
          if (acks === undefined || jointVoteResult(this.trk.config.voters, acks) !== VoteResult.VoteWon) return undefined;
        }
        for (const status of this.readOnly.advance(m)) {
          const response = this.responseToReadIndexReq(status.req, status.index);
          if (response.to !== NONE) this.send(response);
        }
        break;
      case MessageType.MsgSnapStatus:
        if (pr.state !== ProgressState.StateSnapshot) return undefined;
        if (!m.reject) {
          pr.becomeProbe();
          this.logger.debug(`${hex(this.id)} snapshot succeeded, resumed sending replication messages to ${hex(m.from)} [${pr.toString()}]`);
        } else {
          // The snapshot failed: probe from match+1 (forget the pending snapshot).
          pr.pendingSnapshot = 0;
          pr.becomeProbe();
          this.logger.debug(`${hex(this.id)} snapshot failed, resumed sending replication messages to ${hex(m.from)} [${pr.toString()}]`);
        }
        // Wait for the follower's MsgAppResp (or a heartbeat response) before probing: the
        // snapshot's application may still be in flight.
        pr.msgAppFlowPaused = true;
        break;
      case MessageType.MsgUnreachable:
        // An unreachable follower probably lost MsgApps: stop streaming optimistically.
        if (pr.state === ProgressState.StateReplicate) pr.becomeProbe();
        this.logger.debug(`${hex(this.id)} failed to send message to ${hex(m.from)} because it is unreachable [${pr.toString()}]`);
        break;
      case MessageType.MsgTransferLeader: {
        if (pr.isLearner) {
          this.logger.debug(`${hex(this.id)} is learner. Ignored transferring leadership`);
          return undefined;
        }
        const leadTransferee = m.from;
        const lastLeadTransferee = this.leadTransferee;
        if (lastLeadTransferee !== NONE) {
          if (lastLeadTransferee === leadTransferee) {
            this.logger.info(
              `${hex(this.id)} [term ${this.term}] transfer leadership to ${hex(leadTransferee)} is in progress, ignores request to same node ${hex(leadTransferee)}`,
            );
            return undefined;
          }
          this.abortLeaderTransfer();
          this.logger.info(`${hex(this.id)} [term ${this.term}] abort previous transferring leadership to ${hex(lastLeadTransferee)}`);
        }
        if (leadTransferee === this.id) {
          this.logger.debug(`${hex(this.id)} is already leader. Ignored transferring leadership to self`);
          return undefined;
        }
        this.logger.info(`${hex(this.id)} [term ${this.term}] starts to transfer leadership to ${hex(leadTransferee)}`);
        // The transfer must finish within one election timeout, else it is aborted.
        this.electionElapsed = 0;
        this.leadTransferee = leadTransferee;
        if (pr.match === this.raftLog.lastIndex()) {
          this.sendTimeoutNow(leadTransferee);
          this.logger.info(
            `${hex(this.id)} sends MsgTimeoutNow to ${hex(leadTransferee)} immediately as ${hex(leadTransferee)} already has up-to-date log`,
          );
        } else {
          this.sendAppend(leadTransferee);
        }
        break;
      }
      default:
        break;
    }
    return undefined;
  }

  private handleAppendResponse(m: Message, pr: Progress): void {
    // Any response (even a rejection or a stale one) proves the follower is alive.
    pr.recentActive = true;
    if (m.reject) {
      // The follower's log does not match at m.index. Its hint (rejectHint, logTerm) is its
      // last index <= m.index with term <= the term we sent; find where our logs could
      // match, to skip whole terms instead of probing one index at a time.
      this.logger.debug(
        `${hex(this.id)} received MsgAppResp(rejected, hint: (index ${m.rejectHint}, term ${m.logTerm})) from ${hex(m.from)} for index ${m.index}`,
      );
      let nextProbeIndex = m.rejectHint;
      if (m.logTerm > 0) [nextProbeIndex] = this.raftLog.findConflictByTerm(m.rejectHint, m.logTerm);
      if (pr.maybeDecrTo(m.index, nextProbeIndex)) {
        this.logger.debug(`${hex(this.id)} decreased progress of ${hex(m.from)} to [${pr.toString()}]`);
        if (pr.state === ProgressState.StateReplicate) pr.becomeProbe();
        this.sendAppend(m.from);
      }
      return;
    }
    // An ack of m.index. A duplicate ack of match while probing still means the probe succeeded.
    if (!(pr.maybeUpdate(m.index) || (pr.match === m.index && pr.state === ProgressState.StateProbe))) return;
    if (pr.state === ProgressState.StateProbe) {
      pr.becomeReplicate();
    } else if (pr.state === ProgressState.StateSnapshot && pr.match + 1 >= this.raftLog.firstIndex()) {
      // The follower caught up (via the snapshot or otherwise) to where the log can take
      // over: resume normal replication.
      this.logger.debug(
        `${hex(this.id)} recovered from needing snapshot, resumed sending replication messages to ${hex(m.from)} [${pr.toString()}]`,
      );
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === ProgressState.StateReplicate) {
      pr.inflights.freeLE(m.index);
    }

    if (this.maybeCommit()) {
      // Committing in our term makes pending read-index requests answerable.
      this.releasePendingReadIndexMessages();
      this.bcastAppend();
    } else if (this.id !== m.from && pr.canBumpCommit(this.raftLog.committed)) {
      // Only the commit index is news to this follower.
      this.sendAppend(m.from);
    }
    // The ack may have unblocked the flow: send as much as the window allows.
    if (this.id !== m.from) {
      while (this.maybeSendAppend(m.from, false)) {
        // keep sending
      }
    }
    if (m.from === this.leadTransferee && pr.match === this.raftLog.lastIndex()) {
      this.logger.info(`${hex(this.id)} sent MsgTimeoutNow to ${hex(m.from)} after received MsgAppResp`);
      this.sendTimeoutNow(m.from);
    }
  }

  private stepCandidate(m: Message): RaftError | undefined {
    // Only votes of the kind we asked for count (a stale MsgVoteResp is ignored while
    // pre-campaigning, and vice versa).
    const myVoteRespType = this.state === StateType.StatePreCandidate ? MessageType.MsgPreVoteResp : MessageType.MsgVoteResp;
    switch (m.type) {
      case MessageType.MsgProp:
        this.logger.info(`${hex(this.id)} no leader at term ${this.term}; dropping proposal`);
        return proposalDroppedError();
      case MessageType.MsgApp:
        this.becomeFollower(m.term, m.from); // always m.term == this.term here
        this.handleAppendEntries(m);
        break;
      case MessageType.MsgHeartbeat:
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        break;
      case MessageType.MsgSnap:
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        break;
      case myVoteRespType: {
        const { granted, rejected, result } = this.poll(m.from, m.type, !m.reject);
        this.logger.info(`${hex(this.id)} has received ${granted} ${typeName(m.type)} votes and ${rejected} vote rejections`);
        if (result === VoteResult.VoteWon) {
          if (this.state === StateType.StatePreCandidate) {
            this.campaign('CampaignElection');
          } else {
            this.becomeLeader();
            this.bcastAppend();
          }
        } else if (result === VoteResult.VoteLost) {
          // A lost pre-vote (or vote) must not bump the term: step back to follower.
          this.becomeFollower(this.term, NONE);
        }
        break;
      }
      case MessageType.MsgTimeoutNow:
        this.logger.debug(`${hex(this.id)} [term ${this.term} state ${raftStateToString(this.state)}] ignored MsgTimeoutNow from ${hex(m.from)}`);
        break;
      default:
        break;
    }
    return undefined;
  }

  private stepFollower(m: Message): RaftError | undefined {
    switch (m.type) {
      case MessageType.MsgProp:
        if (this.lead === NONE) {
          this.logger.info(`${hex(this.id)} no leader at term ${this.term}; dropping proposal`);
          return proposalDroppedError();
        } else if (this.disableProposalForwarding) {
          this.logger.info(`${hex(this.id)} not forwarding to leader ${hex(this.lead)} at term ${this.term}; dropping proposal`);
          return proposalDroppedError();
        }
        this.send({ ...m, to: this.lead });
        break;
      case MessageType.MsgApp:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppendEntries(m);
        break;
      case MessageType.MsgHeartbeat:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        break;
      case MessageType.MsgSnap:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        break;
      case MessageType.MsgTransferLeader:
        if (this.lead === NONE) {
          this.logger.info(`${hex(this.id)} no leader at term ${this.term}; dropping leader transfer msg`);
          return undefined;
        }
        this.send({ ...m, to: this.lead });
        break;
      case MessageType.MsgForgetLeader:
        if (this.readOnly.option === ReadOnlyOption.ReadOnlyLeaseBased) {
          this.logger.error('ignoring MsgForgetLeader due to ReadOnlyLeaseBased');
          return undefined;
        }
        if (this.lead !== NONE) {
          this.logger.info(`${hex(this.id)} forgetting leader ${hex(this.lead)} at term ${this.term}`);
          this.lead = NONE;
        }
        break;
      case MessageType.MsgTimeoutNow:
        this.logger.info(
          `${hex(this.id)} [term ${this.term}] received MsgTimeoutNow from ${hex(m.from)} and starts an election to get leadership.`,
        );
        // Transfers bypass the lease check (and pre-vote): the leader asked for it.
        this.hup('CampaignTransfer');
        break;
      case MessageType.MsgReadIndex:
        if (this.lead === NONE) {
          this.logger.info(`${hex(this.id)} no leader at term ${this.term}; dropping index reading msg`);
          return undefined;
        }
        this.send({ ...m, to: this.lead });
        break;
      case MessageType.MsgReadIndexResp:
        if (m.entries.length !== 1) {
          this.logger.error(`${hex(this.id)} invalid format of MsgReadIndexResp from ${hex(m.from)}, entries count: ${m.entries.length}`);
          return undefined;
        }
        this.readStates.push({ index: m.index, requestCtx: m.entries[0]!.data ?? new Uint8Array() });
        break;
      default:
        break;
    }
    return undefined;
  }

  handleAppendEntries(m: Message): void {
    const slice: LogSlice = { term: m.term, prev: { term: m.logTerm, index: m.index }, entries: m.entries };
    // Entries up to our commit index are known to match: tell the leader where we are.
    if (slice.prev.index < this.raftLog.committed) {
      this.send(newMessage({ to: m.from, type: MessageType.MsgAppResp, index: this.raftLog.committed }));
      return;
    }
    const lastNewIndex = this.raftLog.maybeAppend(slice, m.commit);
    if (lastNewIndex !== undefined) {
      this.send(newMessage({ to: m.from, type: MessageType.MsgAppResp, index: lastNewIndex }));
      return;
    }
    this.logger.debug(
      `${hex(this.id)} [logterm: ${this.raftLog.zeroTermOnOutOfBounds(m.index)}, index: ${m.index}] rejected MsgApp [logterm: ${m.logTerm}, index: ${m.index}] from ${hex(m.from)}`,
    );
    // Reject with a hint: our largest index <= m.index whose term is <= m.logTerm, so the
    // leader can skip a whole run of conflicting entries.
    const hintIndex = Math.min(m.index, this.raftLog.lastIndex());
    const [rejectHint, hintTerm] = this.raftLog.findConflictByTerm(hintIndex, m.logTerm);
    this.send(
      newMessage({
        to: m.from,
        type: MessageType.MsgAppResp,
        index: m.index,
        reject: true,
        rejectHint,
        logTerm: hintTerm,
      }),
    );
  }

  handleHeartbeat(m: Message): void {
    this.raftLog.commitTo(m.commit);
    const response = newMessage({ to: m.from, type: MessageType.MsgHeartbeatResp });
    if (m.context !== undefined) response.context = m.context;
    this.send(response);
  }

  handleSnapshot(m: Message): void {
    // A MsgSnap without a snapshot is treated as the empty snapshot (ignored by restore).
    const snapshot = m.snapshot ?? emptySnapshot();
    const { index, term } = snapshot.metadata;
    if (this.restore(snapshot)) {
      this.logger.info(`${hex(this.id)} [commit: ${this.raftLog.committed}] restored snapshot [index: ${index}, term: ${term}]`);
      this.send(newMessage({ to: m.from, type: MessageType.MsgAppResp, index: this.raftLog.lastIndex() }));
    } else {
      this.logger.info(`${hex(this.id)} [commit: ${this.raftLog.committed}] ignored snapshot [index: ${index}, term: ${term}]`);
      this.send(newMessage({ to: m.from, type: MessageType.MsgAppResp, index: this.raftLog.committed }));
    }
  }

  /**
   * Replaces the log and configuration with snapshot `s`; false if it is not newer than our
   * commit index, if we are not a follower, if it does not include us, or if our log already
   * contains its last entry (then only the commit index moves).
   */
  restore(s: Snapshot): boolean {
    if (s.metadata.index <= this.raftLog.committed) return false;
    if (this.state !== StateType.StateFollower) {
      // Defensive: a leader or candidate at this term cannot receive a valid snapshot of a
      // newer commit. Bump the term so a new leader is elected.
      this.logger.warn(`${hex(this.id)} attempted to restore snapshot as leader; should never happen`);
      this.becomeFollower(this.term + 1, NONE);
      return false;
    }
    // Our id must be in the snapshot's configuration (learnersNext are voters in the outgoing half).
    const cs = s.metadata.confState;
    const found = cs.voters.includes(this.id) || cs.learners.includes(this.id) || cs.votersOutgoing.includes(this.id);
    if (!found) {
      this.logger.warn(
        `${hex(this.id)} attempted to restore snapshot but it is not in the ConfState ${goConfStateString(cs)}; should never happen`,
      );
      return false;
    }
    const id: EntryId = { term: s.metadata.term, index: s.metadata.index };
    if (this.raftLog.matchTerm(id)) {
      // Our log already contains the snapshot's last entry: keep the log, just commit.
      const last = this.raftLog.lastEntryId();
      this.logger.info(
        `${hex(this.id)} [commit: ${this.raftLog.committed}, lastindex: ${last.index}, lastterm: ${last.term}] fast-forwarded commit to snapshot [index: ${id.index}, term: ${id.term}]`,
      );
      this.raftLog.commitTo(s.metadata.index);
      return false;
    }
    this.raftLog.restore(s);
    // Reset the configuration and rebuild it from the snapshot's ConfState.
    this.trk = new ProgressTracker(this.trk.maxInflight, this.trk.maxInflightBytes);
    let cfg: TrackerConfig;
    let progress: ProgressMap;
    try {
      [cfg, progress] = restore(new Changer(this.trk, this.raftLog.lastIndex()), cs);
    } catch (error) {
      throw new Error(`unable to restore config ${goConfStateString(cs, true)}: ${(error as Error).message}`);
    }
    this.assertConfStatesEquivalent(cs, this.switchToConfig(cfg, progress));
    const last = this.raftLog.lastEntryId();
    this.logger.info(
      `${hex(this.id)} [commit: ${this.raftLog.committed}, lastindex: ${last.index}, lastterm: ${last.term}] restored snapshot [index: ${id.index}, term: ${id.term}]`,
    );
    return true;
  }

  /** Whether this node can become leader: a voter, with no snapshot pending. */
  promotable(): boolean {
    const pr = this.trk.progress.get(this.id);
    return pr !== undefined && !pr.isLearner && !this.raftLog.hasNextOrInProgressSnapshot();
  }

  applyConfChange(cc: ConfChangeV2): ConfState {
    const changer = new Changer(this.trk, this.raftLog.lastIndex());
    let result: [TrackerConfig, ProgressMap];
    if (leaveJoint(cc)) {
      result = changer.leaveJoint();
    } else {
      const joint = enterJoint(cc);
      result = joint.ok ? changer.enterJoint(joint.autoLeave, cc.changes) : changer.simple(cc.changes);
    }
    return this.switchToConfig(result[0], result[1]);
  }

  /**
   * Installs a new configuration and progress map (from confchange), and reacts: a removed or
   * demoted leader may step down; a leader re-checks commit (quorum may have shrunk) and
   * aborts a transfer to a node that is no longer a voter.
   */
  switchToConfig(cfg: TrackerConfig, progress: ProgressMap): ConfState {
    this.trk.config = cfg;
    this.trk.progress = progress;
    this.logger.info(`${hex(this.id)} switched to configuration ${this.trk.config.toString()}`);
    const cs = this.trk.confState();
    const pr = this.trk.progress.get(this.id);
    this.isLearner = pr !== undefined && pr.isLearner;

    if ((pr === undefined || this.isLearner) && this.state === StateType.StateLeader) {
      // Removed or demoted: without stepDownOnRemoval we keep leading until a new leader is
      // elected (this node cannot campaign again), as Go does.
      if (this.stepDownOnRemoval) this.becomeFollower(this.term, NONE);
      return cs;
    }
    // Only a leader with voters needs to react.
    if (this.state !== StateType.StateLeader || cs.voters.length === 0) return cs;

    if (this.maybeCommit()) {
      // The quorum changed and something committed: tell everyone.
      this.bcastAppend();
    } else {
      // Otherwise probe the newly added followers at least.
      this.trk.visit((id) => {
        if (id !== this.id) this.maybeSendAppend(id, false);
      });
    }
    if (this.leadTransferee !== 0 && !jointConfigIds(this.trk.config.voters).has(this.leadTransferee)) {
      this.abortLeaderTransfer();
    }
    return cs;
  }

  loadState(state: HardState): void {
    // The saved commit must lie within the log (entries persisted before the hard state).
    if (state.commit < this.raftLog.committed || state.commit > this.raftLog.lastIndex()) {
      raftPanic(
        this.logger,
        `${hex(this.id)} state.commit ${state.commit} is out of range [${this.raftLog.committed}, ${this.raftLog.lastIndex()}]`,
      );
    }
    this.raftLog.committed = state.commit;
    this.term = state.term;
    this.vote = state.vote;
  }

  pastElectionTimeout(): boolean {
    return this.electionElapsed >= this.randomizedElectionTimeout;
  }

  resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.electionTimeout + Math.floor(this.random() * this.electionTimeout);
  }

  sendTimeoutNow(to: number): void {
    this.send(newMessage({ to, type: MessageType.MsgTimeoutNow }));
  }

  abortLeaderTransfer(): void {
    this.leadTransferee = NONE;
  }

  /** Whether the entry at the commit index is of the current term. */
  committedEntryInCurrentTerm(): boolean {
    return this.raftLog.zeroTermOnOutOfBounds(this.raftLog.committed) === this.term;
  }

  /**
   * A local request (from NONE or self) becomes a ReadState and an empty message is returned
   * (to === NONE); a remote one becomes a MsgReadIndexResp.
   */
  responseToReadIndexReq(req: Message, readIndex: number): Message {
    if (req.from === NONE || req.from === this.id) {
      this.readStates.push({ index: readIndex, requestCtx: req.entries[0]!.data ?? new Uint8Array() });
      return newMessage({ type: MessageType.MsgHup });
    }
    return newMessage({ type: MessageType.MsgReadIndexResp, to: req.from, index: readIndex, entries: req.entries });
  }

  /** Accounts for proposed payload bytes; false (drop) if the limit would be exceeded. */
  increaseUncommittedSize(entries: readonly Entry[]): boolean {
    const size = payloadsSize(entries);
    // Always allow one batch when nothing is uncommitted, however large; empty entries (no-op,
    // leave-joint) are always allowed.
    if (this.uncommittedSize > 0 && size > 0 && this.uncommittedSize + size > this.maxUncommittedSize) return false;
    this.uncommittedSize += size;
    return true;
  }

  reduceUncommittedSize(size: number): void {
    // Committed entries from a previous term were never counted: clamp at 0.
    this.uncommittedSize = size > this.uncommittedSize ? 0 : this.uncommittedSize - size;
  }

  releasePendingReadIndexMessages(): void {
    if (this.pendingReadIndexMessages.length === 0) return;
    if (!this.committedEntryInCurrentTerm()) {
      this.logger.error('pending MsgReadIndex should be released only after first commit in current term');
      return;
    }
    const messages = this.pendingReadIndexMessages;
    this.pendingReadIndexMessages = [];
    for (const m of messages) this.sendMsgReadIndexResponse(m);
  }

  sendMsgReadIndexResponse(m: Message): void {
    switch (this.readOnly.option) {
      case ReadOnlyOption.ReadOnlySafe: {
        // Confirm leadership with a heartbeat round carrying the request's context.
        const context = m.entries[0]!.data ?? new Uint8Array();
        this.readOnly.addRequest(this.raftLog.committed, m);
        // The leader acks its own request.
        this.readOnly.recvAck(this.id, context);
        this.bcastHeartbeatWithCtx(context.length === 0 ? undefined : context);
        break;
      }
      case ReadOnlyOption.ReadOnlyLeaseBased: {
        const response = this.responseToReadIndexReq(m, this.raftLog.committed);
        if (response.to !== NONE) this.send(response);
        break;
      }
    }
  }
}

