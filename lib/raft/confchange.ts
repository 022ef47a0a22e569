/**
 * Port of etcd raft v3.6 `confchange/` (Changer, Restore) and the helpers of
 * `raftpb/confchange.go` and `raftpb/confstate.go`.
 *
 * Where Go returns `(…, error)` these functions throw an Error carrying Go's message; where Go
 * panics they throw too. Go's nil maps are empty Sets here.
 */

import { encodeConfChange, encodeConfChangeV2 } from '../codec.js';
import {
  type ConfChange,
  type ConfChangeSingle,
  ConfChangeTransition,
  ConfChangeType,
  type ConfChangeV2,
  type ConfState,
  EntryType,
} from '../types.js';
import { MajorityConfig, jointConfigIds } from './quorum.js';
import { Config, Inflights, Progress, type ProgressMap, ProgressTracker } from './tracker.js';

// ---------------------------------------------------------------------------------------------
// Changer

/** Struct-literal form of a Changer (Go's `Changer{Tracker: …, LastIndex: …}`). */
export interface ChangerInit {
  tracker: ProgressTracker;
  lastIndex: number;
}

/**
 * Validates and computes configuration changes (simple or joint) against `tracker`, returning
 * a new Config and ProgressMap without touching the tracker itself.
 */
export class Changer {
  tracker: ProgressTracker;
  /** New progresses start with next = max(lastIndex, 1). */
  lastIndex: number;

  constructor(init: ChangerInit);
  constructor(tracker: ProgressTracker, lastIndex: number);
  constructor(trackerOrInit: ProgressTracker | ChangerInit, lastIndex = 0) {
    if (trackerOrInit instanceof ProgressTracker) {
      this.tracker = trackerOrInit;
      this.lastIndex = lastIndex;
    } else {
      this.tracker = trackerOrInit.tracker;
      this.lastIndex = trackerOrInit.lastIndex;
    }
  }

  /**
   * Enters a joint configuration: copies the incoming voters into the (empty) outgoing half,
   * then applies `ccs` to the incoming half.
   */
  enterJoint(autoLeave: boolean, ccs: readonly ConfChangeSingle[]): [Config, ProgressMap] {
    const [cfg, trk] = this.checkAndCopy();
    if (isJoint(cfg)) throw new Error('config is already joint');
    if (cfg.voters[0].size === 0) {
      // Adding to an empty config is allowed (bootstrap), making it joint is not.
      throw new Error("can't make a zero-voter config joint");
    }
    cfg.voters[1] = new MajorityConfig(cfg.voters[0]);
    this.apply(cfg, trk, ccs);
    cfg.autoLeave = autoLeave;
    return checkAndReturn(cfg, trk);
  }

  /**
   * Leaves a joint configuration: drops the outgoing half, turns staged learners (learnersNext)
   * into learners, and forgets nodes that are neither voters nor learners any more.
   */
  leaveJoint(): [Config, ProgressMap] {
    const [cfg, trk] = this.checkAndCopy();
    if (!isJoint(cfg)) throw new Error("can't leave a non-joint config");
    for (const id of cfg.learnersNext) {
      cfg.learners.add(id);
      // checkInvariants guarantees a progress for every staged learner.
      trk.get(id)!.isLearner = true;
    }
    cfg.learnersNext = new Set();
    for (const id of cfg.voters[1]) {
      if (!cfg.voters[0].has(id) && !cfg.learners.has(id)) trk.delete(id);
    }
    cfg.voters[1] = new MajorityConfig();
    cfg.autoLeave = false;
    return checkAndReturn(cfg, trk);
  }

  /**
   * Applies `ccs` without joint consensus. The incoming voters may change by at most one node,
   * and the config must not be joint.
   */
  simple(ccs: readonly ConfChangeSingle[]): [Config, ProgressMap] {
    const [cfg, trk] = this.checkAndCopy();
    if (isJoint(cfg)) throw new Error("can't apply simple config change in joint config");
    this.apply(cfg, trk, ccs);
    if (symdiff(this.tracker.config.voters[0], cfg.voters[0]) > 1) {
      throw new Error('more than one voter changed without entering joint config');
    }
    return checkAndReturn(cfg, trk);
  }

  /** Applies each change to the incoming half (voters[0]); node id 0 means "skip". */
  private apply(cfg: Config, trk: ProgressMap, ccs: readonly ConfChangeSingle[]): void {
    for (const cc of ccs) {
      // etcd zeroes the node id of changes it decided not to apply.
      if (cc.nodeId === 0) continue;
      switch (cc.type) {
        case ConfChangeType.AddNode:
          this.makeVoter(cfg, trk, cc.nodeId);
          break;
        case ConfChangeType.AddLearnerNode:
          this.makeLearner(cfg, trk, cc.nodeId);
          break;
        case ConfChangeType.RemoveNode:
          this.remove(cfg, trk, cc.nodeId);
          break;
        case ConfChangeType.UpdateNode:
          break;
        default:
          throw new Error(`unexpected conf type ${String(cc.type)}`);
      }
    }
    if (cfg.voters[0].size === 0) throw new Error('removed all voters');
  }

  /** Adds `id` as an incoming voter, promoting it if it is a learner. */
  private makeVoter(cfg: Config, trk: ProgressMap, id: number): void {
    const pr = trk.get(id);
    if (pr === undefined) {
      this.initProgress(cfg, trk, id, false);
      return;
    }
    pr.isLearner = false;
    cfg.learners.delete(id);
    cfg.learnersNext.delete(id);
    cfg.voters[0].add(id);
  }

  /**
   * Makes `id` a learner. If it is still a voter in the outgoing half it is staged in
   * learnersNext instead, since a node may never be voter and learner at once.
   */
  private makeLearner(cfg: Config, trk: ProgressMap, id: number): void {
    const pr = trk.get(id);
    if (pr === undefined) {
      this.initProgress(cfg, trk, id, true);
      return;
    }
    if (pr.isLearner) return;
    // Drop it as an incoming voter, but keep its Progress.
    this.remove(cfg, trk, id);
    trk.set(id, pr);
    if (cfg.voters[1].has(id)) {
      cfg.learnersNext.add(id);
    } else {
      pr.isLearner = true;
      cfg.learners.add(id);
    }
  }

  /** Removes `id` from the incoming voters and learners; keeps its Progress if still an outgoing voter. */
  private remove(cfg: Config, trk: ProgressMap, id: number): void {
    if (!trk.has(id)) return;
    cfg.voters[0].delete(id);
    cfg.learners.delete(id);
    cfg.learnersNext.delete(id);
    if (!cfg.voters[1].has(id)) trk.delete(id);
  }

  /** Tracks a new voter or learner, probing from lastIndex and marked recently active. */
  private initProgress(cfg: Config, trk: ProgressMap, id: number, isLearner: boolean): void {
    if (isLearner) {
      cfg.learners.add(id);
    } else {
      cfg.voters[0].add(id);
    }
    trk.set(
      id,
      new Progress({
        match: 0,
        next: Math.max(this.lastIndex, 1), // invariant: match < next
        inflights: new Inflights(this.tracker.maxInflight, this.tracker.maxInflightBytes),
        isLearner,
        // New nodes count as active so that CheckQuorum does not depose the leader at once.
        recentActive: true,
      }),
    );
  }

  /** Copies the tracker's config and progresses (Progress objects shallowly) and validates them. */
  private checkAndCopy(): [Config, ProgressMap] {
    const cfg = this.tracker.config.clone();
    const trk: ProgressMap = new Map();
    for (const [id, pr] of this.tracker.progress) {
      // Only isLearner is ever mutated, so a shallow copy suffices (Inflights is shared).
      trk.set(id, pr.shallowCopy());
    }
    return checkAndReturn(cfg, trk);
  }
}

/** Throws Go's message if `cfg` and `trk` are inconsistent; the empty config is allowed. */
function checkInvariants(cfg: Config, trk: ProgressMap): void {
  for (const ids of [jointConfigIds(cfg.voters), cfg.learners, cfg.learnersNext]) {
    for (const id of ids) {
      if (!trk.has(id)) throw new Error(`no progress for ${id}`);
    }
  }
  // A staged learner is staged only because it is still an outgoing voter.
  for (const id of cfg.learnersNext) {
    if (!cfg.voters[1].has(id)) throw new Error(`${id} is in LearnersNext, but not Voters[1]`);
    if (trk.get(id)!.isLearner) {
      throw new Error(`${id} is in LearnersNext, but is already marked as learner`);
    }
  }
  // Learners and voters never intersect.
  for (const id of cfg.learners) {
    if (cfg.voters[1].has(id)) throw new Error(`${id} is in Learners and Voters[1]`);
    if (cfg.voters[0].has(id)) throw new Error(`${id} is in Learners and Voters[0]`);
    if (!trk.get(id)!.isLearner) {
      throw new Error(`${id} is in Learners, but is not marked as learner`);
    }
  }
  if (!isJoint(cfg)) {
    // Go also requires Voters[1] to be nil here; an empty Set is our nil, so that holds.
    if (cfg.learnersNext.size > 0) throw new Error('cfg.LearnersNext must be nil when not joint');
    if (cfg.autoLeave) throw new Error('AutoLeave must be false when not joint');
  }
}

function checkAndReturn(cfg: Config, trk: ProgressMap): [Config, ProgressMap] {
  checkInvariants(cfg, trk);
  return [cfg, trk];
}

/** Size of the symmetric difference of two id sets. */
function symdiff(left: ReadonlySet<number>, right: ReadonlySet<number>): number {
  let n = 0;
  for (const id of left) if (!right.has(id)) n++;
  for (const id of right) if (!left.has(id)) n++;
  return n;
}

/** A config is joint iff its outgoing half is non-empty. */
function isJoint(cfg: Config): boolean {
  return cfg.voters[1].size > 0;
}

/** Go's ConfChangeType.String(). */
export function confChangeTypeToString(type: ConfChangeType): string {
  switch (type) {
    case ConfChangeType.AddNode:
      return 'ConfChangeAddNode';
    case ConfChangeType.RemoveNode:
      return 'ConfChangeRemoveNode';
    case ConfChangeType.UpdateNode:
      return 'ConfChangeUpdateNode';
    case ConfChangeType.AddLearnerNode:
      return 'ConfChangeAddLearnerNode';
    default:
      return String(type);
  }
}

/** "ConfChangeAddNode(1) ConfChangeRemoveNode(2)" (Go's confchange.Describe). */
export function describeConfChanges(ccs: readonly ConfChangeSingle[]): string {
  return ccs.map((cc) => `${confChangeTypeToString(cc.type)}(${cc.nodeId})`).join(' ');
}

// ---------------------------------------------------------------------------------------------
// Restore

/**
 * Splits a ConfState into the changes that build the outgoing config (`outgoing`) and those
 * that then enter the joint state described by it (`incoming`).
 */
export function toConfChangeSingle(cs: ConfState): {
  outgoing: ConfChangeSingle[];
  incoming: ConfChangeSingle[];
} {
  const outgoing: ConfChangeSingle[] = cs.votersOutgoing.map((nodeId) => ({
    type: ConfChangeType.AddNode,
    nodeId,
  }));
  const incoming: ConfChangeSingle[] = [
    // Remove every outgoing voter, then add back the incoming voters and the learners.
    ...cs.votersOutgoing.map((nodeId) => ({ type: ConfChangeType.RemoveNode, nodeId })),
    ...cs.voters.map((nodeId) => ({ type: ConfChangeType.AddNode, nodeId })),
    ...cs.learners.map((nodeId) => ({ type: ConfChangeType.AddLearnerNode, nodeId })),
    // learnersNext are still outgoing voters: adding them as learners stages them.
    ...cs.learnersNext.map((nodeId) => ({ type: ConfChangeType.AddLearnerNode, nodeId })),
  ];
  return { outgoing, incoming };
}

/**
 * Rebuilds the configuration described by `cs`, starting from the (empty) configuration of
 * `changer.tracker`. The changer and its tracker are not modified.
 */
export function restore(changer: Changer, cs: ConfState): [Config, ProgressMap] {
  const { outgoing, incoming } = toConfChangeSingle(cs);
  // Work on a private tracker so the caller's one is untouched (Go copies the Changer value).
  const scratch = new ProgressTracker(changer.tracker.maxInflight, changer.tracker.maxInflightBytes);
  scratch.config = changer.tracker.config;
  scratch.progress = changer.tracker.progress;
  const chg = new Changer(scratch, changer.lastIndex);

  const ops: Array<(c: Changer) => [Config, ProgressMap]> = [];
  if (outgoing.length === 0) {
    // Not joint: apply the incoming changes one at a time.
    for (const cc of incoming) ops.push((c) => c.simple([cc]));
  } else {
    // Joint: build the outgoing config as the active one, then enter the joint state.
    for (const cc of outgoing) ops.push((c) => c.simple([cc]));
    ops.push((c) => c.enterJoint(cs.autoLeave, incoming));
  }
  for (const op of ops) {
    const [cfg, trk] = op(chg);
    scratch.config = cfg;
    scratch.progress = trk;
  }
  return [scratch.config, scratch.progress];
}

// ---------------------------------------------------------------------------------------------
// raftpb/confchange.go

/** Go's ConfChangeI: either kind of configuration change. */
export type ConfChangeI = ConfChange | ConfChangeV2;

/** True for a ConfChangeV2 (it has `changes`), false for a legacy ConfChange. */
export function isConfChangeV2(cc: ConfChangeI): cc is ConfChangeV2 {
  return Array.isArray((cc as Partial<ConfChangeV2>).changes);
}

/** ConfChange.AsV2(): a single-change V2 with transition Auto and the same context. */
export function confChangeAsV2(cc: ConfChange): ConfChangeV2 {
  const v2: ConfChangeV2 = {
    transition: ConfChangeTransition.Auto,
    changes: [{ type: cc.type, nodeId: cc.nodeId }],
  };
  if (cc.context !== undefined) v2.context = cc.context;
  return v2;
}

/** ConfChangeI.AsV2(): converts a ConfChange, returns a ConfChangeV2 as is. */
export function asV2(cc: ConfChangeI): ConfChangeV2 {
  return isConfChangeV2(cc) ? cc : confChangeAsV2(cc);
}

/** ConfChangeI.AsV1(): the ConfChange, or undefined for a ConfChangeV2. */
export function asV1(cc: ConfChangeI): ConfChange | undefined {
  return isConfChangeV2(cc) ? undefined : cc;
}

/**
 * Go's MarshalConfChange: the entry type and encoded bytes. `undefined` (Go's nil) yields an
 * EntryConfChangeV2 with no data, which decodes as the empty ConfChangeV2 (leave joint).
 */
export function marshalConfChange(cc: ConfChangeI | undefined): {
  type: EntryType;
  data: Uint8Array | undefined;
} {
  if (cc === undefined) return { type: EntryType.ConfChangeV2, data: undefined };
  if (isConfChangeV2(cc)) return { type: EntryType.ConfChangeV2, data: encodeConfChangeV2(cc) };
  return { type: EntryType.ConfChange, data: encodeConfChange(cc) };
}

function formatConfChangeV2(cc: ConfChangeV2): string {
  const changes = cc.changes.map((c) => `{Type:${confChangeTypeToString(c.type)} NodeID:${c.nodeId}}`);
  return `{Transition:${String(cc.transition)} Changes:[${changes.join(' ')}] Context:[${[...(cc.context ?? [])].join(' ')}]}`;
}

/**
 * ConfChangeV2.EnterJoint(): `ok` iff the change uses joint consensus (explicitly requested, or
 * more than one change); `autoLeave` (only meaningful when ok) unless JointExplicit.
 */
export function enterJoint(cc: ConfChangeV2): { autoLeave: boolean; ok: boolean } {
  if (cc.transition !== ConfChangeTransition.Auto || cc.changes.length > 1) {
    switch (cc.transition) {
      case ConfChangeTransition.Auto:
      case ConfChangeTransition.JointImplicit:
        return { autoLeave: true, ok: true };
      case ConfChangeTransition.JointExplicit:
        return { autoLeave: false, ok: true };
      default:
        throw new Error(`unknown transition: ${formatConfChangeV2(cc)}`);
    }
  }
  return { autoLeave: false, ok: false };
}

/** ConfChangeV2.LeaveJoint(): true iff the change is empty apart from its context. */
export function leaveJoint(cc: ConfChangeV2): boolean {
  return cc.transition === ConfChangeTransition.Auto && cc.changes.length === 0;
}

/**
 * Parses "v1 l2 r3 u4" (voter, learner, remove, update) into changes. Throws Go's messages
 * ("unknown token …", "unknown input: …", strconv.ParseUint errors).
 */
export function confChangesFromString(s: string): ConfChangeSingle[] {
  const ccs: ConfChangeSingle[] = [];
  const trimmed = s.trim();
  if (trimmed === '') return ccs;
  for (const tok of trimmed.split(' ')) {
    if (tok.length < 2) throw new Error(`unknown token ${tok}`);
    let type: ConfChangeType;
    switch (tok[0]) {
      case 'v':
        type = ConfChangeType.AddNode;
        break;
      case 'l':
        type = ConfChangeType.AddLearnerNode;
        break;
      case 'r':
        type = ConfChangeType.RemoveNode;
        break;
      case 'u':
        type = ConfChangeType.UpdateNode;
        break;
      default:
        throw new Error(`unknown input: ${tok}`);
    }
    ccs.push({ type, nodeId: parseUint(tok.slice(1)) });
  }
  return ccs;
}

/** strconv.ParseUint(s, 10, 64) limited to safe integers, with Go's error text. */
function parseUint(s: string): number {
  if (!/^[0-9]+$/.test(s)) throw new Error(`strconv.ParseUint: parsing "${s}": invalid syntax`);
  const value = Number(s);
  if (!Number.isSafeInteger(value)) {
    throw new Error(`strconv.ParseUint: parsing "${s}": value out of range`);
  }
  return value;
}

/** The inverse of confChangesFromString. */
export function confChangesToString(ccs: readonly ConfChangeSingle[]): string {
  return ccs
    .map((cc) => {
      switch (cc.type) {
        case ConfChangeType.AddNode:
          return `v${cc.nodeId}`;
        case ConfChangeType.AddLearnerNode:
          return `l${cc.nodeId}`;
        case ConfChangeType.RemoveNode:
          return `r${cc.nodeId}`;
        case ConfChangeType.UpdateNode:
          return `u${cc.nodeId}`;
        default:
          return `unknown${cc.nodeId}`;
      }
    })
    .join(' ');
}

// ---------------------------------------------------------------------------------------------
// raftpb/confstate.go

function formatConfState(cs: ConfState): string {
  return (
    `raftpb.ConfState{Voters:[]uint64{${cs.voters.join(', ')}}, ` +
    `Learners:[]uint64{${cs.learners.join(', ')}}, ` +
    `VotersOutgoing:[]uint64{${cs.votersOutgoing.join(', ')}}, ` +
    `LearnersNext:[]uint64{${cs.learnersNext.join(', ')}}, ` +
    `AutoLeave:${String(cs.autoLeave)}}`
  );
}

function sortedCopy(ids: readonly number[] | undefined): number[] {
  return [...(ids ?? [])].sort((a, b) => a - b);
}

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i]);
}

/**
 * ConfState.Equivalent: undefined if `a` and `b` describe the same configuration (id lists
 * compared as sorted multisets; autoLeave compared), otherwise an Error describing both.
 */
export function confStateEquivalent(a: ConfState, b: ConfState): Error | undefined {
  const normalize = (cs: ConfState): ConfState => ({
    voters: sortedCopy(cs.voters),
    learners: sortedCopy(cs.learners),
    votersOutgoing: sortedCopy(cs.votersOutgoing),
    learnersNext: sortedCopy(cs.learnersNext),
    autoLeave: cs.autoLeave,
  });
  const sortedA = normalize(a);
  const sortedB = normalize(b);
  const equal =
    sameIds(sortedA.voters, sortedB.voters) &&
    sameIds(sortedA.learners, sortedB.learners) &&
    sameIds(sortedA.votersOutgoing, sortedB.votersOutgoing) &&
    sameIds(sortedA.learnersNext, sortedB.learnersNext) &&
    sortedA.autoLeave === sortedB.autoLeave;
  if (equal) return undefined;
  return new Error(
    `ConfStates not equivalent after sorting:\n${formatConfState(sortedA)}\n${formatConfState(sortedB)}\n` +
      `Inputs were:\n${formatConfState(a)}\n${formatConfState(b)}`,
  );
}

const TRANSITION_NAMES: Record<number, string> = {
  [ConfChangeTransition.Auto]: 'ConfChangeTransitionAuto',
  [ConfChangeTransition.JointImplicit]: 'ConfChangeTransitionJointImplicit',
  [ConfChangeTransition.JointExplicit]: 'ConfChangeTransitionJointExplicit',
};

/** Go's `%v` of a []byte (nil and empty both print "[]"). */
function goBytesString(bytes: Uint8Array | undefined): string {
  return `[${Array.from(bytes ?? []).join(' ')}]`;
}

/**
 * Go's `%v` of a ConfChange or ConfChangeV2 value (the fields in Go's struct order), as etcd's
 * log lines print a conf change: `{ConfChangeAddNode 3 [] 0}` for V1 (Type NodeID Context ID),
 * `{ConfChangeTransitionAuto [{ConfChangeAddNode 3}] []}` for V2.
 */
export function goConfChangeString(cc: ConfChangeI): string {
  if (isConfChangeV2(cc)) {
    const transition = TRANSITION_NAMES[cc.transition] ?? String(cc.transition);
    const changes = cc.changes.map((change) => `{${confChangeTypeToString(change.type)} ${change.nodeId}}`).join(' ');
    return `{${transition} [${changes}] ${goBytesString(cc.context)}}`;
  }
  return `{${confChangeTypeToString(cc.type)} ${cc.nodeId} ${goBytesString(cc.context)} ${cc.id}}`;
}

/** Go's `%v` (or, with `withFieldNames`, `%+v`) of a ConfState value, fields in Go's struct order. */
export function goConfStateString(cs: ConfState, withFieldNames = false): string {
  const fields: [string, string][] = [
    ['Voters', `[${cs.voters.join(' ')}]`],
    ['Learners', `[${cs.learners.join(' ')}]`],
    ['VotersOutgoing', `[${cs.votersOutgoing.join(' ')}]`],
    ['LearnersNext', `[${cs.learnersNext.join(' ')}]`],
    ['AutoLeave', String(cs.autoLeave)],
  ];
  return `{${fields.map(([name, value]) => (withFieldNames ? `${name}:${value}` : value)).join(' ')}}`;
}
