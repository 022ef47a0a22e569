/**
 * LSN directory names (lib/wal/layout.ts): formatLsn and the hand-written parseLsn that open()
 * runs over every name in wal/. A name is an LSN only in its one canonical spelling.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { childPath, entryPath, formatLsn, parseLsn, stagingPath, walPath } from '../lib/wal/layout.js';

/** The definition parseLsn replaced: a regex, parseInt, and a round trip through formatLsn. */
function parseByDefinition(name: string): number | undefined {
  if (!/^[0-9a-z]{13}$/.test(name)) return undefined;
  const value = parseInt(name, 36);
  return Number.isSafeInteger(value) && formatLsn(value) === name ? value : undefined;
}

describe('LSN names', () => {
  const cases: { name: string; expected: number | undefined }[] = [
    { name: '0000000000000', expected: 0 },
    { name: '0000000000001', expected: 1 },
    { name: '000000000000z', expected: 35 },
    { name: '0000000000010', expected: 36 },
    { name: '2gosa7pa2gv', expected: undefined }, // MAX_SAFE_INTEGER, not padded
    { name: '002gosa7pa2gv', expected: Number.MAX_SAFE_INTEGER },
    { name: '002gosa7pa2gw', expected: undefined }, // MAX_SAFE_INTEGER + 1
    { name: 'zzzzzzzzzzzzz', expected: undefined }, // 36^13 - 1, far above 2^53
    { name: '000000000000A', expected: undefined }, // upper case
    { name: '000000000000-', expected: undefined },
    { name: '00000000000001', expected: undefined }, // 14 characters
    { name: '000000000001', expected: undefined }, // 12 characters
    { name: '', expected: undefined },
    { name: 'RAFT', expected: undefined },
    { name: '000000000001 ', expected: undefined },
    { name: '00000000000０1'.slice(0, 13), expected: undefined }, // a full-width digit
  ];
  it.each(cases)('parseLsn($name) is $expected', ({ name, expected }) => {
    expect(parseLsn(name)).toBe(expected);
    expect(parseByDefinition(name)).toBe(expected);
  });

  it('formatLsn and parseLsn are inverse over every safe index', () => {
    fc.assert(fc.property(fc.maxSafeNat(), (index) => parseLsn(formatLsn(index)) === index), { numRuns: 2000 });
  });

  it('parseLsn agrees with its definition on arbitrary 13-character names', () => {
    const character = fc.constantFrom(...'0123456789abcdefghijklmnopqrstuvwxyzA-Z_.'.split(''));
    const name = fc.array(character, { minLength: 11, maxLength: 15 }).map((characters) => characters.join(''));
    fc.assert(fc.property(name, (candidate) => parseLsn(candidate) === parseByDefinition(candidate)), { numRuns: 5000 });
  });
});

describe('childPath (the hot paths\' join without normalisation)', () => {
  // Parents as the store makes them: through join (a user's directory in any spelling) or
  // mkdtemp under one.
  const parents = ['/', 'data', './data/', '/var/lib/../lib/replicalog/', 'a//b'].flatMap((dir) => [walPath(dir), stagingPath(dir), `${join(stagingPath(dir), 'batch-')}Xy12Ab`]);
  it.each(parents)('equals path.join for the parent %s', (parent) => {
    for (const name of [formatLsn(1), `old-${formatLsn(2 ** 40)}`, 'MANIFEST', 'RAFT']) expect(childPath(parent, name)).toBe(join(parent, name));
  });

  it('entryPath and childPath of wal/ name the same directory', () => {
    for (const dir of ['/', 'data', './data/', '/srv/x/../store']) expect(childPath(walPath(dir), formatLsn(77))).toBe(entryPath(dir, 77));
  });
});
