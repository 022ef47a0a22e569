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
 * Entries that are not commands are applied as no-ops (only the applied index moves):
 *   - raft's empty entries (a new leader's no-op: `data` absent or empty);
 *   - conf changes (the node applies them to raft; the map is untouched);
 *   - entries migrated from a pre-Raft WAL: their data is a gitaly.RaftEntry protobuf, whose
 *     first byte is a field tag (0x08/0x12), never `{`. Their key changes live in the entry's
 *     MANIFEST and are folded into the initial state by `deriveStateFromPreRaftWal`.
 *
 * Snapshot encoding: UTF-8 JSON `{"format":"replicalog-kv/1","applied":N,"entries":[[k,v],…]}`
 * with the keys sorted, so two replicas with the same state produce the same bytes.
 */
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
const OPEN_BRACE = 0x7b;
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

export function encodeCommand(command: KvCommand): Uint8Array {
  return textEncoder.encode(JSON.stringify(command));
}

/** The command carried by `data`, or undefined when `data` is not a command (see the header). */
export function decodeCommand(data: Uint8Array | undefined): KvCommand | undefined {
  if (data === undefined || data.length === 0 || data[0] !== OPEN_BRACE) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(textDecoder.decode(data));
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const candidate = parsed as Record<string, unknown>;
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
  /** The command applied, if the entry carried one. */
  command?: KvCommand;
}

export class KvStateMachine {
  private readonly map = new Map<string, string>();
  /** The index of the last entry applied (or of the snapshot the state was restored from). */
  applied = 0;

  /** A state holding `pairs` as of `applied`. */
  static from(pairs: Iterable<[string, string]>, applied: number): KvStateMachine {
    const machine = new KvStateMachine();
    for (const [key, value] of pairs) machine.put(key, value);
    machine.applied = applied;
    return machine;
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
    this.map.set(key, value);
  }

  remove(key: string): void {
    this.map.delete(key);
  }

  /** Every pair, keys sorted. */
  entries(): [string, string][] {
    return [...this.map.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
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
    const command = decodeCommand(entry.data);
    if (command === undefined) return { index: entry.index };
    if (command.op === 'put') this.put(command.key, command.value);
    else this.remove(command.key);
    return { index: entry.index, command };
  }

  /** The whole map and the applied index (see the header for the encoding). */
  snapshot(): Uint8Array {
    return textEncoder.encode(JSON.stringify({ format: SNAPSHOT_FORMAT, applied: this.applied, entries: this.entries() }));
  }

  /** Replaces the state with the one in snapshot `data` taken at `index`. */
  restore(data: Uint8Array | undefined, index: number): void {
    this.map.clear();
    this.applied = index;
    if (data === undefined || data.length === 0) return;
    const parsed = JSON.parse(textDecoder.decode(data)) as { format?: unknown; applied?: unknown; entries?: unknown };
    if (parsed.format !== SNAPSHOT_FORMAT || !Array.isArray(parsed.entries)) {
      throw new Error(`state machine: snapshot data at index ${index} is not a ${SNAPSHOT_FORMAT} snapshot`);
    }
    for (const pair of parsed.entries as unknown[]) {
      if (!Array.isArray(pair) || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') {
        throw new Error(`state machine: malformed pair in the snapshot at index ${index}`);
      }
      this.map.set(pair[0], pair[1]);
    }
  }

  /** A short digest of the map (not of `applied`): equal digests mean equal contents. */
  digest(): string {
    const hash = createHash('sha256');
    for (const [key, value] of this.entries()) hash.update(JSON.stringify([key, value])).update('\n');
    return hash.digest('hex').slice(0, 16);
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
