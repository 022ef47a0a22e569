/**
 * Why a directory cannot be written, asked of the kernel directly. A library that fails
 * halfway (LevelDB's "Database failed to open", Node's recursive mkdir, which reports ENOENT on
 * a read-only mount) often hides the reason; access(2) names it: EROFS for a read-only mount,
 * EACCES for a directory without write permission for this user, ENOENT, ENOTDIR.
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/** undefined when `directory` can be written (and entered), else the errno error that says why not. */
export async function writeAccessProblem(directory: string): Promise<NodeJS.ErrnoException | undefined> {
  try {
    await access(directory, constants.W_OK | constants.X_OK);
    return undefined;
  } catch (error) {
    return error as NodeJS.ErrnoException;
  }
}

/**
 * Why `directory` (missing) could not be created: the write access of its nearest existing
 * ancestor. Node's recursive mkdir reports ENOENT under a read-only mount; this says EROFS.
 * undefined when that ancestor is writable (then the original error stands).
 */
export async function creationProblem(directory: string): Promise<NodeJS.ErrnoException | undefined> {
  let ancestor = resolve(directory);
  for (;;) {
    try {
      await stat(ancestor);
      break;
    } catch {
      const parent = dirname(ancestor);
      if (parent === ancestor) return undefined;
      ancestor = parent;
    }
  }
  return writeAccessProblem(ancestor);
}
