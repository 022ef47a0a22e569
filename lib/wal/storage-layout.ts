/**
 * The on-disk layout of a storage (API.md "Storages"): one directory holding many partitions
 * that share one lock and one KV database. Names only, and the listing of partitions.
 *
 *   <storage>/LOCK.db                       the one lock (lib/lock.ts)
 *   <storage>/kv/                           the one LevelDB; partition P's keys under p/<P as 8 bytes BE>/
 *   <storage>/partitions/<h0h1>/<h2h3>/<name>_<P>/
 *                                           partition P's store directory (wal/, staging/, journal/,
 *                                           snapshot/), laid out as a single store's (layout.ts)
 *
 * The fan-out is Gitaly's (reference/gitaly.md §3.1): h = hex(sha256("<name>_<P>")), h0h1 its
 * first two hex digits and h2h3 the next two, so no directory holds more than 256 names above the
 * partitions themselves, and a storage of 100,000 partitions has about 1.5 per leaf directory.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { checkSafeUnsigned } from '../errors.js';

export const PARTITIONS_DIRECTORY = 'partitions';
/** Gitaly's default storage name; the name is part of every partition directory's name. */
export const DEFAULT_STORAGE_NAME = 'default';

/** A storage name: what Gitaly allows in a storage name that is also a safe path component. */
export function isStorageName(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9.-]{0,63}$/.test(name);
}

export function partitionsPath(storageDir: string): string {
  return join(storageDir, PARTITIONS_DIRECTORY);
}

/** The two fan-out directory names of a partition: [h0h1, h2h3]. */
export function partitionFanOut(storageName: string, partitionId: number): [string, string] {
  const hash = createHash('sha256').update(`${storageName}_${partitionId}`).digest('hex');
  return [hash.slice(0, 2), hash.slice(2, 4)];
}

/** `<storage>/partitions/<h0h1>/<h2h3>/<name>_<id>` */
export function partitionPath(storageDir: string, storageName: string, partitionId: number): string {
  checkSafeUnsigned(partitionId, 'partitionId');
  const [first, second] = partitionFanOut(storageName, partitionId);
  return join(partitionsPath(storageDir), first, second, `${storageName}_${partitionId}`);
}

/**
 * The partition id a leaf directory's name stands for, or undefined when the name is not one
 * this storage writes (another storage name, a non-canonical number, or a name filed under the
 * wrong fan-out directories).
 */
export function parsePartitionName(storageName: string, first: string, second: string, name: string): number | undefined {
  const prefix = `${storageName}_`;
  if (!name.startsWith(prefix)) return undefined;
  const digits = name.slice(prefix.length);
  // Canonical decimal only: no sign, no leading zero (but "0" itself), no exponent.
  if (!/^(0|[1-9][0-9]{0,15})$/.test(digits)) return undefined;
  const partitionId = Number(digits);
  if (!Number.isSafeInteger(partitionId)) return undefined;
  const [expectedFirst, expectedSecond] = partitionFanOut(storageName, partitionId);
  return first === expectedFirst && second === expectedSecond ? partitionId : undefined;
}

export const FAN_OUT_NAME = /^[0-9a-f]{2}$/;

/**
 * The storage directory `dir` is a partition of (`<storage>/partitions/<h0h1>/<h2h3>/<name>_<id>`
 * with the right fan-out, and `<storage>/kv` present), or undefined.
 */
export function storageOfPartitionDirectory(dir: string): string | undefined {
  const second = dirname(dir);
  const first = dirname(second);
  const partitions = dirname(first);
  if (basename(partitions) !== PARTITIONS_DIRECTORY) return undefined;
  const leaf = basename(dir);
  const separator = leaf.lastIndexOf('_');
  if (separator <= 0) return undefined;
  if (parsePartitionName(leaf.slice(0, separator), basename(first), basename(second), leaf) === undefined) return undefined;
  const storageDir = dirname(partitions);
  return existsSync(join(storageDir, 'kv')) ? storageDir : undefined;
}
