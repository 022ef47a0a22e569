/**
 * syncfs(2) for Node, which has no binding for it: coreutils' `sync -f PATH` makes the whole
 * file system holding PATH durable (data and metadata; since Linux 5.8 it also reports
 * writeback errors). Linux only.
 *
 * Why a long-lived helper. Spawning `sync` from the Node process forks it: the kernel copies
 * the page tables of a process of a hundred megabytes or more, and every page the parent then
 * writes takes a copy-on-write fault until the child has exec'd. Measured on a 3-node cluster
 * under load (one syncfs per journal checkpoint and per shared barrier pass), that was the
 * largest single kernel cost after the file system's own, and page faults are dear in a VM. So
 * one small `sh` is spawned once per process and kept: each request is one line on its stdin
 * (the path), `sh` forks the tiny `sync` (a few hundred kilobytes to copy) and answers one line:
 * `ok`, or `err <message>`. Requests are answered in order; they run one at a time, which is
 * what a barrier needs (callers coalesce their passes already).
 *
 * The helper ends with the process: it exits when its stdin closes, also after a SIGKILL of
 * its parent. It does not keep the event loop alive while no request is pending. If it dies or
 * cannot start, the requests it held are retried with one `sync` process each (the old way),
 * and the next request starts a new helper.
 *
 * Availability: `undefined` until the first answer tells whether syncfs works here; a first
 * call that fails (no `sync`, or one without -f) means unavailable (callers fall back to
 * fsyncs), a later failure is an I/O error (EIO) naming the path.
 */
import { execFile, spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';

let syncFileSystemWorks: boolean | undefined = process.platform === 'linux' ? undefined : false;

/** Each line read is a path; `sync -f` runs on it; one line answers. */
export const SYNC_HELPER_SCRIPT = `while IFS= read -r path; do
  if message=$(sync -f -- "$path" 2>&1); then echo ok; else printf 'err %s\\n' "$(printf %s "$message" | tr '\\n' ' ')"; fi
done`;

/** A request longer than this kills the helper and fails (as the old per-call timeout did). */
const REQUEST_TIMEOUT_MS = 600_000;

/** The pipes of a child process are net.Sockets, which have ref()/unref(). */
interface Refable {
  ref?: () => void;
  unref?: () => void;
}

interface PendingSync {
  path: string;
  settle: (error: string | undefined) => void;
}

class SyncHelper {
  private readonly child: ChildProcessByStdio<Writable, Readable, null>;
  private readonly pending: PendingSync[] = [];
  private buffered = '';
  private timer: NodeJS.Timeout | undefined;
  dead = false;

  constructor(private readonly onDeath: (orphans: PendingSync[]) => void) {
    this.child = spawn('sh', ['-c', SYNC_HELPER_SCRIPT], { stdio: ['pipe', 'pipe', 'ignore'] });
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (chunk: string) => this.onData(chunk));
    this.child.on('error', () => this.die());
    this.child.on('exit', () => this.die());
    this.child.stdin.on('error', () => this.die());
    this.idle();
  }

  request(path: string): Promise<string | undefined> {
    return new Promise((resolve) => {
      if (this.pending.length === 0) this.busy();
      this.pending.push({ path, settle: resolve });
      this.child.stdin.write(`${path}\n`);
    });
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    for (let newline = this.buffered.indexOf('\n'); newline >= 0; newline = this.buffered.indexOf('\n')) {
      const line = this.buffered.slice(0, newline);
      this.buffered = this.buffered.slice(newline + 1);
      const head = this.pending.shift();
      if (head === undefined) continue;
      head.settle(line === 'ok' ? undefined : line.replace(/^err /, '').trim() || 'sync -f failed');
    }
    if (this.pending.length === 0) this.idle();
    else this.armTimer();
  }

  /** A pending request keeps the process alive (and a slow one is bounded). */
  private busy(): void {
    (this.child.stdout as Readable & Refable).ref?.();
    this.child.ref();
    this.armTimer();
  }

  private idle(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    // The pipes are sockets: unreferenced, they do not hold the event loop open.
    (this.child.stdout as Readable & Refable).unref?.();
    (this.child.stdin as Writable & Refable).unref?.();
    this.child.unref();
  }

  private armTimer(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.child.kill('SIGKILL'), REQUEST_TIMEOUT_MS);
    this.timer.unref();
  }

  private die(): void {
    if (this.dead) return;
    this.dead = true;
    clearTimeout(this.timer);
    this.child.kill('SIGKILL');
    this.onDeath(this.pending.splice(0));
  }
}

let helper: SyncHelper | undefined;

/** One `sync -f` process for this path (no helper, or the helper died under the request). */
function syncOnce(path: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('sync', ['-f', path], { timeout: REQUEST_TIMEOUT_MS }, (error, _stdout, stderr) => {
      resolve(error === null ? undefined : stderr.trim() || error.message);
    });
  });
}

function helperRequest(path: string): Promise<string | undefined> {
  // A path the line protocol cannot carry goes the old way.
  if (path.includes('\n')) return syncOnce(path);
  if (helper === undefined || helper.dead) {
    try {
      helper = new SyncHelper((orphans) => {
        for (const orphan of orphans) void syncOnce(orphan.path).then(orphan.settle);
      });
    } catch {
      return syncOnce(path);
    }
  }
  return helper.request(path);
}

/** syncfs of the file system holding `path`: true once done, false where it is unavailable. */
export function syncFileSystemOf(path: string): Promise<boolean> {
  if (syncFileSystemWorks === false) return Promise.resolve(false);
  return helperRequest(path).then((failure) => {
    if (failure === undefined) {
      syncFileSystemWorks = true;
      return true;
    }
    if (syncFileSystemWorks === undefined) {
      syncFileSystemWorks = false;
      return false;
    }
    throw Object.assign(new Error(`sync -f ${path} failed: ${failure}`), { code: 'EIO' });
  });
}
