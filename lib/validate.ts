/**
 * Edge validation: every value that crosses the public API is checked here once, before any
 * state changes (`*Untrusted` = not yet validated). Inside the library values are trusted.
 */
import { checkSafeUnsigned, invalidArgumentError } from './errors.js';
import { MAX_DEPTH } from './wire-check.js';
import {
  ConfChangeTransition,
  ConfChangeType,
  EntryType,
  MessageType,
  type ConfChange,
  type ConfChangeV2,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type Snapshot,
} from './types.js';

function checkObject(value: unknown, name: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null) throw invalidArgumentError(`${name} must be an object`);
  return value as Record<string, unknown>;
}

export function checkBytes(value: unknown, name: string): Uint8Array | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof Uint8Array)) throw invalidArgumentError(`${name} must be a Uint8Array or absent`);
  return value;
}

function checkEnum(value: unknown, name: string, maximum: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > maximum) {
    throw invalidArgumentError(`${name} must be an integer in 0..${maximum}, got ${String(value)}`);
  }
  return value;
}

function checkIdList(value: unknown, name: string): number[] {
  if (!Array.isArray(value)) throw invalidArgumentError(`${name} must be an array of ids`);
  // An index loop, not forEach: forEach skips the holes of a sparse array ([1, , 3]).
  for (let position = 0; position < value.length; position++) checkSafeUnsigned(value[position], `${name}[${position}]`);
  return value as number[];
}

export function validateEntryUntrusted(value: unknown, name = 'entry'): Entry {
  const entry = checkObject(value, name);
  checkEnum(entry.type, `${name}.type`, EntryType.ConfChangeV2);
  checkSafeUnsigned(entry.term, `${name}.term`);
  checkSafeUnsigned(entry.index, `${name}.index`);
  checkBytes(entry.data, `${name}.data`);
  return value as Entry;
}

export function validateEntriesUntrusted(value: unknown, name = 'entries'): Entry[] {
  if (!Array.isArray(value)) throw invalidArgumentError(`${name} must be an array`);
  // An index loop, not forEach: forEach skips the holes of a sparse array ([ , entry]).
  for (let position = 0; position < value.length; position++) validateEntryUntrusted(value[position], `${name}[${position}]`);
  return value as Entry[];
}

export function validateHardStateUntrusted(value: unknown, name = 'hardState'): HardState {
  const hardState = checkObject(value, name);
  checkSafeUnsigned(hardState.term, `${name}.term`);
  checkSafeUnsigned(hardState.vote, `${name}.vote`);
  checkSafeUnsigned(hardState.commit, `${name}.commit`);
  return value as HardState;
}

export function validateConfStateUntrusted(value: unknown, name = 'confState'): ConfState {
  const confState = checkObject(value, name);
  checkIdList(confState.voters, `${name}.voters`);
  checkIdList(confState.learners, `${name}.learners`);
  checkIdList(confState.votersOutgoing, `${name}.votersOutgoing`);
  checkIdList(confState.learnersNext, `${name}.learnersNext`);
  if (typeof confState.autoLeave !== 'boolean') throw invalidArgumentError(`${name}.autoLeave must be a boolean`);
  return value as ConfState;
}

export function validateSnapshotUntrusted(value: unknown, name = 'snapshot'): Snapshot {
  const snapshot = checkObject(value, name);
  checkBytes(snapshot.data, `${name}.data`);
  const metadata = checkObject(snapshot.metadata, `${name}.metadata`);
  validateConfStateUntrusted(metadata.confState, `${name}.metadata.confState`);
  checkSafeUnsigned(metadata.index, `${name}.metadata.index`);
  checkSafeUnsigned(metadata.term, `${name}.metadata.term`);
  return value as Snapshot;
}

export function validateConfChangeUntrusted(value: unknown, name = 'confChange'): ConfChange {
  const confChange = checkObject(value, name);
  checkSafeUnsigned(confChange.id, `${name}.id`);
  checkEnum(confChange.type, `${name}.type`, ConfChangeType.AddLearnerNode);
  checkSafeUnsigned(confChange.nodeId, `${name}.nodeId`);
  checkBytes(confChange.context, `${name}.context`);
  return value as ConfChange;
}

export function validateConfChangeV2Untrusted(value: unknown, name = 'confChangeV2'): ConfChangeV2 {
  const confChange = checkObject(value, name);
  checkEnum(confChange.transition, `${name}.transition`, ConfChangeTransition.JointExplicit);
  if (!Array.isArray(confChange.changes)) throw invalidArgumentError(`${name}.changes must be an array`);
  confChange.changes.forEach((change: unknown, position: number) => {
    const single = checkObject(change, `${name}.changes[${position}]`);
    checkEnum(single.type, `${name}.changes[${position}].type`, ConfChangeType.AddLearnerNode);
    checkSafeUnsigned(single.nodeId, `${name}.changes[${position}].nodeId`);
  });
  checkBytes(confChange.context, `${name}.context`);
  return value as ConfChangeV2;
}

export function validateMessageUntrusted(value: unknown, name = 'message'): Message {
  return validateMessageAtDepth(value, name, 1);
}

/** Message.responses nests: deeper than the codec's limit (or a cycle) is refused, never a stack overflow. */
function validateMessageAtDepth(value: unknown, name: string, depth: number): Message {
  if (depth > MAX_DEPTH) throw invalidArgumentError(`${name}: messages nested deeper than ${MAX_DEPTH} levels (Message.responses)`);
  const message = checkObject(value, name);
  checkEnum(message.type, `${name}.type`, MessageType.MsgForgetLeader);
  for (const field of ['to', 'from', 'term', 'logTerm', 'index', 'commit', 'vote', 'rejectHint'] as const) {
    checkSafeUnsigned(message[field], `${name}.${field}`);
  }
  if (typeof message.reject !== 'boolean') throw invalidArgumentError(`${name}.reject must be a boolean`);
  validateEntriesUntrusted(message.entries, `${name}.entries`);
  if (message.snapshot !== undefined) validateSnapshotUntrusted(message.snapshot, `${name}.snapshot`);
  checkBytes(message.context, `${name}.context`);
  if (!Array.isArray(message.responses)) throw invalidArgumentError(`${name}.responses must be an array`);
  message.responses.forEach((response: unknown, position: number) =>
    validateMessageAtDepth(response, `${name}.responses[${position}]`, depth + 1),
  );
  return value as Message;
}
