import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import {
  type TestData,
  argBool,
  argString,
  argUint,
  hasArg,
  normalizeOutput,
  parseDataDriven,
  parseDirective,
  runDataDriven,
  etcdTestdataDir,
} from './datadriven.js';
import {
  type AckedIndexer,
  type JointConfig,
  MAX_INDEX,
  MajorityConfig,
  MapAckIndexer,
  VoteResult,
  committedIndex,
  indexToString,
  jointCommittedIndex,
  jointConfigDescribe,
  jointConfigIds,
  jointConfigToString,
  jointVoteResult,
  voteResult,
  voteResultToString,
} from './quorum.js';


/** The "dumb" committed-index computation that quick_test.go compares against. */
function alternativeMajorityCommittedIndex(c: MajorityConfig, l: AckedIndexer): number {
  if (c.size === 0) return MAX_INDEX;
  const idToIdx = new Map<number, number>();
  for (const id of c) {
    const idx = l.ackedIndex(id);
    if (idx !== undefined) idToIdx.set(id, idx);
  }
  // For each acked index, how many voters acked it or more.
  const idxToVotes = new Map<number, number>();
  for (const idx of idToIdx.values()) idxToVotes.set(idx, 0);
  for (const idx of idToIdx.values()) {
    for (const [idy, n] of idxToVotes) {
      if (idy <= idx) idxToVotes.set(idy, n + 1);
    }
  }
  const quorum = Math.floor(c.size / 2) + 1;
  let maxQuorumIdx = 0;
  for (const [idx, n] of idxToVotes) {
    if (n >= quorum && idx > maxQuorumIdx) maxQuorumIdx = idx;
  }
  return maxQuorumIdx;
}

/** Go's `%v` of a []Index. */
function formatIndexes(idxs: number[]): string {
  return `[${idxs.map(indexToString).join(' ')}]`;
}

/** Port of quorum/datadriven_test.go's per-case function. */
function runQuorumCase(d: TestData): string {
  let joint = false;
  const ids: number[] = [];
  const idsj: number[] = [];
  // Placeholders "_" are 0 (no information); tests never use a real 0.
  const idxs: number[] = [];
  // 1 = voted no, 2 = voted yes, 0 = no vote.
  const votes: number[] = [];

  for (const arg of d.cmdArgs) {
    for (const val of arg.vals) {
      switch (arg.key) {
        case 'cfg':
          ids.push(Number(val));
          break;
        case 'cfgj':
          joint = true;
          if (val === 'zero') {
            if (arg.vals.length !== 1) throw new Error("cannot mix 'zero' into configuration");
          } else {
            idsj.push(Number(val));
          }
          break;
        case 'idx': {
          const n = val === '_' ? 0 : Number(val);
          if (val !== '_' && n === 0) throw new Error('cannot use 0 as idx');
          idxs.push(n);
          break;
        }
        case 'votes':
          if (val === 'y') votes.push(2);
          else if (val === 'n') votes.push(1);
          else if (val === '_') votes.push(0);
          else throw new Error(`unknown vote: ${val}`);
          break;
        default:
          throw new Error(`unknown arg ${arg.key}`);
      }
    }
  }

  const c = new MajorityConfig(ids);
  const cj = new MajorityConfig(idsj);

  // Maps values to ids in order of first appearance across (ids, idsj); zeros are dropped.
  const makeLookuper = (values: number[]): MapAckIndexer => {
    const l = new MapAckIndexer();
    let p = 0;
    for (const id of [...ids, ...idsj]) {
      if (l.indexes.has(id)) continue;
      if (p < values.length) l.indexes.set(id, values[p++]!);
    }
    for (const [id, v] of l.indexes) if (v === 0) l.indexes.delete(id);
    return l;
  };

  {
    const input = d.cmd === 'vote' ? votes : idxs;
    const voters = jointConfigIds([c, cj]);
    if (voters.size !== input.length) {
      return `error: mismatched input (explicit or _) for voters map[${voters
        .slice()
        .map((id) => `${id}:{}`)
        .join(' ')}]: ${formatIndexes(input)}`;
    }
  }

  let out = '';
  switch (d.cmd) {
    case 'committed': {
      const l = makeLookuper(idxs);
      if (!joint) {
        const idx = c.committedIndex(l);
        out += c.describe(l);
        const alt = alternativeMajorityCommittedIndex(c, l);
        if (alt !== idx) out += `${indexToString(alt)} <-- via alternative computation\n`;
        const zeroJoint = jointCommittedIndex([c, new MajorityConfig()], l);
        if (zeroJoint !== idx) out += `${indexToString(zeroJoint)} <-- via zero-joint quorum\n`;
        const selfJoint = jointCommittedIndex([c, c], l);
        if (selfJoint !== idx) out += `${indexToString(selfJoint)} <-- via self-joint quorum\n`;
        const overlay = (id: number, value: number): MapAckIndexer => {
          const ll = new MapAckIndexer();
          for (const iid of c) {
            if (iid === id) {
              ll.indexes.set(iid, value);
            } else {
              const v = l.ackedIndex(iid);
              if (v !== undefined) ll.indexes.set(iid, v);
            }
          }
          return ll;
        };
        for (const id of c) {
          const iidx = l.ackedIndex(id) ?? 0;
          if (idx > iidx && iidx > 0) {
            // Lowering an index already below the committed one must not change the result.
            const lowered = c.committedIndex(overlay(id, iidx - 1));
            if (lowered !== idx) out += `${indexToString(lowered)} <-- overlaying ${id}->${iidx}`;
            const zeroed = c.committedIndex(overlay(id, 0));
            if (zeroed !== idx) out += `${indexToString(zeroed)} <-- overlaying ${id}->0`;
          }
        }
        out += `${indexToString(idx)}\n`;
      } else {
        const cc: JointConfig = [c, cj];
        out += jointConfigDescribe(cc, l);
        const idx = jointCommittedIndex(cc, l);
        const swapped = jointCommittedIndex([cj, c], l);
        if (swapped !== idx) out += `${indexToString(swapped)} <-- via symmetry\n`;
        out += `${indexToString(idx)}\n`;
      }
      break;
    }
    case 'vote': {
      const ll = makeLookuper(votes);
      const l = new Map<number, boolean>();
      for (const [id, v] of ll.indexes) l.set(id, v !== 1);
      if (!joint) {
        out += `${voteResultToString(c.voteResult(l))}\n`;
      } else {
        const r = jointVoteResult([c, cj], l);
        const swapped = jointVoteResult([cj, c], l);
        if (swapped !== r) out += `${voteResultToString(swapped)} <-- via symmetry\n`;
        out += `${voteResultToString(r)}\n`;
      }
      break;
    }
    default:
      throw new Error(`unknown command: ${d.cmd}`);
  }
  return out;
}

const quorumTestdata = etcdTestdataDir('quorum');

describe('quorum datadriven (etcd quorum/testdata)', () => {
  const dir = quorumTestdata;
  const files = readdirSync(dir).filter((f) => f.endsWith('.txt')).sort();
  // Counted by the per-file tests (which run first, in order), checked by the last one.
  let casesRun = 0;
  let casesPassed = 0;
  for (const file of files) {
    it(file, () => {
      const text = readFileSync(join(dir, file), 'utf8');
      const results = runDataDriven(text, file, runQuorumCase);
      // Every "----" separator in these files opens exactly one case.
      expect(results.length).toBe(text.split('\n').filter((line) => line === '----').length);
      casesRun += results.length;
      casesPassed += results.filter((result) => result.actual === result.data.expected).length;
      for (const result of results) {
        expect(result.data.expected, result.data.pos).not.toBe('');
        expect(result.actual, `${result.data.pos}: ${result.data.cmd}`).toBe(result.data.expected);
      }
    });
  }
  // etcd raft v3.6.0 ships 4 files with 127 cases here (shared/etcd-raft-v3.6.0/README.md): all of them run.
  it('ran all 127 cases of the 4 files, all passing', () => {
    expect(files.length).toBe(4);
    expect(casesRun).toBe(127);
    expect(casesPassed).toBe(127);
  });
});

/** A few cases from etcd's quorum testdata, inlined so the harness runs even without the files. */
const INLINE_QUORUM_CASES = `
committed
----
<empty majority quorum>∞

committed cfg=(1, 2) idx=(12,_)
----
      idx
x>     12    (id=1)
?       0    (id=2)
0

committed cfg=(1,2) idx=(12,5)
----
      idx
x>     12    (id=1)
>       5    (id=2)
5

committed cfg=(1) cfgj=(2) idx=(13, 100)
----
      idx
>      13    (id=1)
x>    100    (id=2)
13

vote cfg=(4,8) votes=(n,_)
----
VoteLost

vote cfg=(1,2,3) cfgj=(1) votes=(y,_,_)
----
VotePending

vote cfg=(1,2)
----
error: mismatched input (explicit or _) for voters map[1:{} 2:{}]: []
`;

describe('quorum datadriven (inline cases)', () => {
  it('passes', () => {
    const results = runDataDriven(INLINE_QUORUM_CASES, 'inline', runQuorumCase);
    expect(results).toHaveLength(7);
    for (const result of results) expect(result.actual, result.data.pos).toBe(result.data.expected);
  });
});

describe('MajorityConfig', () => {
  it('prints sorted ids', () => {
    expect(new MajorityConfig([3, 1, 2]).toString()).toBe('(1 2 3)');
    expect(new MajorityConfig().toString()).toBe('()');
    expect(new MajorityConfig([10, 9]).slice()).toEqual([9, 10]);
  });

  it('commits what a majority acked, counting missing voters as 0', () => {
    const c = new MajorityConfig([1, 2, 3]);
    expect(c.committedIndex(new MapAckIndexer([[1, 5], [2, 7], [3, 6]]))).toBe(6);
    expect(c.committedIndex(new MapAckIndexer([[1, 5]]))).toBe(0);
    expect(c.committedIndex(new MapAckIndexer([[1, 5], [2, 9]]))).toBe(5);
    expect(new MajorityConfig().committedIndex(new MapAckIndexer())).toBe(MAX_INDEX);
    expect(indexToString(MAX_INDEX)).toBe('∞');
  });

  it('counts votes', () => {
    const c = new MajorityConfig([1, 2, 3]);
    expect(c.voteResult(new Map([[1, true]]))).toBe(VoteResult.VotePending);
    expect(c.voteResult(new Map([[1, true], [2, true]]))).toBe(VoteResult.VoteWon);
    expect(c.voteResult(new Map([[1, false], [2, false]]))).toBe(VoteResult.VoteLost);
    expect(new MajorityConfig().voteResult(new Map())).toBe(VoteResult.VoteWon);
    expect(VoteResult.VotePending).toBe(1);
    expect(VoteResult.VoteLost).toBe(2);
    expect(VoteResult.VoteWon).toBe(3);
    expect(voteResultToString(7 as VoteResult)).toBe('VoteResult(7)');
  });

  it('describes an empty config', () => {
    expect(new MajorityConfig().describe(new MapAckIndexer())).toBe('<empty majority quorum>');
  });
});

describe('JointConfig', () => {
  it('prints both halves only when joint', () => {
    expect(jointConfigToString([new MajorityConfig([1, 2]), new MajorityConfig()])).toBe('(1 2)');
    expect(jointConfigToString([new MajorityConfig([1, 2]), new MajorityConfig([3])])).toBe('(1 2)&&(3)');
  });

  it('needs both halves', () => {
    const c: JointConfig = [new MajorityConfig([1, 2, 3]), new MajorityConfig([3, 4, 5])];
    const l = new MapAckIndexer([[1, 10], [2, 10], [3, 5], [4, 4], [5, 3]]);
    expect(committedIndex(c, l)).toBe(4);
    expect(voteResult(c, new Map([[1, true], [2, true]]))).toBe(VoteResult.VotePending);
    expect(voteResult(c, new Map([[1, true], [2, true], [4, false], [5, false]]))).toBe(VoteResult.VoteLost);
    expect(voteResult(c, new Map([[1, true], [3, true], [4, true]]))).toBe(VoteResult.VoteWon);
  });
});

describe('quorum quick (quick_test.go)', () => {
  /** Like smallRandIdxMap: up to 9 distinct ids from [0, 2n), indexes in [0, n). */
  const idxMap = fc
    .integer({ min: 0, max: 9 })
    .chain((n) =>
      fc.tuple(
        fc.uniqueArray(fc.integer({ min: 0, max: Math.max(0, 2 * n - 1) }), { minLength: n, maxLength: n }),
        fc.array(fc.integer({ min: 0, max: Math.max(0, n - 1) }), { minLength: n, maxLength: n }),
      ),
    )
    .map(([ids, idxs]) => new Map(ids.map((id, i) => [id, idxs[i]!] as [number, number])));

  it('committedIndex agrees with the alternative computation', () => {
    fc.assert(
      fc.property(idxMap, idxMap, (members, acked) => {
        const c = new MajorityConfig(members.keys());
        const l = new MapAckIndexer(acked);
        expect(c.committedIndex(l)).toBe(alternativeMajorityCommittedIndex(c, l));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('datadriven parser', () => {
  it('parses directives like datadriven.ParseLine', () => {
    expect(parseDirective('   ')).toBeUndefined();
    expect(parseDirective('committed cfg=(1,2, 3) cfgj=zero idx=(13, 100) flag empty= x=a,b')).toEqual({
      cmd: 'committed',
      cmdArgs: [
        { key: 'cfg', vals: ['1', '2', '3'] },
        { key: 'cfgj', vals: ['zero'] },
        { key: 'idx', vals: ['13', '100'] },
        { key: 'flag', vals: [] },
        { key: 'empty', vals: [''] },
        { key: 'x', vals: ['a,b'] },
      ],
    });
    expect(parseDirective('propose 1 "foo"')).toEqual({
      cmd: 'propose',
      cmdArgs: [
        { key: '1', vals: [] },
        { key: '"foo"', vals: [] },
      ],
    });
    expect(parseDirective('expr e=(a + (b, c), d)')?.cmdArgs).toEqual([{ key: 'e', vals: ['a + (b, c)', 'd'] }]);
    expect(() => parseDirective('cmd k=(a, b', 'f:1')).toThrow('f:1: cannot parse directive at column');
  });

  it('reads single and double separator blocks, comments, continuations and subtests', () => {
    const text = [
      '# a comment',
      '',
      'first a=1 \\',
      '  b=true',
      'input line 1',
      'input line 2',
      '----',
      'out 1',
      'out 2',
      '',
      'second',
      '----',
      '----',
      'blank below',
      '',
      '----',
      'not the end',
      '----',
      '----',
      '',
      'subtest foo',
      'no-output',
      '----',
      '',
      'last',
      'no separator at all',
    ].join('\n');
    const cases = parseDataDriven(text, 't.txt');
    expect(cases.map((c) => c.cmd)).toEqual(['first', 'second', 'subtest', 'no-output', 'last']);
    const [first, second, subtest, noOutput, last] = cases as [TestData, TestData, TestData, TestData, TestData];
    expect(first.pos).toBe('t.txt:3');
    expect(first.input).toBe('input line 1\ninput line 2');
    expect(first.expected).toBe('out 1\nout 2\n');
    expect(argUint(first, 'a')).toBe(1);
    expect(argBool(first, 'b')).toBe(true);
    expect(argString(first, 'a')).toBe('1');
    expect(hasArg(first, 'c')).toBe(false);
    expect(() => argString(first, 'c')).toThrow('missing argument: c');
    expect(second.expected).toBe('blank below\n\n----\nnot the end\n');
    expect(subtest.cmdArgs).toEqual([{ key: 'foo', vals: [] }]);
    expect(noOutput.expected).toBe('');
    expect(noOutput.hasSeparator).toBe(true);
    expect(last.hasSeparator).toBe(false);
    expect(last.input).toBe('no separator at all');
  });

  it('normalizes actual output and compares', () => {
    expect(normalizeOutput('')).toBe('');
    expect(normalizeOutput('x')).toBe('x\n');
    expect(normalizeOutput('x\n')).toBe('x\n');
    const results = runDataDriven('echo\nhi\n----\nhi\n\necho\nbye\n----\nhello\n', 'e', (d) => d.input);
    expect(results.map((r) => r.pass)).toEqual([true, false]);
    expect(results[1]!.actual).toBe('bye\n');
  });
});
