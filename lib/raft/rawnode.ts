/**
 * Port of etcd raft v3.6 rawnode.go, bootstrap.go and the Ready/SoftState parts of node.go.
 *
 * Synchronous storage writes (the default), strictly alternating ready() and advance():
 *   1. rd = node.ready()
 *   2. persist rd.snapshot (if any), rd.entries, then rd.hardState (await the store)
 *   3. send rd.messages
 *   4. apply rd.committedEntries (conf changes: applyConfChange, then persist the ConfState)
 *   5. node.advance(rd)
 * Storage reads must reflect step 2 by the time advance() is called.
 *
 * Asynchronous storage writes (`asyncStorageWrites: true`, etcd's AsyncStorageWrites): ready()
 * may be called again at once; advance() is never called. rd.messages then also holds
 *   - a MsgStorageAppend to LOCAL_APPEND_THREAD: entries, the hard state (its term, vote and
 *     commit fields; all 0 when unchanged) and the snapshot to persist, and in `responses` the
 *     messages to deliver only once that is durable (votes, MsgAppResps to the leader, and a
 *     MsgStorageAppendResp back to this node);
 *   - a MsgStorageApply to LOCAL_APPLY_THREAD: committed entries (only ones already durable
 *     locally) to apply, with a MsgStorageApplyResp in `responses`.
 * Each thread must process its messages in order; responses to this node go to step(), others
 * to the network. Raft keeps entries in memory until their MsgStorageAppendResp is stepped, so
 * storage reads must reflect an append's writes only by the time its responses are delivered.
 */
import { decodeConfChange, decodeConfChangeV2, encodeConfChange } from '../codec.js';
import {
  ConfChangeType,
  EntryType,
  MessageType,
  isEmptyHardState,
  type ConfChange,
  type ConfChangeV2,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type Snapshot,
} from '../types.js';
import { asV2, type ConfChangeI } from './confchange.js';
import { checkSafeUnsigned, invalidArgumentError } from '../errors.js';
import { checkBytes, validateConfChangeUntrusted, validateConfChangeV2Untrusted, validateMessageUntrusted } from '../validate.js';
import { Raft, RaftError, confChangeToMsg, raftStateToString, type RaftConfig, type RaftSoftState } from './raft.js';
import type { ReadState } from './read-only.js';
import { getBasicStatus, getStatus, type BasicStatus, type Status } from './status.js';
import type { Progress } from './tracker.js';
import { LOCAL_APPEND_THREAD, LOCAL_APPLY_THREAD, NONE, entsSize, isLocalMsg, isLocalMsgTarget, isResponseMsg, newMessage } from './util.js';

/** Volatile state, reported in a Ready only when it changed. raftState is e.g. "StateLeader". */
export interface SoftState {
  lead: number;
  raftState: string;
}

/**
 * Everything the application must do next. Absent hardState/softState/snapshot mean "no
 * change" (Go's empty values).
 */
export interface Ready {
  softState?: SoftState;
  /** Persist after `entries` (a commit pointing at missing entries breaks restart). */
  hardState?: HardState;
  readStates: ReadState[];
  /** Persist before sending messages; writing index i discards stored entries >= i. */
  entries: Entry[];
  /** Persist and apply first when present. */
  snapshot?: Snapshot;
  /** Apply to the state machine (may overlap `entries`: persist those first). */
  committedEntries: Entry[];
  /** Send after the writes above are durable. */
  messages: Message[];
  /** Whether entries or term/vote changed (commit-only changes need no fsync). */
  mustSync: boolean;
}

export enum SnapshotStatus {
  SnapshotFinish = 1,
  SnapshotFailure = 2,
}

export enum ProgressType {
  ProgressTypePeer = 0,
  ProgressTypeLearner = 1,
}

/** A bootstrap peer: an id, or an id with a context carried in its AddNode change. */
export type Peer = number | { id: number; context?: Uint8Array };

export type RawNodeConfig = RaftConfig;

/** Go's MustSync. */
export function mustSync(hardState: HardState, previous: HardState, entryCount: number): boolean {
  return entryCount !== 0 || hardState.vote !== previous.vote || hardState.term !== previous.term;
}

/** Go's isHardStateEqual: a Ready carries a hard state only when this is false. */
export function isHardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

/** Go's SoftState.equal: a Ready carries a soft state only when this is false. */
export function softStateEqual(a: RaftSoftState, b: RaftSoftState): boolean {
  return a.lead === b.lead && a.raftState === b.raftState;
}

/** Go's IsEmptySnap. */
export function isEmptySnap(snapshot: Snapshot | undefined): boolean {
  return snapshot === undefined || snapshot.metadata.index === 0;
}

export class RawNode {
  /** The state machine (exposed for white-box tests). */
  readonly raft: Raft;
  /**
   * etcd's AsyncStorageWrites: the Ready carries MsgStorageAppend / MsgStorageApply messages to
   * LOCAL_APPEND_THREAD / LOCAL_APPLY_THREAD instead of being acknowledged by advance().
   */
  readonly asyncStorageWrites: boolean;
  private prevSoftState: RaftSoftState;
  private prevHardState: HardState;
  /** Messages to step on advance(): self-acks and the storage append/apply responses. */
  private stepsOnAdvance: Message[] = [];
  /**
   * The storage error or raft panic that stopped this node. Raft's state may be half-updated
   * after one, so every later call fails with ERR_STOPPED instead of running on it.
   */
  private fatalError: unknown = undefined;

  constructor(config: RawNodeConfig) {
    this.raft = new Raft(config);
    this.asyncStorageWrites = config.asyncStorageWrites ?? false;
    this.prevSoftState = this.raft.softState();
    this.prevHardState = this.raft.hardState();
  }

  /**
   * Fake-appends AddNode changes for `peers` (entries 1..n at term 1, committed) on fresh
   * storage. Prefer a storage prepared with a snapshot holding the ConfState.
   */
  bootstrap(peers: Peer[]): void {
    this.throwIfStopped();
    // Go returns these errors (the node stays usable), so they do not stop the node.
    if (!Array.isArray(peers)) throw invalidArgumentError('bootstrap: peers must be an array');
    if (peers.length === 0) throw new RaftError('ERR_BOOTSTRAP', 'must provide at least one peer to Bootstrap');
    // Checked before anything changes: a bad peer leaves the node as it was.
    peers.forEach((peer: unknown, position) => {
      if (typeof peer === 'number') {
        checkSafeUnsigned(peer, `bootstrap: peers[${position}]`);
      } else {
        if (typeof peer !== 'object' || peer === null) throw invalidArgumentError(`bootstrap: peers[${position}] must be an id or { id, context? }`);
        checkSafeUnsigned((peer as { id?: unknown }).id, `bootstrap: peers[${position}].id`);
        checkBytes((peer as { context?: unknown }).context, `bootstrap: peers[${position}].context`);
      }
    });
    const lastIndex = this.raft.raftLog.storage.lastIndex();
    if (lastIndex !== 0) {
      throw new RaftError(
        'ERR_BOOTSTRAP',
        `can't bootstrap a nonempty Storage (its last index is ${lastIndex}): this is a restart, so construct the RawNode on the storage and do not call bootstrap(); bootstrap only a fresh storage, once`,
      );
    }
    // Nothing is persisted yet: the first Ready must carry the hard state.
    this.prevHardState = { term: 0, vote: 0, commit: 0 };
    this.raft.becomeFollower(1, NONE);
    const normalized = peers.map((peer) => (typeof peer === 'number' ? { id: peer } : peer));
    const entries: Entry[] = normalized.map((peer, i) => {
      const cc: ConfChange = { id: 0, type: ConfChangeType.AddNode, nodeId: peer.id };
      if (peer.context !== undefined) cc.context = peer.context;
      return { type: EntryType.ConfChange, term: 1, index: i + 1, data: encodeConfChange(cc) };
    });
    this.raft.raftLog.append(entries);
    // Commit them and apply them now so campaign() works at once; the application still sees
    // them in committedEntries and applies them again (a no-op for AddNode). applied is not
    // moved, so they are delivered.
    this.raft.raftLog.committed = entries.length;
    for (const peer of normalized) {
      this.raft.applyConfChange(asV2({ id: 0, type: ConfChangeType.AddNode, nodeId: peer.id }));
    }
  }

  tick(): void {
    this.guard(() => {
      this.raft.tick();
    });
  }

  /** Advances the election timer only (Go's deprecated TickQuiesced). */
  tickQuiesced(): void {
    this.guard(() => {
      this.raft.electionElapsed++;
    });
  }

  /** Starts an election now (a pre-election first when preVote is on). */
  campaign(): void {
    this.guard(() => {
      this.throwIfError(this.raft.step(newMessage({ type: MessageType.MsgHup })));
    });
  }

  /** Proposes `data` for the log; throws ERR_PROPOSAL_DROPPED if it cannot be proposed now. */
  propose(data: Uint8Array): void {
    this.checkUntrusted(() => {
      if (!(data instanceof Uint8Array)) throw invalidArgumentError('propose: data must be a Uint8Array');
    });
    this.stepProposal([data]);
  }

  /**
   * Proposes several entries in one MsgProp (raft accepts or drops them together): one append to
   * the leader's log and one MsgApp per follower for the whole batch, instead of one per entry.
   * Throws ERR_PROPOSAL_DROPPED if they cannot be proposed now.
   */
  proposeMany(data: readonly Uint8Array[]): void {
    this.checkUntrusted(() => {
      if (!Array.isArray(data) || data.length === 0) throw invalidArgumentError('proposeMany: data must be a non-empty array');
      for (const item of data) if (!(item instanceof Uint8Array)) throw invalidArgumentError('proposeMany: every item must be a Uint8Array');
    });
    this.stepProposal(data);
  }

  /** One MsgProp from this node carrying a Normal entry per item (checked by the caller). */
  private stepProposal(data: readonly Uint8Array[]): void {
    this.guard(() => {
      this.throwIfError(
        this.raft.step(
          newMessage({
            type: MessageType.MsgProp,
            from: this.raft.id,
            entries: data.map((item) => ({ type: EntryType.Normal, term: 0, index: 0, data: item })),
          }),
        ),
      );
    });
  }

  /** Proposes a configuration change; apply it with applyConfChange once it is committed. */
  proposeConfChange(cc: ConfChange | ConfChangeV2): void {
    this.checkUntrusted(() => validateAnyConfChangeUntrusted(cc));
    this.guard(() => {
      this.throwIfError(this.raft.step(confChangeToMsg(cc)));
    });
  }

  /** Applies a committed configuration change; persist the returned ConfState. */
  applyConfChange(cc: ConfChange | ConfChangeV2): ConfState {
    this.checkUntrusted(() => validateAnyConfChangeUntrusted(cc));
    return this.guard(() => {
      return this.raft.applyConfChange(asV2(cc));
    });
  }

  /**
   * Delivers a message from the network. Throws ERR_STEP_LOCAL_MSG for local message types and
   * ERR_STEP_PEER_NOT_FOUND for responses from unknown peers (and ERR_PROPOSAL_DROPPED for a
   * forwarded proposal that cannot be accepted), and ERR_INVALID_ARGUMENT / ERR_OUT_OF_RANGE for
   * a malformed one (responses nested deeper than 100 levels or in a cycle included); none of
   * these changes anything or stops the node.
   */
  step(message: Message): void {
    // Messages come from the network: check their shape before raft trusts them.
    this.checkUntrusted(() => validateMessageUntrusted(message));
    this.guard(() => {
      // Local messages are generated by raft itself; refuse them from the network.
      if (isLocalMsg(message.type) && !isLocalMsgTarget(message.from)) {
        throw new RaftError('ERR_STEP_LOCAL_MSG', 'raft: cannot step raft local message');
      }
      if (isResponseMsg(message.type) && !isLocalMsgTarget(message.from) && !this.raft.trk.progress.has(message.from)) {
        throw new RaftError('ERR_STEP_PEER_NOT_FOUND', 'raft: cannot step as peer not found');
      }
      this.throwIfError(this.raft.step(message));
    });
  }

  /** The next Ready; call advance(rd) after processing it, before the next ready(). */
  ready(): Ready {
    return this.guard(() => {
      const rd = this.readyWithoutAccept();
      this.acceptReady(rd);
      return rd;
    });
  }

  private readyWithoutAccept(): Ready {
    const r = this.raft;
    const rd: Ready = {
      readStates: [],
      entries: r.raftLog.nextUnstableEnts(),
      committedEntries: r.raftLog.nextCommittedEnts(this.applyUnstableEntries()),
      messages: r.msgs.slice(),
      mustSync: false,
    };
    const softState = r.softState();
    if (!softStateEqual(softState, this.prevSoftState)) {
      rd.softState = { lead: softState.lead, raftState: raftStateToString(softState.raftState) };
    }
    const hardState = r.hardState();
    if (!isHardStateEqual(hardState, this.prevHardState)) rd.hardState = hardState;
    const snapshot = r.raftLog.nextUnstableSnapshot();
    if (snapshot !== undefined) rd.snapshot = snapshot;
    if (r.readStates.length !== 0) rd.readStates = r.readStates.slice();
    rd.mustSync = mustSync(hardState, this.prevHardState, rd.entries.length);
    if (this.asyncStorageWrites) {
      // The local append and apply threads get their work as messages; the responses they
      // carry are delivered once that work is done.
      if (needStorageAppendMsg(r, rd)) rd.messages.push(newStorageAppendMsg(r, rd));
      if (rd.committedEntries.length > 0) rd.messages.push(newStorageApplyMsg(r, rd.committedEntries));
    } else {
      // Responses that acknowledge durable state go out with this Ready (the application sends
      // messages only after persisting); self-addressed ones are stepped on advance().
      for (const m of r.msgsAfterAppend) {
        if (m.to !== r.id) rd.messages.push(m);
      }
    }
    return rd;
  }

  /**
   * Whether committed entries may be handed out for applying before they are durable locally:
   * yes in synchronous mode (the Ready's writes precede its applies), no with async writes.
   */
  private applyUnstableEntries(): boolean {
    return !this.asyncStorageWrites;
  }

  private acceptReady(rd: Ready): void {
    const r = this.raft;
    // Checked before anything changes, so the misuse leaves the node usable (etcd panics here).
    if (!this.asyncStorageWrites && this.stepsOnAdvance.length !== 0) {
      throw new RaftError(
        'ERR_READY_NOT_ADVANCED',
        'two accepted Ready structs without call to Advance: persist, send and apply the Ready you have, call advance(rd), and only then ready() again; ' +
          'run the Ready loop from one place at a time (a tick or a proposal must only queue work for it)',
      );
    }
    if (rd.softState !== undefined) this.prevSoftState = r.softState();
    if (rd.hardState !== undefined && !isEmptyHardState(rd.hardState)) this.prevHardState = rd.hardState;
    if (rd.readStates.length !== 0) r.readStates = [];
    if (!this.asyncStorageWrites) {
      for (const m of r.msgsAfterAppend) {
        if (m.to === r.id) this.stepsOnAdvance.push(m);
      }
      // Once written, the entries (and snapshot) are stable: tell raft on advance().
      if (needStorageAppendRespMsg(r, rd)) this.stepsOnAdvance.push(newStorageAppendRespMsg(r, rd));
      if (rd.committedEntries.length > 0) this.stepsOnAdvance.push(newStorageApplyRespMsg(r, rd.committedEntries));
    }
    r.msgs = [];
    r.msgsAfterAppend = [];
    r.raftLog.acceptUnstable();
    if (rd.committedEntries.length > 0) {
      const last = rd.committedEntries[rd.committedEntries.length - 1]!;
      r.raftLog.acceptApplying(last.index, entsSize(rd.committedEntries), this.applyUnstableEntries());
    }
  }

  /** Cheap check (no storage reads) whether ready() would return something. */
  hasReady(): boolean {
    return this.guard(() => {
      const r = this.raft;
      if (!softStateEqual(r.softState(), this.prevSoftState)) return true;
      const hardState = r.hardState();
      if (!isEmptyHardState(hardState) && !isHardStateEqual(hardState, this.prevHardState)) return true;
      if (r.raftLog.hasNextUnstableSnapshot()) return true;
      if (r.msgs.length > 0 || r.msgsAfterAppend.length > 0) return true;
      if (r.raftLog.hasNextUnstableEnts() || r.raftLog.hasNextCommittedEnts(this.applyUnstableEntries())) return true;
      if (r.readStates.length !== 0) return true;
      return false;
    });
  }

  /**
   * Everything in the last Ready is persisted and applied: mark entries stable, the snapshot
   * applied, committed entries applied (this can trigger leaving a joint configuration).
   */
  advance(_rd?: Ready): void {
    this.guard(() => {
      if (this.asyncStorageWrites) {
        // etcd panics; nothing has changed, so the node stays usable.
        throw new RaftError(
          'ERR_ADVANCE_ASYNC',
          'Advance must not be called when using AsyncStorageWrites: deliver the responses of the MsgStorageAppend and MsgStorageApply messages with step() instead',
        );
      }
      const steps = this.stepsOnAdvance;
      this.stepsOnAdvance = [];
      for (const m of steps) this.raft.step(m);
    });
  }

  status(): Status {
    return getStatus(this.raft);
  }

  basicStatus(): BasicStatus {
    return getBasicStatus(this.raft);
  }

  /** Visits every progress (a copy without inflights details) in id order. */
  withProgress(visitor: (id: number, type: ProgressType, progress: Progress) => void): void {
    this.raft.trk.visit((id, pr) => {
      visitor(id, pr.isLearner ? ProgressType.ProgressTypeLearner : ProgressType.ProgressTypePeer, pr.clone());
    });
  }

  /** The last message to `id` was not delivered. */
  reportUnreachable(id: number): void {
    this.checkUntrusted(() => checkSafeUnsigned(id, 'reportUnreachable: id'));
    this.guard(() => {
      this.raft.step(newMessage({ type: MessageType.MsgUnreachable, from: id }));
    });
  }

  /** Outcome of sending a snapshot to `id` (must be reported, else `id` stays paused). */
  reportSnapshot(id: number, status: SnapshotStatus): void {
    this.checkUntrusted(() => {
      checkSafeUnsigned(id, 'reportSnapshot: id');
      if (status !== SnapshotStatus.SnapshotFinish && status !== SnapshotStatus.SnapshotFailure) {
        throw invalidArgumentError(`reportSnapshot: status must be SnapshotFinish or SnapshotFailure, got ${String(status)}`);
      }
    });
    this.guard(() => {
      this.raft.step(newMessage({ type: MessageType.MsgSnapStatus, from: id, reject: status === SnapshotStatus.SnapshotFailure }));
    });
  }

  /** Asks the leader to hand leadership to `transferee`. */
  transferLeader(transferee: number): void {
    this.checkUntrusted(() => checkSafeUnsigned(transferee, 'transferLeader: transferee'));
    this.guard(() => {
      this.raft.step(newMessage({ type: MessageType.MsgTransferLeader, from: transferee }));
    });
  }

  /** Forgets the current leader (followers only; a no-op on leaders). */
  forgetLeader(): void {
    this.guard(() => {
      this.throwIfError(this.raft.step(newMessage({ type: MessageType.MsgForgetLeader })));
    });
  }

  /**
   * Requests a read index; the answer arrives as a ReadState (with this context) in a later
   * Ready. Serve the read once applied >= its index.
   */
  readIndex(context: Uint8Array): void {
    this.checkUntrusted(() => checkBytes(context, 'readIndex: context'));
    this.guard(() => {
      this.raft.step(newMessage({ type: MessageType.MsgReadIndex, entries: [{ type: EntryType.Normal, term: 0, index: 0, data: context }] }));
    });
  }

  /**
   * Edge validation of a caller's argument, before anything changes: a refusal (ERR_INVALID_ARGUMENT,
   * ERR_OUT_OF_RANGE) changes nothing and, unlike a raft panic inside guard(), does not stop the node.
   */
  private checkUntrusted(check: () => unknown): void {
    this.throwIfStopped();
    check();
  }

  private throwIfError(error: RaftError | undefined): void {
    if (error !== undefined) throw error;
  }

  private throwIfStopped(): void {
    if (this.fatalError === undefined) return;
    const reason = this.fatalError instanceof Error ? this.fatalError.message : String(this.fatalError);
    throw new RaftError('ERR_STOPPED', `raft: stopped (${reason})`, this.fatalError);
  }

  /** The error that stopped this node, if any. */
  stoppedBy(): unknown {
    return this.fatalError;
  }

  /**
   * Runs `operation` unless the node is stopped; an error that is not one of Go's returned
   * errors (RaftError) stops the node and is rethrown unchanged.
   */
  private guard<T>(operation: () => T): T {
    this.throwIfStopped();
    try {
      return operation();
    } catch (error) {
      if (!(error instanceof RaftError)) this.fatalError = error;
      throw error;
    }
  }
}

/** A ConfChange or a ConfChangeV2 (told apart by `changes`), checked at the edge. */
function validateAnyConfChangeUntrusted(cc: unknown): void {
  if (typeof cc === 'object' && cc !== null && 'changes' in cc) validateConfChangeV2Untrusted(cc);
  else validateConfChangeUntrusted(cc);
}

/**
 * Whether the Ready needs a MsgStorageAppend: entries, a hard state or a snapshot to write, or
 * messages that must wait until every earlier append is durable.
 */
function needStorageAppendMsg(r: Raft, rd: Ready): boolean {
  return (
    rd.entries.length > 0 ||
    (rd.hardState !== undefined && !isEmptyHardState(rd.hardState)) ||
    !isEmptySnap(rd.snapshot) ||
    r.msgsAfterAppend.length > 0
  );
}

/** Whether raft must hear that entries became stable or a snapshot was written. */
function needStorageAppendRespMsg(r: Raft, rd: Ready): boolean {
  return r.raftLog.hasNextOrInProgressUnstableEnts() || !isEmptySnap(rd.snapshot);
}

/**
 * The local append thread's work: entries, the hard state (its fields term/vote/commit; all 0
 * when unchanged) and the snapshot to write, with the responses to deliver once they are
 * durable: msgsAfterAppend, then a MsgStorageAppendResp to this node. The self-addressed
 * MsgAppResp of a leader comes before the MsgStorageAppendResp so that it is handled while the
 * entries are still in the unstable log (etcd's ordering).
 */
function newStorageAppendMsg(r: Raft, rd: Ready): Message {
  const m = newMessage({ type: MessageType.MsgStorageAppend, to: LOCAL_APPEND_THREAD, from: r.id, entries: rd.entries });
  if (rd.hardState !== undefined && !isEmptyHardState(rd.hardState)) {
    m.term = rd.hardState.term;
    m.vote = rd.hardState.vote;
    m.commit = rd.hardState.commit;
  }
  if (!isEmptySnap(rd.snapshot)) m.snapshot = rd.snapshot;
  m.responses = r.msgsAfterAppend.slice();
  if (needStorageAppendRespMsg(r, rd)) m.responses.push(newStorageAppendRespMsg(r, rd));
  return m;
}

/**
 * Acknowledges everything written so far. It carries the current term and the unstable log's
 * last (index, term) even when this Ready has no entries: raft ignores the acknowledgement if
 * the term has changed meanwhile (entries written under an older term may since have been
 * overwritten by an append still in flight: the ABA race), so a later response under the new
 * term must be able to stabilise them.
 */
function newStorageAppendRespMsg(r: Raft, rd: Ready): Message {
  const m = newMessage({ type: MessageType.MsgStorageAppendResp, to: r.id, from: LOCAL_APPEND_THREAD, term: r.term });
  if (r.raftLog.hasNextOrInProgressUnstableEnts()) {
    const last = r.raftLog.lastEntryId();
    m.index = last.index;
    m.logTerm = last.term;
  }
  if (!isEmptySnap(rd.snapshot)) m.snapshot = rd.snapshot;
  return m;
}

/** The local apply thread's work: committed entries (term 0: they apply under no term). */
function newStorageApplyMsg(r: Raft, entries: Entry[]): Message {
  return newMessage({
    type: MessageType.MsgStorageApply,
    to: LOCAL_APPLY_THREAD,
    from: r.id,
    entries,
    responses: [newStorageApplyRespMsg(r, entries)],
  });
}

function newStorageApplyRespMsg(r: Raft, entries: Entry[]): Message {
  return newMessage({ type: MessageType.MsgStorageApplyResp, to: r.id, from: LOCAL_APPLY_THREAD, term: 0, entries });
}

/**
 * Decodes the change carried by an EntryConfChange / EntryConfChangeV2 entry (undefined for a
 * normal entry). Absent data decodes as the empty change (V2: leave the joint config).
 */
export function decodeConfChangeEntry(entry: Entry): ConfChangeI | undefined {
  const data = entry.data ?? new Uint8Array();
  if (entry.type === EntryType.ConfChange) return decodeConfChange(data);
  if (entry.type === EntryType.ConfChangeV2) return decodeConfChangeV2(data);
  return undefined;
}
