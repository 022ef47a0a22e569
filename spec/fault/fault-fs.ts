/**
 * A seeded fault layer for the store: a FileSystem (lib/wal/file-system.ts) and a wrapper for
 * the KV database that fail one chosen operation — EIO / ENOSPC / EROFS, a short write (a
 * prefix of the bytes reaches the file, then ENOSPC), or a KV batch that is applied and then
 * reported failed (a sync error after the write reached the log).
 *
 * Determinism: every asynchronous file-system call runs through one FIFO queue, so the order
 * of calls — and so "the n-th fsync" — is the same on every run of a seed, although the store
 * issues up to 8 entry writes at once. A seed therefore replays exactly.
 */
import type { ClassicLevel } from 'classic-level';
import { nodeFileSystem, type FileSystem } from '../../lib/wal/file-system.js';

export const FAULT_OPERATIONS = ['mkdir', 'mkdtemp', 'readdir', 'writeFile', 'fsync', 'rename', 'remove', 'stat', 'readFileSync', 'kvBatch', 'kvGetMany', 'syncFileSystem', 'writeAt', 'syncData'] as const;
export type FaultOperation = (typeof FAULT_OPERATIONS)[number];
export type FaultKind = 'EIO' | 'ENOSPC' | 'EROFS' | 'short-write' | 'applied-then-EIO';

export interface FaultPlan {
  operation: FaultOperation;
  /** 1-based: fail the occurrence-th call of `operation` after arming. */
  occurrence: number;
  kind: FaultKind;
  /** Only calls whose path matches count (default: every call). */
  path?: RegExp;
}

export interface FiredFault extends FaultPlan {
  at: string;
}

export function systemError(kind: string, operation: string, path: string): Error {
  const code = kind === 'short-write' || kind === 'applied-then-EIO' ? (kind === 'short-write' ? 'ENOSPC' : 'EIO') : kind;
  return Object.assign(new Error(`${code}: injected fault, ${operation} '${path}'`), { code, errno: -5, syscall: operation, path });
}

/** Counts calls per operation and throws on the planned one. */
export class FaultInjector {
  private plan: FaultPlan | undefined;
  private readonly counts = new Map<FaultOperation, number>();
  readonly fired: FiredFault[] = [];
  /** How many file-system and KV calls went through the layer. */
  calls = 0;

  arm(plan: FaultPlan): void {
    this.plan = plan;
    this.counts.clear();
  }

  disarm(): void {
    this.plan = undefined;
  }

  /** The planned fault for this call, if it is the one (then it is disarmed: one fault per arming). */
  hit(operation: FaultOperation, path: string): FaultPlan | undefined {
    this.calls++;
    const plan = this.plan;
    if (plan === undefined || plan.operation !== operation) return undefined;
    if (plan.path !== undefined && !plan.path.test(path)) return undefined;
    const seen = (this.counts.get(operation) ?? 0) + 1;
    this.counts.set(operation, seen);
    if (seen !== plan.occurrence) return undefined;
    this.plan = undefined;
    this.fired.push({ ...plan, at: path });
    return plan;
  }
}

/**
 * A FileSystem failing what `injector` plans, every async call serialised (see the module
 * comment). It has a syncFileSystem (syncfs, failing as planned for 'syncFileSystem') only when
 * `base` has one and `options.syncFileSystem` asks for it: otherwise the store fsyncs file by file.
 */
export function faultFileSystem(injector: FaultInjector, base: FileSystem = nodeFileSystem, options: { syncFileSystem?: boolean } = {}): FileSystem {
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(run: () => Promise<T>): Promise<T> => {
    const result = queue.then(run);
    queue = result.catch(() => undefined);
    return result;
  };
  const guard = (operation: FaultOperation, path: string): void => {
    const plan = injector.hit(operation, path);
    if (plan !== undefined) throw systemError(plan.kind, operation, path);
  };
  return {
    mkdir: (path, mode) => serial(async () => (guard('mkdir', path), base.mkdir(path, mode))),
    mkdtemp: (prefix) => serial(async () => (guard('mkdtemp', prefix), base.mkdtemp(prefix))),
    readdir: (path) => serial(async () => (guard('readdir', path), base.readdir(path))),
    writeFile: (path, data, mode) =>
      serial(async () => {
        const plan = injector.hit('writeFile', path);
        if (plan?.kind === 'short-write') {
          // A prefix of the bytes reaches the file, then the disk is full.
          await base.writeFile(path, data.subarray(0, Math.floor(data.length / 2)), mode);
          throw systemError('ENOSPC', 'write', path);
        }
        if (plan !== undefined) throw systemError(plan.kind, 'write', path);
        return base.writeFile(path, data, mode);
      }),
    fsync: (path) => serial(async () => (guard('fsync', path), base.fsync(path))),
    rename: (from, to) => serial(async () => (guard('rename', `${from} -> ${to}`), base.rename(from, to))),
    remove: (path) => serial(async () => (guard('remove', path), base.remove(path))),
    stat: (path) => serial(async () => (guard('stat', path), base.stat(path))),
    readFileSync: (path) => (guard('readFileSync', path), base.readFileSync(path)),
    // A journal store writes its records into segments only when both are there (journal.ts).
    ...(base.writeAt !== undefined && base.syncData !== undefined
      ? {
          writeAt: (path: string, offset: number, data: Uint8Array) => serial(async () => (guard('writeAt', path), base.writeAt!(path, offset, data))),
          syncData: (path: string) => serial(async () => (guard('syncData', path), base.syncData!(path))),
        }
      : {}),
    ...(options.syncFileSystem === true && base.syncFileSystem !== undefined
      ? { syncFileSystem: (path: string) => serial(async () => (guard('syncFileSystem', path), base.syncFileSystem!(path))) }
      : {}),
  };
}

/**
 * Makes an open classic-level database fail what `injector` plans for `kvBatch` / `kvGetMany`
 * (the two calls the store makes): the methods are replaced on this instance only.
 */
export function injectKvFaults<D extends ClassicLevel<Uint8Array, Uint8Array>>(database: D, injector: FaultInjector): D {
  const batch = database.batch.bind(database) as (...args: unknown[]) => Promise<void>;
  const getMany = database.getMany.bind(database) as (...args: unknown[]) => Promise<unknown>;
  const patched = database as unknown as Record<string, unknown>;
  patched.batch = async (...args: unknown[]) => {
    const plan = injector.hit('kvBatch', database.location);
    if (plan?.kind === 'applied-then-EIO') {
      await batch(...args);
      throw systemError('EIO', 'batch', database.location);
    }
    if (plan !== undefined) throw systemError(plan.kind, 'batch', database.location);
    return batch(...args);
  };
  patched.getMany = async (...args: unknown[]) => {
    const plan = injector.hit('kvGetMany', database.location);
    if (plan !== undefined) throw systemError(plan.kind, 'getMany', database.location);
    return getMany(...args);
  };
  return database;
}
