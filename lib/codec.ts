/**
 * Byte-exact raftpb (etcd raft v3.6, gogoproto) and Gitaly log codecs.
 *
 * The wire format comes from the .proto files in schemas/, loaded by protobufjs; this module
 * only decides *which* fields are written, reproducing gogo's rules (etcd-raft.md §4.1):
 * every non-nullable scalar is written even when zero, `data`/`context` only when present
 * (an empty present value is written as a zero-length field), repeated ids unpacked (proto2),
 * fields in field-number order. Decoders accept packed ids and bytes with omitted fields (etcd
 * raft v3.7), throw ERR_CORRUPT on malformed bytes and ERR_OUT_OF_RANGE on numbers a JS number
 * cannot hold exactly.
 */
import { GogoReader, checkWireStrict, MAX_DEPTH } from './wire-check.js';
import { invalidArgumentError } from './errors.js';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { checkSafeUnsigned, corruptError, isReplicaLogError, ReplicaLogRangeError } from './errors.js';
import {
  copyBytes,
  ConfChangeTransition,
  ConfChangeType,
  EntryType,
  MessageType,
  type ConfChange,
  type ConfChangeSingle,
  type ConfChangeV2,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type Snapshot,
  type SnapshotMetadata,
} from './types.js';

/** The schemas directory sits at the package root: one level above lib/, two above dist/lib/. */
function schemaPath(fileName: string): string {
  for (const relative of ['../schemas/', '../../schemas/']) {
    const candidate = fileURLToPath(new URL(relative + fileName, import.meta.url));
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`replicalog: cannot find schemas/${fileName} next to ${fileURLToPath(import.meta.url)}`);
}

const raftRoot = protobuf.loadSync(schemaPath('raft.proto')).resolveAll();
const logRoot = protobuf.loadSync(schemaPath('log.proto')).resolveAll();

const wire = {
  entry: raftRoot.lookupType('raftpb.Entry'),
  hardState: raftRoot.lookupType('raftpb.HardState'),
  confState: raftRoot.lookupType('raftpb.ConfState'),
  snapshot: raftRoot.lookupType('raftpb.Snapshot'),
  confChange: raftRoot.lookupType('raftpb.ConfChange'),
  confChangeV2: raftRoot.lookupType('raftpb.ConfChangeV2'),
  message: raftRoot.lookupType('raftpb.Message'),
  logEntry: logRoot.lookupType('gitaly.LogEntry'),
  lsn: logRoot.lookupType('gitaly.LSN'),
  raftEntry: logRoot.lookupType('gitaly.RaftEntry'),
};

/** A decoded protobufjs message: own properties are the fields that were on the wire. */
type WireObject = Record<string, unknown>;

// ---------------------------------------------------------------------------------------------
// Numbers

interface LongLike {
  low: number;
  high: number;
}

/** Converts a decoded uint64 (number or Long) to a safe JS number, refusing anything larger. */
function toSafeNumber(value: unknown, field: string): number {
  if (value === undefined || value === null) return 0;
  if (typeof value === 'number') return checkSafeUnsigned(value, field);
  const long = value as LongLike;
  const high = long.high >>> 0;
  const low = long.low >>> 0;
  // 2^53 = high word 0x00200000; anything at or above it cannot be held exactly.
  if (high >= 0x200000) {
    throw new ReplicaLogRangeError(`${field} is above Number.MAX_SAFE_INTEGER (high word 0x${high.toString(16)})`);
  }
  return high * 0x1_0000_0000 + low;
}

function toEnum(value: unknown, field: string, maximum: number): number {
  const number = value === undefined || value === null ? 0 : (value as number);
  if (!Number.isInteger(number) || number < 0 || number > maximum) {
    throw corruptError(`${field} has unknown value ${String(value)}`);
  }
  return number;
}

/**
 * protobufjs drops a closed-enum (proto2) value it does not know, so an unknown EntryType or
 * MessageType would decode silently as 0. When the decoded object lacks the enum field, scan
 * the top-level tags with protobufjs's Reader: a varint for that field means an unknown value.
 */
function refuseDroppedEnum(object: WireObject, field: string, bytes: Uint8Array, fieldNumber: number, what: string): void {
  if (own(object, field)) return;
  const reader = protobuf.Reader.create(bytes);
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag >>> 3 === fieldNumber && (tag & 7) === 0) {
      throw corruptError(`${what} has unknown value ${reader.int32()}`);
    }
    reader.skipType(tag & 7);
  }
}

function toBool(value: unknown): boolean {
  return value === true;
}

function own(object: WireObject, field: string): boolean {
  return Object.prototype.hasOwnProperty.call(object, field);
}

/** Copies decoded bytes into a plain Uint8Array that owns its memory (no Buffer pool aliasing). */
function toBytes(value: unknown): Uint8Array {
  return copyBytes(value as Uint8Array);
}

function optionalBytes(object: WireObject, field: string): Uint8Array | undefined {
  return own(object, field) && object[field] !== null ? toBytes(object[field]) : undefined;
}

function idList(value: unknown, field: string): number[] {
  if (!Array.isArray(value)) return [];
  return value.map((id, position) => toSafeNumber(id, `${field}[${position}]`));
}

/**
 * Runs a decoder after the strict pass (lib/wire-check.ts: what gogo refuses, and what protobufjs
 * would decode to another value), mapping protobufjs's errors to ERR_CORRUPT.
 */
function decodeWith<T>(what: string, bytes: Uint8Array, decode: () => T, type?: protobuf.Type): T {
  if (!(bytes instanceof Uint8Array)) throw corruptError(`${what}: expected a Uint8Array`);
  try {
    if (type !== undefined) checkWireStrict(type, bytes, what);
    return decode();
  } catch (error) {
    if (isReplicaLogError(error)) throw error;
    throw corruptError(`${what}: malformed bytes (${(error as Error).message})`, { cause: error });
  }
}

// ---------------------------------------------------------------------------------------------
// Entry

function entryToWire(entry: Entry): WireObject {
  checkSafeUnsigned(entry.term, 'entry.term');
  checkSafeUnsigned(entry.index, 'entry.index');
  const object: WireObject = { Type: entry.type, Term: entry.term, Index: entry.index };
  if (entry.data !== undefined) object.Data = entry.data;
  return object;
}

function entryFromWire(object: WireObject): Entry {
  const entry: Entry = {
    type: toEnum(object.Type, 'Entry.Type', EntryType.ConfChangeV2) as EntryType,
    term: toSafeNumber(object.Term, 'Entry.Term'),
    index: toSafeNumber(object.Index, 'Entry.Index'),
  };
  const data = optionalBytes(object, 'Data');
  if (data !== undefined) entry.data = data;
  return entry;
}

export function encodeEntry(entry: Entry): Uint8Array {
  return wire.entry.encode(entryToWire(entry)).finish();
}

export function decodeEntry(bytes: Uint8Array): Entry {
  return decodeWith('raftpb.Entry', bytes, () => {
    const object = wire.entry.decode(new GogoReader(bytes)) as unknown as WireObject;
    refuseDroppedEnum(object, 'Type', bytes, 1, 'Entry.Type');
    return entryFromWire(object);
  }, wire.entry);
}

/** Bytes a varint of `value` (a safe non-negative integer) takes on the wire. */
export function varintSize(value: number): number {
  let size = 1;
  // Division, not bit shifts: values above 2^32 must not be truncated to 32 bits.
  while (value >= 128) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

/**
 * The gogo-encoded size of an entry, the unit of every `maxSize`: three always-written tagged
 * varints plus, when data is present, a tag, a length varint and the bytes. Equal to
 * `encodeEntry(entry).length` without encoding.
 */
export function entrySize(entry: Entry): number {
  let size = 3 + varintSize(entry.type) + varintSize(entry.term) + varintSize(entry.index);
  if (entry.data !== undefined) size += 1 + varintSize(entry.data.length) + entry.data.length;
  return size;
}

// ---------------------------------------------------------------------------------------------
// HardState, ConfState, Snapshot

export function encodeHardState(hardState: HardState): Uint8Array {
  checkSafeUnsigned(hardState.term, 'hardState.term');
  checkSafeUnsigned(hardState.vote, 'hardState.vote');
  checkSafeUnsigned(hardState.commit, 'hardState.commit');
  return wire.hardState.encode({ term: hardState.term, vote: hardState.vote, commit: hardState.commit }).finish();
}

export function decodeHardState(bytes: Uint8Array): HardState {
  return decodeWith('raftpb.HardState', bytes, () => {
    const object = wire.hardState.decode(new GogoReader(bytes)) as unknown as WireObject;
    return {
      term: toSafeNumber(object.term, 'HardState.term'),
      vote: toSafeNumber(object.vote, 'HardState.vote'),
      commit: toSafeNumber(object.commit, 'HardState.commit'),
    };
  }, wire.hardState);
}

function confStateToWire(confState: ConfState): WireObject {
  const check = (ids: number[], field: string) => ids.forEach((id, i) => checkSafeUnsigned(id, `confState.${field}[${i}]`));
  check(confState.voters, 'voters');
  check(confState.learners, 'learners');
  check(confState.votersOutgoing, 'votersOutgoing');
  check(confState.learnersNext, 'learnersNext');
  return {
    voters: confState.voters,
    learners: confState.learners,
    votersOutgoing: confState.votersOutgoing,
    learnersNext: confState.learnersNext,
    autoLeave: confState.autoLeave, // gogo nullable=false: written even when false
  };
}

function confStateFromWire(object: WireObject | undefined): ConfState {
  const source = object ?? {};
  return {
    voters: idList(source.voters, 'ConfState.voters'),
    learners: idList(source.learners, 'ConfState.learners'),
    votersOutgoing: idList(source.votersOutgoing, 'ConfState.voters_outgoing'),
    learnersNext: idList(source.learnersNext, 'ConfState.learners_next'),
    autoLeave: toBool(source.autoLeave),
  };
}

export function encodeConfState(confState: ConfState): Uint8Array {
  return wire.confState.encode(confStateToWire(confState)).finish();
}

export function decodeConfState(bytes: Uint8Array): ConfState {
  return decodeWith('raftpb.ConfState', bytes, () =>
    confStateFromWire(wire.confState.decode(new GogoReader(bytes)) as unknown as WireObject), wire.confState);
}

function snapshotToWire(snapshot: Snapshot): WireObject {
  checkSafeUnsigned(snapshot.metadata.index, 'snapshot.metadata.index');
  checkSafeUnsigned(snapshot.metadata.term, 'snapshot.metadata.term');
  const object: WireObject = {
    metadata: {
      confState: confStateToWire(snapshot.metadata.confState),
      index: snapshot.metadata.index,
      term: snapshot.metadata.term,
    },
  };
  if (snapshot.data !== undefined) object.data = snapshot.data;
  return object;
}

function snapshotFromWire(object: WireObject): Snapshot {
  const metadataObject = (object.metadata ?? {}) as WireObject;
  const metadata: SnapshotMetadata = {
    confState: confStateFromWire(metadataObject.confState as WireObject | undefined),
    index: toSafeNumber(metadataObject.index, 'SnapshotMetadata.index'),
    term: toSafeNumber(metadataObject.term, 'SnapshotMetadata.term'),
  };
  const data = optionalBytes(object, 'data');
  return data === undefined ? { metadata } : { data, metadata };
}

export function encodeSnapshot(snapshot: Snapshot): Uint8Array {
  return wire.snapshot.encode(snapshotToWire(snapshot)).finish();
}

export function decodeSnapshot(bytes: Uint8Array): Snapshot {
  return decodeWith('raftpb.Snapshot', bytes, () => snapshotFromWire(wire.snapshot.decode(new GogoReader(bytes)) as unknown as WireObject), wire.snapshot);
}

// ---------------------------------------------------------------------------------------------
// ConfChange, ConfChangeV2

export function encodeConfChange(confChange: ConfChange): Uint8Array {
  checkSafeUnsigned(confChange.id, 'confChange.id');
  checkSafeUnsigned(confChange.nodeId, 'confChange.nodeId');
  const object: WireObject = { id: confChange.id, type: confChange.type, nodeId: confChange.nodeId };
  if (confChange.context !== undefined) object.context = confChange.context;
  return wire.confChange.encode(object).finish();
}

export function decodeConfChange(bytes: Uint8Array): ConfChange {
  return decodeWith('raftpb.ConfChange', bytes, () => {
    const object = wire.confChange.decode(new GogoReader(bytes)) as unknown as WireObject;
    refuseDroppedEnum(object, 'type', bytes, 2, 'ConfChange.type');
    const confChange: ConfChange = {
      id: toSafeNumber(object.id, 'ConfChange.id'),
      type: toEnum(object.type, 'ConfChange.type', ConfChangeType.AddLearnerNode) as ConfChangeType,
      nodeId: toSafeNumber(object.nodeId, 'ConfChange.node_id'),
    };
    const context = optionalBytes(object, 'context');
    if (context !== undefined) confChange.context = context;
    return confChange;
  }, wire.confChange);
}

export function encodeConfChangeV2(confChange: ConfChangeV2): Uint8Array {
  const object: WireObject = {
    transition: confChange.transition,
    changes: confChange.changes.map((change, i) => ({
      type: change.type,
      nodeId: checkSafeUnsigned(change.nodeId, `confChangeV2.changes[${i}].nodeId`),
    })),
  };
  if (confChange.context !== undefined) object.context = confChange.context;
  return wire.confChangeV2.encode(object).finish();
}

export function decodeConfChangeV2(bytes: Uint8Array): ConfChangeV2 {
  return decodeWith('raftpb.ConfChangeV2', bytes, () => {
    const object = wire.confChangeV2.decode(new GogoReader(bytes)) as unknown as WireObject;
    refuseDroppedEnum(object, 'transition', bytes, 1, 'ConfChangeV2.transition');
    const changes = ((object.changes ?? []) as WireObject[]).map(
      (change, i): ConfChangeSingle => ({
        type: toEnum(change.type, `ConfChangeV2.changes[${i}].type`, ConfChangeType.AddLearnerNode) as ConfChangeType,
        nodeId: toSafeNumber(change.nodeId, `ConfChangeV2.changes[${i}].node_id`),
      }),
    );
    const confChange: ConfChangeV2 = {
      transition: toEnum(object.transition, 'ConfChangeV2.transition', ConfChangeTransition.JointExplicit) as ConfChangeTransition,
      changes,
    };
    const context = optionalBytes(object, 'context');
    if (context !== undefined) confChange.context = context;
    return confChange;
  }, wire.confChangeV2);
}

// ---------------------------------------------------------------------------------------------
// Message

const messageNumberFields = ['to', 'from', 'term', 'logTerm', 'index', 'commit', 'vote', 'rejectHint'] as const;

function messageToWire(message: Message, depth = 1): WireObject {
  // raftpb nests Message.responses; deeper than the decoder accepts is refused with a code.
  if (depth > MAX_DEPTH) throw invalidArgumentError(`encodeMessage: messages nested deeper than ${MAX_DEPTH} levels (Message.responses)`);
  const object: WireObject = { type: message.type, reject: message.reject };
  for (const field of messageNumberFields) object[field] = checkSafeUnsigned(message[field], `message.${field}`);
  object.entries = message.entries.map(entryToWire);
  if (message.snapshot !== undefined) object.snapshot = snapshotToWire(message.snapshot);
  if (message.context !== undefined) object.context = message.context;
  object.responses = message.responses.map((response) => messageToWire(response, depth + 1));
  return object;
}

function messageFromWire(object: WireObject): Message {
  const message: Message = {
    type: toEnum(object.type, 'Message.type', MessageType.MsgForgetLeader) as MessageType,
    to: toSafeNumber(object.to, 'Message.to'),
    from: toSafeNumber(object.from, 'Message.from'),
    term: toSafeNumber(object.term, 'Message.term'),
    logTerm: toSafeNumber(object.logTerm, 'Message.logTerm'),
    index: toSafeNumber(object.index, 'Message.index'),
    entries: ((object.entries ?? []) as WireObject[]).map(entryFromWire),
    commit: toSafeNumber(object.commit, 'Message.commit'),
    vote: toSafeNumber(object.vote, 'Message.vote'),
    reject: toBool(object.reject),
    rejectHint: toSafeNumber(object.rejectHint, 'Message.rejectHint'),
    responses: ((object.responses ?? []) as WireObject[]).map(messageFromWire),
  };
  if (own(object, 'snapshot') && object.snapshot !== null) message.snapshot = snapshotFromWire(object.snapshot as WireObject);
  const context = optionalBytes(object, 'context');
  if (context !== undefined) message.context = context;
  return message;
}

export function encodeMessage(message: Message): Uint8Array {
  return wire.message.encode(messageToWire(message)).finish();
}

export function decodeMessage(bytes: Uint8Array): Message {
  return decodeWith('raftpb.Message', bytes, () => {
    const object = wire.message.decode(new GogoReader(bytes)) as unknown as WireObject;
    refuseDroppedEnum(object, 'type', bytes, 1, 'Message.type');
    return messageFromWire(object);
  }, wire.message);
}

// ---------------------------------------------------------------------------------------------
// Gitaly: LogEntry (MANIFEST), LSN, RaftEntry (the Data of a normal RAFT entry)

export interface LogEntryOperation {
  createHardLink?: { sourcePath: Uint8Array; sourceInStorage: boolean; destinationPath: Uint8Array };
  removeDirectoryEntry?: { path: Uint8Array };
  createDirectory?: { path: Uint8Array; mode: number };
  setKey?: { key: Uint8Array; value: Uint8Array };
  deleteKey?: { key: Uint8Array };
}

export interface LogEntry {
  relativePath: string;
  referenceTransactions: { changes: { referenceName: Uint8Array; newOid: Uint8Array; newTarget: Uint8Array }[] }[];
  repositoryDeletion?: Record<string, never>;
  housekeeping?: { packRefs?: Record<string, never>; offloading?: Record<string, never> };
  operations: LogEntryOperation[];
}

/** Gitaly's directory mode value for CreateDirectory: Go's os.ModeDir (1<<31) | 0700. */
export const GITALY_DIRECTORY_MODE = 0x8000_01c0;

/** proto3 rules as Go writes them: scalars only when non-default. */
function withoutDefaults(object: Record<string, unknown>): WireObject {
  const result: WireObject = {};
  for (const [key, value] of Object.entries(object)) {
    if (value === undefined || value === false || value === 0 || value === '') continue;
    if (value instanceof Uint8Array && value.length === 0) continue;
    result[key] = value;
  }
  return result;
}

function operationToWire(operation: LogEntryOperation): WireObject {
  const object: WireObject = {};
  if (operation.createHardLink) object.createHardLink = withoutDefaults(operation.createHardLink);
  else if (operation.removeDirectoryEntry) object.removeDirectoryEntry = withoutDefaults(operation.removeDirectoryEntry);
  else if (operation.createDirectory) object.createDirectory = withoutDefaults(operation.createDirectory);
  else if (operation.setKey) object.setKey = withoutDefaults(operation.setKey);
  else if (operation.deleteKey) object.deleteKey = withoutDefaults(operation.deleteKey);
  return object;
}

const emptyBytes = new Uint8Array(0);
const bytesOr = (value: unknown): Uint8Array => (value === undefined || value === null ? emptyBytes : toBytes(value));

function operationFromWire(object: WireObject): LogEntryOperation {
  const get = (field: string): WireObject | undefined =>
    own(object, field) && object[field] !== null ? (object[field] as WireObject) : undefined;
  const createHardLink = get('createHardLink');
  if (createHardLink) {
    return {
      createHardLink: {
        sourcePath: bytesOr(createHardLink.sourcePath),
        sourceInStorage: toBool(createHardLink.sourceInStorage),
        destinationPath: bytesOr(createHardLink.destinationPath),
      },
    };
  }
  const removeDirectoryEntry = get('removeDirectoryEntry');
  if (removeDirectoryEntry) return { removeDirectoryEntry: { path: bytesOr(removeDirectoryEntry.path) } };
  const createDirectory = get('createDirectory');
  if (createDirectory) {
    return { createDirectory: { path: bytesOr(createDirectory.path), mode: Number(createDirectory.mode ?? 0) >>> 0 } };
  }
  const setKey = get('setKey');
  if (setKey) return { setKey: { key: bytesOr(setKey.key), value: bytesOr(setKey.value) } };
  const deleteKey = get('deleteKey');
  if (deleteKey) return { deleteKey: { key: bytesOr(deleteKey.key) } };
  return {};
}

export function encodeLogEntry(logEntry: LogEntry): Uint8Array {
  const object: WireObject = withoutDefaults({ relativePath: logEntry.relativePath });
  if (logEntry.referenceTransactions.length > 0) {
    object.referenceTransactions = logEntry.referenceTransactions.map((transaction) => ({
      changes: transaction.changes.map((change) => withoutDefaults(change)),
    }));
  }
  if (logEntry.repositoryDeletion) object.repositoryDeletion = {};
  if (logEntry.housekeeping) object.housekeeping = { ...logEntry.housekeeping };
  if (logEntry.operations.length > 0) object.operations = logEntry.operations.map(operationToWire);
  return wire.logEntry.encode(object).finish();
}

/** Decodes a MANIFEST. A 0-byte MANIFEST is a valid empty LogEntry (a raft-internal entry). */
export function decodeLogEntry(bytes: Uint8Array): LogEntry {
  return decodeWith('gitaly.LogEntry', bytes, () => {
    const object = wire.logEntry.decode(new GogoReader(bytes)) as unknown as WireObject;
    const logEntry: LogEntry = {
      relativePath: typeof object.relativePath === 'string' ? object.relativePath : '',
      referenceTransactions: ((object.referenceTransactions ?? []) as WireObject[]).map((transaction) => ({
        changes: ((transaction.changes ?? []) as WireObject[]).map((change) => ({
          referenceName: bytesOr(change.referenceName),
          newOid: bytesOr(change.newOid),
          newTarget: bytesOr(change.newTarget),
        })),
      })),
      operations: ((object.operations ?? []) as WireObject[]).map(operationFromWire),
    };
    if (own(object, 'repositoryDeletion') && object.repositoryDeletion !== null) logEntry.repositoryDeletion = {};
    if (own(object, 'housekeeping') && object.housekeeping !== null) {
      const housekeeping = object.housekeeping as WireObject;
      logEntry.housekeeping = {};
      if (own(housekeeping, 'packRefs') && housekeeping.packRefs !== null) logEntry.housekeeping.packRefs = {};
      if (own(housekeeping, 'offloading') && housekeeping.offloading !== null) logEntry.housekeeping.offloading = {};
    }
    return logEntry;
  }, wire.logEntry);
}

export function encodeLsn(value: number): Uint8Array {
  return wire.lsn.encode(withoutDefaults({ value: checkSafeUnsigned(value, 'lsn') })).finish();
}

export function decodeLsn(bytes: Uint8Array): number {
  return decodeWith('gitaly.LSN', bytes, () => toSafeNumber((wire.lsn.decode(new GogoReader(bytes)) as unknown as WireObject).value, 'LSN.value'), wire.lsn);
}

/** gitaly.RaftEntry: the Data of a normal entry's RAFT file. */
export interface RaftEntry {
  id: number;
  data?: { localPath: Uint8Array; packed: Uint8Array };
}

export function encodeRaftEntry(raftEntry: RaftEntry): Uint8Array {
  const object: WireObject = withoutDefaults({ id: checkSafeUnsigned(raftEntry.id, 'raftEntry.id') });
  if (raftEntry.data) object.data = withoutDefaults(raftEntry.data);
  return wire.raftEntry.encode(object).finish();
}

export function decodeRaftEntry(bytes: Uint8Array): RaftEntry {
  return decodeWith('gitaly.RaftEntry', bytes, () => {
    const object = wire.raftEntry.decode(new GogoReader(bytes)) as unknown as WireObject;
    const raftEntry: RaftEntry = { id: toSafeNumber(object.id, 'RaftEntry.id') };
    if (own(object, 'data') && object.data !== null) {
      const data = object.data as WireObject;
      raftEntry.data = { localPath: bytesOr(data.localPath), packed: bytesOr(data.packed) };
    }
    return raftEntry;
  }, wire.raftEntry);
}
