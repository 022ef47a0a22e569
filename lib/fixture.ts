/**
 * A realistic pre-Raft WAL, written the way Gitaly's TransactionManager and log manager leave
 * one (gitaly.md §3.1, §4): `<dir>/wal/<LSN>/` directories (0700), each with a MANIFEST
 * (gitaly.LogEntry, 0400) and payload files named 1, 2, … in base 36 that were hard-linked
 * into the entry from a staging source (wal.Entry.stageFile: permissions masked to `& 0500`,
 * then link()). No RAFT files and no hard state: `replicalog migrate` (backfill) is what
 * turns it into a Raft log.
 *
 * Deterministic: the same options give byte-identical MANIFESTs and payloads. Fast: only
 * synchronous syscalls, no fsync (a fixture is test data, not a durable write).
 */
import { seededRandom } from './seeded-random.js';
import { linkSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeLogEntry, GITALY_DIRECTORY_MODE, type LogEntry, type LogEntryOperation } from './codec.js';
import { checkSafeUnsigned, invalidArgumentError } from './errors.js';
import {
  DIRECTORY_MODE,
  FILE_MODE,
  MANIFEST_FILE,
  formatLsn,
  payloadFileName,
  stagingPath,
  walPath,
} from './wal/layout.js';
import { DEFAULT_STORAGE_NAME, isStorageName, partitionPath, partitionsPath } from './wal/storage-layout.js';

export interface PreRaftWalOptions {
  /** The store directory; created if missing. Its `wal/` must be missing or empty. */
  dir: string;
  /** How many entries to write. */
  entries: number;
  /** PRNG seed (default 1): the same seed writes the same tree. */
  seed?: number;
  /** Payload files per entry (default 2). Some entries (housekeeping, key changes) have none. */
  payloadFilesPerEntry?: number;
  /** Add set_key / delete_key operations to some entries (default true). */
  withKeys?: boolean;
  /** LSN of the first entry (default 1); above 1 the tree looks like a log whose prefix was pruned. */
  firstLsn?: number;
}

export interface PreRaftWalSummary {
  dir: string;
  firstIndex: number;
  lastIndex: number;
  entries: number;
  payloadFiles: number;
}


const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

function hex(random: () => number, length: number): string {
  let text = '';
  while (text.length < length) text += Math.floor(random() * 0x1_0000_0000).toString(16).padStart(8, '0');
  return text.slice(0, length);
}

/** Gitaly's hashed storage path of a repository: @hashed/ab/cd/abcd….git */
function hashedPath(random: () => number): string {
  const digest = hex(random, 64);
  return `@hashed/${digest.slice(0, 2)}/${digest.slice(2, 4)}/${digest}.git`;
}

type EntryKind = 'push' | 'push-with-objects-directory' | 'housekeeping' | 'key-change' | 'branch-deletion';

function pickKind(random: () => number, withKeys: boolean): EntryKind {
  const roll = random();
  if (roll < 0.55) return 'push';
  if (roll < 0.7) return 'push-with-objects-directory';
  if (roll < 0.8) return 'branch-deletion';
  if (roll < 0.9 || !withKeys) return 'housekeeping';
  return 'key-change';
}

/**
 * Writes the tree and returns what it wrote. Payload sources live in a temporary directory
 * under `<dir>/staging/` (the same file system, as Gitaly requires for link()) that is removed
 * at the end, so `staging/` is left empty.
 */
export function writePreRaftWal(options: PreRaftWalOptions): PreRaftWalSummary {
  const count = checkSafeUnsigned(options.entries, 'entries');
  const firstLsn = checkSafeUnsigned(options.firstLsn ?? 1, 'firstLsn');
  if (firstLsn < 1) throw invalidArgumentError('firstLsn must be at least 1');
  const payloadFilesPerEntry = checkSafeUnsigned(options.payloadFilesPerEntry ?? 2, 'payloadFilesPerEntry');
  const withKeys = options.withKeys ?? true;
  const random = seededRandom(checkSafeUnsigned(options.seed ?? 1, 'seed'));

  const wal = walPath(options.dir);
  const staging = stagingPath(options.dir);
  mkdirSync(options.dir, { recursive: true, mode: DIRECTORY_MODE });
  mkdirSync(wal, { recursive: true, mode: DIRECTORY_MODE });
  mkdirSync(staging, { recursive: true, mode: DIRECTORY_MODE });
  if (readdirSync(wal).length > 0) throw invalidArgumentError(`${wal} is not empty: a fixture is written into an empty WAL only`);

  // A handful of repositories, as a partition holds one repository and its forks/pools.
  const repositories = Array.from({ length: 4 }, () => hashedPath(random));
  const sourceDirectory = mkdtempSync(join(staging, 'fixture-source-'));
  let payloadFiles = 0;
  let sourceSequence = 0;

  try {
    for (let offset = 0; offset < count; offset++) {
      const index = firstLsn + offset;
      const entryDirectory = join(wal, formatLsn(index));
      mkdirSync(entryDirectory, { mode: DIRECTORY_MODE });

      const kind = pickKind(random, withKeys);
      const relativePath = repositories[Math.floor(random() * repositories.length)]!;
      const operations: LogEntryOperation[] = [];
      const logEntry: LogEntry = { relativePath, referenceTransactions: [], operations };
      let fileSequence = 0;

      /** wal.Entry.CreateFile: stage (mask to & 0500, link as the next base-36 name) + create_hard_link. */
      const createFile = (destination: string, content: Uint8Array, executable: boolean) => {
        const source = join(sourceDirectory, String(sourceSequence++));
        // Created directly with the masked permissions stageFile's chmod would leave (& 0500):
        // the same result as write + chmod, one syscall less per file.
        writeFileSync(source, content, { mode: (executable ? 0o755 : 0o644) & 0o500 });
        fileSequence++;
        const name = payloadFileName(fileSequence);
        linkSync(source, join(entryDirectory, name));
        payloadFiles++;
        operations.push({ createHardLink: { sourcePath: utf8(name), sourceInStorage: false, destinationPath: utf8(destination) } });
      };

      switch (kind) {
        case 'push':
        case 'push-with-objects-directory': {
          const branches = 1 + Math.floor(random() * 3);
          logEntry.referenceTransactions.push({
            changes: Array.from({ length: branches }, () => ({
              referenceName: utf8(`refs/heads/branch-${Math.floor(random() * 50)}`),
              newOid: utf8(hex(random, 40)),
              newTarget: new Uint8Array(0),
            })),
          });
          if (kind === 'push-with-objects-directory') {
            operations.push({ createDirectory: { path: utf8(`${relativePath}/objects/${hex(random, 2)}`), mode: GITALY_DIRECTORY_MODE } });
          }
          const pack = `pack-${hex(random, 40)}`;
          for (let file = 0; file < payloadFilesPerEntry; file++) {
            const suffix = file === 0 ? 'pack' : file === 1 ? 'idx' : `rev${file}`;
            const size = 32 + Math.floor(random() * 480);
            const content = new Uint8Array(size);
            for (let byte = 0; byte < size; byte++) content[byte] = Math.floor(random() * 256);
            createFile(`${relativePath}/objects/pack/${pack}.${suffix}`, content, false);
          }
          if (random() < 0.2) {
            // A symbolic reference update sometimes rides along (new_target instead of new_oid).
            logEntry.referenceTransactions.push({
              changes: [{ referenceName: utf8('HEAD'), newOid: new Uint8Array(0), newTarget: utf8('refs/heads/main') }],
            });
          }
          break;
        }
        case 'branch-deletion':
          logEntry.referenceTransactions.push({
            changes: [
              {
                referenceName: utf8(`refs/heads/branch-${Math.floor(random() * 50)}`),
                newOid: utf8('0'.repeat(40)),
                newTarget: new Uint8Array(0),
              },
            ],
          });
          operations.push({ removeDirectoryEntry: { path: utf8(`${relativePath}/refs/heads/branch-${Math.floor(random() * 50)}`) } });
          break;
        case 'housekeeping':
          logEntry.housekeeping = { packRefs: {} };
          if (payloadFilesPerEntry > 0) createFile(`${relativePath}/packed-refs`, utf8(`# pack-refs with: peeled fully-peeled sorted\n${hex(random, 40)} refs/heads/main\n`), false);
          break;
        case 'key-change':
          operations.push({ setKey: { key: utf8(`kv/${relativePath}/object-pool`), value: utf8(hashedPath(random)) } });
          if (random() < 0.5) operations.push({ deleteKey: { key: utf8(`kv/${relativePath}/stale-${Math.floor(random() * 10)}`) } });
          break;
      }

      writeFileSync(join(entryDirectory, MANIFEST_FILE), encodeLogEntry(logEntry), { mode: FILE_MODE });
    }
  } finally {
    rmSync(sourceDirectory, { recursive: true, force: true });
  }

  return {
    dir: options.dir,
    firstIndex: firstLsn,
    lastIndex: firstLsn + count - 1,
    entries: count,
    payloadFiles,
  };
}

export interface PreRaftStorageOptions {
  /** The storage directory; created if missing. Its `partitions/` must be missing or empty. */
  dir: string;
  /** How many partitions to write (ids firstPartitionId, firstPartitionId + 1, …). */
  partitions: number;
  /** Entries per partition (default 4). */
  entriesPerPartition?: number;
  /** Id of the first partition (default 1). */
  firstPartitionId?: number;
  /** The storage name in every partition directory's name (default "default"). */
  name?: string;
  /** PRNG seed (default 1): partition P's WAL is written with seed `seed * 1_000_003 + P` (32-bit arithmetic). */
  seed?: number;
  /** Payload files per entry (default 1: small partitions). */
  payloadFilesPerEntry?: number;
}

export interface PreRaftStorageSummary {
  dir: string;
  name: string;
  partitions: number;
  firstPartitionId: number;
  lastPartitionId: number;
  entries: number;
  payloadFiles: number;
}

/**
 * A storage of pre-Raft partitions (lib/wal/storage-layout.ts): `<dir>/partitions/<h0h1>/<h2h3>/<name>_<P>/`,
 * each holding a pre-Raft WAL as writePreRaftWal writes one (wal/ and an empty staging/), and
 * no LOCK.db and no kv/ (no Raft has run: nothing saved yet). `replicalog migrate <dir>`
 * turns every partition into a Raft log. Deterministic and fast (synchronous, no fsync).
 */
export function writePreRaftStorage(options: PreRaftStorageOptions): PreRaftStorageSummary {
  const partitions = checkSafeUnsigned(options.partitions, 'partitions');
  const entriesPerPartition = checkSafeUnsigned(options.entriesPerPartition ?? 4, 'entriesPerPartition');
  const firstPartitionId = checkSafeUnsigned(options.firstPartitionId ?? 1, 'firstPartitionId');
  if (!Number.isSafeInteger(firstPartitionId + partitions)) throw invalidArgumentError('firstPartitionId + partitions is above Number.MAX_SAFE_INTEGER');
  const name = options.name ?? DEFAULT_STORAGE_NAME;
  if (typeof name !== 'string' || !isStorageName(name)) throw invalidArgumentError(`${JSON.stringify(name)} is not a storage name`);
  const seed = checkSafeUnsigned(options.seed ?? 1, 'seed');
  const payloadFilesPerEntry = checkSafeUnsigned(options.payloadFilesPerEntry ?? 1, 'payloadFilesPerEntry');
  const root = partitionsPath(options.dir);
  mkdirSync(options.dir, { recursive: true, mode: DIRECTORY_MODE });
  mkdirSync(root, { recursive: true, mode: DIRECTORY_MODE });
  if (readdirSync(root).length > 0) throw invalidArgumentError(`${root} is not empty: a fixture is written into an empty storage only`);
  let entries = 0;
  let payloadFiles = 0;
  for (let partitionId = firstPartitionId; partitionId < firstPartitionId + partitions; partitionId++) {
    const summary = writePreRaftWal({
      dir: partitionPath(options.dir, name, partitionId),
      entries: entriesPerPartition,
      seed: (Math.imul(seed >>> 0, 1_000_003) + (partitionId >>> 0)) >>> 0,
      payloadFilesPerEntry,
    });
    entries += summary.entries;
    payloadFiles += summary.payloadFiles;
  }
  return {
    dir: options.dir,
    name,
    partitions,
    firstPartitionId,
    lastPartitionId: firstPartitionId + partitions - 1,
    entries,
    payloadFiles,
  };
}
