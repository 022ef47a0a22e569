/**
 * Port of etcd raft v3.6 util.go (message classification, size accounting, Describe* helpers)
 * and types.go (entryID, logSlice).
 */
import { decodeConfChange, decodeConfChangeV2, entrySize } from '../codec.js';
import { limitSize as storageLimitSize } from '../memory-storage.js';
import {
  EntryType,
  MessageType,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type Snapshot,
} from '../types.js';
import { asV2, confChangesToString } from './confchange.js';

/** No node (Go's raft.None). */
export const NONE = 0;
/**
 * Local message targets used by etcd's async storage writes. Go uses MaxUint64 and
 * MaxUint64-1; JS numbers stop at 2^53, so the largest safe integers stand in for them.
 */
export const LOCAL_APPEND_THREAD = Number.MAX_SAFE_INTEGER;
export const LOCAL_APPLY_THREAD = Number.MAX_SAFE_INTEGER - 1;

const LOCAL_MESSAGES = new Set<MessageType>([
  MessageType.MsgHup,
  MessageType.MsgBeat,
  MessageType.MsgUnreachable,
  MessageType.MsgSnapStatus,
  MessageType.MsgCheckQuorum,
  MessageType.MsgStorageAppend,
  MessageType.MsgStorageAppendResp,
  MessageType.MsgStorageApply,
  MessageType.MsgStorageApplyResp,
]);

const RESPONSE_MESSAGES = new Set<MessageType>([
  MessageType.MsgAppResp,
  MessageType.MsgVoteResp,
  MessageType.MsgHeartbeatResp,
  MessageType.MsgUnreachable,
  MessageType.MsgReadIndexResp,
  MessageType.MsgPreVoteResp,
  MessageType.MsgStorageAppendResp,
  MessageType.MsgStorageApplyResp,
]);

/** Messages raft generates for itself; they must never arrive from the network. */
export function isLocalMsg(type: MessageType): boolean {
  return LOCAL_MESSAGES.has(type);
}

/** Responses: stepping one from an unknown peer is refused. */
export function isResponseMsg(type: MessageType): boolean {
  return RESPONSE_MESSAGES.has(type);
}

export function isLocalMsgTarget(id: number): boolean {
  return id === LOCAL_APPEND_THREAD || id === LOCAL_APPLY_THREAD;
}

/** MsgVote → MsgVoteResp, MsgPreVote → MsgPreVoteResp. */
export function voteRespMsgType(type: MessageType): MessageType {
  switch (type) {
    case MessageType.MsgVote:
      return MessageType.MsgVoteResp;
    case MessageType.MsgPreVote:
      return MessageType.MsgPreVoteResp;
    default:
      throw new Error(`not a vote message: ${MessageType[type]}`);
  }
}

/** A message with Go's zero values for every field not given. */
export function newMessage(fields: Partial<Message> & { type: MessageType }): Message {
  return {
    to: 0,
    from: 0,
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    vote: 0,
    reject: false,
    rejectHint: 0,
    responses: [],
    ...fields,
  };
}

// ---------------------------------------------------------------------------------------------
// Sizes

/** Sum of the gogo-encoded sizes of `entries` (the unit of every byte limit). */
export function entsSize(entries: readonly Entry[]): number {
  let size = 0;
  for (const entry of entries) size += entrySize(entry);
  return size;
}

/** Longest prefix of `entries` within `maxSize` encoded bytes, never fewer than one entry. */
export function limitSize(entries: Entry[], maxSize: number): Entry[] {
  return storageLimitSize(entries, maxSize);
}

/** Payload bytes of one entry (uncommitted-size accounting uses payload, not encoding). */
export function payloadSize(entry: Entry): number {
  return entry.data === undefined ? 0 : entry.data.length;
}

export function payloadsSize(entries: readonly Entry[]): number {
  let size = 0;
  for (const entry of entries) size += payloadSize(entry);
  return size;
}

// ---------------------------------------------------------------------------------------------
// entryID and logSlice (types.go)

/** Identifies an entry by (term, index); (0, 0) is the empty log's sentinel. */
export interface EntryId {
  term: number;
  index: number;
}

export function pbEntryId(entry: Entry): EntryId {
  return { term: entry.term, index: entry.index };
}

/**
 * A leader's view of a log segment: `entries` follow `prev` and were written by leaders with
 * terms <= `term`. Built from a MsgApp.
 */
export interface LogSlice {
  term: number;
  prev: EntryId;
  entries: Entry[];
}

export function logSliceLastIndex(slice: LogSlice): number {
  return slice.prev.index + slice.entries.length;
}

export function logSliceLastEntryId(slice: LogSlice): EntryId {
  const last = slice.entries[slice.entries.length - 1];
  return last === undefined ? slice.prev : pbEntryId(last);
}

/** Go's logSlice.valid(): returns an Error describing the first inconsistency, or undefined. */
export function logSliceValid(slice: LogSlice): Error | undefined {
  let prev = slice.prev;
  for (const entry of slice.entries) {
    const id = pbEntryId(entry);
    // Indexes are contiguous and terms never go down.
    if (id.term < prev.term || id.index !== prev.index + 1) {
      return new Error(
        `leader term ${slice.term}: entries {term:${prev.term} index:${prev.index}} and {term:${id.term} index:${id.index}} not consistent`,
      );
    }
    prev = id;
  }
  if (slice.term < prev.term) {
    return new Error(`leader term ${slice.term}: entry {term:${prev.term} index:${prev.index}} has a newer term`);
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Describe helpers

export function isEmptyHardStateValue(hardState: HardState): boolean {
  return hardState.term === 0 && hardState.vote === 0 && hardState.commit === 0;
}

export function describeHardState(hardState: HardState): string {
  let out = `Term:${hardState.term}`;
  if (hardState.vote !== 0) out += ` Vote:${hardState.vote}`;
  return `${out} Commit:${hardState.commit}`;
}

export function describeSoftState(softState: { lead: number; raftState: string }): string {
  return `Lead:${softState.lead} State:${softState.raftState}`;
}

function goList(values: readonly number[]): string {
  return `[${values.join(' ')}]`;
}

export function describeConfState(confState: ConfState): string {
  return (
    `Voters:${goList(confState.voters)} VotersOutgoing:${goList(confState.votersOutgoing)} ` +
    `Learners:${goList(confState.learners)} LearnersNext:${goList(confState.learnersNext)} AutoLeave:${confState.autoLeave}`
  );
}

export function describeSnapshot(snapshot: Snapshot): string {
  const m = snapshot.metadata;
  return `Index:${m.index} Term:${m.term} ConfState:${describeConfState(m.confState)}`;
}

export type EntryFormatter = (data: Uint8Array | undefined) => string;

const GO_ESCAPES: Record<number, string> = { 7: '\\a', 8: '\\b', 9: '\\t', 10: '\\n', 11: '\\v', 12: '\\f', 13: '\\r' };

/** Go's %q of a byte slice: printable ASCII as is, Go's short escapes, other bytes as \xNN. */
export function quoteBytes(data: Uint8Array | undefined): string {
  let out = '"';
  for (const byte of data ?? []) {
    if (byte === 0x22) out += '\\"';
    else if (byte === 0x5c) out += '\\\\';
    else if (byte >= 0x20 && byte < 0x7f) out += String.fromCharCode(byte);
    else if (GO_ESCAPES[byte] !== undefined) out += GO_ESCAPES[byte];
    else out += `\\x${byte.toString(16).padStart(2, '0')}`;
  }
  return `${out}"`;
}

function describeTarget(id: number): string {
  if (id === NONE) return 'None';
  if (id === LOCAL_APPEND_THREAD) return 'AppendThread';
  if (id === LOCAL_APPLY_THREAD) return 'ApplyThread';
  return id.toString(16);
}

const ENTRY_TYPE_NAMES: Record<EntryType, string> = {
  [EntryType.Normal]: 'EntryNormal',
  [EntryType.ConfChange]: 'EntryConfChange',
  [EntryType.ConfChangeV2]: 'EntryConfChangeV2',
};

export function describeEntry(entry: Entry, format: EntryFormatter = quoteBytes): string {
  let formatted: string;
  try {
    switch (entry.type) {
      case EntryType.Normal:
        formatted = format(entry.data);
        break;
      case EntryType.ConfChange:
        formatted = confChangesToString(asV2(decodeConfChange(entry.data ?? new Uint8Array())).changes);
        break;
      default:
        formatted = confChangesToString(decodeConfChangeV2(entry.data ?? new Uint8Array()).changes);
        break;
    }
  } catch (error) {
    formatted = error instanceof Error ? error.message : String(error);
  }
  if (formatted !== '') formatted = ` ${formatted}`;
  return `${entry.term}/${entry.index} ${ENTRY_TYPE_NAMES[entry.type]}${formatted}`;
}

export function describeEntries(entries: readonly Entry[], format?: EntryFormatter): string {
  return entries.map((entry) => `${describeEntry(entry, format)}\n`).join('');
}

export function describeMessage(message: Message, format?: EntryFormatter, indent = ''): string {
  let out =
    `${indent}${describeTarget(message.from)}->${describeTarget(message.to)} ${MessageType[message.type]} ` +
    `Term:${message.term} Log:${message.logTerm}/${message.index}`;
  if (message.reject) out += ` Rejected (Hint: ${message.rejectHint})`;
  if (message.commit !== 0) out += ` Commit:${message.commit}`;
  if (message.vote !== 0) out += ` Vote:${message.vote}`;
  if (message.entries.length === 1) {
    out += ` Entries:[${describeEntry(message.entries[0]!, format)}]`;
  } else if (message.entries.length > 1) {
    out += ' Entries:[';
    for (const entry of message.entries) out += `\n${indent}  ${describeEntry(entry, format)}`;
    out += `\n${indent}]`;
  }
  if (message.snapshot !== undefined && message.snapshot.metadata.index !== 0) {
    out += `\n${indent}  Snapshot: ${describeSnapshot(message.snapshot)}`;
  }
  if (message.responses.length > 0) {
    out += ' Responses:[';
    for (const response of message.responses) out += `\n${describeMessage(response, format, `${indent}  `)}`;
    out += `\n${indent}]`;
  }
  return out;
}

/** The parts of a Ready that describeReady prints (RawNode's Ready satisfies it). */
export interface DescribableReady {
  softState?: { lead: number; raftState: string };
  hardState?: HardState;
  readStates: ReadonlyArray<{ index: number; requestCtx: Uint8Array }>;
  entries: readonly Entry[];
  snapshot?: Snapshot;
  committedEntries: readonly Entry[];
  messages: readonly Message[];
  mustSync: boolean;
}

/** Go's `%v` of a []byte: the decimal byte values in brackets. */
function goBytes(bytes: Uint8Array): string {
  return `[${Array.from(bytes).join(' ')}]`;
}

/** Go's DescribeReady: a multi-line summary, or "<empty Ready>". */
export function describeReady(rd: DescribableReady, format?: EntryFormatter): string {
  let out = '';
  if (rd.softState !== undefined) out += `${describeSoftState(rd.softState)}\n`;
  if (rd.hardState !== undefined && !isEmptyHardStateValue(rd.hardState)) out += `HardState ${describeHardState(rd.hardState)}\n`;
  if (rd.readStates.length > 0) {
    // Go's %v of []ReadState: [{Index RequestCtx} ...].
    out += `ReadStates [${rd.readStates.map((rs) => `{${rs.index} ${goBytes(rs.requestCtx)}}`).join(' ')}]\n`;
  }
  if (rd.entries.length > 0) out += `Entries:\n${describeEntries(rd.entries, format)}`;
  if (rd.snapshot !== undefined && rd.snapshot.metadata.index !== 0) out += `Snapshot ${describeSnapshot(rd.snapshot)}\n`;
  if (rd.committedEntries.length > 0) out += `CommittedEntries:\n${describeEntries(rd.committedEntries, format)}`;
  if (rd.messages.length > 0) {
    out += 'Messages:\n';
    for (const message of rd.messages) out += `${describeMessage(message, format)}\n`;
  }
  return out === '' ? '<empty Ready>' : `Ready MustSync=${rd.mustSync}:\n${out}`;
}
