/**
 * The values replicalog stores and exchanges, mirroring etcd raft v3.6 raftpb in camelCase.
 *
 * Indexes, terms and node ids are JS numbers restricted to safe integers (0 ..
 * Number.MAX_SAFE_INTEGER); anything else is refused with ERR_OUT_OF_RANGE, never rounded.
 * `data`/`context` absent means nil (not written on the wire); an empty Uint8Array means
 * present but empty (written as a zero-length field), exactly as gogoproto distinguishes them.
 */

export enum EntryType {
  Normal = 0,
  ConfChange = 1,
  ConfChangeV2 = 2,
}

export interface Entry {
  type: EntryType;
  term: number;
  index: number;
  data?: Uint8Array;
}

export interface HardState {
  term: number;
  vote: number;
  commit: number;
}

export interface ConfState {
  voters: number[];
  learners: number[];
  votersOutgoing: number[];
  learnersNext: number[];
  autoLeave: boolean;
}

export interface SnapshotMetadata {
  confState: ConfState;
  index: number;
  term: number;
}

export interface Snapshot {
  data?: Uint8Array;
  metadata: SnapshotMetadata;
}

export enum ConfChangeType {
  AddNode = 0,
  RemoveNode = 1,
  UpdateNode = 2,
  AddLearnerNode = 3,
}

export enum ConfChangeTransition {
  Auto = 0,
  JointImplicit = 1,
  JointExplicit = 2,
}

export interface ConfChange {
  id: number;
  type: ConfChangeType;
  nodeId: number;
  context?: Uint8Array;
}

export interface ConfChangeSingle {
  type: ConfChangeType;
  nodeId: number;
}

export interface ConfChangeV2 {
  transition: ConfChangeTransition;
  changes: ConfChangeSingle[];
  context?: Uint8Array;
}

export enum MessageType {
  MsgHup = 0,
  MsgBeat = 1,
  MsgProp = 2,
  MsgApp = 3,
  MsgAppResp = 4,
  MsgVote = 5,
  MsgVoteResp = 6,
  MsgSnap = 7,
  MsgHeartbeat = 8,
  MsgHeartbeatResp = 9,
  MsgUnreachable = 10,
  MsgSnapStatus = 11,
  MsgCheckQuorum = 12,
  MsgTransferLeader = 13,
  MsgTimeoutNow = 14,
  MsgReadIndex = 15,
  MsgReadIndexResp = 16,
  MsgPreVote = 17,
  MsgPreVoteResp = 18,
  MsgStorageAppend = 19,
  MsgStorageAppendResp = 20,
  MsgStorageApply = 21,
  MsgStorageApplyResp = 22,
  MsgForgetLeader = 23,
}

/** raftpb.Message. `snapshot` and `context` are nullable (absent = not written). */
export interface Message {
  type: MessageType;
  to: number;
  from: number;
  term: number;
  logTerm: number;
  index: number;
  entries: Entry[];
  commit: number;
  vote: number;
  snapshot?: Snapshot;
  reject: boolean;
  rejectHint: number;
  context?: Uint8Array;
  responses: Message[];
}

/** `maxSize` meaning "no limit" (etcd's math.MaxUint64). */
export const NO_LIMIT: number = Number.POSITIVE_INFINITY;

/**
 * The read side raft calls: synchronous, etcd raft v3.6 `Storage` semantics.
 * Errors are thrown (not returned) and carry a `code` (see errors.ts).
 */
export interface Storage {
  initialState(): { hardState: HardState; confState: ConfState };
  /** Entries in [lo, hi), at least one when the range is non-empty, then as many as fit in maxSize bytes. */
  entries(lo: number, hi: number, maxSize?: number): Entry[];
  term(index: number): number;
  firstIndex(): number;
  lastIndex(): number;
  snapshot(): Snapshot;
}

/** The write side shared by MemoryStorage and ReplicaLogStore. A resolved promise means durable. */
export interface WritableStorage extends Storage {
  append(entries: Entry[]): Promise<void>;
  setHardState(hardState: HardState): Promise<void>;
  setConfState(confState: ConfState): Promise<void>;
  applySnapshot(snapshot: Snapshot): Promise<void>;
  createSnapshot(index: number, confState?: ConfState, data?: Uint8Array): Promise<Snapshot>;
  compact(index: number): Promise<void>;
}

export function emptyHardState(): HardState {
  return { term: 0, vote: 0, commit: 0 };
}

export function emptyConfState(): ConfState {
  return { voters: [], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
}

export function emptySnapshot(): Snapshot {
  return { metadata: { confState: emptyConfState(), index: 0, term: 0 } };
}

export function isEmptyHardState(hardState: HardState): boolean {
  return hardState.term === 0 && hardState.vote === 0 && hardState.commit === 0;
}

export function isEmptySnapshot(snapshot: Snapshot): boolean {
  return snapshot.metadata.index === 0;
}

/**
 * A copy of `bytes` that owns its memory. Not `bytes.slice()`: on a Node Buffer, `slice` is a
 * view that aliases the caller's memory.
 */
export function copyBytes(bytes: Uint8Array): Uint8Array {
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return copy;
}

/**
 * -0 as +0, any other number unchanged. Validation accepts -0 (an integer equal to 0); every
 * copy a store keeps goes through this, so no -0 is ever stored or answered.
 */
export function withoutNegativeZero(value: number): number {
  return value === 0 ? 0 : value;
}

export function hardStateCopy(hardState: HardState): HardState {
  return { term: withoutNegativeZero(hardState.term), vote: withoutNegativeZero(hardState.vote), commit: withoutNegativeZero(hardState.commit) };
}

export function cloneConfState(confState: ConfState): ConfState {
  return {
    voters: confState.voters.map(withoutNegativeZero),
    learners: confState.learners.map(withoutNegativeZero),
    votersOutgoing: confState.votersOutgoing.map(withoutNegativeZero),
    learnersNext: confState.learnersNext.map(withoutNegativeZero),
    autoLeave: confState.autoLeave,
  };
}

export function cloneSnapshot(snapshot: Snapshot): Snapshot {
  const metadata: SnapshotMetadata = {
    confState: cloneConfState(snapshot.metadata.confState),
    index: withoutNegativeZero(snapshot.metadata.index),
    term: withoutNegativeZero(snapshot.metadata.term),
  };
  return snapshot.data === undefined ? { metadata } : { data: copyBytes(snapshot.data), metadata };
}
