/**
 * One open store per directory.
 *
 * Choice: a tiny classic-level database at `<dir>/LOCK.db`. LevelDB takes an fcntl() lock on
 * LOCK.db/LOCK when it opens; the kernel drops that lock when the holder closes it or dies
 * (SIGKILL included), so a crashed holder never blocks the next open and no stale-PID logic is
 * needed. A second opener — in this process or another — gets LEVEL_DATABASE_NOT_OPEN caused by
 * LEVEL_LOCKED, which we report as ERR_LOCKED. It uses a dependency we already have (a plain
 * lock file would need flock(), which node:fs does not offer), costs about 2 ms, and works even
 * when the caller passes its own `db` (the KV database then may live anywhere).
 */
import { ClassicLevel } from 'classic-level';
import { describeRootCause, ErrorCode, ReplicaLogError } from './errors.js';
import { lockPath } from './wal/layout.js';
import { repairLockDatabase } from './wal/level-files.js';
import { writeAccessProblem } from './write-access.js';

function causeCode(error: unknown): string | undefined {
  const cause = (error as { cause?: { code?: unknown } } | null)?.cause;
  return typeof cause?.code === 'string' ? cause.code : undefined;
}

export class DirectoryLock {
  private released = false;

  private constructor(
    private readonly database: ClassicLevel<Uint8Array, Uint8Array>,
    readonly path: string,
  ) {}

  /** Takes the lock of `dir` (which must exist) or throws ERR_LOCKED. */
  static async acquire(dir: string): Promise<DirectoryLock> {
    const path = lockPath(dir);
    // A power cut during an earlier open of LOCK.db can leave CURRENT naming a MANIFEST that is
    // gone (level-files.ts); the lock database holds nothing, so it starts afresh. An error here
    // is left for the open to report.
    try {
      repairLockDatabase(path);
    } catch {
      // reported by the open below
    }
    const database = new ClassicLevel<Uint8Array, Uint8Array>(path, { keyEncoding: 'view', valueEncoding: 'view' });
    try {
      await database.open();
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code === 'LEVEL_DATABASE_NOT_OPEN' && causeCode(error) === 'LEVEL_LOCKED') {
        throw new ReplicaLogError(ErrorCode.Locked, `${dir} is locked by another open store (${path})`, { path, cause: error });
      }
      // LevelDB's own error can hide the reason (a read-only mount surfaces as ENOENT from its
      // mkdir): ask the kernel whether the store directory is writable at all.
      const denied = await writeAccessProblem(dir);
      if (denied !== undefined) {
        throw new ReplicaLogError(ErrorCode.Io, `cannot write to ${dir}: ${describeRootCause(denied)}`, { path: dir, cause: denied });
      }
      throw new ReplicaLogError(ErrorCode.Io, `cannot open the lock ${path}: ${describeRootCause(error)}`, { path, cause: error });
    }
    return new DirectoryLock(database, path);
  }

  /** Releases the lock; a second call does nothing. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.database.close();
  }
}
