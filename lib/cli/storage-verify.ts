/**
 * `replicalog verify <storage>` and `replicalog inspect <storage>`: the single-store commands
 * over every partition of a storage directory (lib/verify-storage.ts), or one with
 * `--partition ID`. Read-only as for a single store: no lock, the KV read from one private
 * copy of the storage's kv/. Partitions are walked one at a time and only their findings and
 * counts are kept, so memory stays bounded at 100,000 partitions.
 */
import { KvCopy, type Finding } from '../verify.js';
import { KV_WITHOUT_PARTITION, listStorage, walkStorage, type StorageFinding } from '../verify-storage.js';
import { kvPath } from '../wal/layout.js';
import { partitionPath } from '../wal/storage-layout.js';
import { KV_COPY_NOTE, runInspect } from './inspect.js';
import { EXIT_DATA, EXIT_OK, existingDirectory, json, UsageError, type CliIo } from './io.js';
import { entries as entriesText, plural, storageScanProgress } from './progress.js';

export interface StorageCommandOptions {
  json?: boolean;
  quiet?: boolean;
  partitionId?: number;
  storageName?: string;
}

/** Notices kept for --json and text (every one is counted): a storage of 100,000 pre-Raft partitions has 100,000. */
export const NOTICES_LISTED = 1000;
/** Notices of one code printed in text before "… and N more". */
const NOTICES_PRINTED_PER_CODE = 5;

function findingLine(finding: StorageFinding): string {
  const where = finding.partition === undefined ? 'storage' : `partition ${finding.partition}`;
  return `${finding.code.padEnd(20)} ${where.padEnd(17)} ${(finding.lsn ?? '-').padEnd(13)}  ${finding.message}`;
}

/** Storage-level findings first, then by partition, then by index. */
function byPartition(a: StorageFinding, b: StorageFinding): number {
  return (a.partition ?? -1) - (b.partition ?? -1) || (a.index ?? -1) - (b.index ?? -1);
}

/** Notices of a storage walk: every one counted per code, the first NOTICES_LISTED kept. */
export class NoticeList {
  readonly counts: Record<string, number> = {};
  readonly listed: StorageFinding[] = [];
  count = 0;

  add(notice: StorageFinding): void {
    this.count++;
    this.counts[notice.code] = (this.counts[notice.code] ?? 0) + 1;
    if (this.listed.length < NOTICES_LISTED) this.listed.push(notice);
  }

  /** Storage-level notices, known only after the walk, listed before the partitions'. */
  prepend(notices: readonly StorageFinding[]): void {
    for (const notice of notices) {
      this.count++;
      this.counts[notice.code] = (this.counts[notice.code] ?? 0) + 1;
    }
    this.listed.unshift(...notices);
    this.listed.length = Math.min(this.listed.length, NOTICES_LISTED);
  }

  /** Text lines: at most NOTICES_PRINTED_PER_CODE per code, then how many more. */
  lines(): string[] {
    const printed: Record<string, number> = {};
    const lines: string[] = [];
    for (const notice of this.listed) {
      printed[notice.code] = (printed[notice.code] ?? 0) + 1;
      if (printed[notice.code]! <= NOTICES_PRINTED_PER_CODE) lines.push(`notice: ${findingLine(notice)}`);
    }
    for (const [code, count] of Object.entries(this.counts)) {
      const shown = Math.min(printed[code] ?? 0, NOTICES_PRINTED_PER_CODE);
      if (count > shown) lines.push(`notice: … and ${count - shown} more ${code} notices (${count} in all; --json lists the first ${NOTICES_LISTED} notices)`);
    }
    return lines;
  }
}

/** "in 3 partitions and the storage itself" */
function whereProblems(problems: readonly StorageFinding[]): string {
  const partitions = new Set(problems.filter((problem) => problem.partition !== undefined && problem.code !== KV_WITHOUT_PARTITION).map((problem) => problem.partition));
  const storageLevel = problems.some((problem) => problem.partition === undefined || problem.code === KV_WITHOUT_PARTITION);
  const parts = [...(partitions.size > 0 ? [plural(partitions.size, 'partition')] : []), ...(storageLevel ? ['the storage itself'] : [])];
  return `in ${parts.join(' and ')}`;
}

export async function runVerifyStorage(dir: string, options: StorageCommandOptions, io: CliIo): Promise<number> {
  const root = existingDirectory(dir);
  const problems: StorageFinding[] = [];
  const notices = new NoticeList();
  let checked = 0;
  const progress = storageScanProgress('verify', options, io);
  let walked;
  try {
    walked = await walkStorage(
      root,
      { name: options.storageName, partitionId: options.partitionId, onProgress: (done, total) => progress.update(done, total) },
      ({ partitionId, scan, result }) => {
        checked += scan.listed.count;
        const tag = (finding: Finding<string>): StorageFinding => ({ partition: partitionId, ...finding });
        problems.push(...result.problems.map(tag));
        for (const notice of result.notices) notices.add(tag(notice));
      },
    );
  } finally {
    progress.stop();
  }
  problems.push(...walked.problems);
  notices.prepend(walked.notices);
  problems.sort(byPartition);
  notices.listed.sort(byPartition);
  const ok = problems.length === 0;
  if (options.json) {
    io.stdout(
      json({
        dir: walked.dir,
        storage: walked.name,
        partitions: walked.partitions,
        ok,
        entries: checked,
        problems,
        notices: notices.listed,
        noticeCount: notices.count,
        noticeCounts: notices.counts,
      }),
    );
  } else {
    let text = '';
    for (const problem of problems) text += findingLine(problem) + '\n';
    for (const line of notices.lines()) text += line + '\n';
    const scope = `storage ${JSON.stringify(walked.name)}, ${plural(walked.partitions, 'partition')}`;
    text += ok
      ? `${walked.dir}: ${scope}: ok (${entriesText(checked)} checked)\n`
      : `${walked.dir}: ${scope}: ${plural(problems.length, 'problem')} (${whereProblems(problems)}; ${entriesText(checked)} checked)\n`;
    io.stdout(text);
  }
  return ok ? EXIT_OK : EXIT_DATA;
}

export interface InspectStorageOptions extends StorageCommandOptions {
  /** With --partition: the entries table of that partition. */
  entries?: boolean;
}

/** "1..4, 7, 9..12" (ascending ids; at most `limit` ranges, then "…"). */
export function idRanges(ids: readonly number[], limit = 20): string {
  const ranges: string[] = [];
  for (let position = 0; position < ids.length && ranges.length <= limit; ) {
    let end = position;
    while (end + 1 < ids.length && ids[end + 1] === ids[end]! + 1) end++;
    ranges.push(end === position ? String(ids[position]) : `${ids[position]}..${ids[end]}`);
    position = end + 1;
  }
  return ranges.length > limit ? `${ranges.slice(0, limit).join(', ')}, …` : ranges.join(', ');
}

/** Partition ids kept per category of the summary (the counts are exact). */
const IDS_KEPT = 1000;

export async function runInspectStorage(dir: string, options: InspectStorageOptions, io: CliIo): Promise<number> {
  const root = existingDirectory(dir);
  if (options.partitionId !== undefined) return inspectPartition(root, options.partitionId, options, io);
  if (options.entries === true) throw new UsageError('--entries needs --partition ID on a storage (a table per partition would list every entry of the storage)', root);

  const categories = {
    bootstrapped: new IdList(),
    migrated: new IdList(),
    needsMigration: new IdList(),
    unbootstrapped: new IdList(),
    withProblems: new IdList(),
  };
  let retainedEntries = 0;
  let pendingMigration = 0;
  let stagingLeftovers = 0;
  let journalPending = 0;
  let problemCount = 0;
  let firstProblem: StorageFinding | undefined;
  const progress = storageScanProgress('inspect', options, io);
  let walked;
  try {
    walked = await walkStorage(
      root,
      { name: options.storageName, readManifests: false, onProgress: (done, total) => progress.update(done, total) },
      ({ partitionId, scan, result, extent }) => {
        retainedEntries += extent.retainedEntries;
        pendingMigration += extent.pendingMigration;
        stagingLeftovers += scan.stagingLeftovers.length;
        journalPending += scan.journal === undefined ? 0 : scan.journal.records.filter((record) => record.sequence > (scan.kv.journalThrough ?? 0)).length;
        if (extent.status === 'bootstrapped') categories.bootstrapped.add(partitionId);
        else if (extent.status === 'unbootstrapped') categories.unbootstrapped.add(partitionId);
        else if (extent.pendingMigration > 0) categories.needsMigration.add(partitionId);
        else categories.migrated.add(partitionId);
        if (result.problems.length > 0) {
          categories.withProblems.add(partitionId);
          problemCount += result.problems.length;
          firstProblem ??= { partition: partitionId, ...result.problems[0]! };
        }
      },
    );
  } finally {
    progress.stop();
  }
  problemCount += walked.problems.length;
  const storageProblem = walked.problems[0];
  if (storageProblem !== undefined) firstProblem = storageProblem;
  const report = {
    dir: walked.dir,
    storage: walked.name,
    partitions: walked.partitions,
    bootstrapped: categories.bootstrapped.count,
    migrated: categories.migrated.count,
    needsMigration: categories.needsMigration.count,
    unbootstrapped: categories.unbootstrapped.count,
    // The same by the store's own status names (migrated and needing migration are both needs-backfill).
    statuses: {
      bootstrapped: categories.bootstrapped.count,
      'needs-backfill': categories.migrated.count + categories.needsMigration.count,
      unbootstrapped: categories.unbootstrapped.count,
    },
    retainedEntries,
    pendingMigration,
    stagingLeftovers,
    journalPending,
    kv: {
      path: walked.kvPath,
      source: walked.kvAbsent ? 'absent' : 'copy',
      pointInTime: !walked.kvAbsent,
      note: walked.kvAbsent ? 'there is no KV database: no partition has saved anything yet' : KV_COPY_NOTE,
    },
    ok: problemCount === 0,
    problems: problemCount,
    storageProblems: walked.problems.map((problem) => ({ code: problem.code, partition: problem.partition ?? null, message: problem.message })),
    partitionIds: {
      bootstrapped: categories.bootstrapped.ids,
      migrated: categories.migrated.ids,
      needsMigration: categories.needsMigration.ids,
      unbootstrapped: categories.unbootstrapped.ids,
      withProblems: categories.withProblems.ids,
    },
  };
  const exitCode = problemCount === 0 ? EXIT_OK : EXIT_DATA;
  if (options.json) {
    io.stdout(json(report));
    return exitCode;
  }
  const which = (list: IdList) => (list.count === 0 ? '' : ` (${idRanges(list.ids)}${list.count > list.ids.length ? ', …' : ''})`);
  const lines: [string, string][] = [
    ['partitions', String(report.partitions)],
    ['bootstrapped', `${report.bootstrapped}${which(categories.bootstrapped)}`],
    ['migrated', `${report.migrated}${which(categories.migrated)}${report.migrated > 0 ? ': RAFT files written, Raft has not started yet' : ''}`],
    [
      'needs migration',
      `${report.needsMigration}${which(categories.needsMigration)}${report.needsMigration > 0 ? `: ${entriesText(pendingMigration)} without RAFT, run \`replicalog migrate ${walked.dir}\`` : ''}`,
    ],
    ['unbootstrapped', `${report.unbootstrapped}${which(categories.unbootstrapped)}${report.unbootstrapped > 0 ? ': empty' : ''}`],
    ['entries', `${retainedEntries} retained`],
    ['staging leftovers', String(stagingLeftovers)],
    ...(journalPending > 0 ? [['journal', `${plural(journalPending, 'record')} waiting (the next open of each partition writes them)`] as [string, string]] : []),
    ['kv', `${walked.kvPath}: ${report.kv.note}`],
  ];
  if (firstProblem !== undefined) {
    lines.push([
      'PROBLEMS',
      `${problemCount} in ${plural(categories.withProblems.count, 'partition')}${which(categories.withProblems)}${walked.problems.length > 0 ? ' and the storage itself' : ''} ` +
        `(first: ${firstProblem.code}${firstProblem.partition === undefined ? '' : ` in partition ${firstProblem.partition}`}): run \`replicalog verify ${walked.dir}\` for the list`,
    ]);
  }
  const width = Math.max(...lines.map(([label]) => label.length));
  let text = `${walked.dir} (storage ${JSON.stringify(walked.name)})\n`;
  for (const [label, value] of lines) text += `  ${label.padEnd(width)}  ${value}\n`;
  io.stdout(text);
  return exitCode;
}

/** Partition ids of one category: the count, and the first IDS_KEPT ids. */
class IdList {
  readonly ids: number[] = [];
  count = 0;
  add(id: number): void {
    this.count++;
    if (this.ids.length < IDS_KEPT) this.ids.push(id);
  }
}

/** inspect <storage> --partition ID: the single-store report of that partition, its KV read from the storage's. */
async function inspectPartition(root: string, partitionId: number, options: InspectStorageOptions, io: CliIo): Promise<number> {
  const listing = await listStorage(root, options.storageName);
  const partition = listing.partitions.find((candidate) => candidate.partitionId === partitionId);
  if (partition === undefined) {
    throw new UsageError(`storage ${JSON.stringify(listing.name)} has no partition ${partitionId} (${partitionPath(listing.dir, listing.name, partitionId)} does not exist)`, root);
  }
  const copy = await KvCopy.open(kvPath(listing.dir));
  try {
    return await runInspect(
      partition.dir,
      {
        entries: options.entries,
        json: options.json,
        quiet: options.quiet,
        partitionId,
        kvCopy: copy,
        heading: { storage: listing.name, partition: partitionId },
        verifyCommand: `replicalog verify ${listing.dir} --partition ${partitionId}`,
      },
      io,
    );
  } finally {
    await copy.close();
  }
}
