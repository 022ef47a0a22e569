/**
 * Port of etcd raft v3.6 `tracker/`: per-follower Progress, the Inflights flow-control window,
 * and the ProgressTracker holding the active configuration.
 *
 * Go uint64 counters are JS numbers. Go panics are thrown as Errors carrying Go's message.
 */

import type { ConfState } from '../types.js';
import {
  type AckedIndexer,
  type JointConfig,
  MajorityConfig,
  VoteResult,
  jointCommittedIndex,
  jointConfigIds,
  jointConfigToString,
  jointVoteResult,
  newJointConfig,
} from './quorum.js';

// ---------------------------------------------------------------------------------------------
// StateType

/** How the leader currently talks to a follower. Values match Go. */
export enum StateType {
  /** Last index unknown: send at most one append per heartbeat and probe. */
  StateProbe = 0,
  /** Steady state: entries are streamed optimistically. */
  StateReplicate = 1,
  /** The follower needs a snapshot; appends are paused. */
  StateSnapshot = 2,
}

/** Go's `StateType.String()`. */
export function stateTypeToString(state: StateType): string {
  switch (state) {
    case StateType.StateProbe:
      return 'StateProbe';
    case StateType.StateReplicate:
      return 'StateReplicate';
    case StateType.StateSnapshot:
      return 'StateSnapshot';
    default:
      // Go indexes an array here and panics out of range.
      throw new Error(`runtime error: index out of range [${String(state)}] with length 3`);
  }
}

// ---------------------------------------------------------------------------------------------
// Inflights

/** One in-flight MsgApp: the index of its last entry and the total byte size of its entries. */
export interface Inflight {
  index: number;
  bytes: number;
}

/** The internal fields of an Inflights, exposed for tests and debugging. */
export interface InflightsState {
  start: number;
  count: number;
  bytes: number;
  size: number;
  maxBytes: number;
  buffer: Inflight[];
}

/**
 * A ring buffer bounding the MsgApps sent to a follower but not yet acknowledged, both by count
 * (`size`) and by total bytes (`maxBytes`, 0 = unlimited; the byte limit is soft: one message may
 * take the total from below the limit to at or above it).
 *
 * Invariants: 0 <= count <= size; `start` < buffer.length when buffer is non-empty; the indexes of
 * the `count` entries starting at `start` (wrapping at `size`) are increasing; `bytes` is the
 * sum of their byte sizes.
 */
export class Inflights {
  /** Position of the oldest in-flight message in `buffer`. */
  private start = 0;
  /** Number of in-flight messages. */
  private inflightCount = 0;
  /** Total bytes of in-flight messages. */
  private inflightBytes = 0;
  /** Maximum number of in-flight messages. */
  readonly size: number;
  /** Maximum total bytes in flight; 0 means no limit. */
  readonly maxBytes: number;
  /** Grows on demand (doubling) up to `size`, so idle groups cost little memory. */
  private buffer: Inflight[] = [];

  /** Go's NewInflights(size, maxBytes). */
  constructor(size: number, maxBytes: number) {
    this.size = size;
    this.maxBytes = maxBytes;
  }

  /** Builds an Inflights from raw fields (tests only; mirrors Go struct literals). */
  static fromState(state: Partial<InflightsState> & { size: number }): Inflights {
    const inflights = new Inflights(state.size, state.maxBytes ?? 0);
    inflights.start = state.start ?? 0;
    inflights.inflightCount = state.count ?? 0;
    inflights.inflightBytes = state.bytes ?? 0;
    inflights.buffer = (state.buffer ?? []).map((entry) => ({ ...entry }));
    return inflights;
  }

  /** A copy of the internal fields (tests and debugging). */
  state(): InflightsState {
    return {
      start: this.start,
      count: this.inflightCount,
      bytes: this.inflightBytes,
      size: this.size,
      maxBytes: this.maxBytes,
      buffer: this.buffer.map((entry) => ({ ...entry })),
    };
  }

  /** An identical Inflights sharing no memory with this one. */
  clone(): Inflights {
    return Inflights.fromState(this.state());
  }

  /**
   * Records a MsgApp whose last entry is `index` carrying `bytes` bytes. Callers must check
   * `full()` first, and indexes must be added in increasing order.
   */
  add(index: number, bytes: number): void {
    if (this.full()) throw new Error('cannot add into a Full inflights');
    let next = this.start + this.inflightCount;
    if (next >= this.size) next -= this.size;
    if (next >= this.buffer.length) this.grow();
    this.buffer[next] = { index, bytes };
    this.inflightCount++;
    this.inflightBytes += bytes;
  }

  /** Doubles the buffer (starting at 1), capped at `size`. */
  private grow(): void {
    let newSize = this.buffer.length * 2;
    if (newSize === 0) {
      newSize = 1;
    } else if (newSize > this.size) {
      newSize = this.size;
    }
    const grown: Inflight[] = this.buffer.slice();
    for (let i = grown.length; i < newSize; i++) grown.push({ index: 0, bytes: 0 });
    this.buffer = grown;
  }

  /** Frees every in-flight message whose index is <= `to`. */
  freeLE(to: number): void {
    if (this.inflightCount === 0 || to < this.buffer[this.start]!.index) {
      // Nothing in flight, or `to` is left of the window.
      return;
    }
    let idx = this.start;
    let freed = 0;
    let freedBytes = 0;
    for (; freed < this.inflightCount; freed++) {
      const entry = this.buffer[idx]!;
      if (to < entry.index) break; // first message still in flight
      freedBytes += entry.bytes;
      idx++;
      if (idx >= this.size) idx -= this.size;
    }
    this.inflightCount -= freed;
    this.inflightBytes -= freedBytes;
    this.start = idx;
    if (this.inflightCount === 0) {
      // Empty: restart at 0 so the buffer does not grow needlessly.
      this.start = 0;
    }
  }

  /** True when no more messages may be sent: count limit reached, or byte limit reached. */
  full(): boolean {
    return (
      this.inflightCount === this.size ||
      (this.maxBytes !== 0 && this.inflightBytes >= this.maxBytes)
    );
  }

  /** Number of in-flight messages. */
  count(): number {
    return this.inflightCount;
  }

  /** Total bytes in flight. */
  bytes(): number {
    return this.inflightBytes;
  }

  /** Frees all in-flight messages (the buffer is kept). */
  reset(): void {
    this.start = 0;
    this.inflightCount = 0;
    this.inflightBytes = 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Progress

/** Field values for `new Progress(...)`; omitted fields take Go's zero value. */
export interface ProgressInit {
  match?: number;
  next?: number;
  sentCommit?: number;
  state?: StateType;
  pendingSnapshot?: number;
  recentActive?: boolean;
  msgAppFlowPaused?: boolean;
  /** Defaults to `new Inflights(0, 0)` (Go's zero value, always full). Pass a real one. */
  inflights?: Inflights;
  isLearner?: boolean;
}

/**
 * A follower's progress as seen by the leader.
 *
 * Invariants: 0 <= match < next (so next >= 1). In StateSnapshot, next == pendingSnapshot + 1
 * and sentCommit == pendingSnapshot.
 */
export class Progress {
  /** Highest index known to match the leader's log. */
  match: number;
  /** Next index to send; entries in (match, next) are already in flight. */
  next: number;
  /** Highest commit index sent to the follower (may regress on probe or rejection). */
  sentCommit: number;
  state: StateType;
  /** In StateSnapshot: the leader's last index when the snapshot became necessary. */
  pendingSnapshot: number;
  /** Heard from recently; reset after an election timeout; always true on the leader. */
  recentActive: boolean;
  /** Append flow is throttled (probe sent, or inflights saturated) until a heartbeat response. */
  msgAppFlowPaused: boolean;
  /** Sliding window of unacknowledged MsgApps. */
  inflights: Inflights;
  isLearner: boolean;

  constructor(init: ProgressInit = {}) {
    this.match = init.match ?? 0;
    this.next = init.next ?? 0;
    this.sentCommit = init.sentCommit ?? 0;
    this.state = init.state ?? StateType.StateProbe;
    this.pendingSnapshot = init.pendingSnapshot ?? 0;
    this.recentActive = init.recentActive ?? false;
    this.msgAppFlowPaused = init.msgAppFlowPaused ?? false;
    this.inflights = init.inflights ?? new Inflights(0, 0);
    this.isLearner = init.isLearner ?? false;
  }

  /** Copy sharing the Inflights object (Go's `ppr := *pr`). */
  shallowCopy(): Progress {
    return new Progress({ ...this.fields(), inflights: this.inflights });
  }

  /** Copy with cloned Inflights (what status.go's getProgressCopy produces). */
  clone(): Progress {
    return new Progress({ ...this.fields(), inflights: this.inflights.clone() });
  }

  private fields(): Required<Omit<ProgressInit, 'inflights'>> {
    return {
      match: this.match,
      next: this.next,
      sentCommit: this.sentCommit,
      state: this.state,
      pendingSnapshot: this.pendingSnapshot,
      recentActive: this.recentActive,
      msgAppFlowPaused: this.msgAppFlowPaused,
      isLearner: this.isLearner,
    };
  }

  /** Enters `state`, clearing msgAppFlowPaused, pendingSnapshot and inflights. */
  resetState(state: StateType): void {
    this.msgAppFlowPaused = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  /** Enters StateProbe; next = match+1, or pendingSnapshot+1 if coming from a larger snapshot. */
  becomeProbe(): void {
    if (this.state === StateType.StateSnapshot) {
      // The snapshot was delivered: probe from after it.
      const pendingSnapshot = this.pendingSnapshot;
      this.resetState(StateType.StateProbe);
      this.next = Math.max(this.match + 1, pendingSnapshot + 1);
    } else {
      this.resetState(StateType.StateProbe);
      this.next = this.match + 1;
    }
    this.sentCommit = Math.min(this.sentCommit, this.next - 1);
  }

  /** Enters StateReplicate with next = match+1. */
  becomeReplicate(): void {
    this.resetState(StateType.StateReplicate);
    this.next = this.match + 1;
  }

  /** Enters StateSnapshot for a snapshot at `snapshotIndex`. */
  becomeSnapshot(snapshotIndex: number): void {
    this.resetState(StateType.StateSnapshot);
    this.pendingSnapshot = snapshotIndex;
    this.next = snapshotIndex + 1;
    this.sentCommit = snapshotIndex;
  }

  /**
   * Accounts for a MsgApp carrying `entries` consecutive entries (total `bytes`) starting at
   * `next`. Only valid in StateProbe or StateReplicate.
   */
  sentEntries(entries: number, bytes: number): void {
    switch (this.state) {
      case StateType.StateReplicate:
        if (entries > 0) {
          this.next += entries;
          this.inflights.add(this.next - 1, bytes);
        }
        // A message that fills (or finds full) the window acts as a probe: pause the flow.
        this.msgAppFlowPaused = this.inflights.full();
        break;
      case StateType.StateProbe:
        if (entries > 0) this.msgAppFlowPaused = true;
        break;
      default:
        throw new Error(`sending append in unhandled state ${stateTypeToString(this.state)}`);
    }
  }

  /** Whether sending commit `index` could still advance the follower's commit index. */
  canBumpCommit(index: number): boolean {
    // Only worth sending if above what we sent and we have not already sent up to next-1.
    return index > this.sentCommit && this.sentCommit < this.next - 1;
  }

  /** Records the commit index just sent (Go's `SentCommit(commit)` method). */
  setSentCommit(commit: number): void {
    this.sentCommit = commit;
  }

  /**
   * Handles an MsgAppResp acking index `n`. Returns false if `n` is stale (<= match);
   * otherwise raises match (and next, keeping match < next) and unpauses the flow.
   */
  maybeUpdate(n: number): boolean {
    if (n <= this.match) return false;
    this.match = n;
    this.next = Math.max(this.next, n + 1); // invariant: match < next
    this.msgAppFlowPaused = false;
    return true;
  }

  /**
   * Handles a rejection of the MsgApp at index `rejected`, with the follower's `matchHint`.
   * Returns false for stale rejections; otherwise lowers next and returns true.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === StateType.StateReplicate) {
      // Stale if the rejected index is already matched.
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      this.sentCommit = Math.min(this.sentCommit, this.next - 1);
      return true;
    }
    // Outside StateReplicate probes go one at a time, so a genuine rejection is of next-1.
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.sentCommit = Math.min(this.sentCommit, this.next - 1);
    this.msgAppFlowPaused = false;
    return true;
  }

  /** Whether appends to this follower are currently throttled. */
  isPaused(): boolean {
    switch (this.state) {
      case StateType.StateProbe:
      case StateType.StateReplicate:
        return this.msgAppFlowPaused;
      case StateType.StateSnapshot:
        return true;
      default:
        throw new Error('unexpected state');
    }
  }

  /** e.g. "StateReplicate match=1 next=2 learner paused pendingSnap=3 inactive inflight=1[full]". */
  toString(): string {
    let out = `${stateTypeToString(this.state)} match=${this.match} next=${this.next}`;
    if (this.isLearner) out += ' learner';
    if (this.isPaused()) out += ' paused';
    if (this.pendingSnapshot > 0) out += ` pendingSnap=${this.pendingSnapshot}`;
    if (!this.recentActive) out += ' inactive';
    const inflight = this.inflights.count();
    if (inflight > 0) {
      out += ` inflight=${inflight}`;
      if (this.inflights.full()) out += '[full]';
    }
    return out;
  }
}

/** Progress per node id. */
export type ProgressMap = Map<number, Progress>;

/** One "id: progress" line per node, in ascending id order (each line ends with "\n"). */
export function progressMapToString(progress: ProgressMap): string {
  let out = '';
  for (const id of [...progress.keys()].sort((a, b) => a - b)) {
    out += `${id}: ${progress.get(id)!.toString()}\n`;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Config

function setToString(ids: ReadonlySet<number>): string {
  return new MajorityConfig(ids).toString();
}

function sortedSlice(ids: ReadonlySet<number>): number[] {
  return [...ids].sort((a, b) => a - b);
}

/** Field values for `new Config(...)`. */
export interface ConfigInit {
  voters?: JointConfig;
  autoLeave?: boolean;
  learners?: Set<number>;
  learnersNext?: Set<number>;
}

/**
 * The membership configuration tracked by a ProgressTracker.
 *
 * Invariants: learners and voters (either half) are disjoint; learnersNext holds only ids that
 * are voters in the outgoing half and will become learners when the joint config is left; when
 * not joint (voters[1] empty), learnersNext is empty and autoLeave is false. Empty sets stand for
 * Go's nil maps.
 */
export class Config {
  voters: JointConfig;
  /** Joint and to be left automatically once the change is applied. */
  autoLeave: boolean;
  learners: Set<number>;
  learnersNext: Set<number>;

  constructor(init: ConfigInit = {}) {
    this.voters = init.voters ?? newJointConfig();
    this.autoLeave = init.autoLeave ?? false;
    this.learners = init.learners ?? new Set<number>();
    this.learnersNext = init.learnersNext ?? new Set<number>();
  }

  /** e.g. "voters=(1 2)&&(1) learners=(3) learners_next=(4) autoleave". */
  toString(): string {
    let out = `voters=${jointConfigToString(this.voters)}`;
    // Go prints these when the map is non-nil; Go keeps them nil whenever empty.
    if (this.learners.size > 0) out += ` learners=${setToString(this.learners)}`;
    if (this.learnersNext.size > 0) out += ` learners_next=${setToString(this.learnersNext)}`;
    if (this.autoLeave) out += ' autoleave';
    return out;
  }

  /**
   * A copy sharing no memory. Like Go v3.6's `Config.Clone`, autoLeave is NOT copied (it is
   * false in the clone); the Changer sets it explicitly where it matters.
   */
  clone(): Config {
    return new Config({
      voters: newJointConfig(this.voters[0], this.voters[1]),
      learners: new Set(this.learners),
      learnersNext: new Set(this.learnersNext),
    });
  }
}

// ---------------------------------------------------------------------------------------------
// ProgressTracker

/** AckedIndexer reading each voter's `match` (Go's matchAckIndexer). */
class MatchAckIndexer implements AckedIndexer {
  constructor(private readonly progress: ProgressMap) {}

  ackedIndex(voterId: number): number | undefined {
    return this.progress.get(voterId)?.match;
  }
}

/** Outcome of `tallyVotes()`. */
export interface VoteTally {
  granted: number;
  rejected: number;
  result: VoteResult;
}

/**
 * The active configuration plus each member's Progress and the current election's votes.
 * Go embeds Config; here it is `config`, with `voters`/`learners`/`learnersNext`/`autoLeave`
 * accessors for callers porting Go code that reads the embedded fields.
 */
export class ProgressTracker {
  config: Config;
  progress: ProgressMap;
  votes: Map<number, boolean>;
  maxInflight: number;
  /** 0 means no byte limit. */
  maxInflightBytes: number;

  /** Go's MakeProgressTracker(maxInflight, maxBytes). */
  constructor(maxInflight: number, maxInflightBytes: number) {
    this.maxInflight = maxInflight;
    this.maxInflightBytes = maxInflightBytes;
    this.config = new Config();
    this.votes = new Map();
    this.progress = new Map();
  }

  get voters(): JointConfig {
    return this.config.voters;
  }
  set voters(voters: JointConfig) {
    this.config.voters = voters;
  }
  get learners(): Set<number> {
    return this.config.learners;
  }
  set learners(learners: Set<number>) {
    this.config.learners = learners;
  }
  get learnersNext(): Set<number> {
    return this.config.learnersNext;
  }
  set learnersNext(learnersNext: Set<number>) {
    this.config.learnersNext = learnersNext;
  }
  get autoLeave(): boolean {
    return this.config.autoLeave;
  }
  set autoLeave(autoLeave: boolean) {
    this.config.autoLeave = autoLeave;
  }

  /** The active configuration as a ConfState (all id lists sorted ascending). */
  confState(): ConfState {
    return {
      voters: this.config.voters[0].slice(),
      votersOutgoing: this.config.voters[1].slice(),
      learners: sortedSlice(this.config.learners),
      learnersNext: sortedSlice(this.config.learnersNext),
      autoLeave: this.config.autoLeave,
    };
  }

  /** True iff there is exactly one voter and the config is not joint. */
  isSingleton(): boolean {
    return this.config.voters[0].size === 1 && this.config.voters[1].size === 0;
  }

  /** The largest index acknowledged (via match) by a quorum of voters (MAX_INDEX if none). */
  committed(): number {
    return jointCommittedIndex(this.config.voters, new MatchAckIndexer(this.progress));
  }

  /**
   * Calls `fn` for every tracked progress in ascending id order. The id list is taken up front;
   * each Progress is looked up at call time, as in Go.
   */
  visit(fn: (id: number, progress: Progress) => void): void {
    const ids = [...this.progress.keys()].sort((a, b) => a - b);
    for (const id of ids) {
      const progress = this.progress.get(id);
      // Go would hand a nil pointer to fn for an id removed mid-visit; we skip it instead.
      if (progress !== undefined) fn(id, progress);
    }
  }

  /** Whether a quorum of voters has been recently active (learners are ignored). */
  quorumActive(): boolean {
    const votes = new Map<number, boolean>();
    this.visit((id, progress) => {
      if (progress.isLearner) return;
      votes.set(id, progress.recentActive);
    });
    return jointVoteResult(this.config.voters, votes) === VoteResult.VoteWon;
  }

  /** Alias of `quorumActive()` (the name used in this project's brief). */
  queryActive(): boolean {
    return this.quorumActive();
  }

  /** All voters (both halves), sorted. */
  voterNodes(): number[] {
    return jointConfigIds(this.config.voters).slice();
  }

  /** All learners, sorted (empty array where Go returns nil). */
  learnerNodes(): number[] {
    return sortedSlice(this.config.learners);
  }

  /** Starts a new round of vote counting. */
  resetVotes(): void {
    this.votes = new Map();
  }

  /** Records `id`'s vote; only the first vote from each id counts. */
  recordVote(id: number, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  /** Counts granted/rejected votes among tracked non-learners, and the election outcome. */
  tallyVotes(): VoteTally {
    let granted = 0;
    let rejected = 0;
    for (const [id, progress] of this.progress) {
      if (progress.isLearner) continue;
      const vote = this.votes.get(id);
      if (vote === undefined) continue;
      if (vote) {
        granted++;
      } else {
        rejected++;
      }
    }
    return { granted, rejected, result: jointVoteResult(this.config.voters, this.votes) };
  }
}
