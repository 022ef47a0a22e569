/**
 * `--help` of every command, wrapped once at 80 columns (lib/cli/help-text.ts): no line is
 * longer, and no line was broken early, i.e. wrapped a second time at a narrower width (the
 * next line's first word would have fitted). `replicalog tour` fits too. And the tour and the
 * README's command list name every command the program has.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HELP_WIDTH, helpParagraphs, wrapParagraph } from '../../lib/cli/help-text.js';
import { main } from '../../lib/cli/main.js';
import type { CliIo } from '../../lib/cli/io.js';
import { REPO_ROOT } from './harness.js';

async function help(args: string[]): Promise<string> {
  let stdout = '';
  const io: CliIo = { stdout: (text) => (stdout += text), stderr: () => {}, progressStream: process.stderr, isTTY: false };
  expect(await main([...args, '--help'], io)).toBe(0);
  return stdout;
}

const width = (line: string): number => [...line].length; // code points: "…" is one column
const indent = (line: string): number => line.length - line.trimStart().length;
const tooLong = (text: string): string[] => text.split('\n').filter((line) => width(line) > HELP_WIDTH);

/** Lines that were broken although the next line's first word fitted on them. */
function brokenEarly(text: string): string[] {
  const lines = text.split('\n');
  const found: string[] = [];
  for (let i = 0; i + 1 < lines.length; i++) {
    const line = lines[i]!;
    const next = lines[i + 1]!;
    if (line.trim() === '' || next.trim() === '' || /^\w+:$/.test(line)) continue;
    // `next` continues `line`: prose at the margin, or a description column's continuation.
    const continues = (indent(line) === 0 && indent(next) === 0) || indent(next) > 2;
    const firstWord = next.trim().split(/\s+/)[0]!;
    if (continues && width(line) + 1 + width(firstWord) <= HELP_WIDTH) found.push(`${line} ⏎ ${firstWord}`);
  }
  return found;
}

const COMMANDS = ['migrate', 'inspect', 'verify', 'discard-snapshot', 'tour', 'demo', 'node', 'certs'];

describe('help text', () => {
  it.each([[[] as string[]], ...COMMANDS.map((command) => [[command]])])('replicalog %s --help: every line within 80 columns, none broken early', async (args) => {
    const text = await help(args);
    expect(text).toMatch(/^Usage: replicalog/);
    expect(tooLong(text)).toEqual([]);
    expect(brokenEarly(text)).toEqual([]);
  });

  it('the check catches both faults (a long line, a line wrapped at two widths)', () => {
    expect(tooLong(`short\n${'x'.repeat(81)}\n${'…'.repeat(80)}`)).toEqual(['x'.repeat(81)]);
    expect(brokenEarly('a paragraph wrapped at forty columns, which is\nmuch narrower than the help width')).toHaveLength(1);
    expect(brokenEarly(helpParagraphs('a paragraph wrapped at forty columns, which is much narrower than the help width, wrapped once here').trim())).toEqual([]);
  });

  it.each([
    { paragraph: '', lines: [] },
    { paragraph: 'one two', lines: ['one two'] },
    { paragraph: `${'a'.repeat(78)} bb`, lines: ['a'.repeat(78), 'bb'] },
    { paragraph: `${'a'.repeat(77)} bb`, lines: [`${'a'.repeat(77)} bb`] },
    { paragraph: `x ${'y'.repeat(90)} z`, lines: ['x', 'y'.repeat(90), 'z'] },
    { paragraph: 'spaces   and\nnewlines\n  collapse', lines: ['spaces and newlines collapse'] },
  ])('wrapParagraph($paragraph) at 80', ({ paragraph, lines }) => {
    expect(wrapParagraph(paragraph)).toEqual(lines);
  });

  it('replicalog tour: within 80 columns, a line for every command', async () => {
    let stdout = '';
    const io: CliIo = { stdout: (text) => (stdout += text), stderr: () => {}, progressStream: process.stderr, isTTY: false };
    expect(await main(['tour'], io)).toBe(0);
    expect(tooLong(stdout)).toEqual([]);
    for (const command of COMMANDS) expect(stdout, command).toMatch(new RegExp(`^ {2}replicalog ${command}\\b`, 'm'));
  });

  it("the README's command list has a line for every command", async () => {
    const commands = [...(await help([])).matchAll(/^ {2}([a-z][\w-]*) /gm)].map((match) => match[1]!).filter((name) => name !== 'help');
    expect(commands.sort()).toEqual([...COMMANDS].sort());
    const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Command line'), readme.indexOf('\n## ', readme.indexOf('## Command line') + 1));
    for (const command of commands) expect(section, command).toMatch(new RegExp(`^replicalog ${command}\\b`, 'm'));
  });
});
