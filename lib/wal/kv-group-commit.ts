/**
 * Group commit for a KV database shared by many partitions (issue 19): every write submitted
 * while a synced batch is in flight (or during the same event-loop turn) goes into the next
 * batch, so N partitions writing their hard states at once pay one LevelDB sync, not N.
 *
 * Each caller's operations stay together inside one atomic batch (a superset of its own, which
 * is all the atomicity RaftStateStore.write asks for), in submission order: a later write of
 * the same key wins, as it would with separate batches. Each caller resolves only once the
 * batch holding its operations is durable; a failed batch rejects every caller in it.
 *
 * Likewise for syncfs (`FileSystemBarrier`): a caller asks for a barrier after its own writes
 * were issued, and is answered by the first syncfs that STARTS after it asked, so partitions
 * whose appends reach that point together share one pass of the file system's flush.
 */
import type { ClassicLevel } from 'classic-level';

export type KvOperation = { type: 'put'; key: Uint8Array; value: Uint8Array } | { type: 'del'; key: Uint8Array };

type ByteDatabase = ClassicLevel<Uint8Array, Uint8Array>;
const BYTES = { keyEncoding: 'view', valueEncoding: 'view' } as const;

interface Waiter {
  resolve(): void;
  reject(error: unknown): void;
}

/** Counters for stats(): how much group commit merged. */
export interface GroupCommitStats {
  /** Synced batches (or syncfs passes) issued. */
  passes: number;
  /** Writes (or barrier requests) they answered. */
  requests: number;
}

export class KvGroupCommit {
  private pendingOperations: KvOperation[] = [];
  private pendingWaiters: Waiter[] = [];
  private running = false;
  private scheduled = false;
  readonly stats: GroupCommitStats = { passes: 0, requests: 0 };

  constructor(private readonly database: ByteDatabase) {}

  /** Resolves once `operations` are durable (one synced batch shared with other callers). */
  write(operations: readonly KvOperation[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      for (const operation of operations) this.pendingOperations.push(operation);
      this.pendingWaiters.push({ resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.running || this.scheduled) return;
    this.scheduled = true;
    // The end of this event-loop turn: every partition whose write is ready now joins.
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.running || this.pendingWaiters.length === 0) return;
    this.running = true;
    const operations = this.pendingOperations;
    const waiters = this.pendingWaiters;
    this.pendingOperations = [];
    this.pendingWaiters = [];
    this.stats.passes++;
    this.stats.requests += waiters.length;
    try {
      await this.database.batch<Uint8Array, Uint8Array>(operations, { ...BYTES, sync: true });
      for (const waiter of waiters) waiter.resolve();
    } catch (error) {
      for (const waiter of waiters) waiter.reject(error);
    } finally {
      this.running = false;
      // Writes that arrived while this batch was syncing go in the next one, at once.
      if (this.pendingWaiters.length > 0) void this.flush();
    }
  }
}

/**
 * One syncfs(2) answers every request made before it started. `sync` is the file system's
 * syncfs (false where there is none: then every waiter gets false and uses per-file fsyncs).
 */
export class FileSystemBarrier {
  private waiters: { resolve(value: boolean): void; reject(error: unknown): void }[] = [];
  private running = false;
  private scheduled = false;
  readonly stats: GroupCommitStats = { passes: 0, requests: 0 };

  constructor(private readonly sync: () => Promise<boolean>) {}

  /** No pass runs or waits. */
  get idle(): boolean {
    return !this.running && !this.scheduled && this.waiters.length === 0;
  }

  /** Resolves true once a syncfs that started after this call has finished. */
  request(): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      if (!this.running && !this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          void this.run();
        });
      }
    });
  }

  private async run(): Promise<void> {
    if (this.running || this.waiters.length === 0) return;
    this.running = true;
    const waiters = this.waiters;
    this.waiters = [];
    this.stats.passes++;
    this.stats.requests += waiters.length;
    try {
      const done = await this.sync();
      for (const waiter of waiters) waiter.resolve(done);
    } catch (error) {
      for (const waiter of waiters) waiter.reject(error);
    } finally {
      this.running = false;
      // Requests made while this pass ran may have written after it started: a new pass.
      if (this.waiters.length > 0) void this.run();
    }
  }
}

/** Counters of a SharedBarrier. */
export interface SharedBarrierStats extends GroupCommitStats {
  /** Passes answered by one syncfs of the whole file system. */
  fileSystemSyncs: number;
  /** fsyncs made by passes answered file by file. */
  fsyncs: number;
}

/**
 * The barrier a storage's partitions share for their appends: each request names the files and
 * directories whose data and names must be durable; every request made before a pass starts is
 * answered by that pass. A pass with few paths fsyncs them (in parallel, `concurrency` at a
 * time); a pass with more than `perFileLimit` paths makes ONE syncfs instead, which covers
 * every dirty page of the file system, so its cost no longer grows with the number of
 * partitions. (A syncfs costs about as much as 10-20 fsyncs here: a process spawn plus the
 * flush; measured in `npm run bench`, "storage".)
 */
export class SharedBarrier {
  private pending: { paths: readonly string[]; resolve(): void; reject(error: unknown): void }[] = [];
  private running = false;
  private scheduled = false;
  readonly stats: SharedBarrierStats = { passes: 0, requests: 0, fileSystemSyncs: 0, fsyncs: 0 };

  constructor(
    private readonly fsync: (path: string) => Promise<void>,
    /** syncfs of the file system; false when there is none (then paths are fsynced one by one). */
    private readonly syncFileSystem: () => Promise<boolean>,
    private readonly perFileLimit: number,
    private readonly concurrency: number,
  ) {}

  /** Resolves once every path is durable, by a pass that started after this call. */
  request(paths: readonly string[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ paths, resolve, reject });
      if (!this.running && !this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          void this.run();
        });
      }
    });
  }

  private async run(): Promise<void> {
    if (this.running || this.pending.length === 0) return;
    this.running = true;
    const requests = this.pending;
    this.pending = [];
    this.stats.passes++;
    this.stats.requests += requests.length;
    try {
      const paths = [...new Set(requests.flatMap((request) => request.paths))];
      let done = false;
      if (paths.length > this.perFileLimit) {
        done = await this.syncFileSystem();
        if (done) this.stats.fileSystemSyncs++;
      }
      if (!done) {
        // Every fsync settles before the pass answers: a failure is reported once all stopped.
        let failure: unknown;
        let next = 0;
        const worker = async () => {
          while (next < paths.length) {
            const path = paths[next++]!;
            try {
              await this.fsync(path);
              this.stats.fsyncs++;
            } catch (error) {
              failure ??= error;
            }
          }
        };
        await Promise.all(Array.from({ length: Math.min(this.concurrency, paths.length) }, worker));
        if (failure !== undefined) throw failure;
      }
      for (const request of requests) request.resolve();
    } catch (error) {
      for (const request of requests) request.reject(error);
    } finally {
      this.running = false;
      if (this.pending.length > 0) void this.run();
    }
  }
}
