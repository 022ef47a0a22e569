/**
 * What every command shares: where output goes, the two error kinds the CLI raises itself,
 * the one-line error format and the exit code of each error kind (API.md "Command line").
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeRootCause, ErrorCode, rootSystemCode } from '../errors.js';
import { walPath } from '../wal/layout.js';

export const EXIT_OK = 0;
/** A problem found in the data: verify found problems, migration refused, store locked or corrupt. */
export const EXIT_DATA = 1;
/** Bad usage: unknown command or option, missing argument, a path that is not a store directory. */
export const EXIT_USAGE = 2;

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** The stream the TTY progress bar draws on. */
  progressStream: NodeJS.WriteStream;
  /** Whether progressStream is a terminal (progress bar) or not (plain lines). */
  isTTY: boolean;
}

export function processIo(): CliIo {
  // `replicalog inspect … | head`: a closed pipe is not an error worth a stack trace.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') throw error;
    });
  }
  return {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    progressStream: process.stderr,
    isTTY: process.stderr.isTTY === true,
  };
}

/** A usage error the CLI raises itself: exit 2. */
export class UsageError extends Error {
  readonly path: string | undefined;
  constructor(message: string, path?: string) {
    super(message);
    this.name = 'UsageError';
    this.path = path;
  }
}

/** The data refuses what was asked (e.g. a dry run found what would make migrate fail): exit 1. */
export class DataError extends Error {
  readonly path: string | undefined;
  readonly code: string | undefined;
  constructor(message: string, path?: string, code?: string) {
    super(message);
    this.name = 'DataError';
    this.path = path;
    this.code = code;
  }
}

/** Error codes that mean the caller asked for something malformed (exit 2); every other code is about the data (exit 1). */
const USAGE_CODES = new Set<string>([ErrorCode.InvalidArgument, ErrorCode.OutOfRange]);

function property(error: unknown, name: string): unknown {
  return typeof error === 'object' && error !== null && name in error ? (error as Record<string, unknown>)[name] : undefined;
}

export function exitCodeOf(error: unknown): number {
  if (error instanceof UsageError) return EXIT_USAGE;
  if (error instanceof DataError) return EXIT_DATA;
  const code = property(error, 'code');
  if (typeof code === 'string' && USAGE_CODES.has(code)) return EXIT_USAGE;
  return EXIT_DATA;
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

/**
 * `replicalog: <path>: <cause> [CODE]`, one line. The path is the error's own `path` (the file
 * or directory at fault), else `fallbackPath` (the directory the command was working on).
 */
export function formatErrorLine(error: unknown, fallbackPath?: string): string {
  const path = property(error, 'path');
  const where = typeof path === 'string' && path !== '' ? path : fallbackPath;
  const message = error instanceof Error ? error.message : String(error);
  const code = property(error, 'code');
  const suffix = typeof code === 'string' && code.startsWith('ERR_') ? ` [${code}]` : '';
  return `replicalog: ${where !== undefined ? `${where}: ` : ''}${oneLine(message)}${suffix}`;
}

/**
 * `{code, message, path}` of an error, for `{"error": …}` under --json, plus `systemCode`
 * (EROFS, EACCES, ENOSPC, EMFILE, …) when a system error is at the root of it.
 */
export function errorObject(error: unknown, fallbackPath?: string): { code: string; message: string; path: string | null; systemCode?: string } {
  const path = property(error, 'path');
  const code = property(error, 'code');
  const systemCode = rootSystemCode(error);
  return {
    code: typeof code === 'string' ? code : 'ERR_UNKNOWN',
    message: oneLine(error instanceof Error ? error.message : String(error)),
    path: typeof path === 'string' && path !== '' ? path : (fallbackPath ?? null),
    ...(systemCode !== undefined ? { systemCode } : {}),
  };
}

/** The stack and the chain of causes, for --debug. */
export function formatDebug(error: unknown): string {
  const lines: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && depth < 5; depth++) {
    lines.push(depth === 0 ? '' : 'caused by:');
    lines.push(current instanceof Error ? (current.stack ?? current.message) : String(current));
    current = current instanceof Error ? current.cause : undefined;
  }
  return lines.join('\n').trimStart() + '\n';
}

/**
 * A path that cannot be looked at for a reason other than its absence (EACCES on a parent,
 * EIO, ELOOP, …): a problem with the data or the machine (exit 1), named with its system code,
 * never reported as "does not exist".
 */
function inaccessible(path: string, error: unknown): DataError {
  return new DataError(`cannot access ${path}: ${describeRootCause(error)}`, path, 'ERR_IO');
}

function errnoCode(error: unknown): unknown {
  return property(error, 'code');
}

/** The store directory a command works on: must exist and be a directory (else bad usage). */
export function existingDirectory(dir: string): string {
  const root = resolve(dir);
  let isDirectory: boolean;
  try {
    isDirectory = statSync(root).isDirectory();
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') throw new UsageError('no such directory', root);
    throw inaccessible(root, error);
  }
  if (!isDirectory) throw new UsageError('not a directory', root);
  return root;
}

/** A store directory that holds a WAL (`<dir>/wal`), else bad usage. */
export function storeDirectory(dir: string): string {
  const root = existingDirectory(dir);
  const wal = walPath(root);
  try {
    statSync(wal);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') throw new UsageError(`not a replicalog or Gitaly state directory (${wal} does not exist)`, root);
    throw inaccessible(wal, error);
  }
  return root;
}

/** The package's version, from the package.json above this file (lib/cli or dist/lib/cli). */
export function packageVersion(): string {
  let directory = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 5; depth++) {
    const candidate = join(directory, 'package.json');
    if (existsSync(candidate)) {
      try {
        const parsed = JSON.parse(readFileSync(candidate, 'utf8')) as { name?: unknown; version?: unknown };
        if (parsed.name === 'replicalog' && typeof parsed.version === 'string') return parsed.version;
      } catch {
        // keep looking
      }
    }
    directory = dirname(directory);
  }
  return 'unknown';
}

export function json(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n';
}

/** Text table (header + rows): columns of plain numbers are right-aligned, others (LSNs included) left-aligned. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const numeric = header.map((_, column) => rows.length > 0 && rows.every((row) => /^(0|[1-9][0-9]*)$|^-$/.test(row[column] ?? '')));
  const render = (row: readonly string[]) =>
    row
      .map((cell, column) => (numeric[column] ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!)))
      .join('  ')
      .trimEnd();
  return [render(header), ...rows.map(render)].join('\n') + '\n';
}
