/**
 * ReplicaLogStorage: one storage directory serving many partitions (issue 19; Gitaly keeps one
 * KV database per storage and runs one Raft group per partition). The storage owns what a
 * partition must not pay for on its own:
 *
 *   - the lock (one LOCK.db for the whole storage, lib/lock.ts): a partition store holds no
 *     descriptor while idle, so 100,000 partitions fit a descriptor limit of 1,024;
 *   - the KV database (`kv/`), every partition's keys under its `p/<id>/` prefix;
 *   - the write pipeline: hard states and other KV writes of every partition submitted in one
 *     event-loop turn (or while the previous batch syncs) go in ONE synced batch
 *     (KvGroupCommit), and appends make their entries durable through ONE shared syncfs pass
 *     (FileSystemBarrier) instead of two fsyncs per entry each; every write is still
 *     acknowledged on its own, once the pass holding it is durable.
 *
 * Layout: lib/wal/storage-layout.ts. A partition's directory is a store directory without
 * LOCK.db and kv/; `openPartition` opens it with the same recovery as ReplicaLogStore.open.
 */
import { dirname, join, resolve } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { checkSafeUnsigned, corruptError, describeRootCause, ErrorCode, invalidArgumentError, ReplicaLogError } from './errors.js';
import { DirectoryLock } from './lock.js';
import { ReplicaLogStore, type PartitionHost, type PartitionStoreOptions } from './replica-log-store.js';
import { createDirectoryDurably } from './wal/durable-directory.js';
import { nodeFileSystem, type FileSystem } from './wal/file-system.js';
import { FileSystemBarrier, KvGroupCommit, SharedBarrier } from './wal/kv-group-commit.js';
import { FSYNC_CONCURRENCY } from './wal/log-manager.js';
import { kvPath, walPath, DIRECTORY_MODE } from './wal/layout.js';
import { guardLevelDatabaseOpen } from './wal/level-files.js';
import { ioError } from './wal/log-manager.js';
import {
  DEFAULT_STORAGE_NAME,
  FAN_OUT_NAME,
  isStorageName,
  parsePartitionName,
  partitionFanOut,
  partitionPath,
  partitionsPath,
} from './wal/storage-layout.js';

/**
 * A shared barrier pass with more paths than this makes one syncfs instead of their fsyncs
 * (about 2 paths per entry): measured in `npm run bench` ("storage").
 */
export const SHARED_BARRIER_PER_FILE_LIMIT = 64;

export interface ReplicaLogStorageOptions extends PartitionStoreOptions {
  /** The storage directory; created (mode 0700) when missing. */
  dir: string;
  /** The storage's name, part of every partition directory's name (Gitaly's storageName; default "default"). */
  name?: string;
  /**
   * How appends make their entries durable: 'shared' (default) makes every partition that
   * reaches a barrier at the same time wait for one pass (its paths' fsyncs in parallel, or ONE
   * syncfs when they are more than SHARED_BARRIER_PER_FILE_LIMIT); 'per-file' lets each
   * partition fsync its own entries' files and directories, as a store opened alone does.
   */
  appendBarriers?: 'per-file' | 'shared';
  /**
   * A shared pass with more paths than this makes one syncfs instead of their fsyncs (default
   * SHARED_BARRIER_PER_FILE_LIMIT; 0: always syncfs where there is one).
   */
  barrierSyncLimit?: number;
}

export interface StorageStats {
  /** Partition stores open now. */
  partitionsOpen: number;
  /** Synced KV batches issued, and the partition writes they carried. */
  kvBatches: number;
  kvWrites: number;
  /** Shared barrier passes of appends, and the partition requests they answered. */
  barrierPasses: number;
  barrierRequests: number;
  /** Passes answered by one syncfs (appends' and journal checkpoints'), and fsyncs made by the others. */
  fileSystemSyncs: number;
  barrierFsyncs: number;
}

export class ReplicaLogStorage {
  readonly dir: string;
  readonly name: string;
  private readonly open = new Map<number, Promise<ReplicaLogStore> | ReplicaLogStore>();
  private readonly host: PartitionHost;
  private readonly groupCommit: KvGroupCommit;
  /** The journal checkpoints' syncfs, shared (every partition's checkpoints in one pass). */
  private readonly barrier: FileSystemBarrier;
  /** The appends' barrier, shared. */
  private readonly sharedBarrier: SharedBarrier;
  /** Directories whose names this process made durable (fsynced their parent after seeing them). */
  private readonly durableNames = new Set<string>();
  /**
   * Partitions whose directory name this process made durable: numbers, not paths (the
   * fan-out names above are bounded by 256 + 65,536; partitions are not).
   */
  private readonly durablePartitions = new Set<number>();
  /** One coalescing fsync per parent directory (a pass that starts after the request answers it). */
  private readonly directoryBarriers = new Map<string, FileSystemBarrier>();
  private closed = false;

  private constructor(
    dir: string,
    name: string,
    private readonly database: ClassicLevel<Uint8Array, Uint8Array>,
    private readonly lock: DirectoryLock,
    private readonly fileSystem: FileSystem,
    private readonly partitionDefaults: PartitionStoreOptions,
    appendBarriers: 'per-file' | 'shared',
    barrierSyncLimit: number,
  ) {
    this.dir = dir;
    this.name = name;
    this.groupCommit = new KvGroupCommit(database, kvPath(dir));
    const syncFileSystem = fileSystem.syncFileSystem;
    this.barrier = new FileSystemBarrier(() => (syncFileSystem === undefined ? Promise.resolve(false) : syncFileSystem(dir)));
    const barrier = this.barrier;
    this.sharedBarrier = new SharedBarrier(
      (path) => fileSystem.fsync(path),
      () => (syncFileSystem === undefined ? Promise.resolve(false) : syncFileSystem(dir)),
      barrierSyncLimit,
      FSYNC_CONCURRENCY,
    );
    const sharedBarrier = this.sharedBarrier;
    this.host = {
      database,
      where: kvPath(dir),
      groupCommit: this.groupCommit,
      // Every partition's syncfs is the storage's shared pass (one file system: one syncfs covers all).
      fileSystem: { ...fileSystem, syncFileSystem: () => barrier.request() },
      appendBarriers,
      barrier: (paths) => sharedBarrier.request(paths),
      release: (store) => {
        if (store.partitionId !== undefined && this.open.get(store.partitionId) === store) this.open.delete(store.partitionId);
      },
    };
  }

  /**
   * Opens (creating if needed) the storage in `dir`: takes its lock (ERR_LOCKED when another
   * process or object holds it), opens its KV database and creates `partitions/`.
   */
  static async open(options: ReplicaLogStorageOptions): Promise<ReplicaLogStorage> {
    if (typeof options !== 'object' || options === null) throw invalidArgumentError('ReplicaLogStorage.open: options must be an object');
    if (typeof options.dir !== 'string' || options.dir === '') throw invalidArgumentError('ReplicaLogStorage.open: dir must be a non-empty string');
    const name = options.name ?? DEFAULT_STORAGE_NAME;
    if (typeof name !== 'string' || !isStorageName(name)) {
      throw invalidArgumentError(`ReplicaLogStorage.open: name ${JSON.stringify(name)} is not a storage name (letters, digits, '.', '-'; at most 64)`);
    }
    if (options.appendBarriers !== undefined && options.appendBarriers !== 'per-file' && options.appendBarriers !== 'shared') {
      throw invalidArgumentError(`ReplicaLogStorage.open: appendBarriers must be 'per-file' or 'shared'`);
    }
    checkPartitionOptions(options);
    if (options.barrierSyncLimit !== undefined) checkSafeUnsigned(options.barrierSyncLimit, 'barrierSyncLimit');
    const dir = resolve(options.dir);
    const fileSystem = options.fileSystem ?? nodeFileSystem;
    // A single store's directory (its wal/ beside kv/) is not a storage: its KV keys have no
    // partition prefix, and a storage opened on it would mix its own in.
    if ((await fileSystem.stat(walPath(dir))) !== undefined) {
      throw invalidArgumentError(`ReplicaLogStorage.open: ${dir} holds a single store (${walPath(dir)}): open it with ReplicaLogStore.open`);
    }
    await createDirectoryDurably(fileSystem, dir);
    const lock = await DirectoryLock.acquire(dir);
    const where = kvPath(dir);
    const database = new ClassicLevel<Uint8Array, Uint8Array>(where, { keyEncoding: 'view', valueEncoding: 'view' });
    try {
      try {
        // As a single store's kv/ (finding 8): LevelDB's open can keep its deletions and lose CURRENT's rename.
        const guard = await guardLevelDatabaseOpen(where, fileSystem);
        await database.open();
        await guard.afterOpen();
      } catch (error) {
        throw new ReplicaLogError(ErrorCode.Io, `cannot open ${where}: ${describeRootCause(error)}`, { path: where, cause: error });
      }
      const partitions = partitionsPath(dir);
      try {
        await fileSystem.mkdir(partitions, DIRECTORY_MODE);
        // kv/, LOCK.db and partitions/ made durable in one fsync of the storage directory (LevelDB
        // never fsyncs the directory holding kv/; finding 1), at every open (finding 2).
        await fileSystem.fsync(dir);
      } catch (error) {
        throw ioError('create', partitions, error);
      }
      const { dir: _dir, name: _name, appendBarriers, barrierSyncLimit, ...partitionDefaults } = options;
      const storage = new ReplicaLogStorage(
        dir,
        name,
        database,
        lock,
        fileSystem,
        partitionDefaults,
        appendBarriers ?? 'shared',
        barrierSyncLimit ?? SHARED_BARRIER_PER_FILE_LIMIT,
      );
      storage.durableNames.add(partitions);
      return storage;
    } catch (error) {
      await database.close().catch(() => {});
      await lock.release().catch(() => {});
      throw error;
    }
  }

  /** The directory of partition `partitionId` (whether or not it exists). */
  partitionDirectory(partitionId: number): string {
    return partitionPath(this.dir, this.name, partitionId);
  }

  /**
   * The ids of every partition directory in the storage, ascending. A name in `partitions/`
   * that this storage does not write (a stray file, another storage's name, a partition filed
   * under the wrong fan-out directories) is ERR_CORRUPT naming it: nothing is guessed.
   */
  async listPartitions(): Promise<number[]> {
    this.checkOpen();
    const partitions = partitionsPath(this.dir);
    const ids: number[] = [];
    const stray = (path: string) => corruptError(`stray name in ${partitions}: ${path} is not a partition of storage ${JSON.stringify(this.name)}`, { path });
    const listDirectory = async (path: string): Promise<string[]> => {
      const stat = await this.fileSystem.stat(path);
      if (stat === undefined || !stat.isDirectory) throw stray(path);
      try {
        return (await this.fileSystem.readdir(path)).sort();
      } catch (error) {
        throw ioError('readdir', path, error);
      }
    };
    for (const first of await listDirectory(partitions)) {
      if (!FAN_OUT_NAME.test(first)) throw stray(join(partitions, first));
      for (const second of await listDirectory(join(partitions, first))) {
        if (!FAN_OUT_NAME.test(second)) throw stray(join(partitions, first, second));
        for (const leaf of await listDirectory(join(partitions, first, second))) {
          const partitionId = parsePartitionName(this.name, first, second, leaf);
          const path = join(partitions, first, second, leaf);
          if (partitionId === undefined) throw stray(path);
          const stat = await this.fileSystem.stat(path);
          if (stat === undefined || !stat.isDirectory) throw stray(path);
          ids.push(partitionId);
        }
      }
    }
    return ids.sort((a, b) => a - b);
  }

  /**
   * Opens (creating if needed) partition `partitionId`: a ReplicaLogStore on its directory with
   * the storage's database, group commit and barrier. ERR_LOCKED while it is already open here.
   * The store's close() returns it to the storage (the database and lock stay open).
   */
  async openPartition(partitionId: number, options: PartitionStoreOptions = {}): Promise<ReplicaLogStore> {
    this.checkOpen();
    checkSafeUnsigned(partitionId, 'partitionId');
    checkPartitionOptions(options);
    if (this.open.has(partitionId)) {
      throw new ReplicaLogError(ErrorCode.Locked, `partition ${partitionId} of ${this.dir} is already open`, { path: this.partitionDirectory(partitionId) });
    }
    const opening = this.openNow(partitionId, { ...this.partitionDefaults, ...options, partitionId });
    this.open.set(partitionId, opening);
    try {
      const store = await opening;
      this.open.set(partitionId, store);
      return store;
    } catch (error) {
      this.open.delete(partitionId);
      throw error;
    }
  }

  private async openNow(partitionId: number, options: PartitionStoreOptions & { partitionId: number }): Promise<ReplicaLogStore> {
    const dir = this.partitionDirectory(partitionId);
    const [first, second] = partitionFanOut(this.name, partitionId);
    const partitions = partitionsPath(this.dir);
    // Each level's name is durable once its parent was fsynced after it existed; this process
    // remembers the levels it made durable, so the fan-out directories cost one fsync each per
    // process, not one per partition. The partition directory's own parent is fsynced the
    // first time this process opens it (an earlier open may have died before that fsync).
    for (const level of [join(partitions, first), join(partitions, first, second), dir]) {
      const isPartition = level === dir;
      if (isPartition ? this.durablePartitions.has(partitionId) : this.durableNames.has(level)) continue;
      try {
        await this.fileSystem.mkdir(level, DIRECTORY_MODE);
      } catch (error) {
        throw ioError('mkdir', level, error);
      }
      const parent = dirname(level);
      const barrier = this.directoryBarrier(parent);
      try {
        await barrier.request();
      } catch (error) {
        throw ioError('fsync', parent, error);
      } finally {
        // Bounded: a barrier is kept only while partitions under it are being opened.
        if (barrier.idle) this.directoryBarriers.delete(parent);
      }
      if (isPartition) this.durablePartitions.add(partitionId);
      else this.durableNames.add(level);
    }
    return ReplicaLogStore.openInStorage(this.host, dir, options);
  }

  private directoryBarrier(path: string): FileSystemBarrier {
    let barrier = this.directoryBarriers.get(path);
    if (barrier === undefined) {
      barrier = new FileSystemBarrier(async () => {
        await this.fileSystem.fsync(path);
        return true;
      });
      this.directoryBarriers.set(path, barrier);
    }
    return barrier;
  }

  /** How many partition stores are open. */
  get openPartitions(): number {
    return this.open.size;
  }

  stats(): StorageStats {
    return {
      partitionsOpen: this.open.size,
      kvBatches: this.groupCommit.stats.passes,
      kvWrites: this.groupCommit.stats.requests,
      barrierPasses: this.sharedBarrier.stats.passes,
      barrierRequests: this.sharedBarrier.stats.requests,
      fileSystemSyncs: this.barrier.stats.passes + this.sharedBarrier.stats.fileSystemSyncs,
      barrierFsyncs: this.sharedBarrier.stats.fsyncs,
    };
  }

  /**
   * Closes every open partition store (each waits for its queued writes), then the database,
   * then releases the lock. A second close() does nothing; later calls fail with ERR_CLOSED.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const stores = await Promise.allSettled([...this.open.values()]);
    await Promise.allSettled(stores.map((result) => (result.status === 'fulfilled' ? result.value.close() : undefined)));
    this.directoryBarriers.clear();
    try {
      await this.database.close();
    } finally {
      await this.lock.release();
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new ReplicaLogError(ErrorCode.Closed, `the storage ${this.dir} is closed`, { path: this.dir });
  }
}

function checkPartitionOptions(options: PartitionStoreOptions): void {
  if (options.cacheMaxEntries !== undefined) checkSafeUnsigned(options.cacheMaxEntries, 'cacheMaxEntries');
  if (options.cacheMaxBytes !== undefined) checkSafeUnsigned(options.cacheMaxBytes, 'cacheMaxBytes');
  if (options.checkpointInterval !== undefined) checkSafeUnsigned(options.checkpointInterval, 'checkpointInterval');
  if (options.journalCheckpointDelayMs !== undefined) checkSafeUnsigned(options.journalCheckpointDelayMs, 'journalCheckpointDelayMs');
}
