/**
 * What a ReplicaLogStore has done since it opened, for operators (`store.stats()`, and the
 * node's Prometheus `/metrics`): writes, bytes, fsyncs and their latency, write-group sizes,
 * cache hits and misses, and how long open() took. Counting costs a few additions per call.
 */
import type { FileSystem } from './wal/file-system.js';

/** A cumulative histogram (Prometheus style): `counts[i]` observations were <= `bounds[i]`. */
export interface Histogram {
  /** Upper bounds of the buckets, ascending (the last bucket, +Inf, is `count`). */
  bounds: readonly number[];
  /** Cumulative counts per bound. */
  counts: number[];
  count: number;
  sum: number;
}

export interface StoreStats {
  /** append() calls that were accepted and made durable. */
  appends: number;
  /** Entries written (a truncating append counts its new entries). */
  entriesWritten: number;
  /** Bytes of the entries written (encoded RAFT size, etcd's entry size). */
  bytesWritten: number;
  /** Hard states written. */
  hardStatesWritten: number;
  /** Write groups flushed, and how many calls each carried. */
  writeGroupSizes: Histogram;
  /** fsync(2) calls made by the log, and their latency in seconds. */
  fsyncSeconds: Histogram;
  /** entries() reads served from the cache, and those that read a RAFT file. */
  cacheHits: number;
  cacheMisses: number;
  /** How long open() took, in seconds. */
  openSeconds: number;
  /** Journal mode: checkpoints made (entries written into wal/ behind the acknowledgements). */
  journalCheckpoints: number;
  /** Journal mode: acknowledged records not yet in wal/ (and the entries they hold), now. */
  journalRecordsWaiting: number;
  journalEntriesWaiting: number;
  /** Journal mode: entries a checkpoint wrote into a reused compacted directory (no inode made or freed). */
  entriesRecycled: number;
  /** Journal mode: compacted directories waiting to be reused, now. */
  recyclePoolSize: number;
}

const FSYNC_BOUNDS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const GROUP_BOUNDS = [1, 2, 4, 8, 16, 32, 64, 128, 256];

function histogram(bounds: readonly number[]): Histogram {
  return { bounds, counts: bounds.map(() => 0), count: 0, sum: 0 };
}

function observe(target: Histogram, value: number): void {
  target.count++;
  target.sum += value;
  for (let position = 0; position < target.bounds.length; position++) if (value <= target.bounds[position]!) target.counts[position]!++;
}

/** The counters of one store; the store owns one and hands out copies. */
export class StoreStatsCollector {
  private readonly stats: StoreStats = {
    appends: 0,
    entriesWritten: 0,
    bytesWritten: 0,
    hardStatesWritten: 0,
    writeGroupSizes: histogram(GROUP_BOUNDS),
    fsyncSeconds: histogram(FSYNC_BOUNDS),
    cacheHits: 0,
    cacheMisses: 0,
    openSeconds: 0,
    journalCheckpoints: 0,
    journalRecordsWaiting: 0,
    journalEntriesWaiting: 0,
    entriesRecycled: 0,
    recyclePoolSize: 0,
  };

  /** The file system with every fsync (and fdatasync, and syncfs) timed. */
  timed(fileSystem: FileSystem): FileSystem {
    return {
      ...fileSystem,
      fsync: async (path) => {
        const started = process.hrtime.bigint();
        try {
          await fileSystem.fsync(path);
        } finally {
          observe(this.stats.fsyncSeconds, Number(process.hrtime.bigint() - started) / 1e9);
        }
      },
      ...(fileSystem.syncData === undefined
        ? {}
        : {
            syncData: async (path: string) => {
              const started = process.hrtime.bigint();
              try {
                await fileSystem.syncData!(path);
              } finally {
                observe(this.stats.fsyncSeconds, Number(process.hrtime.bigint() - started) / 1e9);
              }
            },
          }),
      ...(fileSystem.syncFileSystem === undefined
        ? {}
        : {
            syncFileSystem: async (path: string) => {
              const started = process.hrtime.bigint();
              try {
                return await fileSystem.syncFileSystem!(path);
              } finally {
                observe(this.stats.fsyncSeconds, Number(process.hrtime.bigint() - started) / 1e9);
              }
            },
          }),
    };
  }

  writeGroup(calls: number, appends: number, entries: number, bytes: number, hardState: boolean): void {
    observe(this.stats.writeGroupSizes, calls);
    this.stats.appends += appends;
    this.stats.entriesWritten += entries;
    this.stats.bytesWritten += bytes;
    if (hardState) this.stats.hardStatesWritten++;
  }

  journalCheckpoint(): void {
    this.stats.journalCheckpoints++;
  }

  cacheRead(hit: boolean): void {
    if (hit) this.stats.cacheHits++;
    else this.stats.cacheMisses++;
  }

  opened(seconds: number): void {
    this.stats.openSeconds = seconds;
  }

  snapshot(): StoreStats {
    const copy = (target: Histogram): Histogram => ({ ...target, counts: [...target.counts] });
    return { ...this.stats, writeGroupSizes: copy(this.stats.writeGroupSizes), fsyncSeconds: copy(this.stats.fsyncSeconds) };
  }
}
