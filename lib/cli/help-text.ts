/**
 * Help text at one width. Commander wraps the usage, the description and the option columns at
 * its help width; the prose after them (addHelpText) is written here as paragraphs and wrapped
 * by the same rule at the same width, so no line of `--help` is wrapped twice or left long.
 * The width is fixed (not the terminal's) so that help reads the same on a pipe, in a test and
 * in the README.
 */
export const HELP_WIDTH = 80;

/** Greedy word wrap of one paragraph at `width` (a word longer than the width gets a line of its own). */
export function wrapParagraph(paragraph: string, width = HELP_WIDTH): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of paragraph.split(/\s+/).filter((part) => part.length > 0)) {
    if (line.length === 0) line = word;
    else if (line.length + 1 + word.length <= width) line += ` ${word}`;
    else {
      lines.push(line);
      line = word;
    }
  }
  if (line.length > 0) lines.push(line);
  return lines;
}

/** The text for `addHelpText('after', …)`: each paragraph wrapped, a blank line between them. */
export function helpParagraphs(...paragraphs: string[]): string {
  return `\n${paragraphs.map((paragraph) => wrapParagraph(paragraph).join('\n')).join('\n\n')}\n`;
}
