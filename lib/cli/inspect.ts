/**
 * `replicalog inspect <dir> [--entries] [--json]`: status, first/last index, hard and conf
 * state, snapshot metadata and (with --entries) one row per entry.
 *
 * It never opens the store: it must work while the store is open in another process, and the
 * store's directory lock would refuse a second opener (ERR_LOCKED). So it reads `wal/` directly
 * and the KV database from a private copy (lib/verify.ts scanTree; the brief suggested copying
 * only when LevelDB reports the database locked, but opening LevelDB in place is itself a
 * write — log replay, new MANIFEST and LOG — and holds the lock a concurrently starting store
 * needs, so inspect always reads a copy). While the store is running this is a point-in-time,
 * best-effort view: the output says so.
 */
import { EntryType, type ConfState } from '../types.js';
import { verifyWalk, type KvCopy, type ScannedEntry } from '../verify.js';
import { entries, plural, scanProgress } from './progress.js';
import { DataError, EXIT_DATA, EXIT_OK, existingDirectory, json, table, UsageError, type CliIo } from './io.js';

export interface InspectCommandOptions {
  entries?: boolean;
  /** No progress while a large tree is scanned (--quiet, --no-progress). */
  quiet?: boolean;
  json?: boolean;
  partitionId?: number;
  /** A storage's partition: its KV is read from this copy of the storage's kv/ (storage-verify.ts). */
  kvCopy?: KvCopy;
  /** Fields that lead the report (a storage's partition: {storage, partition}). */
  heading?: Record<string, unknown>;
  /** The verify command the advice names (default `replicalog verify <dir>`). */
  verifyCommand?: string;
}

export const KV_COPY_NOTE =
  'the KV database is read from a point-in-time copy (the store may be open in another process: a best-effort view)';

function entryTypeName(type: EntryType): string {
  return EntryType[type] ?? String(type);
}

function entryRow(entry: ScannedEntry) {
  const raft = entry.raft;
  const manifest = entry.manifest;
  const decoded = raft.state === 'ok' || raft.state === 'index-mismatch' ? raft.entry : undefined;
  return {
    index: entry.index,
    lsn: entry.lsn,
    raft: raft.state,
    type: decoded === undefined ? null : entryTypeName(decoded.type),
    term: decoded === undefined ? null : decoded.term,
    raftSize: 'size' in raft ? raft.size : raft.state === 'empty' ? 0 : null,
    manifest: manifest.state,
    manifestSize: 'size' in manifest ? manifest.size : null,
    operations: manifest.state === 'ok' ? (manifest.operations ?? null) : null,
    payloadFiles: entry.payload.length,
  };
}

function confStateText(confState: ConfState): string {
  const list = (ids: number[]) => `[${ids.join(',')}]`;
  return `voters ${list(confState.voters)}, learners ${list(confState.learners)}, voters outgoing ${list(confState.votersOutgoing)}, learners next ${list(confState.learnersNext)}, auto leave ${confState.autoLeave}`;
}

const emptyConfState = (): ConfState => ({ voters: [], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false });

export async function runInspect(dir: string, options: InspectCommandOptions, io: CliIo): Promise<number> {
  const root = existingDirectory(dir);
  // One walk that keeps no entry (bounded memory); with --entries, one compact row per entry.
  const rows: ReturnType<typeof entryRow>[] = [];
  const progress = scanProgress('inspect', options, io);
  let walked;
  try {
    walked = await verifyWalk(
      root,
      {
        partitionId: options.partitionId,
        kvCopy: options.kvCopy,
        readManifests: options.entries === true,
        onProgress: (done, total) => progress.update(done, total),
      },
      options.entries === true ? (entry, verifier) => verifier.isRetained(entry) && rows.push(entryRow(entry)) : undefined,
    );
  } finally {
    progress.stop();
  }
  const { scan, extent } = walked;
  if (scan.walUnreadable === true) {
    // There is a wal/ and it cannot be read: a problem with the data (exit 1), never "not a store".
    throw new DataError(`cannot read ${scan.walPath}: ${scan.walProblem ?? 'unreadable'}`, scan.walPath, 'ERR_IO');
  }
  if (scan.walProblem !== undefined && scan.kv.source === 'absent') {
    throw new UsageError(`not a replicalog or Gitaly state directory (${scan.walProblem})`, root);
  }
  // inspect reports the problems verify would find (a gap, a damaged RAFT file, …), exits 1 on
  // them, and never advises a migration that would refuse the tree.
  const problems = walked.result.problems.sort((a, b) => (a.index ?? -1) - (b.index ?? -1));
  const kv = scan.kv;
  const hardState = kv.hardState ?? { term: 0, vote: 0, commit: 0 };
  const confState = kv.confState ?? emptyConfState();
  const snapshot = {
    index: kv.snapshot?.index ?? 0,
    term: kv.snapshot?.term ?? 0,
    confState: kv.snapshot?.confState ?? emptyConfState(),
    dataFile: scan.snapshotDataFile?.path ?? null,
    dataSize: scan.snapshotDataFile?.size ?? null,
  };
  const report = {
    dir: root,
    ...options.heading,
    status: extent.status,
    firstIndex: extent.firstIndex,
    lastIndex: extent.lastIndex,
    retainedEntries: extent.retainedEntries,
    pendingMigration: extent.pendingMigration,
    hasHardState: kv.hardState !== undefined,
    hardState,
    confState,
    snapshot,
    logAnchor: extent.anchor,
    latestConfigChange: kv.latestConfigChange ?? null,
    stagingLeftovers: scan.stagingLeftovers.length,
    // Journal mode: acknowledged write groups not yet in wal/ (the next open writes them).
    journalPending: scan.journal === undefined ? 0 : scan.journal.records.filter((record) => record.sequence > (kv.journalThrough ?? 0)).length,
    kv: {
      path: kv.path,
      source: kv.source,
      pointInTime: kv.source === 'copy',
      note: kv.source === 'copy' ? KV_COPY_NOTE : 'there is no KV database: nothing saved yet',
      unreadable: kv.unreadable ?? null,
      corruptKeys: kv.corruptKeys.map((key) => key.key),
    },
    ...(options.entries ? { entries: rows } : {}),
    ok: problems.length === 0,
    problems: problems.map((problem) => ({ code: problem.code, lsn: problem.lsn ?? null, message: problem.message })),
  };
  const exitCode = problems.length === 0 ? EXIT_OK : EXIT_DATA;

  if (options.json) {
    io.stdout(json(report));
    return exitCode;
  }

  const lines: [string, string][] = [
    ['status', report.status + (report.pendingMigration > 0 && problems.length === 0 ? ` (${entries(report.pendingMigration)} without RAFT: run \`replicalog migrate\`)` : '')],
    ['first index', String(report.firstIndex)],
    ['last index', `${report.lastIndex} (${entries(report.retainedEntries)} retained)`],
    ['hard state', report.hasHardState ? `term ${hardState.term}, vote ${hardState.vote}, commit ${hardState.commit}` : 'none saved'],
    ['conf state', kv.confState !== undefined ? confStateText(confState) : 'none saved'],
    [
      'snapshot',
      kv.snapshot !== undefined
        ? `index ${snapshot.index}, term ${snapshot.term}, ${confStateText(snapshot.confState)}${snapshot.dataFile !== null ? `, data ${snapshot.dataFile} (${snapshot.dataSize === null ? 'missing' : plural(snapshot.dataSize, 'byte')})` : ', no data'}`
        : 'none',
    ],
    ['log anchor', `index ${extent.anchor.index}, term ${extent.anchor.term}${kv.anchor === undefined ? ' (derived: no anchor record)' : ''}`],
    ['latest conf change', report.latestConfigChange === null ? 'none' : String(report.latestConfigChange)],
    ['staging leftovers', String(report.stagingLeftovers)],
    ...(report.journalPending > 0
      ? [['journal', `${plural(report.journalPending, 'record')} ${report.journalPending === 1 ? 'waits' : 'wait'} in ${scan.journal!.path} (the figures above are wal/'s and KV's): the next open writes them into wal/`] as [string, string]]
      : []),
    ['kv', `${kv.path}: ${report.kv.note}${kv.unreadable !== undefined ? `; UNREADABLE: ${kv.unreadable}` : ''}`],
  ];
  if (scan.walProblem !== undefined) lines.push(['wal', scan.walProblem]);
  if (problems.length > 0) {
    const first = problems[0]!;
    lines.push([
      'PROBLEMS',
      `${problems.length} (first: ${first.code}${first.lsn === undefined ? '' : ` at ${first.lsn}`}): run \`${options.verifyCommand ?? `replicalog verify ${root}`}\` for the list. ` +
        'A damaged or incomplete log cannot be migrated or repaired in place: restore this replica from a peer (or from a backup)',
    ]);
  }
  const width = Math.max(...lines.map(([label]) => label.length));
  let text = `${root}${options.heading !== undefined ? ` (${Object.entries(options.heading).map(([key, value]) => `${key} ${JSON.stringify(value)}`).join(', ')})` : ''}\n`;
  for (const [label, value] of lines) text += `  ${label.padEnd(width)}  ${value}\n`;
  if (report.entries !== undefined) {
    text += '\n';
    text += table(
      ['INDEX', 'LSN', 'TYPE', 'TERM', 'RAFT', 'MANIFEST', 'OPS', 'PAYLOAD'],
      report.entries.map((row) => [
        String(row.index),
        row.lsn,
        row.type ?? '-',
        row.term === null ? '-' : String(row.term),
        row.raft === 'ok' ? `${row.raftSize}B` : row.raft,
        row.manifestSize !== null && row.manifest === 'ok' ? `${row.manifestSize}B` : row.manifest,
        row.operations === null ? '-' : String(row.operations),
        String(row.payloadFiles),
      ]),
    );
  }
  io.stdout(text);
  return exitCode;
}
