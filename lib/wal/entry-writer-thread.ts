/**
 * A worker thread that creates staged entry directories (mkdir, an empty MANIFEST, RAFT) with
 * synchronous calls, off the main thread and off libuv's pool (issue 18). A journal checkpoint
 * creates about a thousand entries at a time without fsyncs (one syncfs follows): on the main
 * thread those ~3,000 calls, each able to wait on the file system's journal while other
 * writes commit, blocked the event loop for a quarter of its time; on libuv's 4-thread pool
 * they would queue ahead of the journal records' fsyncs, which acknowledge writes.
 *
 * One thread per process, started on first use and unref'ed (it never keeps a process alive);
 * jobs run one batch at a time, in order. Only the default node:fs file system uses it: a test
 * FileSystem (fault injection, the power-loss recorder) sees every call on the main thread.
 */
import { Worker } from 'node:worker_threads';

export interface EntryDirectoryJob {
  /** staging/<LSN> */
  directory: string;
  manifest: string;
  raft: string;
  bytes: Uint8Array;
  /** File and directory modes. */
  fileMode: number;
  directoryMode: number;
}

// CommonJS, evaluated by the worker: a leftover directory of an earlier failed write is
// replaced, as stageEntries does on the main thread.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
parentPort.on('message', ({ id, jobs }) => {
  try {
    for (const job of jobs) {
      try {
        fs.mkdirSync(job.directory, { mode: job.directoryMode });
      } catch (error) {
        if (error.code !== 'EEXIST') throw error;
        fs.rmSync(job.directory, { recursive: true, force: true });
        fs.mkdirSync(job.directory, { mode: job.directoryMode });
      }
      fs.writeFileSync(job.manifest, new Uint8Array(0), { mode: job.fileMode, flag: 'wx' });
      fs.writeFileSync(job.raft, job.bytes, { mode: job.fileMode, flag: 'wx' });
    }
    parentPort.postMessage({ id });
  } catch (error) {
    parentPort.postMessage({ id, error: { message: String(error && error.message), code: error && error.code, path: error && error.path } });
  }
});
`;

let worker: Worker | undefined;
let nextId = 1;
const waiting = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();

function thread(): Worker {
  if (worker !== undefined) return worker;
  const started = new Worker(WORKER_SOURCE, { eval: true });
  started.unref();
  started.on('message', (message: { id: number; error?: { message: string; code?: string; path?: string } }) => {
    const pending = waiting.get(message.id);
    waiting.delete(message.id);
    if (pending === undefined) return;
    if (message.error === undefined) pending.resolve();
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

/** Creates every job's directory and files on the writer thread; resolves when all exist (not fsynced). */
export function createEntryDirectories(jobs: readonly EntryDirectoryJob[]): Promise<void> {
  if (jobs.length === 0) return Promise.resolve();
  const id = nextId++;
  return new Promise<void>((resolve, reject) => {
    // The thread keeps the process alive only while a batch is in flight.
    const running = thread();
    running.ref();
    const settled = () => {
      if (waiting.size === 0) running.unref();
    };
    waiting.set(id, {
      resolve: () => {
        settled();
        resolve();
      },
      reject: (error) => {
        settled();
        reject(error);
      },
    });
    running.postMessage({ id, jobs });
  });
}
