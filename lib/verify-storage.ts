/**
 * Read-only inspection of a storage directory (lib/storage.ts, lib/wal/storage-layout.ts): one
 * lock, one KV database (`kv/`, every partition's keys under its `p/<id>/` prefix) and many
 * partition directories under `partitions/`. The same guarantees as lib/verify.ts for a single
 * store: nothing here takes the storage's lock or writes under its directory. `partitions/` is
 * listed with readdir/lstat only, and the KV is read from ONE private point-in-time copy of
 * `kv/`, opened once and read for every partition with its prefix (KvCopy).
 *
 * Partitions are walked one at a time and nothing of a walked partition is kept but what the
 * caller keeps: memory is bounded by one partition's walk, whatever the number of partitions.
 *
 * Storage-level problems (Finding without `partition`): STRAY_NAME for a name in partitions/
 * that is not one of the storage's partitions (what ReplicaLogStorage.listPartitions refuses),
 * KV_WITHOUT_PARTITION for keys under a partition prefix whose partition directory is missing
 * (its log is gone while its hard state remains), KV_UNREADABLE once for the whole database.
 */
import { lstatSync } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { invalidArgumentError } from './errors.js';
import { KvCopy, NoticeCode, ProblemCode, verifyWalk, type ExtentSummary, type Finding, type ScannedEntry, type TreeScan, type TreeVerifier, type VerifyResult, type WalkOptions } from './verify.js';
import { kvPath, walPath } from './wal/layout.js';
import { DEFAULT_STORAGE_NAME, FAN_OUT_NAME, isStorageName, parsePartitionName, partitionPath, partitionsPath } from './wal/storage-layout.js';

/** Storage-level problem: keys under p/<id>/ in kv/ and no directory for partition <id>. */
export const KV_WITHOUT_PARTITION = 'KV_WITHOUT_PARTITION';

/** A finding about a storage: `partition` names the partition it is about (absent: the storage itself). */
export interface StorageFinding extends Finding<string> {
  partition?: number;
}

/**
 * Whether `dir` is a storage directory rather than a single store's: it has `partitions/` (a
 * directory) and no `wal/`. A storage written before Raft (lib/fixture.ts writePreRaftStorage)
 * has no kv/ yet, so kv/ is not required.
 */
export function isStorageDirectory(dir: string): boolean {
  const root = resolve(dir);
  try {
    if (!lstatSync(partitionsPath(root)).isDirectory()) return false;
  } catch {
    return false;
  }
  try {
    lstatSync(walPath(root));
    return false;
  } catch {
    return true;
  }
}

export interface StoragePartition {
  partitionId: number;
  dir: string;
}

export interface StorageListing {
  dir: string;
  /** The storage name (given, or detected from the partition directories' names). */
  name: string;
  /** Partitions, ascending by id. */
  partitions: StoragePartition[];
  /** Names in partitions/ that are not partitions of this storage (STRAY_NAME). */
  strays: StorageFinding[];
}

interface Leaf {
  first: string;
  second: string;
  name: string;
  path: string;
  isDirectory: boolean;
}

/** The storage name a partition directory's name stands for (`<name>_<id>` under the right fan-out), else undefined. */
function nameOf(leaf: Leaf): string | undefined {
  const separator = leaf.name.lastIndexOf('_');
  if (separator <= 0) return undefined;
  const name = leaf.name.slice(0, separator);
  return isStorageName(name) && parsePartitionName(name, leaf.first, leaf.second, leaf.name) !== undefined ? name : undefined;
}

/**
 * Lists the partitions of the storage in `dir`, read-only (readdir and lstat). Without `name`,
 * the storage name is the one every partition directory's name carries ("default" when there
 * is none); partition directories of several names are ERR_INVALID_ARGUMENT (say which one).
 */
export async function listStorage(dir: string, name?: string): Promise<StorageListing> {
  const root = resolve(dir);
  if (name !== undefined && !isStorageName(name)) {
    throw invalidArgumentError(`${JSON.stringify(name)} is not a storage name (letters, digits, '.', '-'; at most 64)`);
  }
  const partitions = partitionsPath(root);
  const strays: StorageFinding[] = [];
  const leaves: Leaf[] = [];
  const stray = (path: string, why: string) => strays.push({ code: ProblemCode.StrayName, path, message: `${path} ${why}` });
  const list = async (path: string): Promise<string[] | undefined> => {
    try {
      return (await readdir(path)).sort();
    } catch (error) {
      strays.push({ code: ProblemCode.Unreadable, path, message: `cannot read ${path}: ${error instanceof Error ? error.message : String(error)}` });
      return undefined;
    }
  };
  const isDirectory = async (path: string) => {
    try {
      return (await lstat(path)).isDirectory();
    } catch {
      return false;
    }
  };
  for (const first of (await list(partitions)) ?? []) {
    const firstPath = join(partitions, first);
    if (!FAN_OUT_NAME.test(first) || !(await isDirectory(firstPath))) {
      stray(firstPath, 'is not a fan-out directory (two lowercase hex digits)');
      continue;
    }
    for (const second of (await list(firstPath)) ?? []) {
      const secondPath = join(firstPath, second);
      if (!FAN_OUT_NAME.test(second) || !(await isDirectory(secondPath))) {
        stray(secondPath, 'is not a fan-out directory (two lowercase hex digits)');
        continue;
      }
      for (const leaf of (await list(secondPath)) ?? []) {
        const path = join(secondPath, leaf);
        leaves.push({ first, second, name: leaf, path, isDirectory: await isDirectory(path) });
      }
    }
  }
  let storageName = name;
  if (storageName === undefined) {
    const names = new Set<string>();
    for (const leaf of leaves) {
      const found = nameOf(leaf);
      if (found !== undefined) names.add(found);
    }
    if (names.size > 1) {
      throw invalidArgumentError(
        `${partitions} holds partitions of several storage names (${[...names].sort().join(', ')}): say which one with --storage-name`,
      );
    }
    storageName = names.size === 1 ? [...names][0]! : DEFAULT_STORAGE_NAME;
  }
  const found: StoragePartition[] = [];
  for (const leaf of leaves) {
    const partitionId = parsePartitionName(storageName, leaf.first, leaf.second, leaf.name);
    if (partitionId === undefined) stray(leaf.path, `is not a partition of storage ${JSON.stringify(storageName)} (<name>_<id> under the fan-out of sha256("<name>_<id>"))`);
    else if (!leaf.isDirectory) stray(leaf.path, 'is not a directory');
    else found.push({ partitionId, dir: leaf.path });
  }
  found.sort((a, b) => a.partitionId - b.partitionId);
  return { dir: root, name: storageName, partitions: found, strays };
}

export interface StorageWalkOptions extends Pick<WalkOptions, 'readManifests'> {
  /** The storage name (default: detected, see listStorage). */
  name?: string;
  /** Only this partition (ERR_INVALID_ARGUMENT when the storage has no such partition directory). */
  partitionId?: number;
  /** Called after each partition with the partitions walked so far and their number. */
  onProgress?(done: number, total: number): void;
}

export interface PartitionWalk {
  partitionId: number;
  dir: string;
  scan: TreeScan;
  result: VerifyResult;
  extent: ExtentSummary;
}

export interface StorageWalk {
  dir: string;
  name: string;
  kvPath: string;
  /** Partitions walked. */
  partitions: number;
  /** Whether the storage has no kv/ (nothing saved yet: a storage written before Raft). */
  kvAbsent: boolean;
  /** Storage-level problems and notices (see the module comment). */
  problems: StorageFinding[];
  notices: StorageFinding[];
}

/**
 * Walks every partition (or only `partitionId`) of the storage in `dir`, one at a time, with the
 * checks of verifyWalk against the storage's KV, and hands each partition's result to
 * `visitPartition` (kept by nobody else). Per-partition KV_UNREADABLE and KV_ABSENT findings are
 * reported once for the storage instead. Read-only (see the module comment).
 */
export async function walkStorage(
  dir: string,
  options: StorageWalkOptions,
  visitPartition: (partition: PartitionWalk) => void | Promise<void>,
  visitEntry?: (partitionId: number, entry: ScannedEntry, verifier: TreeVerifier) => void,
): Promise<StorageWalk> {
  const listing = await listStorage(dir, options.name);
  let selected = listing.partitions;
  if (options.partitionId !== undefined) {
    selected = listing.partitions.filter((partition) => partition.partitionId === options.partitionId);
    if (selected.length === 0) {
      throw invalidArgumentError(
        `storage ${JSON.stringify(listing.name)} in ${listing.dir} has no partition ${options.partitionId} (${partitionPath(listing.dir, listing.name, options.partitionId)} does not exist)`,
      );
    }
  }
  const kv = kvPath(listing.dir);
  const problems: StorageFinding[] = options.partitionId === undefined ? [...listing.strays] : [];
  const notices: StorageFinding[] = [];
  const copy = await KvCopy.open(kv);
  try {
    if (copy.isAbsent) {
      notices.push({ code: NoticeCode.KvAbsent, path: kv, message: `${kv} does not exist: no partition has saved a hard state, conf state or snapshot yet` });
    } else if (copy.problem !== undefined) {
      problems.push({ code: ProblemCode.KvUnreadable, path: kv, message: `cannot read ${kv}: ${copy.problem}` });
    }
    options.onProgress?.(0, selected.length);
    let done = 0;
    for (const partition of selected) {
      const walked = await verifyWalk(
        partition.dir,
        { partitionId: partition.partitionId, kvCopy: copy, readManifests: options.readManifests },
        visitEntry === undefined ? undefined : (entry, verifier) => visitEntry(partition.partitionId, entry, verifier),
      );
      // Said once for the storage above, not once per partition.
      if (copy.problem !== undefined) walked.result.problems = walked.result.problems.filter((problem) => problem.code !== ProblemCode.KvUnreadable);
      walked.result.notices = walked.result.notices
        .filter((notice) => notice.code !== NoticeCode.KvAbsent)
        // A partition is migrated through its storage (migrating its directory alone is refused).
        .map((notice) =>
          notice.code === NoticeCode.NeedsMigration
            ? { ...notice, message: notice.message.replace(`replicalog migrate ${partition.dir}`, `replicalog migrate ${listing.dir}`) }
            : notice,
        );
      walked.result.ok = walked.result.problems.length === 0;
      await visitPartition({ partitionId: partition.partitionId, dir: partition.dir, ...walked });
      options.onProgress?.(++done, selected.length);
    }
    if (options.partitionId === undefined && copy.problem === undefined && !copy.isAbsent) {
      // Keys of a partition whose directory is gone: its hard state says entries exist that no directory holds.
      const present = new Set(listing.partitions.map((partition) => partition.partitionId));
      for (const partitionId of (await copy.partitionIds()).ids) {
        if (present.has(partitionId)) continue;
        const expected = partitionPath(listing.dir, listing.name, partitionId);
        problems.push({
          code: KV_WITHOUT_PARTITION,
          path: kv,
          partition: partitionId,
          message: `${kv} holds keys of partition ${partitionId} (p/${partitionId}/) but ${expected} does not exist`,
        });
      }
    }
  } finally {
    await copy.close();
  }
  return { dir: listing.dir, name: listing.name, kvPath: kv, partitions: selected.length, kvAbsent: copy.isAbsent, problems, notices };
}

/**
 * The storage and partition id a directory is the partition directory of
 * (`<storage>/partitions/<h0h1>/<h2h3>/<name>_<id>` with the right fan-out), else undefined.
 */
export function partitionOfStorage(dir: string): { storageDir: string; partitionId: number } | undefined {
  const leaf = resolve(dir);
  const second = dirname(leaf);
  const first = dirname(second);
  const partitions = dirname(first);
  if (basename(partitions) !== 'partitions') return undefined;
  const found = nameOf({ first: basename(first), second: basename(second), name: basename(leaf), path: leaf, isDirectory: true });
  if (found === undefined) return undefined;
  const partitionId = parsePartitionName(found, basename(first), basename(second), basename(leaf))!;
  return { storageDir: dirname(partitions), partitionId };
}

export interface StorageVerifyResult {
  ok: boolean;
  /** Partitions checked. */
  partitions: number;
  /** Entry directories checked, over every partition. */
  entries: number;
  /** Every problem; `partition` names the partition it is about (absent: the storage itself). */
  problems: StorageFinding[];
  /** Notices, storage-level first (a storage written before Raft has one NEEDS_MIGRATION per partition). */
  notices: StorageFinding[];
}

/**
 * verifyTree for a storage: every partition (or `options.partitionId`'s) checked against its
 * keys in the storage's KV, plus the storage-level checks (see the module comment). Read-only.
 */
export async function verifyStorage(dir: string, options: Omit<StorageWalkOptions, 'readManifests'> = {}): Promise<StorageVerifyResult> {
  const problems: StorageFinding[] = [];
  const notices: StorageFinding[] = [];
  let entries = 0;
  const walked = await walkStorage(dir, options, ({ partitionId, scan, result }) => {
    entries += scan.listed.count;
    for (const problem of result.problems) problems.push({ partition: partitionId, ...problem });
    for (const notice of result.notices) notices.push({ partition: partitionId, ...notice });
  });
  return {
    ok: problems.length === 0 && walked.problems.length === 0,
    partitions: walked.partitions,
    entries,
    problems: [...walked.problems, ...problems],
    notices: [...walked.notices, ...notices],
  };
}
