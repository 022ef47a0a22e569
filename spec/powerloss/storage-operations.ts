/**
 * The power-loss enumerator over a storage (issue 19): several partitions of one
 * ReplicaLogStorage writing at once, so that their hard states share synced KV batches and
 * their appends share syncfs passes, the shared `kv/` and every partition's files recorded in
 * one trace. Each partition's writes are acknowledged on their own (a step `ack p<id>`), and
 * every crash state is opened through ReplicaLogStorage and checked partition by partition:
 *
 *   - the storage opens and lists no partition but the case's (no stray name);
 *   - every partition opens (torn states repaired, not refused) and shows, before its own
 *     acknowledgement, each part as before or after (its log a prefix of either keeping every
 *     entry both hold), from it on exactly as after (operations.ts checkAgainst). Entries and
 *     hard states differ from partition to partition, so a partition that saw another's keys or
 *     entries fails this;
 *   - every key in the KV is under `p/<id>/` of one of the case's partitions;
 *   - verify finds nothing wrong in any partition (read with the storage's KV).
 *
 * The controls drop one barrier the storage needs and must fail.
 */
import { createHash } from 'node:crypto';
import { cpSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import type { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { ReplicaLogStorage, type ReplicaLogStorageOptions } from '../../lib/storage.js';
import { verifyTree } from '../../lib/verify.js';
import { nodeFileSystem, type FileSystem } from '../../lib/wal/file-system.js';
import { entryPath, KEY_HARD_STATE, kvKey, kvPath } from '../../lib/wal/layout.js';
import { partitionFanOut, partitionsPath } from '../../lib/wal/storage-layout.js';
import { describeSteps, enumerateCrashStatesWith, recordWith, type CrashJudge, type EnumerateOptions, type EnumerationReport } from './enumerator.js';
import { checkAgainst, EMPTY, picture, type Picture } from './operations.js';
import { partitionRun } from '../helpers/partition-entries.js';

/** Entries carry their partition's id: a partition showing another's entries fails the check. */
const run = partitionRun;
const voters = { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };

export interface StorageCase {
  name: string;
  /** The partitions the check opens in every crash state. */
  partitions: number[];
  /** The storage directory under the model root (default `storage`). */
  storagePath?: string;
  /** The storage's first open is the recorded one (no setup: every partition empty before). */
  openInTrace?: boolean;
  /**
   * Options of every open of the storage (default: the storage's: appends share passes, fsyncs
   * for small ones; no journal). barrierSyncLimit 0 makes every shared pass one syncfs.
   */
  storageOptions?: Pick<ReplicaLogStorageOptions, 'appendBarriers' | 'barrierSyncLimit' | 'journal' | 'journalCheckpointDelayMs'>;
  setup?: (storage: ReplicaLogStorage) => Promise<void>;
  /** Changes the closed storage before the operation (torn states for open to repair). */
  damage?: (dir: string) => Promise<void>;
  /** Partitions opened (in the trace) before the operation starts. */
  opened?: number[];
  /** The writes of each partition (by id), all started at once: each is acknowledged on its own. */
  operation: (storage: ReplicaLogStorage, stores: Map<number, ReplicaLogStore>) => Record<number, Promise<unknown>>;
}

/**
 * A partition's usual write group: entries from..to at `term` with the hard state committing
 * them. The vote is the partition's id: a partition showing another's hard state fails `isolation`.
 */
function writeGroup(store: ReplicaLogStore, partition: number, from: number, to: number, term: number): Promise<unknown> {
  return Promise.all([store.append(run(partition, from, to, term)), store.setHardState({ term, vote: partition, commit: to })]);
}

/**
 * Why partition `id`'s picture shows something of another partition: an entry not written for
 * it (each entry's data names its partition) or a hard state voting for another (each votes
 * for itself). Independent of the recorded outcome, which a leak would be part of.
 */
function isolation(id: number, now: Picture): string | undefined {
  const foreign = [...now.entries].filter(([, value]) => !Buffer.from(value, 'hex').toString('latin1').includes(`p${id}:`));
  if (foreign.length > 0) return `entries ${foreign.map(([index]) => index).join(',')} were not written to this partition`;
  const vote = (JSON.parse(now.hardState) as { vote: number }).vote;
  if (vote !== 0 && vote !== id) return `its hard state ${now.hardState} is partition ${vote}'s`;
  return undefined;
}

/** Partitions 1..3, each with entries 1..2 at term <id> committed. */
async function threeCommitted(storage: ReplicaLogStorage): Promise<void> {
  for (const id of [1, 2, 3]) {
    const store = await storage.openPartition(id);
    await writeGroup(store, id, 1, 2, id);
    await store.close();
  }
}

/** Partition 1: entries 1..5 at term 1, committed through 2; partitions 2 and 3: 1..`last` committed. */
async function uncommittedTailBesideCommitted(storage: ReplicaLogStorage, last: number): Promise<void> {
  const first = await storage.openPartition(1);
  await first.append(run(1, 1, 5, 1));
  await first.setHardState({ term: 1, vote: 1, commit: 2 });
  await first.close();
  for (const id of [2, 3]) {
    const store = await storage.openPartition(id);
    await writeGroup(store, id, 1, last, id);
    await store.close();
  }
}

/** Opens the storage in `dir`, stops partition `id`'s `write` at crash point `point` (as a power cut there would), closes. */
async function interruptedPartition(dir: string, id: number, point: string, write: (store: ReplicaLogStore) => Promise<unknown>): Promise<void> {
  let armed = false;
  const storage = await ReplicaLogStorage.open({
    dir,
    fileSystem: setupFileSystem,
    crashPoint: (name) => {
      if (armed && name === point) throw new Error(`stopped at ${point}`);
    },
  });
  try {
    const store = await storage.openPartition(id);
    armed = true;
    await write(store).catch(() => undefined);
    armed = false;
    await store.close();
  } finally {
    await storage.close();
  }
}

/** Partitions 1, 2 and 3 each make a write group (append + hard state) at the same moment. */
const threeWriteGroupsAtOnce: StorageCase['operation'] = (_storage, stores) => ({
  1: writeGroup(stores.get(1)!, 1, 3, 4, 1),
  2: writeGroup(stores.get(2)!, 2, 3, 4, 2),
  3: writeGroup(stores.get(3)!, 3, 3, 3, 3),
});

export const storageCases: StorageCase[] = [
  {
    name: 'storage: three partitions append and set hard states at once (shared KV batches and syncfs passes)',
    partitions: [1, 2, 3],
    storageOptions: { barrierSyncLimit: 0 },
    setup: threeCommitted,
    opened: [1, 2, 3],
    operation: threeWriteGroupsAtOnce,
  },
  {
    name: 'storage: a truncating append in partition 1 while partitions 2 and 3 append',
    partitions: [1, 2, 3],
    setup: (storage) => uncommittedTailBesideCommitted(storage, 2),
    opened: [1, 2, 3],
    operation: (_storage, stores) => ({
      1: stores.get(1)!.append(run(1, 3, 4, 2)),
      2: writeGroup(stores.get(2)!, 2, 3, 4, 2),
      3: writeGroup(stores.get(3)!, 3, 3, 3, 3),
    }),
  },
  {
    name: 'storage: partition 3 created (its fan-out directories) while partitions 1 and 2 write',
    partitions: [1, 2, 3],
    setup: async (storage) => {
      for (const id of [1, 2]) {
        const store = await storage.openPartition(id);
        await writeGroup(store, id, 1, 2, id);
        await store.close();
      }
    },
    opened: [1, 2],
    operation: (storage, stores) => ({
      1: writeGroup(stores.get(1)!, 1, 3, 4, 1),
      2: writeGroup(stores.get(2)!, 2, 3, 3, 2),
      3: storage.openPartition(3).then((store) => writeGroup(store, 3, 1, 2, 3)),
    }),
  },
  {
    // Per-file barriers: no syncfs covers for a missing directory fsync (see the controls).
    // Partitions 3 and 32 share their first fan-out directory (partitions/61/): created at once,
    // its fsync is one coalesced pass that must start after both asked for it.
    name: 'storage: a new storage (mkdir -p, kv/, partitions/) with three partitions created and written at once (two sharing a fan-out directory), per-file barriers',
    partitions: [1, 3, 32],
    storagePath: 'parent/storage',
    openInTrace: true,
    storageOptions: { appendBarriers: 'per-file' },
    operation: (storage) => ({
      1: storage.openPartition(1).then((store) => writeGroup(store, 1, 1, 1, 1)),
      3: storage.openPartition(3).then((store) => writeGroup(store, 3, 1, 2, 3)),
      32: storage.openPartition(32).then((store) => writeGroup(store, 32, 1, 1, 32)),
    }),
  },
  {
    name: "storage, journal: three partitions' write groups at once (a record each, one shared fsync pass), then close's checkpoints (shared syncfs passes)",
    partitions: [1, 2, 3],
    storageOptions: { journal: true, journalCheckpointDelayMs: 600_000 },
    setup: threeCommitted,
    opened: [1, 2, 3],
    operation: (_storage, stores) => ({
      1: writeGroup(stores.get(1)!, 1, 3, 4, 1),
      2: writeGroup(stores.get(2)!, 2, 3, 3, 2),
      3: stores.get(3)!.append(run(3, 3, 4, 3)),
    }),
  },
  {
    name: "storage: opened after a crash, every partition's torn state repaired (a gap, an interrupted compaction, an interrupted applySnapshot)",
    partitions: [1, 2, 3],
    setup: (storage) => uncommittedTailBesideCommitted(storage, 4),
    damage: async (dir) => {
      const storage = await ReplicaLogStorage.open({ dir, fileSystem: setupFileSystem });
      const first = storage.partitionDirectory(1);
      await storage.close();
      // A power cut kept the renames of 4 and 5 of an unacknowledged append, not that of 3.
      rmSync(entryPath(first, 3), { recursive: true });
      await interruptedPartition(dir, 2, 'between-kv-and-wal', (store) => store.compact(3));
      await interruptedPartition(dir, 3, 'between-kv-and-wal', (store) => store.applySnapshot({ metadata: { index: 8, term: 4, confState: voters } }));
    },
    operation: (storage) => ({
      1: storage.openPartition(1),
      2: storage.openPartition(2),
      3: storage.openPartition(3),
    }),
  },
  {
    // The default limit: three small appends are one shared pass of fsyncs (no syncfs).
    name: 'storage: three partitions append and set hard states at once (shared KV batches and fsync passes)',
    partitions: [1, 2, 3],
    setup: threeCommitted,
    opened: [1, 2, 3],
    operation: threeWriteGroupsAtOnce,
  },
];

/** What the setup writes with: node's file system, with a syncfs that does nothing (the baseline is durable as read). */
const setupFileSystem: FileSystem = { ...nodeFileSystem, syncFileSystem: async () => true };

/** The controls: one barrier the storage needs dropped; the enumerator must find failing states. */
export const storageControls: {
  name: string;
  operation: string;
  dropFsync?: (path: string, occurrence: number, dir: string) => boolean;
  /** Damage done to the storage before the operation (after the pictures before it). */
  damage?: (dir: string) => Promise<void>;
}[] = [
  {
    name: 'storage: a barrier that answers without its syncfs (appends acknowledged before their entries are durable)',
    operation: storageCases[0]!.name,
    dropFsync: (path) => path === 'syncfs',
  },
  {
    name: "storage: a new partition's fan-out directory not fsynced (partitions/<h0h1>: the name <h2h3> can vanish with the partition)",
    operation: storageCases[3]!.name,
    dropFsync: (path, _occurrence, dir) => path === join(partitionsPath(dir), partitionFanOut('default', 3)[0]),
  },
  {
    name: 'storage: a shared fsync pass without the staged RAFT files (entries renamed into wal/ before their data is durable)',
    operation: 'storage: three partitions append and set hard states at once (shared KV batches and fsync passes)',
    dropFsync: (path) => path.endsWith('/RAFT') && path.includes('/staging/'),
  },
  {
    name: 'storage: a new storage without the fsync of its directory at open (finding 1: kv/ and partitions/ can vanish)',
    operation: storageCases[3]!.name,
    dropFsync: (path, _occurrence, dir) => path === dir,
  },
  {
    name: "storage: partition 3 reads partition 2's hard state (the record copied under partition 3's prefix)",
    operation: storageCases[0]!.name,
    damage: async (dir) => {
      const database = new ClassicLevel<Uint8Array, Uint8Array>(kvPath(dir), { keyEncoding: 'view', valueEncoding: 'view' });
      await database.open();
      try {
        const value = await database.get(kvKey(2, KEY_HARD_STATE));
        if (value === undefined) throw new Error('partition 2 has no hard state to copy');
        await database.put(kvKey(3, KEY_HARD_STATE), value, { sync: true });
      } finally {
        await database.close();
      }
    },
  },
];

/** Every partition picture of `ids` (EMPTY for one the storage does not hold). */
async function pictures(dir: string, ids: readonly number[]): Promise<Map<number, Picture>> {
  const storage = await ReplicaLogStorage.open({ dir, fileSystem: setupFileSystem });
  try {
    const listed = new Set(await storage.listPartitions());
    const result = new Map<number, Picture>();
    for (const id of ids) {
      if (!listed.has(id)) {
        result.set(id, EMPTY);
        continue;
      }
      const store = await storage.openPartition(id);
      result.set(id, picture(store));
      await store.close();
    }
    return result;
  } finally {
    await storage.close();
  }
}

/**
 * Reads the storage's (open) KV once: every key not under p/<id>/ of one of `ids` (described),
 * and a digest of each partition's records (what verify reads of the KV for it).
 */
async function readKv(storage: ReplicaLogStorage, ids: readonly number[]): Promise<{ stray: string[]; digests: Map<number, string> }> {
  // The storage's one database (private; read here rather than opened a second time per state).
  const database = (storage as unknown as { database: ClassicLevel<Uint8Array, Uint8Array> }).database;
  const stray: string[] = [];
  const hashes = new Map(ids.map((id) => [id, createHash('sha256')] as const));
  for await (const [key, value] of database.iterator()) {
    const prefixed = key.length > 11 && key[0] === 0x70 && key[1] === 0x2f && key[10] === 0x2f;
    const id = prefixed ? Number(Buffer.from(key.subarray(2, 10)).readBigUInt64BE()) : undefined;
    const hash = id === undefined ? undefined : hashes.get(id);
    if (hash === undefined) stray.push(Buffer.from(key).toString('hex'));
    else hash.update(`${key.length}:`).update(key).update(`${value.length}:`).update(value);
  }
  return { stray, digests: new Map([...hashes].map(([id, hash]) => [id, hash.digest('hex')])) };
}

/** A digest of the tree under `dir` (names, kinds, modes, file bytes). */
function treeDigest(dir: string): string {
  const hash = createHash('sha256');
  const walk = (path: string, name: string) => {
    const stat = lstatSync(path);
    hash.update(`${name}\0${stat.mode}\0`);
    if (stat.isDirectory()) {
      for (const child of readdirSync(path).sort()) walk(join(path, child), child);
      hash.update('\0end\0');
    } else hash.update(readFileSync(path));
  };
  walk(dir, '.');
  return hash.digest('hex');
}

/** The judge of a storage case's crash states (see the module comment). */
function storageJudge(operationCase: StorageCase, before: Map<number, Picture>, after: Map<number, Picture>): CrashJudge {
  const verifiedPartitions = new Set<string>();
  return async (storageDir, fileSystem, context) => {
    const reasons: string[] = [];
    let storage: ReplicaLogStorage | undefined;
    let kvDigests = new Map<number, string>();
    try {
      storage = await ReplicaLogStorage.open({ dir: storageDir, fileSystem });
      const stray = (await storage.listPartitions()).filter((id) => !operationCase.partitions.includes(id));
      if (stray.length > 0) reasons.push(`partitions listed that no write created: ${stray.join(', ')}`);
      for (const id of operationCase.partitions) {
        let store: ReplicaLogStore | undefined;
        try {
          store = await storage.openPartition(id);
          const reason = checkAgainst(before.get(id)!, after.get(id)!)(store, { step: context.step, steps: context.steps, acknowledged: context.acknowledged(`p${id}`), acknowledgedLabel: (label) => context.acknowledged(label) });
          if (reason !== undefined) reasons.push(`partition ${id}: ${reason}`);
          const leak = isolation(id, picture(store));
          if (leak !== undefined) reasons.push(`partition ${id}: ${leak}`);
        } catch (error) {
          reasons.push(`partition ${id}: open failed: ${(error as Error).message}`);
        } finally {
          await store?.close().catch(() => undefined);
        }
      }
      const kv = await readKv(storage, operationCase.partitions);
      if (kv.stray.length > 0) reasons.push(`KV keys outside every partition's prefix: ${kv.stray.join(', ')}`);
      kvDigests = kv.digests;
    } catch (error) {
      reasons.push(`storage open failed: ${(error as Error).message}`);
      storage = undefined;
    } finally {
      await storage?.close().catch(() => undefined);
    }
    if (storage === undefined) return reasons;
    // verify reads <dir>/kv: each partition is verified with a copy of the storage's KV beside it.
    // Its verdict depends only on the partition's tree and its KV records: a partition as some
    // earlier state left it (the other partitions differing) was verified then.
    for (const id of operationCase.partitions) {
      const partitionDir = storage.partitionDirectory(id);
      const seen = `${id} ${treeDigest(partitionDir)} ${kvDigests.get(id)}`;
      if (verifiedPartitions.has(seen)) continue;
      verifiedPartitions.add(seen);
      const kvCopy = kvPath(partitionDir);
      cpSync(kvPath(storageDir), kvCopy, { recursive: true });
      const verified = await verifyTree(partitionDir, { partitionId: id });
      rmSync(kvCopy, { recursive: true, force: true });
      if (verified.problems.length > 0) reasons.push(`partition ${id}: verify: ${verified.problems.map((problem) => `${problem.code} ${problem.message}`).join('; ')}`);
    }
    return reasons;
  };
}

export interface StorageRunOptions extends EnumerateOptions {
  /** Drop these fsyncs (a control); `dir` is the storage directory. */
  dropFsync?: (path: string, occurrence: number, dir: string) => boolean;
  /** Damage the storage before the operation (a control). */
  damage?: (dir: string) => Promise<void>;
  onTrace?: (trace: string) => void;
}

/** Records `operationCase` under `workspace` and enumerates its crash states. */
export async function enumerateStorage(operationCase: StorageCase, workspace: string, options: StorageRunOptions): Promise<EnumerationReport> {
  const root = join(workspace, 'model');
  const scratch = join(workspace, 'scratch');
  mkdirSync(root);
  mkdirSync(scratch);
  const storagePath = operationCase.storagePath ?? 'storage';
  const dir = join(root, storagePath);
  let before = new Map(operationCase.partitions.map((id) => [id, EMPTY] as const));
  if (operationCase.openInTrace !== true) {
    const storage = await ReplicaLogStorage.open({ ...operationCase.storageOptions, dir, fileSystem: setupFileSystem });
    try {
      await operationCase.setup?.(storage);
    } finally {
      await storage.close();
    }
    before = await pictures(dir, operationCase.partitions);
    await operationCase.damage?.(dir);
    await options.damage?.(dir);
  }
  const dropFsync = options.dropFsync;
  const recorded = await recordWith(
    operationCase.name,
    root,
    storagePath,
    scratch,
    dropFsync === undefined ? {} : { dropFsync: (path, occurrence) => dropFsync(path, occurrence, dir) },
    async (fileSystem, acknowledge) => {
      const storage = await ReplicaLogStorage.open({ ...operationCase.storageOptions, dir, fileSystem });
      try {
        const opened = operationCase.opened ?? [];
        const stores = new Map(await Promise.all(opened.map(async (id) => [id, await storage.openPartition(id)] as const)));
        const writes = operationCase.operation(storage, stores);
        await Promise.all(Object.entries(writes).map(([id, write]) => write.then(() => acknowledge(`p${id}`))));
      } finally {
        await storage.close();
      }
    },
  );
  options.onTrace?.(describeSteps(recorded));
  const after = await pictures(dir, operationCase.partitions);
  return enumerateCrashStatesWith(recorded, scratch, options, storageJudge(operationCase, before, after));
}
