/**
 * main() in process, with captured output: the TTY progress bar (which a child process on a
 * pipe cannot show), and the error-line format and exit code of each kind of error.
 */
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, ReplicaLogError, ReplicaLogRangeError } from '../../lib/errors.js';
import { writePreRaftWal } from '../../lib/fixture.js';
import { DataError, exitCodeOf, formatErrorLine, UsageError, type CliIo } from '../../lib/cli/io.js';
import { main } from '../../lib/cli/main.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';

afterEach(() => removeTempDirs());

function capture(isTTY: boolean): { io: CliIo; stdout: () => string; stderr: () => string; terminal: () => string } {
  let stdout = '';
  let stderr = '';
  let terminal = '';
  const stream = new PassThrough();
  stream.setEncoding('utf8').on('data', (chunk: string) => (terminal += chunk));
  Object.assign(stream, { isTTY, columns: 100, rows: 30 });
  return {
    io: {
      stdout: (text) => (stdout += text),
      stderr: (text) => (stderr += text),
      progressStream: stream as unknown as NodeJS.WriteStream,
      isTTY,
    },
    stdout: () => stdout,
    stderr: () => stderr,
    terminal: () => terminal,
  };
}

describe('migrate progress', () => {
  it('draws a bar on a TTY (and no plain lines)', async () => {
    const dir = makeTempDir('replicalog-main-');
    writePreRaftWal({ dir, entries: 60 });
    const output = capture(true);
    expect(await main(['migrate', dir], output.io)).toBe(0);
    expect(output.stderr()).toBe('');
    expect(output.terminal()).toMatch(/migrate \[.*\] 100% \| 60\/60 entries/);
    expect(output.stdout()).toContain('backfilled 60 entries');
  });

  it('prints plain lines when not a TTY, and nothing with --json', async () => {
    const dir = makeTempDir('replicalog-main-');
    writePreRaftWal({ dir, entries: 30 });
    const plain = capture(false);
    expect(await main(['migrate', dir, '--dry-run'], plain.io)).toBe(0);
    expect(plain.stderr()).toBe(''); // a dry run writes nothing, so it has no progress
    const json = capture(false);
    expect(await main(['migrate', dir, '--json'], json.io)).toBe(0);
    expect(json.stderr()).toBe('');
    expect(json.terminal()).toBe('');
    expect(JSON.parse(json.stdout())).toMatchObject({ backfilled: 30 });
  });
});

describe('errors: exit code and one-line format', () => {
  const cases: { name: string; error: unknown; fallback?: string; exitCode: number; line: string }[] = [
    {
      name: 'corrupt data with a path',
      error: new ReplicaLogError(ErrorCode.Corrupt, 'gap in the WAL:\n  entry missing', { path: '/s/wal/0000000000003' }),
      exitCode: 1,
      line: 'replicalog: /s/wal/0000000000003: gap in the WAL: entry missing [ERR_CORRUPT]',
    },
    {
      name: 'locked store',
      error: new ReplicaLogError(ErrorCode.Locked, '/s is locked by another open store', { path: '/s/LOCK.db' }),
      exitCode: 1,
      line: 'replicalog: /s/LOCK.db: /s is locked by another open store [ERR_LOCKED]',
    },
    {
      name: 'an error without a path takes the command directory',
      error: new ReplicaLogError(ErrorCode.Io, 'fsync failed'),
      fallback: '/s',
      exitCode: 1,
      line: 'replicalog: /s: fsync failed [ERR_IO]',
    },
    { name: 'invalid argument is bad usage', error: new ReplicaLogError(ErrorCode.InvalidArgument, 'bad'), exitCode: 2, line: 'replicalog: bad [ERR_INVALID_ARGUMENT]' },
    { name: 'out of range is bad usage', error: new ReplicaLogRangeError('too big'), exitCode: 2, line: 'replicalog: too big [ERR_OUT_OF_RANGE]' },
    { name: 'UsageError', error: new UsageError('no such directory', '/nope'), exitCode: 2, line: 'replicalog: /nope: no such directory' },
    { name: 'DataError', error: new DataError('refused', '/s/x', 'GAP'), exitCode: 1, line: 'replicalog: /s/x: refused' },
    {
      name: 'a node fs error',
      error: Object.assign(new Error("EACCES: permission denied, open '/s/kv'"), { code: 'EACCES', path: '/s/kv' }),
      exitCode: 1,
      line: "replicalog: /s/kv: EACCES: permission denied, open '/s/kv'",
    },
    { name: 'a thrown string', error: 'boom', exitCode: 1, line: 'replicalog: boom' },
  ];
  it.each(cases)('$name', ({ error, fallback, exitCode, line }) => {
    expect(exitCodeOf(error)).toBe(exitCode);
    expect(formatErrorLine(error, fallback)).toBe(line);
  });
});
