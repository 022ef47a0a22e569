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
import { ioError } from './log-manager.js';

export type KvOperation = { type: 'put'; key: Uint8Array; value: Uint8Array } | { type: 'del'; key: Uint8Array };

type ByteDatabase = ClassicLevel<Uint8Array, Uint8Array>;
const BYTES = { keyEncoding: 'view', valueEncoding: 'view' } as const;

/** Counters for stats(): how much group commit merged. */
export interface GroupCommitStats {
  /** Synced batches (or syncfs passes) issued. */
  passes: number;
  /** Writes (or barrier requests) they answered. */
  requests: number;
}

/**
 * The pattern the three share: requests made while no pass runs wait for the end of the
 * current event-loop turn (so every caller that is ready now joins), then ONE pass answers them
 * all; requests made while a pass runs wait for the next pass, which starts as soon as the
 * running one ends (a running pass may have begun before their writes). A failed pass rejects
 * every request in it.
 */
abstract class CoalescedPasses<Request, Answer, Stats extends GroupCommitStats = GroupCommitStats> {
  /**
   * The pass that has not started yet: its requests and the ONE promise all of them get (10,000
   * partitions writing at once allocate one promise per pass, not one each: the garbage
   * collector's work was most of a large pass's cost).
   */
  private next: { requests: Request[]; promise: Promise<Answer>; resolve(answer: Answer): void; reject(error: unknown): void } | undefined;
  private running = false;

  constructor(readonly stats: Stats) {}

  /** No pass runs or waits. */
  get idle(): boolean {
    return !this.running && this.next === undefined;
  }

  /** Answers every request of one pass (throws to reject them all). */
  protected abstract execute(requests: readonly Request[]): Promise<Answer>;

  protected submit(request: Request): Promise<Answer> {
    if (this.next === undefined) {
      let resolve!: (answer: Answer) => void;
      let reject!: (error: unknown) => void;
      const promise = new Promise<Answer>((resolvePass, rejectPass) => {
        resolve = resolvePass;
        reject = rejectPass;
      });
      this.next = { requests: [], promise, resolve, reject };
      // A pass not yet running starts at the end of this turn; otherwise when the running one ends.
      if (!this.running) setImmediate(() => void this.run());
    }
    this.next.requests.push(request);
    return this.next.promise;
  }

  private async run(): Promise<void> {
    const pass = this.next;
    if (this.running || pass === undefined) return;
    this.running = true;
    this.next = undefined;
    this.stats.passes++;
    this.stats.requests += pass.requests.length;
    try {
      pass.resolve(await this.execute(pass.requests));
    } catch (error) {
      pass.reject(error);
    } finally {
      this.running = false;
      if (this.next !== undefined) void this.run();
    }
  }
}

/** KV writes of many partitions, one synced batch per pass. */
export class KvGroupCommit extends CoalescedPasses<readonly KvOperation[], void> {
  /** `where` names the database in the ERR_IO of a failed pass. */
  constructor(
    private readonly database: ByteDatabase,
    private readonly where: string,
  ) {
    super({ passes: 0, requests: 0 });
  }

  /** Resolves once `operations` are durable (one synced batch shared with other callers). */
  write(operations: readonly KvOperation[]): Promise<void> {
    return this.submit(operations);
  }

  protected async execute(requests: readonly (readonly KvOperation[])[]): Promise<void> {
    // Each caller's operations together and in submission order (a later put of a key wins).
    const operations: KvOperation[] = [];
    for (const request of requests) for (const operation of request) operations.push(operation);
    try {
      await this.database.batch<Uint8Array, Uint8Array>(operations, { ...BYTES, sync: true });
    } catch (error) {
      throw ioError('write', this.where, error);
    }
  }
}

/**
 * One syncfs(2) answers every request made before it started. `sync` is the file system's
 * syncfs (false where there is none: then every waiter gets false and uses per-file fsyncs).
 */
export class FileSystemBarrier extends CoalescedPasses<void, boolean> {
  constructor(private readonly sync: () => Promise<boolean>) {
    super({ passes: 0, requests: 0 });
  }

  /** Resolves true once a syncfs that started after this call has finished. */
  request(): Promise<boolean> {
    return this.submit(undefined);
  }

  protected execute(): Promise<boolean> {
    return this.sync();
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
export class SharedBarrier extends CoalescedPasses<readonly string[], void, SharedBarrierStats> {
  constructor(
    private readonly fsync: (path: string) => Promise<void>,
    /** syncfs of the file system; false when there is none (then paths are fsynced one by one). */
    private readonly syncFileSystem: () => Promise<boolean>,
    private readonly perFileLimit: number,
    private readonly concurrency: number,
  ) {
    super({ passes: 0, requests: 0, fileSystemSyncs: 0, fsyncs: 0 });
  }

  /** Resolves once every path is durable, by a pass that started after this call. */
  request(paths: readonly string[]): Promise<void> {
    return this.submit(paths);
  }

  protected async execute(requests: readonly (readonly string[])[]): Promise<void> {
    const paths = [...new Set(requests.flat())];
    if (paths.length > this.perFileLimit && (await this.syncFileSystem())) {
      this.stats.fileSystemSyncs++;
      return;
    }
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
}
