/**
 * A reader for cockroachdb/datadriven (v1.0.2, the version etcd raft v3.6 uses) test files.
 *
 * File format, one test case after another:
 *
 *     # comment lines (outside a case) are skipped, as are blank lines
 *     cmd key=val key2=(a, b) flag \
 *         continued=1
 *     optional input lines
 *     ----
 *     expected output, ending at the first blank line or end of file
 *
 * or, for output that contains blank lines, the double-separator form:
 *
 *     cmd
 *     ----
 *     ----
 *     output, blank lines allowed
 *     ----
 *     ----
 *
 * `expected` keeps a "\n" after every line, like Go's reader. `normalizeOutput` applies the
 * runner's rule that non-empty actual output gets a trailing newline before comparison.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** One `key`, `key=val` or `key=(v1, v2)` directive argument. */
export interface CmdArg {
  key: string;
  /** Empty for a bare `key`; one element for `key=val` (or `key=`); the list for `key=(…)`. */
  vals: string[];
}

/** One parsed test case. */
export interface TestData {
  /** "file:line" of the directive's first line. */
  pos: string;
  cmd: string;
  cmdArgs: CmdArg[];
  /** Lines between the directive and "----", trimmed as a whole. */
  input: string;
  /** Expected output: each line followed by "\n" ("" for no output). */
  expected: string;
  /** False when the case has no "----" separator at all. */
  hasSeparator: boolean;
}

/**
 * Parses one directive line (datadriven v1.0.x `ParseLine`): a command, then arguments of the
 * forms `key`, `key=`, `key=value` and `key=(v1, v2, …)`, where a list value may itself contain
 * balanced parentheses. Returns undefined for a blank line; throws on malformed input.
 */
export function parseDirective(line: string, pos = ''): { cmd: string; cmdArgs: CmdArg[] } | undefined {
  const original = line.trim();
  if (original === '') return undefined;
  let rest = original;
  const fail = (): never => {
    const column = original.length - rest.length + 1;
    throw new Error(`${pos}: cannot parse directive at column ${column}: ${original}`);
  };
  // Removes and returns the prefix of `rest` up to (not including) any of `chars`.
  const until = (chars: string): string => {
    let idx = 0;
    while (idx < rest.length && !chars.includes(rest[idx]!)) idx++;
    const prefix = rest.slice(0, idx);
    rest = rest.slice(idx);
    return prefix;
  };

  const cmd = until(' ');
  rest = rest.trim();
  const cmdArgs: CmdArg[] = [];
  while (rest !== '') {
    const key = until(' =');
    if (key === '') fail();
    const arg: CmdArg = { key, vals: [] };
    if (rest.startsWith('=')) {
      rest = rest.slice(1);
      if (rest === '' || rest.startsWith(' ')) {
        arg.vals.push(''); // `key=` is an empty value
      } else if (!rest.startsWith('(')) {
        arg.vals.push(until(' '));
      } else {
        rest = rest.slice(1);
        // Each value ends at a top-level ',' or ')'; nested parentheses must balance.
        for (let done = false; !done; ) {
          let i = 0;
          let depth = 0;
          while (i < rest.length && (depth > 0 || (rest[i] !== ')' && rest[i] !== ','))) {
            if (rest[i] === '(') depth++;
            else if (rest[i] === ')') depth--;
            i++;
          }
          if (i === rest.length) fail(); // no closing parenthesis
          done = rest[i] === ')';
          arg.vals.push(rest.slice(0, i));
          rest = rest.slice(i + 1).trim();
        }
      }
    }
    cmdArgs.push(arg);
    rest = rest.trim();
  }
  return { cmd, cmdArgs };
}

/** Parses the whole text of a datadriven file into its test cases. */
export function parseDataDriven(text: string, sourceName = '<input>'): TestData[] {
  // Like bufio.ScanLines: split on "\n" and drop one trailing "\r" per line.
  const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  // A trailing "\n" does not start another (empty) line.
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  let next = 0; // index of the next unread line
  const scan = (): string | undefined => (next < lines.length ? lines[next++] : undefined);

  const cases: TestData[] = [];
  for (let raw = scan(); raw !== undefined; raw = scan()) {
    let line = raw.trim();
    if (line.startsWith('#')) continue;
    const pos = `${sourceName}:${next}`; // 1-based line of the directive's first line
    // A trailing backslash continues the directive on the next line.
    while (line.endsWith('\\') && next < lines.length) {
      line = `${line.slice(0, -1)} ${scan()!.trim()}`;
    }
    const directive = parseDirective(line, pos);
    if (directive === undefined) continue;
    if (directive.cmd === 'subtest') {
      // Subtest markers carry neither input nor expected output.
      cases.push({ pos, ...directive, input: '', expected: '', hasSeparator: false });
      continue;
    }

    const inputLines: string[] = [];
    let hasSeparator = false;
    for (let inputLine = scan(); inputLine !== undefined; inputLine = scan()) {
      if (inputLine === '----') {
        hasSeparator = true;
        break;
      }
      inputLines.push(inputLine);
    }
    const input = inputLines.map((l) => `${l}\n`).join('').trim();

    let expected = '';
    if (hasSeparator) {
      let first = scan();
      if (first === '----') {
        // Double-separator form: runs until two consecutive "----" lines.
        for (let out = scan(); out !== undefined; out = scan()) {
          if (out === '----') {
            const second = scan();
            if (second === '----') break;
            if (second !== undefined) {
              expected += `${out}\n${second}\n`;
              continue;
            }
          }
          expected += `${out}\n`;
        }
      } else {
        // Single-separator form: runs until the first blank line.
        while (first !== undefined && first.trim() !== '') {
          expected += `${first}\n`;
          first = scan();
        }
      }
    }
    cases.push({ pos, cmd: directive.cmd, cmdArgs: directive.cmdArgs, input, expected, hasSeparator });
  }
  return cases;
}

/** The runner's normalisation: non-empty output always ends with "\n". */
export function normalizeOutput(actual: string): string {
  return actual !== '' && !actual.endsWith('\n') ? `${actual}\n` : actual;
}

/** The argument named `key`, if present. */
export function findArg(d: TestData, key: string): CmdArg | undefined {
  return d.cmdArgs.find((arg) => arg.key === key);
}

/** Whether the argument named `key` is present. */
export function hasArg(d: TestData, key: string): boolean {
  return findArg(d, key) !== undefined;
}

/** The i-th value of argument `key` (throws if missing), like `CmdArg.Scan`/`ScanArgs`. */
export function argString(d: TestData, key: string, i = 0): string {
  const arg = findArg(d, key);
  if (arg === undefined) throw new Error(`${d.pos}: missing argument: ${key}`);
  const value = arg.vals[i];
  if (value === undefined) throw new Error(`${d.pos}: ${key}: missing value #${i}`);
  return value;
}

/** The i-th value of argument `key` as an unsigned integer. */
export function argUint(d: TestData, key: string, i = 0): number {
  const raw = argString(d, key, i);
  if (!/^[0-9]+$/.test(raw) || !Number.isSafeInteger(Number(raw))) {
    throw new Error(`${d.pos}: ${key}: not an unsigned integer: ${raw}`);
  }
  return Number(raw);
}

/** The i-th value of argument `key` as a Go-style bool (true/false/1/0/t/f). */
export function argBool(d: TestData, key: string, i = 0): boolean {
  const raw = argString(d, key, i);
  if (['true', 'TRUE', 'True', 't', 'T', '1'].includes(raw)) return true;
  if (['false', 'FALSE', 'False', 'f', 'F', '0'].includes(raw)) return false;
  throw new Error(`${d.pos}: ${key}: not a bool: ${raw}`);
}

/** Result of running one case. */
export interface CaseResult {
  data: TestData;
  actual: string;
  pass: boolean;
}

/**
 * Runs every case in `text` through `fn` (which returns the actual output) and compares it,
 * after normalizeOutput, with the expected output. Exceptions from `fn` propagate.
 */
export function runDataDriven(
  text: string,
  sourceName: string,
  fn: (d: TestData) => string,
): CaseResult[] {
  return parseDataDriven(text, sourceName).map((data) => {
    const actual = normalizeOutput(fn(data));
    return { data, actual, pass: actual === data.expected };
  });
}

/** The checkout's copy of etcd raft v3.6.0's datadriven data: `shared/etcd-raft-v3.6.0` beside the repository. */
export const ETCD_RAFT_DATA_ENV = 'ETCD_RAFT_DATA';

/**
 * The folder of etcd raft v3.6.0's datadriven data (`../shared/etcd-raft-v3.6.0` from the
 * repository root, or `$ETCD_RAFT_DATA`). It is part of the checkout, so a missing folder is an
 * error that fails the suite loudly, never a reason to skip.
 */
export function etcdRaftDataDir(): string {
  const override = process.env[ETCD_RAFT_DATA_ENV];
  if (override !== undefined && override !== '') {
    if (!existsSync(override)) throw new Error(`${ETCD_RAFT_DATA_ENV}=${override} does not exist`);
    return override;
  }
  // Walk up from this file (lib/raft, or dist/lib/raft when built) to the repository root.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) break;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('etcd raft data: no package.json above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
  const data = join(dir, '..', 'shared', 'etcd-raft-v3.6.0');
  if (!existsSync(join(data, 'testdata'))) {
    throw new Error(
      `etcd raft v3.6.0's datadriven data is missing: expected ${data} (the checkout's sibling shared/ folder), ` +
        `or set ${ETCD_RAFT_DATA_ENV} to a copy. These cases are part of npm test and are never skipped.`,
    );
  }
  return data;
}

/** Where etcd raft's testdata for package `pkg` (quorum, confchange, or '' for the interaction transcripts) lives. */
export function etcdTestdataDir(pkg: string): string {
  const dir = pkg === '' ? join(etcdRaftDataDir(), 'testdata') : join(etcdRaftDataDir(), pkg, 'testdata');
  if (!existsSync(dir)) throw new Error(`etcd raft testdata for ${pkg || 'interactions'} is missing: ${dir}`);
  return dir;
}
