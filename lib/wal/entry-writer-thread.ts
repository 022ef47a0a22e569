/**
 * A worker thread that creates staged entry directories (mkdir, an empty MANIFEST, RAFT) with
 * synchronous calls, off the main thread and off libuv's pool (issue 18). A journal checkpoint
 * creates about a thousand entries at a time without fsyncs (one syncfs follows): on the main
 * thread those ~3,000 calls, each able to wait on the file system's journal while other
 * writes commit, blocked the event loop for a quarter of its time; on libuv's 4-thread pool
 * they would queue ahead of the journal records' fsyncs, which acknowledge writes.
 *
 * It also makes the renames of a checkpoint's publication and of a compaction (thousands of
 * entry directories, each rename 30-80 µs in a large wal/): on the main thread they held a
 * leader's event loop for a fifth of its time, and for half a second at each compaction.
 *
 * One thread per process, started on first use and unref'ed (it never keeps a process alive);
 * batches run one at a time, in order. Only the default node:fs file system uses it: a test
 * FileSystem (fault injection, the power-loss recorder) sees every call on the main thread.
 */
import { Worker } from 'node:worker_threads';

export interface EntryDirectoryJob {
  /** staging/<LSN> (wal/<LSN> for a direct checkpoint); its files are <directory>/MANIFEST and <directory>/RAFT. */
  directory: string;
  bytes: Uint8Array;
  /** File and directory modes. */
  fileMode: number;
  directoryMode: number;
  /**
   * A compacted entry directory to reuse instead of creating one (log-manager.ts, recycling):
   * its RAFT overwritten in place and its MANIFEST emptied, where it is (wal/<old LSN>);
   * publishStaged renames it to its index, or this thread does (moveRecycled). Used only when
   * it holds exactly MANIFEST and RAFT; otherwise it is removed and `directory` is created instead.
   */
  recycled?: string;
  /** `recycled` was published by this store (exactly an empty MANIFEST and RAFT): only RAFT is rewritten. */
  recycledPlain?: boolean;
  /** Once reused, `recycled` is renamed to `directory` here (a direct checkpoint: no publishStaged follows). */
  moveRecycled?: boolean;
}

/**
 * A batch of jobs as posted to the thread: a structured clone of a thousand job objects (their
 * keys, strings and buffers one by one) cost a checkpoint more than its own bookkeeping (2.4 %
 * of a 3-node cluster's CPU at 3xC=64 in the clone and its reading, issue 18). Here the paths
 * are two arrays of strings and every RAFT's bytes lie in one transferred buffer.
 */
interface PackedJobs {
  directories: string[];
  /** Per job: the directory to reuse, or '' for none. */
  recycled: string[];
  /** Per job: bit 0 when the reused directory is plain (recycledPlain), bit 1 when it is moved (moveRecycled). */
  flags: Uint8Array;
  /** Every job's bytes, one after another; job i's end is ends[i]. */
  bytes: ArrayBuffer;
  ends: Uint32Array;
  fileMode: number;
  directoryMode: number;
}

/** Packs `jobs` (every job has the same modes: the store's). */
function packJobs(jobs: readonly EntryDirectoryJob[]): PackedJobs {
  let total = 0;
  for (const job of jobs) total += job.bytes.length;
  const bytes = new Uint8Array(total);
  const ends = new Uint32Array(jobs.length);
  const flags = new Uint8Array(jobs.length);
  const directories: string[] = [];
  const recycled: string[] = [];
  let offset = 0;
  for (const [position, job] of jobs.entries()) {
    if (job.fileMode !== jobs[0]!.fileMode || job.directoryMode !== jobs[0]!.directoryMode) throw new Error('entry writer: jobs of one batch must share their modes');
    bytes.set(job.bytes, offset);
    offset += job.bytes.length;
    ends[position] = offset;
    directories.push(job.directory);
    recycled.push(job.recycled ?? '');
    flags[position] = (job.recycledPlain === true ? 1 : 0) | (job.moveRecycled === true ? 2 : 0);
  }
  return { directories, recycled, flags, bytes: bytes.buffer, ends, fileMode: jobs[0]!.fileMode, directoryMode: jobs[0]!.directoryMode };
}

// CommonJS, evaluated by the worker: a leftover directory of an earlier failed write is
// replaced, as stageEntries does on the main thread (which also mirrors reuse() and
// overwrite(), through the FileSystem: log-manager.ts stageRecycled, file-system.ts).
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
function overwrite(path, bytes, mode) {
  let descriptor;
  try {
    descriptor = fs.openSync(path, fs.constants.O_WRONLY);
  } catch (error) {
    if (error.code !== 'EACCES') throw error;
    fs.chmodSync(path, 0o600);
    descriptor = fs.openSync(path, fs.constants.O_WRONLY);
  }
  try {
    let written = 0;
    while (written < bytes.length) written += fs.writeSync(descriptor, bytes, written, bytes.length - written, written);
    const stats = fs.fstatSync(descriptor);
    if (stats.size > bytes.length) fs.ftruncateSync(descriptor, bytes.length);
    if ((stats.mode & 0o7777) !== mode) fs.fchmodSync(descriptor, mode);
  } finally {
    fs.closeSync(descriptor);
  }
}
function reuse(job) {
  if (job.recycledPlain === true) {
    try {
      overwrite(job.recycled + '/RAFT', job.bytes, job.fileMode);
      return true;
    } catch (error) {
      if (error.code === 'ENOENT') return false;
      throw error;
    }
  }
  let names;
  try {
    names = fs.readdirSync(job.recycled);
  } catch (error) {
    if (error.code === 'ENOENT') return false;
    throw error;
  }
  if (names.length !== 2 || !names.includes('MANIFEST') || !names.includes('RAFT')) {
    fs.rmSync(job.recycled, { recursive: true, force: true });
    return false;
  }
  overwrite(job.recycled + '/RAFT', job.bytes, job.fileMode);
  const manifest = job.recycled + '/MANIFEST';
  if (fs.statSync(manifest).size !== 0) overwrite(manifest, new Uint8Array(0), job.fileMode);
  return true;
}
function create(jobs) {
  const reused = [];
  for (const [position, job] of jobs.entries()) {
    if (job.recycled !== undefined && reuse(job)) {
      if (job.moveRecycled === true) fs.renameSync(job.recycled, job.directory);
      reused.push(position);
      continue;
    }
    try {
      fs.mkdirSync(job.directory, { mode: job.directoryMode });
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
      fs.rmSync(job.directory, { recursive: true, force: true });
      fs.mkdirSync(job.directory, { mode: job.directoryMode });
    }
    fs.writeFileSync(job.directory + '/MANIFEST', new Uint8Array(0), { mode: job.fileMode, flag: 'wx' });
    fs.writeFileSync(job.directory + '/RAFT', job.bytes, { mode: job.fileMode, flag: 'wx' });
  }
  return reused;
}
function unpack(packed) {
  const jobs = [];
  let start = 0;
  for (let position = 0; position < packed.directories.length; position++) {
    const end = packed.ends[position];
    const job = { directory: packed.directories[position], bytes: new Uint8Array(packed.bytes, start, end - start), fileMode: packed.fileMode, directoryMode: packed.directoryMode };
    if (packed.recycled[position] !== '') {
      job.recycled = packed.recycled[position];
      job.recycledPlain = (packed.flags[position] & 1) === 1;
      job.moveRecycled = (packed.flags[position] & 2) === 2;
    }
    jobs.push(job);
    start = end;
  }
  return jobs;
}
parentPort.on('message', ({ id, jobs, renames }) => {
  try {
    if (renames !== undefined) {
      for (const [from, to] of renames) fs.renameSync(from, to);
      parentPort.postMessage({ id, reused: [] });
    } else {
      parentPort.postMessage({ id, reused: create(unpack(jobs)) });
    }
  } catch (error) {
    parentPort.postMessage({ id, error: { message: String(error && error.message), code: error && error.code, path: error && error.path } });
  }
});
`;

let worker: Worker | undefined;
let nextId = 1;
const waiting = new Map<number, { resolve: (reused: number[]) => void; reject: (error: Error) => void }>();

function thread(): Worker {
  if (worker !== undefined) return worker;
  const started = new Worker(WORKER_SOURCE, { eval: true });
  started.unref();
  started.on('message', (message: { id: number; reused?: number[]; error?: { message: string; code?: string; path?: string } }) => {
    const pending = waiting.get(message.id);
    waiting.delete(message.id);
    if (pending === undefined) return;
    if (message.error === undefined) pending.resolve(message.reused ?? []);
    else pending.reject(Object.assign(new Error(message.error.message), { code: message.error.code, path: message.error.path }));
  });
  const failAll = (error: Error) => {
    worker = undefined;
    for (const [id, pending] of waiting) {
      waiting.delete(id);
      pending.reject(error);
    }
  };
  started.on('error', failAll);
  started.on('exit', (code) => failAll(new Error(`the entry writer thread exited (code ${code})`)));
  worker = started;
  return started;
}

/** Posts one batch to the thread; resolves with the positions of the jobs that reused their directory. */
function run(message: { jobs: PackedJobs } | { renames: readonly (readonly [string, string])[] }): Promise<number[]> {
  const id = nextId++;
  return new Promise<number[]>((resolve, reject) => {
    // The thread keeps the process alive only while a batch is in flight.
    const running = thread();
    running.ref();
    const settled = () => {
      if (waiting.size === 0) running.unref();
    };
    waiting.set(id, {
      resolve: (reused) => {
        settled();
        resolve(reused);
      },
      reject: (error) => {
        settled();
        reject(error);
      },
    });
    // The packed bytes move to the thread (transferred, not copied).
    running.postMessage({ id, ...message }, 'jobs' in message ? [message.jobs.bytes] : []);
  });
}

/** What the store hands the entry writer thread (only with the default node:fs file system). */
export interface EntryWriter {
  /**
   * Creates every job's directory and files, or reuses its `recycled` directory in place;
   * resolves when all exist (not fsynced) with the positions of the jobs that reused theirs.
   */
  create(jobs: readonly EntryDirectoryJob[]): Promise<number[]>;
  /** Renames each [from, to] in order, stopping at the first failure (which it rejects with). */
  rename(renames: readonly (readonly [string, string])[]): Promise<void>;
}

export const entryWriterThread: EntryWriter = {
  create(jobs) {
    return jobs.length === 0 ? Promise.resolve([]) : run({ jobs: packJobs(jobs) });
  },
  async rename(renames) {
    if (renames.length > 0) await run({ renames });
  },
};
