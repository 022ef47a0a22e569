/**
 * The replica consistency check (issue 14): replicas compare state digests through the log; equal
 * replicas compare clean, and a replica whose state was changed behind raft's back raises an
 * alarm on the others (log line + /status).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../helpers/wait-for.js';
import { afterAll, expect, it } from 'vitest';
import { bootstrapJoiningStore, bootstrapSeedStore } from '../../lib/node/bootstrap.js';
import { decodeConsistencyRecord, encodeConsistencyRecord } from '../../lib/node/consistency.js';
import { ReplicaNode } from '../../lib/node/node.js';
import { freePorts } from '../../lib/node/ports.js';
import { KvStateMachine } from '../../lib/node/state-machine.js';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import type { PeerAddress } from '../../lib/transport/index.js';

const root = mkdtempSync(join(tmpdir(), 'replicalog-consistency-'));
const nodes = new Map<number, ReplicaNode>();
const lines: string[] = [];

afterAll(async () => {
  for (const node of nodes.values()) await node.close();
  rmSync(root, { recursive: true, force: true });
});


it('records round-trip, and anything else is not a record', () => {
  const report = { consistency: 'report', at: 12, node: 3, digest: 'abc' } as const;
  expect(decodeConsistencyRecord(encodeConsistencyRecord(report))).toEqual(report);
  for (const data of ['{"op":"put","key":"a","value":"b","requestId":"r"}', '{"consistency":"report","at":-1.5,"node":3,"digest":"x"}', 'nope']) {
    expect(decodeConsistencyRecord(new TextEncoder().encode(data))).toBeUndefined();
  }
});

it('equal replicas compare clean; a replica changed behind raft\'s back raises an alarm on the others', async () => {
  const ids = [1, 2, 3];
  const ports = await freePorts(3);
  const peers = new Map<number, PeerAddress>(ids.map((id, i) => [id, { host: '127.0.0.1', port: ports[i]! }]));
  const dirOf = (id: number) => join(root, `node-${id}`);
  const seed = await ReplicaLogStore.open({ dir: dirOf(1) });
  await bootstrapSeedStore(seed, ids, KvStateMachine.from([['seeded', '1']], 0));
  await seed.close();
  for (const id of [2, 3]) {
    const store = await ReplicaLogStore.open({ dir: dirOf(id) });
    await bootstrapJoiningStore(store, ids);
    await store.close();
  }
  for (const id of ids) {
    nodes.set(
      id,
      await ReplicaNode.start({ id, dir: dirOf(id), peers, clusterId: 'consistency', tickMs: 20, snapshotEvery: 1000, consistencyCheckEvery: 5, log: (line) => lines.push(`[${id}] ${line}`) }),
    );
  }
  const leader = await waitFor('a leader', () => [...nodes.values()].find((node) => node.isLeader));
  for (let i = 0; i < 12; i++) await leader.put(`clean-${i}`, String(i));
  await waitFor('clean comparisons', () => [...nodes.values()].every((node) => node.status().consistency.compared >= 2));
  for (const node of nodes.values()) expect(node.status().consistency.alarms).toEqual([]);

  // Damage one follower's state outside the log.
  const damaged = [...nodes.values()].find((node) => !node.isLeader)!;
  damaged.stateMachine.put('clean-0', 'tampered');
  for (let i = 0; i < 12; i++) await leader.put(`after-${i}`, String(i));
  const alarmed = await waitFor('an alarm', () => [...nodes.values()].find((node) => node !== damaged && node.status().consistency.alarms.length > 0));
  expect(alarmed.status().consistency.alarms[0]!.node).toBe(damaged.id);
  expect(lines.some((line) => line.includes(`ALARM: replicas disagree`) && line.includes(`node ${damaged.id}'s is`))).toBe(true);
}, 60_000);
