/**
 * Raft state kept in the KV database (LevelDB through classic-level), every key under the
 * optional partition prefix (`kvKey`):
 *
 *   raft/hard_state     raftpb.HardState (gogo bytes; Gitaly's key)
 *   raft/conf_state     raftpb.ConfState (gogo bytes; Gitaly's key)
 *   raft/snapshot       raftpb.Snapshot holding only the latest snapshot's metadata
 *   raft/snapshot_data  name of its data file in <dir>/snapshot/ (absent: the snapshot has no data)
 *   raft/log_anchor     index and term of the last compacted/snapshotted entry: 2 × uint64 BE;
 *                       written by compact/applySnapshot and with the first hard state (absent
 *                       while the WAL may still be Gitaly's alone: the anchor is then derived)
 *   raft/intent         1 byte, 0x01 = "drop every entry directory" (applySnapshot, redone at open)
 *   raft/log_checkpoint open()'s accelerator: version byte 0x01, V (uint64 BE), run count n
 *                       (uint32 BE), then n × (start, term) (2 × uint64 BE): the terms of the
 *                       entries from the first run's start through V, run-length encoded. V is
 *                       never above the commit of the hard state saved with or before it.
 *                       Unlike every other key, a record that does not decode is not corruption:
 *                       it is only an accelerator, so open() falls back to reading every RAFT
 *                       file (load() reports it as invalid instead of throwing).
 *
 * Every write is one `batch(…, { sync: true })`: durable when it resolves, and atomic when
 * several keys change together. Missing keys read as undefined (classic-level 3).
 */
import type { ClassicLevel } from 'classic-level';
import {
  decodeConfState,
  decodeHardState,
  decodeSnapshot,
  encodeConfState,
  encodeHardState,
  encodeSnapshot,
} from '../codec.js';
import { corruptError, isReplicaLogError } from '../errors.js';
import type { ConfState, HardState, SnapshotMetadata } from '../types.js';
import type { KvGroupCommit, KvOperation } from './kv-group-commit.js';
import { ioError } from './log-manager.js';
import {
  KEY_CONF_STATE,
  KEY_HARD_STATE,
  KEY_INTENT,
  KEY_LOG_ANCHOR,
  KEY_JOURNAL_THROUGH,
  KEY_LOG_CHECKPOINT,
  KEY_SNAPSHOT,
  KEY_SNAPSHOT_DATA,
  kvKey,
} from './layout.js';

export interface LogAnchor {
  index: number;
  term: number;
}

export type Intent = 'drop-all-entries';

/**
 * raft/log_checkpoint: the terms of the entries starts[0] .. verifiedThrough (V), run-length
 * encoded like TermRuns: run k covers [starts[k], starts[k+1]) (the last one up to V) with
 * term terms[k]. Decoded records always satisfy: at least one run, starts[0] >= 1, starts
 * strictly increasing, every start <= V, terms non-decreasing (a Raft log's terms never go
 * down). Whether it fits the log on disk is the store's check at open (replica-log-store.ts).
 */
export interface LogCheckpoint {
  verifiedThrough: number;
  starts: number[];
  terms: number[];
}

/** What load() found under raft/log_checkpoint: a record that does not decode is not an error. */
export type CheckpointRecord = { ok: true; checkpoint: LogCheckpoint } | { ok: false; reason: string };

export interface SavedRaftState {
  hardState?: HardState;
  confState?: ConfState;
  snapshot?: SnapshotMetadata;
  snapshotDataFile?: string;
  anchor?: LogAnchor;
  intent?: Intent;
  /** Absent when the key is absent. */
  checkpoint?: CheckpointRecord;
  /** The last journal record already checkpointed (absent: none). */
  journalThrough?: number;
}

/** One atomic change: a field set to a value is written, set to null is deleted, absent is untouched. */
export interface RaftStateChange {
  hardState?: HardState;
  confState?: ConfState;
  snapshot?: SnapshotMetadata;
  snapshotDataFile?: string | null;
  anchor?: LogAnchor;
  intent?: Intent | null;
  /** Only ever in the same batch as a hard state (or alone at close): see replica-log-store.ts. */
  checkpoint?: LogCheckpoint | null;
  /** Only in the synced batch that makes the records up to it durable (a journal checkpoint). */
  journalThrough?: number;
}

/** The part of classic-level's API the store uses, with byte keys and values. */
type ByteDatabase = ClassicLevel<Uint8Array, Uint8Array>;

const BYTES = { keyEncoding: 'view', valueEncoding: 'view' } as const;
const INTENT_DROP_ALL_ENTRIES = 0x01;

/** Decodes raft/intent; throws ERR_CORRUPT on a value open would not know how to redo. Shared with verify.ts. */
export function decodeIntent(bytes: Uint8Array, where = 'kv'): Intent {
  if (bytes.length !== 1 || bytes[0] !== INTENT_DROP_ALL_ENTRIES) {
    throw corruptError(`${where}: unknown intent record ${Buffer.from(bytes).toString('hex')}`);
  }
  return 'drop-all-entries';
}

function encodeAnchor(anchor: LogAnchor): Uint8Array {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, BigInt(anchor.index), false);
  view.setBigUint64(8, BigInt(anchor.term), false);
  return bytes;
}

/** Decodes a `raft/log_anchor` record (index, term as two big-endian uint64). Shared with verify.ts. */
export function decodeAnchor(bytes: Uint8Array, where = 'kv'): LogAnchor {
  if (bytes.length !== 16) throw corruptError(`${where}: log anchor record has ${bytes.length} bytes, expected 16`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const index = view.getBigUint64(0, false);
  const term = view.getBigUint64(8, false);
  if (index > BigInt(Number.MAX_SAFE_INTEGER) || term > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw corruptError(`${where}: log anchor record is out of range`);
  }
  return { index: Number(index), term: Number(term) };
}

const CHECKPOINT_VERSION = 0x01;
const CHECKPOINT_HEADER_BYTES = 1 + 8 + 4;
const CHECKPOINT_RUN_BYTES = 16;

export function encodeCheckpoint(checkpoint: LogCheckpoint): Uint8Array {
  const count = checkpoint.starts.length;
  const bytes = new Uint8Array(CHECKPOINT_HEADER_BYTES + CHECKPOINT_RUN_BYTES * count);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, CHECKPOINT_VERSION);
  view.setBigUint64(1, BigInt(checkpoint.verifiedThrough), false);
  view.setUint32(9, count, false);
  for (let run = 0; run < count; run++) {
    const offset = CHECKPOINT_HEADER_BYTES + CHECKPOINT_RUN_BYTES * run;
    view.setBigUint64(offset, BigInt(checkpoint.starts[run]!), false);
    view.setBigUint64(offset + 8, BigInt(checkpoint.terms[run]!), false);
  }
  return bytes;
}

/**
 * Decodes a raft/log_checkpoint record and checks everything that does not depend on the log
 * (see LogCheckpoint); throws an Error saying what is wrong.
 */
export function decodeCheckpoint(bytes: Uint8Array): LogCheckpoint {
  if (bytes.length < CHECKPOINT_HEADER_BYTES) throw new Error(`${bytes.length} bytes, shorter than the ${CHECKPOINT_HEADER_BYTES}-byte header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint8(0);
  if (version !== CHECKPOINT_VERSION) throw new Error(`unknown version ${version}`);
  const safe = (offset: number, what: string): number => {
    const value = view.getBigUint64(offset, false);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${what} is out of range`);
    return Number(value);
  };
  const verifiedThrough = safe(1, 'verified index');
  const count = view.getUint32(9, false);
  if (bytes.length !== CHECKPOINT_HEADER_BYTES + CHECKPOINT_RUN_BYTES * count) {
    throw new Error(`${bytes.length} bytes for ${count} runs (expected ${CHECKPOINT_HEADER_BYTES + CHECKPOINT_RUN_BYTES * count})`);
  }
  if (count === 0) throw new Error('no runs');
  const starts: number[] = [];
  const terms: number[] = [];
  for (let run = 0; run < count; run++) {
    const offset = CHECKPOINT_HEADER_BYTES + CHECKPOINT_RUN_BYTES * run;
    const start = safe(offset, `run ${run} start`);
    const term = safe(offset + 8, `run ${run} term`);
    if (run === 0 && start < 1) throw new Error('the first run starts at index 0');
    if (run > 0 && start <= starts[run - 1]!) throw new Error(`run ${run} starts at ${start}, not after run ${run - 1} (${starts[run - 1]})`);
    if (run > 0 && term < terms[run - 1]!) throw new Error(`run ${run} has term ${term}, below run ${run - 1}'s ${terms[run - 1]}`);
    starts.push(start);
    terms.push(term);
  }
  if (starts[count - 1]! > verifiedThrough) throw new Error(`run ${count - 1} starts at ${starts[count - 1]}, above the verified index ${verifiedThrough}`);
  return { verifiedThrough, starts, terms };
}

export class RaftStateStore {
  private readonly keys: Record<'hardState' | 'confState' | 'snapshot' | 'snapshotData' | 'anchor' | 'intent' | 'checkpoint' | 'journalThrough', Uint8Array>;

  /**
   * `where` names the database in errors (its path, or "the given db"). `groupCommit`: a
   * storage's shared batcher (lib/storage.ts); writes then share synced batches with other
   * partitions' instead of each paying its own sync.
   */
  constructor(
    private readonly database: ByteDatabase,
    partitionId: number | undefined,
    private readonly where: string,
    private readonly groupCommit?: KvGroupCommit,
  ) {
    this.keys = {
      hardState: kvKey(partitionId, KEY_HARD_STATE),
      confState: kvKey(partitionId, KEY_CONF_STATE),
      snapshot: kvKey(partitionId, KEY_SNAPSHOT),
      snapshotData: kvKey(partitionId, KEY_SNAPSHOT_DATA),
      anchor: kvKey(partitionId, KEY_LOG_ANCHOR),
      intent: kvKey(partitionId, KEY_INTENT),
      checkpoint: kvKey(partitionId, KEY_LOG_CHECKPOINT),
      journalThrough: kvKey(partitionId, KEY_JOURNAL_THROUGH),
    };
  }

  async load(): Promise<SavedRaftState> {
    let values: (Uint8Array | undefined)[];
    const keys = [
      this.keys.hardState,
      this.keys.confState,
      this.keys.snapshot,
      this.keys.snapshotData,
      this.keys.anchor,
      this.keys.intent,
      this.keys.checkpoint,
      this.keys.journalThrough,
    ];
    try {
      values = await this.database.getMany<Uint8Array, Uint8Array>(keys, BYTES);
    } catch (error) {
      throw ioError('read', this.where, error);
    }
    const [hardState, confState, snapshot, snapshotData, anchor, intent, checkpoint, journalThrough] = values;
    const decode = <T>(name: string, bytes: Uint8Array | undefined, decoder: (bytes: Uint8Array) => T): T | undefined => {
      if (bytes === undefined) return undefined;
      try {
        return decoder(bytes);
      } catch (error) {
        const message = isReplicaLogError(error) ? error.message : String(error);
        throw corruptError(`${this.where}: key ${name} does not decode: ${message}`, { path: this.where, cause: error });
      }
    };
    const state: SavedRaftState = {};
    const decodedHardState = decode(KEY_HARD_STATE, hardState, decodeHardState);
    if (decodedHardState) state.hardState = decodedHardState;
    const decodedConfState = decode(KEY_CONF_STATE, confState, decodeConfState);
    if (decodedConfState) state.confState = decodedConfState;
    const decodedSnapshot = decode(KEY_SNAPSHOT, snapshot, decodeSnapshot);
    if (decodedSnapshot) state.snapshot = decodedSnapshot.metadata;
    if (snapshotData !== undefined) state.snapshotDataFile = new TextDecoder().decode(snapshotData);
    const decodedAnchor = decode(KEY_LOG_ANCHOR, anchor, (bytes) => decodeAnchor(bytes, this.where));
    if (decodedAnchor) state.anchor = decodedAnchor;
    if (intent !== undefined) {
      if (intent.length !== 1 || intent[0] !== INTENT_DROP_ALL_ENTRIES) {
        throw corruptError(`${this.where}: key ${KEY_INTENT} holds an unknown intent`, { path: this.where });
      }
      state.intent = 'drop-all-entries';
    }
    if (checkpoint !== undefined) {
      try {
        state.checkpoint = { ok: true, checkpoint: decodeCheckpoint(checkpoint) };
      } catch (error) {
        state.checkpoint = { ok: false, reason: `key ${KEY_LOG_CHECKPOINT} does not decode: ${(error as Error).message}` };
      }
    }
    if (journalThrough !== undefined) {
      const decoded = decode(KEY_JOURNAL_THROUGH, journalThrough, (bytes) => {
        if (bytes.length !== 8) throw new Error(`${bytes.length} bytes, not 8`);
        const value = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0));
        if (!Number.isSafeInteger(value)) throw new Error(`${value} is not a safe integer`);
        return value;
      });
      if (decoded !== undefined) state.journalThrough = decoded;
    }
    return state;
  }

  /** Writes `change` as one synced batch. */
  write(change: RaftStateChange): Promise<void> {
    const operations: KvOperation[] = [];
    const put = (key: Uint8Array, value: Uint8Array) => operations.push({ type: 'put', key, value });
    const del = (key: Uint8Array) => operations.push({ type: 'del', key });
    if (change.hardState) put(this.keys.hardState, encodeHardState(change.hardState));
    if (change.confState) put(this.keys.confState, encodeConfState(change.confState));
    if (change.snapshot) put(this.keys.snapshot, encodeSnapshot({ metadata: change.snapshot }));
    if (change.snapshotDataFile === null) del(this.keys.snapshotData);
    else if (change.snapshotDataFile !== undefined) put(this.keys.snapshotData, new TextEncoder().encode(change.snapshotDataFile));
    if (change.anchor) put(this.keys.anchor, encodeAnchor(change.anchor));
    if (change.intent === null) del(this.keys.intent);
    else if (change.intent === 'drop-all-entries') put(this.keys.intent, Uint8Array.of(INTENT_DROP_ALL_ENTRIES));
    if (change.checkpoint === null) del(this.keys.checkpoint);
    else if (change.checkpoint !== undefined) put(this.keys.checkpoint, encodeCheckpoint(change.checkpoint));
    if (change.journalThrough !== undefined) {
      const bytes = new Uint8Array(8);
      new DataView(bytes.buffer).setBigUint64(0, BigInt(change.journalThrough));
      put(this.keys.journalThrough, bytes);
    }
    if (operations.length === 0) return Promise.resolve();
    // A storage's group commit names its database in its own error (one mapping per pass, not
    // one closure per write: thousands of partitions write at once).
    if (this.groupCommit !== undefined) return this.groupCommit.write(operations);
    return this.database.batch<Uint8Array, Uint8Array>(operations, { ...BYTES, sync: true }).then(undefined, (error: unknown) => {
      throw ioError('write', this.where, error);
    });
  }
}
