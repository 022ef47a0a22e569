/**
 * etcd raft v3.6.0's interaction transcripts (../shared/etcd-raft-v3.6.0/testdata, 28 files,
 * 558 cases), each run through our InteractionEnv and compared output for output, as etcd's
 * interaction_test.go does. A missing data folder or file fails the suite (etcdTestdataDir
 * throws; the file list and case total are asserted), it never skips.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { etcdTestdataDir, normalizeOutput, parseDataDriven, type TestData } from '../../lib/raft/datadriven.js';
import { handleCommand } from '../../lib/raft/interaction-env-handlers.js';
import { InteractionEnv } from '../../lib/raft/interaction-env.js';

/** Every transcript of etcd raft v3.6.0 (the README's total over them: 558 cases). */
const TRANSCRIPTS = [
  'async_storage_writes.txt',
  'async_storage_writes_append_aba_race.txt',
  'campaign.txt',
  'campaign_learner_must_vote.txt',
  'checkquorum.txt',
  'confchange_disable_validation.txt',
  'confchange_v1_add_single.txt',
  'confchange_v1_remove_leader.txt',
  'confchange_v1_remove_leader_stepdown.txt',
  'confchange_v2_add_double_auto.txt',
  'confchange_v2_add_double_implicit.txt',
  'confchange_v2_add_single_auto.txt',
  'confchange_v2_add_single_explicit.txt',
  'confchange_v2_replace_leader.txt',
  'confchange_v2_replace_leader_stepdown.txt',
  'forget_leader.txt',
  'forget_leader_prevote_checkquorum.txt',
  'forget_leader_read_only_lease_based.txt',
  'heartbeat_resp_recovers_from_probing.txt',
  'lagging_commit.txt',
  'prevote.txt',
  'prevote_checkquorum.txt',
  'probe_and_replicate.txt',
  'replicate_pause.txt',
  'single_node.txt',
  'slow_follower_after_compaction.txt',
  'snapshot_succeed_via_app_resp.txt',
  'snapshot_succeed_via_app_resp_behind.txt',
];
const TOTAL_CASES = 558;

const dir = etcdTestdataDir('');

/** Runs one transcript in a fresh environment, returning each case with its actual output. */
function runTranscript(file: string): { data: TestData; actual: string }[] {
  const env = new InteractionEnv();
  return parseDataDriven(readFileSync(join(dir, file), 'utf8'), file).map((data) => ({
    data,
    actual: normalizeOutput(handleCommand(env, data)),
  }));
}

describe('etcd raft v3.6.0 interaction transcripts', () => {
  it('the data folder holds exactly the 28 transcripts', () => {
    const files = readdirSync(dir).filter((name) => name.endsWith('.txt')).sort();
    expect(files).toEqual([...TRANSCRIPTS].sort());
  });

  // Counted by the per-file tests (which run first, in order), checked by the last one.
  let casesRun = 0;
  let casesPassed = 0;
  for (const file of TRANSCRIPTS) {
    const count = parseDataDriven(readFileSync(join(dir, file), 'utf8'), file).length;
    it(`${file} (${count} cases)`, () => {
      const results = runTranscript(file);
      casesRun += results.length;
      casesPassed += results.filter(({ data, actual }) => actual === data.expected).length;
      for (const { data, actual } of results) {
        // One assertion per case, labelled with its position, so a failure shows the diff.
        expect(actual, `${data.pos}: ${data.cmd}`).toBe(data.expected);
      }
    });
  }

  it(`ran all ${TOTAL_CASES} cases of the 28 transcripts, all passing`, () => {
    const total = TRANSCRIPTS.reduce((sum, file) => sum + parseDataDriven(readFileSync(join(dir, file), 'utf8'), file).length, 0);
    expect(total).toBe(TOTAL_CASES);
    expect(casesRun).toBe(TOTAL_CASES);
    expect(casesPassed).toBe(TOTAL_CASES);
  });

  it('a transcript whose expected output is altered fails the comparison (the check can fail)', () => {
    const text = readFileSync(join(dir, 'single_node.txt'), 'utf8');
    const cases = parseDataDriven(text, 'single_node.txt');
    const env = new InteractionEnv();
    const outcomes = cases.map((data) => normalizeOutput(handleCommand(env, data)) === data.expected);
    expect(outcomes.every(Boolean)).toBe(true);
    // The same run against a copy where one logged term is changed: exactly that case differs.
    const tampered = parseDataDriven(text.replace('became leader at term 1', 'became leader at term 7'), 'single_node.txt');
    const env2 = new InteractionEnv();
    const tamperedOutcomes = tampered.map((data) => normalizeOutput(handleCommand(env2, data)) === data.expected);
    expect(tamperedOutcomes.filter((pass) => !pass)).toHaveLength(1);
  });
});
