/**
 * Multi-raft (issue 19): three `replicalog node --partitions 100` processes on loopback, each on
 * a storage (one lock, one KV) hosting 100 raft groups over one connection per peer. Every group
 * elects a leader; writes replicate in several partitions; idle groups quiesce (no raft message
 * moves any more, only one heartbeat frame per peer per tick); a proposal wakes its group; the
 * cluster survives a killed follower (which catches up after its restart) and a killed leader
 * (the groups quiesced under it wake and elect new leaders).
 */
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { httpCall, NodeProcess, sleep, waitUntil } from '../../lib/node/local-cluster.js';
import type { ReplicaNodeStatus } from '../../lib/node/node.js';
import { freePorts } from '../../lib/node/ports.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';
import { clusterEntry, ensureBuilt } from './build.js';

const PARTITIONS = 100;
const TICK_MS = 50;
const processes = new Map<number, NodeProcess>();

afterAll(async () => {
  for (const node of processes.values()) {
    node.kill('SIGKILL');
    await node.waitExit(5000);
  }
  removeTempDirs();
});

async function statusOf(id: number): Promise<ReplicaNodeStatus | undefined> {
  return processes.get(id)!.status();
}

/** Resolves with `probe`'s value once defined; fails with `what` (and the nodes' logs) after `timeoutMs`. */
async function eventually<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const value = await waitUntil(timeoutMs, probe);
  if (value === undefined) {
    throw new Error(`timed out waiting for ${what}:\n${[...processes.values()].map((node) => `node ${node.id}:\n${node.logTail(8)}`).join('\n')}`);
  }
  return value;
}

async function put(id: number, partition: number, key: string, value: string): Promise<{ status: number; body: { index?: number; partition?: number; code?: string } }> {
  const answer = await httpCall(processes.get(id)!.httpPort, 'PUT', `/p/${partition}/kv/${encodeURIComponent(key)}`, value);
  return { status: answer.status, body: answer.body as { index?: number; partition?: number; code?: string } };
}

/** A put through `via`, retried (503 while leaders are elected) until acknowledged. */
async function putEventually(via: number, partition: number, key: string, value: string): Promise<number> {
  return eventually(`the put of ${key} in partition ${partition}`, 20_000, async () => {
    const answer = await put(via, partition, key, value).catch(() => undefined);
    return answer?.status === 200 ? answer.body.index : undefined;
  });
}

async function valueOn(id: number, partition: number, key: string): Promise<string | undefined> {
  const answer = await httpCall(processes.get(id)!.httpPort, 'GET', `/p/${partition}/kv/${encodeURIComponent(key)}`).catch(() => undefined);
  return answer?.status === 200 ? answer.text : undefined;
}

it('elects in 100 groups, replicates, quiesces, wakes, and survives a killed follower and a killed leader', async () => {
  await ensureBuilt();
  const root = makeTempDir('replicalog-multiraft-');
  const ids = [1, 2, 3];
  const ports = await freePorts(6);
  const peers = ids.map((id, index) => `${id}=127.0.0.1:${ports[index]}`).join(',');
  for (const [index, id] of ids.entries()) {
    processes.set(
      id,
      new NodeProcess({
        id,
        dir: join(root, `node-${id}`),
        httpPort: ports[3 + index]!,
        peers,
        entry: clusterEntry,
        clusterId: 'multiraft-test',
        tickMs: TICK_MS,
        extraArguments: ['--partitions', String(PARTITIONS), '--bootstrap'],
      }),
    );
  }
  for (const node of processes.values()) node.start();
  for (const node of processes.values()) await node.waitReady(60_000);

  // Every group elects a leader, and every node knows it.
  await eventually('a leader in every group on every node', 60_000, async () => {
    const statuses = await Promise.all(ids.map(statusOf));
    if (statuses.some((status) => status === undefined || status.groups.count !== PARTITIONS || status.groups.withoutLeader !== 0)) return undefined;
    const leading = statuses.reduce((sum, status) => sum + status!.groups.leading, 0);
    return leading === PARTITIONS ? true : undefined;
  });

  // Writes in several partitions replicate to every node; each partition keeps its own keys.
  const written = [1, 7, 42, 100];
  for (const partition of written) await putEventually(1 + (partition % 3), partition, 'colour', `blue-${partition}`);
  for (const partition of written) {
    for (const id of ids) await eventually(`colour in partition ${partition} on node ${id}`, 15_000, async () => ((await valueOn(id, partition, 'colour')) === `blue-${partition}` ? true : undefined));
  }
  expect(await valueOn(1, 2, 'colour')).toBeUndefined();
  // The routes without /p/ are partition 1's.
  expect((await httpCall(processes.get(2)!.httpPort, 'GET', '/kv/colour')).text).toBe('blue-1');

  // An unknown partition is a 404 with a clear error, and creates nothing.
  for (const path of [`/p/${PARTITIONS + 1}/kv/colour`, '/p/0/kv/colour', '/p/abc/kv/colour', '/p/01/kv/colour']) {
    const answer = await httpCall(processes.get(1)!.httpPort, 'PUT', path, 'x');
    expect(answer.status, path).toBe(404);
    expect((answer.body as { code: string }).code, path).toBe('ERR_NO_SUCH_PARTITION');
  }
  expect((await statusOf(1))!.groups.count).toBe(PARTITIONS);

  // Idle: every group quiesces on every node.
  await eventually('every group quiesced on every node', 30_000, async () => {
    const statuses = await Promise.all(ids.map(statusOf));
    return statuses.every((status) => status?.groups.quiesced === PARTITIONS) ? true : undefined;
  });
  // Quiesced, no raft message moves; only the node-level heartbeat frames (one per peer per tick).
  const before = await Promise.all(ids.map(statusOf));
  await sleep(20 * TICK_MS);
  const after = await Promise.all(ids.map(statusOf));
  for (const [index, id] of ids.entries()) {
    const was = before[index]!.transport.groupBatches;
    const now = after[index]!.transport.groupBatches;
    expect(now.messagesSent - was.messagesSent, `raft messages sent by node ${id} while quiesced`).toBe(0);
    const frames = now.framesSent - was.framesSent;
    // 2 peers x 20 ticks, give or take the timer's drift on a loaded machine.
    // At least a few per peer (a loaded machine slips ticks), never one per group.
    expect(frames, `heartbeat frames sent by node ${id}`).toBeGreaterThanOrEqual(2 * 5);
    expect(frames, `heartbeat frames sent by node ${id}`).toBeLessThanOrEqual(2 * 30);
    expect(after[index]!.groups.quiesced).toBe(PARTITIONS);
  }

  // A proposal wakes its group (on a follower too: it forwards to the leader) and is applied.
  const leaderOf5 = ((await httpCall(processes.get(1)!.httpPort, 'GET', '/p/5/status')).body as ReplicaNodeStatus).lead;
  expect(ids).toContain(leaderOf5);
  const follower = ids.find((id) => id !== leaderOf5)!;
  const woken = await put(follower, 5, 'woken', 'yes');
  expect(woken.status).toBe(200);
  expect(woken.body.partition).toBe(5);
  for (const id of ids) await eventually(`the wake-up put on node ${id}`, 10_000, async () => ((await valueOn(id, 5, 'woken')) === 'yes' ? true : undefined));
  // ... and it quiesces again.
  await eventually('partition 5 quiesced again', 15_000, async () => {
    const statuses = await Promise.all(ids.map(statusOf));
    return statuses.every((status) => status?.groups.quiesced === PARTITIONS) ? true : undefined;
  });

  // Kill a follower of every group: writes go on with the two others, and it catches up after a restart.
  const statuses = await Promise.all(ids.map(statusOf));
  const victim = ids.find((_id, index) => statuses[index]!.groups.leading === 0) ?? 3;
  const survivor = ids.find((id) => id !== victim)!;
  processes.get(victim)!.kill('SIGKILL');
  await processes.get(victim)!.waitExit(5000);
  for (const partition of [3, 50, 99]) await putEventually(survivor, partition, 'after-kill', `v${partition}`);
  await eventually(`node ${victim} reported silent`, 10_000, async () => ((await statusOf(survivor))?.livePeers.includes(victim) === false ? true : undefined));
  processes.get(victim)!.start();
  await processes.get(victim)!.waitReady(60_000);
  for (const partition of [3, 50, 99]) {
    await eventually(`node ${victim} catching up partition ${partition}`, 30_000, async () => ((await valueOn(victim, partition, 'after-kill')) === `v${partition}` ? true : undefined));
  }

  // Kill the node leading the most groups, once quiesced: the groups quiesced under it wake on
  // the others (its heartbeat frames stopped) and elect new leaders.
  await eventually('every group quiesced after the restart', 30_000, async () => {
    const all = await Promise.all(ids.map(statusOf));
    return all.every((status) => status?.groups.quiesced === PARTITIONS && status.groups.withoutLeader === 0) ? true : undefined;
  });
  const leading = await Promise.all(ids.map(async (id) => ({ id, leading: (await statusOf(id))!.groups.leading })));
  const leader = leading.sort((a, b) => b.leading - a.leading)[0]!.id;
  const others = ids.filter((id) => id !== leader);
  processes.get(leader)!.kill('SIGKILL');
  await processes.get(leader)!.waitExit(5000);
  await eventually('new leaders for every group on the two others', 60_000, async () => {
    const remaining = await Promise.all(others.map(statusOf));
    if (remaining.some((status) => status === undefined || status.groups.withoutLeader !== 0)) return undefined;
    return remaining.reduce((sum, status) => sum + status!.groups.leading, 0) === PARTITIONS ? true : undefined;
  });
  await putEventually(others[0]!, 77, 'after-leader-kill', 'still');
  for (const id of others) await eventually(`the put after the leader's death on node ${id}`, 10_000, async () => ((await valueOn(id, 77, 'after-leader-kill')) === 'still' ? true : undefined));
}, 300_000);
