/** `replicalog verify <dir> [--json]`: every problem in the tree; exit 1 if there is any. */
import { verifyScan, scanTree, type Finding } from '../verify.js';
import { EXIT_DATA, EXIT_OK, existingDirectory, json, type CliIo } from './io.js';

export interface VerifyCommandOptions {
  json?: boolean;
  partitionId?: number;
}

function findingLine(finding: Finding<string>): string {
  return `${finding.code.padEnd(20)} ${(finding.lsn ?? '-').padEnd(13)}  ${finding.message}`;
}

export async function runVerify(dir: string, options: VerifyCommandOptions, io: CliIo): Promise<number> {
  // No wal/ is a finding (WAL_MISSING), not bad usage: verify reports on whatever is there.
  const root = existingDirectory(dir);
  const scan = await scanTree(root, { partitionId: options.partitionId });
  const result = verifyScan(scan);
  if (options.json) {
    io.stdout(json({ dir: root, ok: result.ok, entries: scan.entries.length, problems: result.problems, notices: result.notices }));
  } else {
    for (const problem of result.problems) io.stdout(findingLine(problem) + '\n');
    for (const notice of result.notices) io.stdout(`notice: ${findingLine(notice)}\n`);
    const checked = `${scan.entries.length} entr${scan.entries.length === 1 ? 'y' : 'ies'} checked`;
    io.stdout(
      result.ok
        ? `${root}: ok (${checked})\n`
        : `${root}: ${result.problems.length} problem${result.problems.length === 1 ? '' : 's'} (${checked})\n`,
    );
  }
  return result.ok ? EXIT_OK : EXIT_DATA;
}
