/**
 * LevelDB's own window at open (issue 15, finding 8), closed from outside.
 *
 * classic-level 3 bundles LevelDB 1.20 and opens it with fixed options (no `reuse_logs`, nothing
 * about syncing): every open replays the old log into a new table, writes a new MANIFEST (its
 * Sync() fsyncs the directory first), writes CURRENT.dbtmp, fsyncs it, renames it over CURRENT,
 * then deletes the old log and the old MANIFEST, with no fsync of the directory after the
 * rename. Under the POSIX model a power cut may keep the deletions and lose the rename: CURRENT
 * then names the old MANIFEST, whose log is gone. The database opens with the records of the
 * open before (a hard state and vote rolled back: a node could vote twice in a term), or with
 * none, or (the old MANIFEST gone too) not at all.
 *
 * The guard, around the open of a database the store owns:
 *   1. a file kept by an earlier guard whose own name is gone is linked back (a power cut during
 *      that open kept the deletion: CURRENT may still need it; when it does not, LevelDB finds
 *      it obsolete and deletes it again);
 *   2. every log and MANIFEST (what this open may delete) gets a second name,
 *      `replicalog-keep-<name>` (LevelDB ignores names it does not know), and the directory is
 *      fsynced: the second names are durable before LevelDB deletes anything;
 *   3. LevelDB opens;
 *   4. the directory is fsynced again (the rename of CURRENT and the deletions are durable
 *      together), and only then are the second names removed (a leftover one is harmless: step 1
 *      at the next open).
 * Two fsyncs of kv/ per open, nothing per write. Steps 1-2 only ever add names, so they are
 * harmless even while another process has the database open (its open then fails with
 * ERR_LOCKED before step 4).
 */
import { linkSync, readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { errorCode, type FileSystem } from './file-system.js';

/** The prefix of a second name kept while LevelDB opens. */
export const KEEP_PREFIX = 'replicalog-keep-';

/** The files an open of LevelDB 1.20 may delete: logs and MANIFESTs. */
const DELETABLE = /^(?:\d+\.log|MANIFEST-\d+)$/;

function listOrNothing(directory: string): string[] | undefined {
  try {
    return readdirSync(directory);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * Steps 1-2 before a LevelDB open of `location` (see the header); returns what to run once the
 * open succeeded (step 4). A database that does not exist yet needs nothing.
 */
export async function guardLevelDatabaseOpen(location: string, fileSystem: FileSystem): Promise<{ restored: string[]; afterOpen(): Promise<void> }> {
  const names = listOrNothing(location);
  if (names === undefined) return { restored: [], afterOpen: async () => {} };
  const present = new Set(names);
  const restored: string[] = [];
  for (const name of names) {
    if (!name.startsWith(KEEP_PREFIX)) continue;
    const original = name.slice(KEEP_PREFIX.length);
    if (present.has(original) || !DELETABLE.test(original)) continue;
    linkSync(join(location, name), join(location, original));
    present.add(original);
    restored.push(original);
  }
  let kept = 0;
  for (const name of present) {
    if (!DELETABLE.test(name) || present.has(KEEP_PREFIX + name)) continue;
    linkSync(join(location, name), join(location, KEEP_PREFIX + name));
    kept++;
  }
  if (kept > 0 || restored.length > 0) await fileSystem.fsync(location);
  return {
    restored,
    async afterOpen() {
      await fileSystem.fsync(location);
      for (const name of listOrNothing(location) ?? []) {
        if (!name.startsWith(KEEP_PREFIX)) continue;
        try {
          unlinkSync(join(location, name));
        } catch (error) {
          if (errorCode(error) !== 'ENOENT') throw error;
        }
      }
    },
  };
}

/**
 * The lock database (LOCK.db) holds no record, so its torn open needs no second names: when
 * CURRENT names a MANIFEST that is gone (the same window), CURRENT is removed and LevelDB
 * starts the lock database afresh (without this, every later open of the store would fail).
 * Another process holding the lock cannot be affected: its own open left a CURRENT that names
 * an existing MANIFEST. Returns whether it did so.
 */
export function repairLockDatabase(location: string): boolean {
  const names = listOrNothing(location);
  if (names === undefined || !names.includes('CURRENT')) return false;
  const current = readFileSync(join(location, 'CURRENT'), 'utf8').trim();
  if (current !== '' && names.includes(current)) return false;
  unlinkSync(join(location, 'CURRENT'));
  return true;
}
