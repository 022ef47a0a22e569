/** `replicalog verify <dir> [--json]`: every problem in the tree; exit 1 if there is any. */
import { verifyWalk, type Finding } from '../verify.js';
import { entries, plural, scanProgress } from './progress.js';
import { compareReplicas } from '../verify-against.js';
import { EXIT_DATA, EXIT_OK, existingDirectory, json, type CliIo } from './io.js';

export interface VerifyCommandOptions {
  json?: boolean;
  partitionId?: number;
  /** No progress while a large tree is scanned (--quiet, --no-progress). */
  quiet?: boolean;
}

function findingLine(finding: Finding<string>): string {
  return `${finding.code.padEnd(20)} ${(finding.lsn ?? '-').padEnd(13)}  ${finding.message}`;
}

export async function runVerify(dir: string, options: VerifyCommandOptions, io: CliIo): Promise<number> {
  // No wal/ is a finding (WAL_MISSING), not bad usage: verify reports on whatever is there.
  const root = existingDirectory(dir);
  // One walk, no entry kept: memory is bounded by the problems found, not the tree's size.
  const progress = scanProgress('verify', options, io);
  let walked;
  try {
    walked = await verifyWalk(root, { partitionId: options.partitionId, onProgress: (done, total) => progress.update(done, total) });
  } finally {
    progress.stop();
  }
  const { scan, result } = walked;
  // Lowest index first (problems without an index, about the tree as a whole, lead).
  const byIndex = (a: Finding<string>, b: Finding<string>) => (a.index ?? -1) - (b.index ?? -1);
  result.problems.sort(byIndex);
  result.notices.sort(byIndex);
  const checked = scan.listed.count;
  if (options.json) {
    io.stdout(json({ dir: root, ok: result.ok, entries: checked, problems: result.problems, notices: result.notices }));
  } else {
    for (const problem of result.problems) io.stdout(findingLine(problem) + '\n');
    for (const notice of result.notices) io.stdout(`notice: ${findingLine(notice)}\n`);
    io.stdout(
      result.ok
        ? `${root}: ok (${entries(checked)} checked)\n`
        : `${root}: ${plural(result.problems.length, 'problem')} (${entries(checked)} checked)\n`,
    );
  }
  return result.ok ? EXIT_OK : EXIT_DATA;
}

/** `replicalog verify <dir> --against <other>`: do two replicas hold the same log? */
export async function runVerifyAgainst(dir: string, against: string, options: VerifyCommandOptions, io: CliIo): Promise<number> {
  const comparison = await compareReplicas(existingDirectory(dir), existingDirectory(against), { partitionId: options.partitionId });
  if (options.json) {
    io.stdout(json(comparison));
    return comparison.ok ? EXIT_OK : EXIT_DATA;
  }
  const { compared } = comparison;
  for (const difference of comparison.differences) {
    io.stdout(`${(difference.committed ? 'COMMITTED_DIFFERS' : 'notice: TAIL_DIFFERS').padEnd(20)} ${difference.lsn}  index ${difference.index}: ${difference.what}\n`);
  }
  if (comparison.differenceCount > comparison.differences.length) io.stdout(`… and ${comparison.differenceCount - comparison.differences.length} more\n`);
  const scope =
    compared === undefined
      ? 'no index in common'
      : `${compared.last - compared.first + 1} entr${compared.first === compared.last ? 'y' : 'ies'} compared (${compared.first}..${compared.last})`;
  io.stdout(
    comparison.differenceCount === 0
      ? `${comparison.dir} and ${comparison.against}: the same log (${scope})\n`
      : `${comparison.dir} and ${comparison.against}: ${comparison.differenceCount} entr${comparison.differenceCount === 1 ? 'y differs' : 'ies differ'}${comparison.ok ? ', none committed on both' : ''} (${scope})\n`,
  );
  return comparison.ok ? EXIT_OK : EXIT_DATA;
}
