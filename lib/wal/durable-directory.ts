/**
 * `mkdir -p` whose every new name is durable (the POSIX model: a new name survives a power cut
 * only once its parent directory is fsynced, at every level created; finding 3).
 */
import { dirname } from 'node:path';
import { describeRootCause, ErrorCode, ReplicaLogError } from '../errors.js';
import { creationProblem } from '../write-access.js';
import type { FileSystem } from './file-system.js';

/**
 * Creates `dir` and any missing ancestors (mode 0700) through `fileSystem` (what the power-loss
 * enumerator records) and fsyncs the parent of every level created. When nothing was created,
 * `dir`'s own parent is fsynced all the same: an earlier open may have died between its mkdir
 * and that fsync, and this caller would otherwise build on a name that can still vanish
 * (finding 2). Throws ERR_IO naming `dir`.
 */
export async function createDirectoryDurably(fileSystem: FileSystem, dir: string): Promise<void> {
  try {
    const missing: string[] = [];
    let existing = dir;
    let found = await fileSystem.stat(existing);
    while (found === undefined && existing !== dirname(existing)) {
      missing.push(existing);
      existing = dirname(existing);
      found = await fileSystem.stat(existing);
    }
    if (found !== undefined && !found.isDirectory) throw Object.assign(new Error(`${existing} is not a directory`), { code: 'ENOTDIR' });
    const created = missing.reverse();
    for (const level of created) await fileSystem.mkdir(level, 0o700);
    for (const level of created.length > 0 ? created : [dir]) await fileSystem.fsync(dirname(level));
  } catch (error) {
    // recursive mkdir says ENOENT under a read-only mount: ask the nearest existing ancestor (issue 17).
    const denied = await creationProblem(dir);
    throw new ReplicaLogError(ErrorCode.Io, `cannot create ${dir}: ${describeRootCause(denied ?? error)}`, { path: dir, cause: denied ?? error });
  }
}
