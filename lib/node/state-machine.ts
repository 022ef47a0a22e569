/**
 * A small key-value state machine replicated through the raft log.
 *
 * Command encoding (the `data` of a Normal entry): UTF-8 JSON of one object
 *
 *     {"op":"put","key":"<key>","value":"<value>","requestId":"<id>"}
 *     {"op":"delete","key":"<key>","requestId":"<id>"}
 *
 * `requestId` is chosen by the proposer so it can recognise its own command when it is applied
 * (the HTTP endpoint waits for it). The first byte of a command is always `{` (0x7b).
 *
 * Several commands proposed in the same turn of the event loop travel as ONE entry (issue 18):
 *
 *     {"op":"batch","commands":[<command>,<command>,…]}
 *
 * applied in order at that entry's index; an entry is the unit of the WAL's layout (a directory
 * with two files per entry), so a batch of n puts costs one directory, not n. A batch holds at
 * least two commands (one command is always proposed alone, in the form above); a batch with
 * any element that is not a command is not a command at all (a no-op, the same on every replica).
 *
 * Entries that are not commands are applied as no-ops (only the applied index moves):
 *   - raft's empty entries (a new leader's no-op: `data` absent or empty);
 *   - conf changes (the node applies them to raft; the map is untouched);
 *   - entries migrated from a pre-Raft WAL: their data is a gitaly.RaftEntry protobuf, whose
 *     first byte is a field tag (0x08/0x12), never `{`. Their key changes live in the entry's
 *     MANIFEST and are folded into the initial state by `deriveStateFromPreRaftWal`.
 *
 * Snapshot encoding (binary, never one giant string: a value of 1 MiB of control characters
 * would grow six-fold as JSON, and a few hundred of them exceed V8's string limit):
 *
 *     "RLKV" 0x02 | per pair, keys sorted: varint keyBytes | key (UTF-8) | varint valueBytes | value (UTF-8)
 *
 * so two replicas with the same state produce the same bytes. Restore also reads the older JSON
 * format `{"format":"replicalog-kv/1","applied":N,"entries":[[k,v],…]}`, and refuses anything
 * else (bad magic, truncated pairs, invalid UTF-8, a key twice) with a message naming the index.
 *
 * Digest: the XOR of a SHA-256 prefix of every (key, value) pair, kept up to date on every put
 * and delete, so `/status` answers in O(1) whatever the size of the state. Equal contents give
 * equal digests; the pair count is part of the digest.
 */
import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeLogEntry } from '../codec.js';
import { EntryType, type Entry, type Storage } from '../types.js';
import { parseLsn, walPath, MANIFEST_FILE } from '../wal/layout.js';

export type KvCommand =
  | { op: 'put'; key: string; value: string; requestId: string }
  | { op: 'delete'; key: string; requestId: string };

const SNAPSHOT_FORMAT = 'replicalog-kv/1';
/** The binary snapshot's first bytes ("RLKV", version 2). */
const BINARY_SNAPSHOT_MAGIC = Buffer.from([0x52, 0x4c, 0x4b, 0x56, 0x02]);
const DIGEST_BYTES = 16;
const OPEN_BRACE = 0x7b;
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

export function encodeCommand(command: KvCommand): Uint8Array {
  return textEncoder.encode(JSON.stringify(command));
}

/**
 * The JSON object an entry's data holds, or undefined when it holds none (not UTF-8, not JSON,
 * not an object, or not starting with `{`: migrated and raft's own entries).
 */
export function decodeJsonObject(data: Uint8Array | undefined): Record<string, unknown> | undefined {
  if (data === undefined || data.length === 0 || data[0] !== OPEN_BRACE) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(textDecoder.decode(data));
  } catch {
    return undefined;
  }
  return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : undefined;
}

/**
 * The data of one entry carrying `commands` (at least one) in order: the command itself when
 * there is one, else a batch (see the header).
 */
export function encodeCommands(commands: readonly KvCommand[]): Uint8Array {
  if (commands.length === 0) throw new RangeError('encodeCommands: no command to encode');
  if (commands.length === 1) return encodeCommand(commands[0]!);
  return textEncoder.encode(JSON.stringify({ op: 'batch', commands }));
}

/**
 * At most this many commands share one entry, and a batch entry stops growing once its commands'
 * keys and values reach MAX_BATCH_ENTRY_CHARACTERS (a command larger than that travels alone):
 * an entry stays well inside a message (maxSizePerMsg) and the transport's frame limit.
 */
export const MAX_COMMANDS_PER_ENTRY = 256;
export const MAX_BATCH_ENTRY_CHARACTERS = 256 * 1024;

/**
 * The entries that carry `commands` in order (issue 18): consecutive commands share an entry
 * ("batch" in the header) up to MAX_COMMANDS_PER_ENTRY and MAX_BATCH_ENTRY_CHARACTERS. Each
 * entry is a directory with two files on every replica, so at 3 nodes and 64 puts in flight
 * writing one entry per put was the largest cost left behind the acknowledgement.
 */
export function commandEntries(commands: readonly KvCommand[]): Uint8Array[] {
  const entries: Uint8Array[] = [];
  let start = 0;
  let characters = 0;
  for (let position = 0; position < commands.length; position++) {
    const command = commands[position]!;
    const size = command.key.length + (command.op === 'put' ? command.value.length : 0);
    if (position > start && (position - start >= MAX_COMMANDS_PER_ENTRY || characters + size > MAX_BATCH_ENTRY_CHARACTERS)) {
      entries.push(encodeCommands(commands.slice(start, position)));
      start = position;
      characters = 0;
    }
    characters += size;
  }
  if (start < commands.length) entries.push(encodeCommands(commands.slice(start)));
  return entries;
}

/** The command carried by `data`, or undefined when `data` is not a command (see the header). */
export function decodeCommand(data: Uint8Array | undefined): KvCommand | undefined {
  const candidate = decodeJsonObject(data);
  return candidate === undefined ? undefined : commandFrom(candidate);
}

/**
 * The commands an entry's data carries, in order: one for a single command, each of a batch;
 * undefined when it carries none (not a command, or a batch with fewer than two elements or any
 * element that is not a command).
 */
export function decodeCommands(data: Uint8Array | undefined): KvCommand[] | undefined {
  const candidate = decodeJsonObject(data);
  if (candidate === undefined) return undefined;
  if (candidate.op !== 'batch') {
    const single = commandFrom(candidate);
    return single === undefined ? undefined : [single];
  }
  const elements = candidate.commands;
  if (!Array.isArray(elements) || elements.length < 2) return undefined;
  const commands: KvCommand[] = [];
  for (const element of elements as unknown[]) {
    const command = typeof element === 'object' && element !== null && !Array.isArray(element) ? commandFrom(element as Record<string, unknown>) : undefined;
    if (command === undefined) return undefined;
    commands.push(command);
  }
  return commands;
}

/** `candidate` as a command, or undefined when it is not one. */
function commandFrom(candidate: Record<string, unknown>): KvCommand | undefined {
  if (typeof candidate.key !== 'string' || typeof candidate.requestId !== 'string') return undefined;
  if (candidate.op === 'put' && typeof candidate.value === 'string') {
    return { op: 'put', key: candidate.key, value: candidate.value, requestId: candidate.requestId };
  }
  if (candidate.op === 'delete') return { op: 'delete', key: candidate.key, requestId: candidate.requestId };
  return undefined;
}

/** What applying one entry did. */
export interface ApplyResult {
  index: number;
  /** The commands applied, in order, if the entry carried any (several for a batch). */
  commands?: readonly KvCommand[];
}

/** SHA-256 prefix of one pair; the key's length comes first so ("ab","c") and ("a","bc") differ. */
function pairHash(key: string, value: string): Buffer {
  const keyBytes = Buffer.from(key, 'utf8');
  const length = Buffer.allocUnsafe(4);
  length.writeUInt32BE(keyBytes.length, 0);
  return createHash('sha256').update(length).update(keyBytes).update(value, 'utf8').digest().subarray(0, DIGEST_BYTES);
}

/** How many bytes `value` takes as a varint. */
function varintSize(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

/** Writes `value` as a varint at `offset`; returns the offset after it. */
function putVarint(value: number, into: Buffer, offset: number): number {
  while (value >= 0x80) {
    into[offset++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 128);
  }
  into[offset++] = value;
  return offset;
}

/** snapshotInSlices: bytes encoded between two turns of the event loop. */
const SNAPSHOT_SLICE_BYTES = 1 << 20;

/** Pairs sorted (or merged) between two turns of the event loop in snapshotInSlices. */
const SORT_SLICE_PAIRS = 16_384;

/** Keys in code-unit order, as entries() sorts them (keys are unique: the order is total). */
function compareKeys(a: [string, string], b: [string, string]): number {
  return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
}

/**
 * `pairs` sorted by key (the order of entries()), in slices: runs of `slicePairs` sorted natively,
 * then merged pairwise a slice of steps at a time, with `pause()` awaited between slices.
 * Sorting 145,000 keys at once held a node's event loop 130 ms at every snapshot (issue 18).
 */
export async function sortPairsInSlices(pairs: [string, string][], pause: () => Promise<void>, slicePairs = SORT_SLICE_PAIRS): Promise<[string, string][]> {
  const count = pairs.length;
  let source = pairs;
  for (let start = 0; start < count; start += slicePairs) {
    const run = source.slice(start, start + slicePairs).sort(compareKeys);
    for (let position = 0; position < run.length; position++) source[start + position] = run[position]!;
    if (start + slicePairs < count) await pause();
  }
  let target: [string, string][] = new Array<[string, string]>(count);
  let steps = 0;
  for (let width = slicePairs; width < count; width *= 2) {
    for (let left = 0; left < count; left += 2 * width) {
      const middle = Math.min(left + width, count);
      const end = Math.min(left + 2 * width, count);
      let i = left;
      let j = middle;
      for (let out = left; out < end; out++) {
        target[out] = j >= end || (i < middle && compareKeys(source[i]!, source[j]!) < 0) ? source[i++]! : source[j++]!;
        if (++steps >= slicePairs) {
          steps = 0;
          await pause();
        }
      }
    }
    [source, target] = [target, source];
  }
  return source;
}

/**
 * A snapshot's encoding: the size of every key and value measured first, then each pair
 * (varint key length, key, varint value length, value) written straight into one buffer of the
 * exact size. Four small buffers per pair joined at the end cost 10 µs a pair (200 ms for 20,000
 * values of 1 KiB, on every node at the same index); this is a few times faster. Both passes
 * run in slices (encode(budget)).
 */
class SnapshotEncoder {
  private readonly lengths: Uint32Array;
  private bytes: Buffer | undefined;
  private size = BINARY_SNAPSHOT_MAGIC.length;
  private measured = 0;
  private offset = 0;
  private next = 0;

  constructor(private readonly pairs: readonly [string, string][]) {
    this.lengths = new Uint32Array(pairs.length * 2);
  }

  /**
   * Measures, then encodes, pairs until about `budget` bytes were gone through or none is left;
   * true when done.
   */
  encode(budget: number): boolean {
    if (this.bytes === undefined) {
      const stop = this.size + budget;
      while (this.measured < this.pairs.length && this.size < stop) {
        const [key, value] = this.pairs[this.measured]!;
        const keyLength = Buffer.byteLength(key, 'utf8');
        const valueLength = Buffer.byteLength(value, 'utf8');
        this.lengths[2 * this.measured] = keyLength;
        this.lengths[2 * this.measured + 1] = valueLength;
        this.size += varintSize(keyLength) + keyLength + varintSize(valueLength) + valueLength;
        this.measured++;
      }
      if (this.measured < this.pairs.length) return false;
      this.bytes = Buffer.allocUnsafe(this.size);
      this.offset = BINARY_SNAPSHOT_MAGIC.copy(this.bytes, 0);
    }
    const bytes = this.bytes;
    const stop = this.offset + budget;
    while (this.next < this.pairs.length && this.offset < stop) {
      const [key, value] = this.pairs[this.next]!;
      this.offset = this.put(bytes, key, this.lengths[2 * this.next]!);
      this.offset = this.put(bytes, value, this.lengths[2 * this.next + 1]!);
      this.next++;
    }
    return this.next === this.pairs.length;
  }

  /** Writes `text` (UTF-8, `length` bytes) with its varint length; returns the offset after it. */
  private put(bytes: Buffer, text: string, length: number): number {
    const offset = putVarint(length, bytes, this.offset);
    // As many bytes as UTF-16 units: all ASCII, whose UTF-8 and Latin-1 bytes are the same, and
    // Latin-1 is a plain copy (UTF-8 encoding checks every character).
    return offset + bytes.write(text, offset, length === text.length ? 'latin1' : 'utf8');
  }

  /** The encoding (after encode returned true). */
  result(): Buffer {
    if (this.bytes === undefined) throw new Error('SnapshotEncoder.result() before encode() finished');
    return this.bytes;
  }
}

/** Thrown for snapshot bytes that are not a state this machine can restore. */
export class SnapshotDataError extends Error {
  readonly code = 'ERR_SNAPSHOT_DATA';
  constructor(message: string) {
    super(message);
    this.name = 'SnapshotDataError';
  }
}

export class KvStateMachine {
  private readonly map = new Map<string, string>();
  /** XOR of pairHash over every pair (see the header). */
  private readonly digestBytes = Buffer.alloc(DIGEST_BYTES);
  /** The index of the last entry applied (or of the snapshot the state was restored from). */
  applied = 0;

  /** A state holding `pairs` as of `applied`. */
  static from(pairs: Iterable<[string, string]>, applied: number): KvStateMachine {
    const machine = new KvStateMachine();
    for (const [key, value] of pairs) machine.put(key, value);
    machine.applied = applied;
    return machine;
  }

  /**
   * Throws SnapshotDataError exactly when `restore(data, index)` would, without building the
   * state: values are checked as UTF-8 in place, only keys are decoded (to find duplicates). A
   * node checks a received snapshot with it before raft may persist it.
   */
  static checkSnapshot(data: Uint8Array | undefined, index: number): void {
    if (data === undefined || data.length === 0) return;
    decodeSnapshotPairs(data, index, true);
  }

  /** Restores from snapshot data (absent data: an empty map as of `index`). */
  static fromSnapshot(data: Uint8Array | undefined, index: number): KvStateMachine {
    const machine = new KvStateMachine();
    machine.restore(data, index);
    return machine;
  }

  get size(): number {
    return this.map.size;
  }

  get(key: string): string | undefined {
    return this.map.get(key);
  }

  /** Direct changes, outside the log (deriving an initial state). */
  put(key: string, value: string): void {
    const previous = this.map.get(key);
    if (previous !== undefined) this.xorDigest(pairHash(key, previous));
    this.map.set(key, value);
    this.xorDigest(pairHash(key, value));
  }

  remove(key: string): void {
    const previous = this.map.get(key);
    if (previous === undefined) return;
    this.map.delete(key);
    this.xorDigest(pairHash(key, previous));
  }

  private xorDigest(hash: Buffer): void {
    for (let position = 0; position < DIGEST_BYTES; position++) this.digestBytes[position]! ^= hash[position]!;
  }

  /** Every pair, keys sorted. */
  entries(): [string, string][] {
    return [...this.map.entries()].sort(compareKeys);
  }

  /**
   * Applies one committed entry. Entries must come in index order; an entry at or below
   * `applied` (already part of the state) is skipped.
   */
  apply(entry: Entry): ApplyResult {
    if (entry.index <= this.applied) return { index: entry.index };
    if (entry.index !== this.applied + 1 && this.applied !== 0) {
      throw new Error(`state machine: entry ${entry.index} applied after ${this.applied} (a gap)`);
    }
    this.applied = entry.index;
    if (entry.type !== EntryType.Normal) return { index: entry.index };
    const commands = decodeCommands(entry.data);
    if (commands === undefined) return { index: entry.index };
    for (const command of commands) {
      if (command.op === 'put') this.put(command.key, command.value);
      else this.remove(command.key);
    }
    return { index: entry.index, commands };
  }

  /** The whole map in the binary format (see the header): buffers joined once, no string built. */
  snapshot(): Uint8Array {
    const encoder = new SnapshotEncoder(this.entries());
    encoder.encode(Number.POSITIVE_INFINITY);
    return encoder.result();
  }

  /**
   * The same bytes as snapshot(), of the state as it is NOW, encoded a slice at a time with the
   * event loop running in between (issue 18: encoding tens of MB at once blocked a node's loop
   * for up to half a second, on every node at the same index, and its followers called
   * elections). The view is taken here, synchronously: the pairs (strings never change), copied
   * unsorted (20 ms at 145,000 keys, where sorting them too took 130); applies made meanwhile do
   * not reach it. They are sorted, measured and encoded in slices.
   */
  snapshotInSlices(sliceBytes = SNAPSHOT_SLICE_BYTES, slicePairs = SORT_SLICE_PAIRS): Promise<Uint8Array> {
    const pairs = [...this.map.entries()];
    const nextTurn = () => new Promise<void>((resume) => setImmediate(resume));
    return (async () => {
      const encoder = new SnapshotEncoder(await sortPairsInSlices(pairs, nextTurn, slicePairs));
      while (!encoder.encode(sliceBytes)) await nextTurn();
      return encoder.result();
    })();
  }

  /**
   * Replaces the state with the one in snapshot `data` taken at `index`. Throws a
   * SnapshotDataError (and leaves this machine unchanged) when the data is not a valid snapshot.
   */
  restore(data: Uint8Array | undefined, index: number): void {
    const pairs = data === undefined || data.length === 0 ? [] : decodeSnapshotPairs(data, index);
    this.map.clear();
    this.digestBytes.fill(0);
    this.applied = index;
    for (const [key, value] of pairs) this.put(key, value);
  }

  /** A short digest of the map (not of `applied`), in O(1): equal digests mean equal contents. */
  digest(): string {
    return `${this.digestBytes.toString('hex')}-${this.map.size}`;
  }
}

/**
 * The state a pre-Raft WAL describes: the set_key / delete_key operations of every entry's
 * MANIFEST in `<dir>/wal/`, applied in LSN order, up to `lastIndex` (default: every entry).
 * Keys and values are read as UTF-8. `applied` is the last LSN folded in.
 */
export function deriveStateFromPreRaftWal(dir: string, lastIndex = Number.MAX_SAFE_INTEGER): KvStateMachine {
  const wal = walPath(dir);
  const indexes: number[] = [];
  for (const name of readdirSync(wal)) {
    const index = parseLsn(name);
    if (index !== undefined && index <= lastIndex) indexes.push(index);
  }
  indexes.sort((a, b) => a - b);
  const machine = new KvStateMachine();
  const decoder = new TextDecoder();
  const names = new Map(readdirSync(wal).map((name) => [parseLsn(name), name] as const));
  for (const index of indexes) {
    const manifest = readFileSync(join(wal, names.get(index)!, MANIFEST_FILE));
    const logEntry = decodeLogEntry(manifest);
    for (const operation of logEntry.operations) {
      if (operation.setKey !== undefined) {
        machine.put(decoder.decode(operation.setKey.key), decoder.decode(operation.setKey.value));
      } else if (operation.deleteKey !== undefined) {
        machine.remove(decoder.decode(operation.deleteKey.key));
      }
    }
    machine.applied = index;
  }
  return machine;
}

/**
 * The state a store holds on disk: its snapshot's data, then every entry after it up to the
 * saved commit index applied in order (what a restarting node rebuilds; the demo compares
 * replicas with it after they stopped).
 */
export function recoverStateFromStorage(storage: Storage): KvStateMachine {
  const snapshot = storage.snapshot();
  const machine = KvStateMachine.fromSnapshot(snapshot.data, snapshot.metadata.index);
  const commit = storage.initialState().hardState.commit;
  if (commit > machine.applied) {
    for (const entry of storage.entries(machine.applied + 1, commit + 1)) machine.apply(entry);
  }
  return machine;
}

/**
 * The pairs of snapshot data (binary, or the older JSON format); throws SnapshotDataError. With
 * `checkOnly`, binary values are checked as UTF-8 without being decoded and no pair is kept.
 */
function decodeSnapshotPairs(data: Uint8Array, index: number, checkOnly = false): [string, string][] {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.length);
  const fail = (what: string): never => {
    throw new SnapshotDataError(`state machine: snapshot data at index ${index} ${what}`);
  };
  if (bytes.length >= BINARY_SNAPSHOT_MAGIC.length && bytes.subarray(0, BINARY_SNAPSHOT_MAGIC.length).equals(BINARY_SNAPSHOT_MAGIC)) {
    const pairs: [string, string][] = [];
    const seen = new Set<string>();
    let offset = BINARY_SNAPSHOT_MAGIC.length;
    const readVarint = (): number => {
      let value = 0;
      let scale = 1;
      for (let count = 0; count < 8; count++) {
        if (offset >= bytes.length) fail(`ends inside a length (byte ${offset})`);
        const byte = bytes[offset++]!;
        value += (byte & 0x7f) * scale;
        if ((byte & 0x80) === 0) return value;
        scale *= 128;
      }
      return fail(`holds an over-long length at byte ${offset}`);
    };
    const readText = (what: string): string => {
      const length = readVarint();
      if (length > bytes.length - offset) fail(`ends inside a ${what} (byte ${offset}, ${length} bytes announced)`);
      let text: string;
      try {
        text = textDecoder.decode(bytes.subarray(offset, offset + length));
      } catch {
        return fail(`holds a ${what} that is not UTF-8 at byte ${offset}`);
      }
      offset += length;
      return text;
    };
    /** A value checked in place (checkOnly): the same refusals as readText, no string made. */
    const skipText = (what: string): void => {
      const length = readVarint();
      if (length > bytes.length - offset) fail(`ends inside a ${what} (byte ${offset}, ${length} bytes announced)`);
      if (!isUtf8(bytes.subarray(offset, offset + length))) fail(`holds a ${what} that is not UTF-8 at byte ${offset}`);
      offset += length;
    };
    while (offset < bytes.length) {
      const key = readText('key');
      let value = '';
      if (checkOnly) skipText('value');
      else value = readText('value');
      if (seen.has(key)) fail(`holds key ${JSON.stringify(key.slice(0, 64))} twice`);
      seen.add(key);
      if (!checkOnly) pairs.push([key, value]);
    }
    return pairs;
  }
  let parsed: { format?: unknown; entries?: unknown };
  try {
    parsed = JSON.parse(textDecoder.decode(bytes)) as { format?: unknown; entries?: unknown };
  } catch {
    return fail('is neither a binary nor a JSON state snapshot');
  }
  if (typeof parsed !== 'object' || parsed === null || parsed.format !== SNAPSHOT_FORMAT || !Array.isArray(parsed.entries)) {
    return fail(`is not a ${SNAPSHOT_FORMAT} snapshot`);
  }
  const pairs: [string, string][] = [];
  for (const pair of parsed.entries as unknown[]) {
    if (!Array.isArray(pair) || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') fail('holds a malformed pair');
    pairs.push([(pair as string[])[0]!, (pair as string[])[1]!]);
  }
  return pairs;
}
