/**
 * Soak test of a local cluster of `replicalog node` processes: a client puts unique keys while
 * a chaos loop kills (SIGKILL, sometimes SIGTERM) and restarts random nodes, never more than a
 * minority at a time. Checks that no acknowledged put is ever lost: during the run (every
 * ~20 s, against the leader's applied state) and at the end (every replica's state as
 * recovered from its directory after a clean stop, plus verifyTree).
 *
 *   npm run build && node dist/scripts/soak.js --minutes 2 [--nodes 3] [--dir D] [--keep-dir]
 *
 * Prints: puts acknowledged, puts not acknowledged (timed out: may or may not be applied),
 * kills, restarts, crashes (nodes that exited on their own), leader changes the client saw,
 * in-run checks, lost. Exit 0 when nothing was lost and the replicas agree.
 */
import { seededRandom } from '../lib/seeded-random.js';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { bootstrapJoiningStore, bootstrapSeedStore } from '../lib/node/bootstrap.js';
import { allStatuses, ClusterClient, httpCall, NodeProcess, nodeEntryPath, sleep, waitForLeader, waitUntil } from '../lib/node/local-cluster.js';
import { freePorts } from '../lib/node/ports.js';
import { KvStateMachine, recoverStateFromStorage } from '../lib/node/state-machine.js';
import { ReplicaLogStore } from '../lib/replica-log-store.js';
import { verifyTree } from '../lib/verify.js';

const { values: flags } = parseArgs({
  options: {
    minutes: { type: 'string', default: '1' },
    nodes: { type: 'string', default: '3' },
    dir: { type: 'string' },
    'keep-dir': { type: 'boolean', default: false },
    seed: { type: 'string' },
  },
});
const minutes = Number(flags.minutes);
const nodeCount = Number(flags.nodes);
if (!(minutes > 0) || !Number.isInteger(nodeCount) || nodeCount < 3 || nodeCount > 7) {
  process.stderr.write('usage: soak.js --minutes N (> 0) [--nodes 3..7] [--dir D] [--keep-dir]\n');
  process.exit(2);
}

/** Seeded: a run can be replayed with --seed. */
const seed = Number(flags.seed ?? Math.floor(Math.random() * 2 ** 31)) >>> 0;
const random = seededRandom(seed);
const between = (low: number, high: number) => low + Math.floor(random() * (high - low + 1));

const root = flags.dir === undefined ? mkdtempSync(join(tmpdir(), 'replicalog-soak-')) : resolve(flags.dir);
const ids = Array.from({ length: nodeCount }, (_, i) => i + 1);
const dirOf = (id: number) => join(root, `node-${id}`);
const say = (line: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);

const processes = new Map<number, NodeProcess>();
const acknowledged = new Map<string, string>();
/** The log index each acknowledged put was applied at (the in-run check skips later ones). */
const acknowledgedAt = new Map<string, number>();
const counters = { acknowledged: 0, notAcknowledged: 0, kills: 0, restarts: 0, leaderChanges: 0, crashes: 0, lost: 0, checks: 0 };
let leader = 0;

async function main(): Promise<number> {
  say(`soak: ${nodeCount} nodes, ${minutes} min, seed ${seed}, data in ${root}`);
  // Bootstrap: node 1 seeds an empty state, the others join empty.
  {
    const store = await ReplicaLogStore.open({ dir: dirOf(1) });
    await bootstrapSeedStore(store, ids, new KvStateMachine());
    await store.close();
  }
  for (const id of ids.slice(1)) {
    const store = await ReplicaLogStore.open({ dir: dirOf(id) });
    await bootstrapJoiningStore(store, ids);
    await store.close();
  }
  const ports = await freePorts(nodeCount * 2);
  const peers = ids.map((id, i) => `${id}=127.0.0.1:${ports[i]}`).join(',');
  const entry = nodeEntryPath();
  for (const [i, id] of ids.entries()) {
    // Small snapshot intervals so restarts exercise snapshot installs and compaction.
    processes.set(id, new NodeProcess({ id, dir: dirOf(id), httpPort: ports[nodeCount + i]!, peers, entry, clusterId: 'replicalog-soak', tickMs: 50, snapshotEvery: 200, keepEntries: 50 }));
  }
  for (const node of processes.values()) node.start();
  await Promise.all([...processes.values()].map((node) => node.waitReady()));
  const first = await waitForLeader(processes, 0, 20_000);
  if (first === undefined) throw new Error('no leader within 20 s');
  leader = first.id;
  say(`leader: node ${leader}`);

  const deadline = Date.now() + minutes * 60_000;
  const client = new ClusterClient(processes, () => leader, (id) => {
    if (id !== leader) counters.leaderChanges++;
    leader = id;
  });
  const writer = (async () => {
    let sequence = 0;
    while (Date.now() < deadline) {
      const key = `soak/${String(sequence++).padStart(7, '0')}`;
      const value = randomBytes(6).toString('hex');
      try {
        const index = await client.put(key, value, undefined, 10_000);
        acknowledged.set(key, value);
        acknowledgedAt.set(key, index);
        counters.acknowledged++;
      } catch {
        counters.notAcknowledged++;
      }
    }
  })();
  const chaos = (async () => {
    const down = new Set<number>();
    const maxDown = Math.floor((nodeCount - 1) / 2);
    let lastCheck = Date.now();
    while (Date.now() < deadline) {
      await sleep(between(1000, 4000));
      if (Date.now() >= deadline) break;
      // A node that exited without being killed crashed: count it, show its log, restart it.
      for (const id of ids) {
        const node = processes.get(id)!;
        if (!down.has(id) && !node.running) {
          counters.crashes++;
          say(`node ${id} exited on its own:\n${node.logTail(6)}`);
          node.start();
          await node.waitReady();
        }
      }
      const running = ids.filter((id) => !down.has(id));
      if (down.size < maxDown && random() < 0.7) {
        // Prefer the leader one time in three: leader failover is the interesting case.
        const victim = random() < 0.33 && running.includes(leader) ? leader : running[between(0, running.length - 1)]!;
        const signal = random() < 0.8 ? 'SIGKILL' : 'SIGTERM';
        processes.get(victim)!.kill(signal);
        await processes.get(victim)!.waitExit(10_000);
        down.add(victim);
        counters.kills++;
        say(`${signal} node ${victim}${victim === leader ? ' (the leader)' : ''}; acknowledged so far ${counters.acknowledged}`);
      } else if (down.size > 0) {
        const revived = [...down][between(0, down.size - 1)]!;
        processes.get(revived)!.start();
        await processes.get(revived)!.waitReady();
        down.delete(revived);
        counters.restarts++;
        say(`restarted node ${revived}`);
      }
      if (Date.now() - lastCheck > 10_000) {
        lastCheck = Date.now();
        await checkLeaderState();
      }
    }
    // Everyone back for the final comparison.
    for (const id of down) {
      processes.get(id)!.start();
      await processes.get(id)!.waitReady();
      counters.restarts++;
    }
  })();
  await Promise.all([writer, chaos]);

  // Converge, then stop cleanly and compare what is on disk.
  const converged = await waitUntil(30_000, async () => {
    const statuses = await allStatuses(processes);
    const known = statuses.filter((status) => status !== undefined);
    const lead = known.find((status) => status!.raftState === 'StateLeader');
    return known.length === nodeCount && lead !== undefined && known.every((status) => status!.applied === lead.commit) ? known : undefined;
  });
  if (converged === undefined) say('WARNING: the replicas did not converge within 30 s before the stop');
  await checkLeaderState();
  for (const node of processes.values()) node.kill('SIGTERM');
  const codes = await Promise.all([...processes.values()].map((node) => node.waitExit(15_000)));
  let ok = codes.every((code) => code === 0);
  if (!ok) say(`nodes did not all stop cleanly: exit codes ${codes.join(', ')}`);
  const digests = new Set<string>();
  for (const id of ids) {
    const verified = await verifyTree(dirOf(id));
    if (!verified.ok) {
      ok = false;
      say(`verify ${dirOf(id)}: ${verified.problems.map((problem) => problem.message).join('; ')}`);
    }
    const store = await ReplicaLogStore.open({ dir: dirOf(id) });
    const state = recoverStateFromStorage(store);
    await store.close();
    digests.add(state.digest());
    const lost = [...acknowledged].filter(([key, value]) => state.get(key) !== value);
    if (lost.length > 0) {
      counters.lost = Math.max(counters.lost, lost.length);
      say(`node ${id}: ${lost.length} acknowledged puts missing, e.g. ${lost.slice(0, 3).map(([key]) => key).join(', ')}`);
    }
  }
  if (digests.size !== 1) {
    ok = false;
    say(`the replicas differ on disk: digests ${[...digests].join(', ')}`);
  }
  say(
    `puts acknowledged ${counters.acknowledged}, not acknowledged ${counters.notAcknowledged}, kills ${counters.kills}, ` +
      `restarts ${counters.restarts}, crashes ${counters.crashes}, leader changes seen by the client ${counters.leaderChanges}, in-run checks ${counters.checks}, lost ${counters.lost}`,
  );
  return ok && counters.lost === 0 && counters.crashes === 0 ? 0 : 1;
}

/** Every acknowledged put must be in the leader's applied state (it applied all it committed). */
async function checkLeaderState(): Promise<void> {
  const lead = processes.get(leader);
  if (lead === undefined || !lead.running) return;
  try {
    const snapshot = new Map(acknowledged); // puts acknowledged from here on are not checked now
    const answer = await httpCall(lead.httpPort, 'GET', '/kv', undefined, 5000);
    if (answer.status !== 200) return;
    const body = answer.body as { applied: number; entries: Record<string, string> };
    const status = await lead.status();
    if (status?.raftState !== 'StateLeader') return; // it lost leadership meanwhile: skip
    // A new leader may not have applied everything yet: check what it applied.
    const lost = [...snapshot].filter(([key, value]) => acknowledgedAt.get(key)! <= body.applied && body.entries[key] !== value);
    counters.checks++;
    if (lost.length > 0) {
      counters.lost = Math.max(counters.lost, lost.length);
      say(`LOST on leader ${leader}: ${lost.length} acknowledged puts, e.g. ${lost.slice(0, 3).map(([key]) => key).join(', ')}`);
    }
  } catch {
    // the leader went away during the check
  }
}

let exitCode = 1;
try {
  exitCode = await main();
} catch (error) {
  say(`soak failed: ${(error as Error).stack ?? String(error)}`);
} finally {
  for (const node of processes.values()) node.kill('SIGKILL');
  await Promise.all([...processes.values()].map((node) => node.waitExit(5000)));
  if (flags['keep-dir'] !== true && flags.dir === undefined) rmSync(root, { recursive: true, force: true });
  else say(`data kept in ${root}`);
}
process.exitCode = exitCode;
