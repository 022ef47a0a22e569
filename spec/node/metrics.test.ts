/**
 * GET /metrics (issue 17): a Prometheus scrape of one in-process node, parsed as the exposition
 * format, holds the named series with the values the node reports.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { bootstrapSeedStore } from '../../lib/node/bootstrap.js';
import { httpCall, waitUntil } from '../../lib/node/local-cluster.js';
import { ReplicaNode } from '../../lib/node/node.js';
import { freePorts } from '../../lib/node/ports.js';
import { KvStateMachine } from '../../lib/node/state-machine.js';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';

let node: ReplicaNode;

beforeAll(async () => {
  const dir = join(makeTempDir('replicalog-metrics-'), 'node');
  const store = await ReplicaLogStore.open({ dir });
  await bootstrapSeedStore(store, [1], new KvStateMachine());
  await store.close();
  const [raftPort] = await freePorts(1);
  node = await ReplicaNode.start({ id: 1, dir, peers: new Map([[1, { host: '127.0.0.1', port: raftPort! }]]), httpPort: 0, tickMs: 20, snapshotEvery: 5, keepEntries: 2, log: () => undefined });
  await waitUntil(5000, async () => (node.isLeader ? true : undefined));
  for (let i = 0; i < 12; i++) await node.put(`key-${i}`, 'value');
  // Snapshots are encoded and saved beside the loop: wait for the two that 12 puts make due.
  await waitUntil(5000, async () => (node.counters.snapshots >= 2 && node.counters.compactions >= 2 ? true : undefined));
}, 30_000);

afterAll(async () => {
  await node?.close();
  removeTempDirs();
});

/** name{labels} → value, from the Prometheus text exposition format. */
function parseExposition(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    expect(match, `not a sample line: ${line}`).not.toBeNull();
    samples.set(match![1]!, Number(match![2]));
  }
  return samples;
}

it('serves the named series in the exposition format, with the node\'s values', async () => {
  // The group may quiesce between the scrape and status(): its quiesced count is either side's.
  const quiescedBefore = node.status().groups.quiesced;
  const answer = await httpCall(node.httpAddress!.port, 'GET', '/metrics');
  expect(answer.status).toBe(200);
  expect(answer.text).toContain('# TYPE replicalog_raft_term gauge');
  const samples = parseExposition(answer.text);
  const status = node.status();
  expect(samples.get('replicalog_raft_term')).toBe(status.term);
  expect(samples.get('replicalog_raft_is_leader')).toBe(1);
  expect(samples.get('replicalog_applied_index')).toBeGreaterThanOrEqual(13);
  expect(samples.get('replicalog_raft_leader_changes_total')).toBe(1);
  expect(samples.get('replicalog_proposals_total{result="ok"}')).toBe(12);
  expect(samples.get('replicalog_snapshots_total')).toBeGreaterThanOrEqual(2);
  expect(samples.get('replicalog_compactions_total')).toBeGreaterThanOrEqual(1);
  expect(samples.get('replicalog_store_fsyncs_total')).toBeGreaterThan(0);
  expect(samples.get('replicalog_store_entries_written_total')).toBeGreaterThanOrEqual(12);
  // Journal mode (the node's default): snapshots drained the journal into wal/.
  expect(samples.get('replicalog_store_journal_checkpoints_total')).toBeGreaterThanOrEqual(1);
  expect(samples.has('replicalog_store_journal_entries_waiting')).toBe(true);
  expect(samples.get('replicalog_refused_total{kind="message"}')).toBe(0);
  expect(samples.get('replicalog_refused_total{kind="unknown_group"}')).toBe(0);
  // Multi-raft figures (issue 19): node-wide, never one series per group.
  expect(samples.get('replicalog_groups')).toBe(1);
  expect(samples.get('replicalog_groups_leading')).toBe(1);
  expect([quiescedBefore, status.groups.quiesced]).toContain(samples.get('replicalog_groups_quiesced'));
  expect([...samples.keys()].filter((name) => name.includes('partition'))).toEqual([]);
  expect(samples.has('replicalog_refused_total{kind="transport_handshakesRefused"}')).toBe(true);
});
