/**
 * The file-system calls the WAL makes, behind a small interface so tests can inject faults
 * (EIO, ENOSPC), record which paths were fsynced, or pause a step. `nodeFileSystem` is the
 * default, backed by node:fs. Every function is free-standing (no `this`), so a test can
 * override one with `{ ...nodeFileSystem, fsync: … }`.
 */
import { chmodSync, closeSync, constants, fchmodSync, fdatasync as fdatasyncDescriptor, fstatSync, fsync as fsyncDescriptor, ftruncateSync, mkdirSync, opendirSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { syncFileSystemOf } from './sync-file-system.js';
import { FifoQueue } from '../fifo-queue.js';

export interface FileStat {
  isDirectory: boolean;
  isFile: boolean;
  size: number;
  /** Permission bits (mode & 0o7777). */
  mode: number;
  /** The device holding the file (renames only work within one). */
  device: number;
}

export interface FileSystem {
  /** Creates one directory with `mode`; resolves false (and changes nothing) when it already exists. */
  mkdir(path: string, mode: number): Promise<boolean>;
  /** Creates a uniquely named directory `<prefix>XXXXXX` (mode 0700) and returns its path. */
  mkdtemp(prefix: string): Promise<string>;
  /** Names in a directory (unsorted). */
  readdir(path: string): Promise<string[]>;
  /**
   * Creates a new file (fails if it exists) with `mode` and writes `data`; no fsync (the
   * default syncs a large file's data slice by slice on the way, which makes nothing durable
   * that the caller's fsync would not).
   */
  writeFile(path: string, data: Uint8Array, mode: number): Promise<void>;
  /** fsync of a file or a directory (open read-only, fsync, close). */
  fsync(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  /** Removes a file or a directory tree; a missing path is not an error. */
  remove(path: string): Promise<void>;
  /** undefined when the path does not exist. */
  stat(path: string): Promise<FileStat | undefined>;
  /** The synchronous read behind Storage.entries() on a cache miss and open(). Throws node's errors (code ENOENT, …). */
  readFileSync(path: string): Uint8Array;
  /**
   * Makes everything written to the file system holding `path` durable, data and names (Linux
   * syncfs(2)). Resolves false, having done nothing, where that is not available: the caller
   * then fsyncs each file and directory. Optional: a FileSystem without it always falls back.
   */
  syncFileSystem?(path: string): Promise<boolean>;
  /**
   * Replaces the content of an existing regular file in place (the same inode: nothing is
   * allocated or freed) and leaves it with `mode`; no fsync. A read-only file (0400) is made
   * writable for the write. Optional: without it, compacted entry directories are not reused.
   */
  overwriteFile?(path: string, data: Uint8Array, mode: number): Promise<void>;
  /**
   * Writes `data` at `offset` into an existing file (pwrite: the same inode, nothing else
   * changes; the caller keeps inside the file's size); no fsync. Optional: with writeAt and
   * syncData a journal store writes its records into preallocated segments (journal.ts),
   * without them one file per record.
   */
  writeAt?(path: string, offset: number, data: Uint8Array): Promise<void>;
  /** fdatasync(2) of a file: its data and what reading it back needs, not its timestamps. */
  syncData?(path: string): Promise<void>;
}

function toFileStat(stats: { isDirectory(): boolean; isFile(): boolean; size: number; mode: number; dev: number }): FileStat {
  return { isDirectory: stats.isDirectory(), isFile: stats.isFile(), size: stats.size, mode: stats.mode & 0o7777, device: stats.dev };
}

export function errorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error ? String((error as { code: unknown }).code) : undefined;
}

/** Directory entries read per batch when listing a directory. */
const READDIR_BATCH = 4096;

/** writeFile: bytes written between two syncs of a large file's data. */
const LARGE_FILE_SLICE_BYTES = 4 << 20;

/** fdatasync(2) of an open descriptor on a libuv pool thread. */
function syncDataOfDescriptor(descriptor: number): Promise<void> {
  return new Promise((done, fail) => fdatasyncDescriptor(descriptor, (error) => (error ? fail(error) : done())));
}

/** fsync(2) of an open descriptor on a libuv pool thread (the one call here that waits on the disk). */
function syncDescriptor(descriptor: number): Promise<void> {
  return new Promise((done, fail) => fsyncDescriptor(descriptor, (error) => (error ? fail(error) : done())));
}

/**
 * overwriteFile: written from offset 0 over the old bytes on the same inode, then cut to the new
 * length if the old content was longer. Not O_TRUNC: truncating to 0 frees the data blocks and
 * the write allocates them again, which made a reused entry cost 4x a new one on ext4 (0.21 vs
 * 0.06 ms; in place 0.03 ms). A file we wrote is 0400: opening it for writing fails for anyone
 * but root, so its mode is lifted for the write and set after. The same steps run on the entry
 * writer thread (entry-writer-thread.ts).
 */
function overwriteFileSync(path: string, data: Uint8Array, mode: number): void {
  let descriptor: number;
  try {
    descriptor = openSync(path, constants.O_WRONLY);
  } catch (error) {
    if (errorCode(error) !== 'EACCES') throw error;
    chmodSync(path, 0o600);
    descriptor = openSync(path, constants.O_WRONLY);
  }
  try {
    let written = 0;
    while (written < data.length) written += writeSync(descriptor, data, written, data.length - written, written);
    const stats = fstatSync(descriptor);
    if (stats.size > data.length) ftruncateSync(descriptor, data.length);
    if ((stats.mode & 0o7777) !== mode) fchmodSync(descriptor, mode);
  } finally {
    closeSync(descriptor);
  }
}

/**
 * The default FileSystem. Calls that only touch the page cache and the dentry cache (mkdir,
 * creating and writing a small file, rename, the open() before an fsync) are made
 * synchronously on the calling thread: each usually takes tens of µs, less than a hop through
 * libuv's pool of 4 threads (shared with LevelDB), and the profile showed about 25 such hops
 * in a row per append. Only fsync(2) itself, which waits for the disk, goes to the pool, so
 * the fsyncs of a batch overlap there (the kernel's journal merges their commits). The cost is
 * event-loop time: about 3 such calls per staged entry, bounded by the batch size (each can
 * wait on the journal like any metadata call: up to about 1 ms was seen on a slow disk).
 */
export const nodeFileSystem: FileSystem = {
  async mkdir(path, mode) {
    try {
      mkdirSync(path, { mode });
      return true;
    } catch (error) {
      if (errorCode(error) === 'EEXIST') return false;
      throw error;
    }
  },
  async mkdtemp(prefix) {
    return mkdtemp(prefix);
  },
  async readdir(path) {
    // open() lists wal/ once, with up to millions of names. readdir()/readdirSync go through
    // libuv's scandir, which copies every name into its own allocation and sorts them all with
    // strcmp; reading the directory stream in large batches does neither and is about twice as
    // fast (the order is the file system's: callers sort if they need to).
    const directory = opendirSync(path, { bufferSize: READDIR_BATCH });
    try {
      const names: string[] = [];
      for (let entry = directory.readSync(); entry !== null; entry = directory.readSync()) names.push(entry.name);
      return names;
    } finally {
      directory.closeSync();
    }
  },
  async writeFile(path, data, mode) {
    const descriptor = openSync(path, 'wx', mode);
    try {
      let written = 0;
      while (written < data.length) {
        // A large file (a snapshot's state: tens of MB) goes to the disk a slice at a time, each
        // slice's data synced on the pool before the next is written: one flush of the whole
        // file queued every small fsync behind it (a node's log writes waited seconds), and one
        // write of it held the event loop. Small files are one write, as before.
        if (written > 0) await syncDataOfDescriptor(descriptor);
        const end = Math.min(data.length, written + LARGE_FILE_SLICE_BYTES);
        while (written < end) written += writeSync(descriptor, data, written, end - written);
      }
    } finally {
      closeSync(descriptor);
    }
  },
  async fsync(path) {
    const descriptor = openSync(path, 'r');
    try {
      await syncDescriptor(descriptor);
    } finally {
      closeSync(descriptor);
    }
  },
  async rename(from, to) {
    renameSync(from, to);
  },
  syncFileSystem: syncFileSystemOf,
  async overwriteFile(path, data, mode) {
    overwriteFileSync(path, data, mode);
  },
  async writeAt(path, offset, data) {
    const descriptor = openSync(path, constants.O_WRONLY);
    try {
      let written = 0;
      while (written < data.length) written += writeSync(descriptor, data, written, data.length - written, offset + written);
    } finally {
      closeSync(descriptor);
    }
  },
  async syncData(path) {
    const descriptor = openSync(path, 'r');
    try {
      await syncDataOfDescriptor(descriptor);
    } finally {
      closeSync(descriptor);
    }
  },
  async remove(path) {
    // Most removals are one file (a checkpointed journal record: one per write group): a single
    // unlink(2). fs.rm's recursive walk costs an lstat and several pool hops for it (4 % of a
    // leader's CPU). A directory (EISDIR on Linux, EPERM per POSIX) goes through rm.
    try {
      unlinkSync(path);
      return;
    } catch (error) {
      const code = errorCode(error);
      if (code === 'ENOENT') return;
      if (code !== 'EISDIR' && code !== 'EPERM') throw error;
    }
    await rm(path, { recursive: true, force: true });
  },
  async stat(path) {
    try {
      return toFileStat(await stat(path));
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return undefined;
      throw error;
    }
  },
  readFileSync(path) {
    // One open/fstat/read/close: readFileSync without the Buffer pool copy for small files.
    const descriptor = openSync(path, 'r');
    try {
      const size = fstatSync(descriptor).size;
      const bytes = new Uint8Array(size);
      let offset = 0;
      while (offset < size) {
        const read = readSync(descriptor, bytes, offset, size - offset, offset);
        if (read === 0) break;
        offset += read;
      }
      return offset === size ? bytes : bytes.subarray(0, offset);
    } finally {
      closeSync(descriptor);
    }
  },
};

/** Runs `task` over `items` with at most `limit` in flight; rejects with the first failure after all settle. */
export async function forEachBounded<T>(items: readonly T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (next < items.length && failure === undefined) {
      const item = items[next++]!;
      try {
        await task(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== undefined) throw failure.error;
}

/**
 * Tasks started one by one (as their inputs become ready), at most `limit` running at once;
 * settle() waits for every task added before it is called, then rejects with the first
 * failure. After a failure the tasks still waiting for a slot are skipped.
 */
export class BoundedTasks {
  private running = 0;
  private readonly waiting = new FifoQueue<() => void>();
  private readonly started: Promise<void>[] = [];
  private failure: { error: unknown } | undefined;

  constructor(private readonly limit: number) {}

  add(task: () => Promise<void>): void {
    const run = async (): Promise<void> => {
      // A finishing task hands its slot straight to the next waiter (running is not lowered
      // in between), so a task added meanwhile cannot take it too.
      if (this.running >= this.limit) await new Promise<void>((resume) => this.waiting.push(resume));
      else this.running++;
      try {
        if (this.failure === undefined) await task();
      } catch (error) {
        this.failure ??= { error };
      } finally {
        const next = this.waiting.shift();
        if (next !== undefined) next();
        else this.running--;
      }
    };
    this.started.push(run());
  }

  async settle(): Promise<void> {
    await Promise.all(this.started);
    if (this.failure !== undefined) throw this.failure.error;
  }
}
