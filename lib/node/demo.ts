/**
 * `replicalog demo`: a bounded, self-checking walk through a replicated cluster of node
 * processes on ReplicaLogStores, on loopback. Every step says what it does and what it checked;
 * the run succeeds only if every check held.
 *
 *   1. write a pre-Raft (Gitaly-style) WAL into <dir>/node-1
 *   2. migrate it (backfill RAFT files)
 *   3. bootstrap: node 1 becomes the seed (snapshot of the MANIFESTs' key-value state at the last
 *      migrated index, conf state = every node, hard state committing it, compacted prefix);
 *      the other nodes start empty with the conf state only
 *   4. start one process per node, wait for a leader; the empty nodes catch up by snapshot
 *   5. put keys through the HTTP API (some through followers, forwarded to the leader)
 *   6. SIGKILL a follower, keep writing, restart it, watch it catch up
 *   7. SIGKILL the leader, see a new one elected, keep writing, restart the old leader
 *   8. stop everything (SIGTERM), verify every directory, compare the replicas as stored on disk
 *
 * The node processes run `dist/lib/node/cli-entry.js node …`; their output goes to
 * <dir>/node-N.log.
 */
import { mkdirSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { writePreRaftWal } from '../fixture.js';
import { ReplicaLogStore } from '../replica-log-store.js';
import { createClusterCertificates, type PeerAddress } from '../transport/index.js';
import { verifyTree } from '../verify.js';
import { bootstrapJoiningStore, bootstrapSeedStore } from './bootstrap.js';
import type { ReplicaNodeStatus } from './node.js';
import { allStatuses, ClusterClient, NodeProcess, nodeEntryPath, waitForLeader, waitUntil } from './local-cluster.js';
import { freePorts } from './ports.js';
import { deriveStateFromPreRaftWal, recoverStateFromStorage, type KvStateMachine } from './state-machine.js';

export interface DemoOptions {
  nodes?: number;
  /** Where the node directories go (must be missing or empty); default a new temp directory. */
  dir?: string;
  /** Leave the cluster running at the end (no step 8) and print how to talk to it. */
  keep?: boolean;
  /** Entries of the pre-Raft WAL (default 200). */
  entries?: number;
  /** Where the narration goes (default stdout). */
  write?: (text: string) => void;
}

export interface DemoCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface DemoResult {
  ok: boolean;
  dir: string;
  checks: DemoCheck[];
  wallMs: number;
}

const TOTAL_STEPS = 8;
const TICK_MS = 100;
const SNAPSHOT_EVERY = 50;
const KEEP_ENTRIES = 20;

/** A failed check: the demo stops and reports. */
export class DemoFailure extends Error {}

/**
 * What both demos (one group, and `--partitions`) start from: a fresh root directory (a new
 * temporary one, or `dir` when it is empty), the node ids, and the narration helpers.
 */
export function demoScaffold(options: { dir?: string; nodeCount: number; temporaryPrefix: string; totalSteps: number; say: (line?: string) => void }) {
  let root: string;
  if (options.dir === undefined) {
    root = mkdtempSync(join(tmpdir(), options.temporaryPrefix));
  } else {
    root = resolve(options.dir);
    mkdirSync(root, { recursive: true });
    if (readdirSync(root).length > 0) throw new RangeError(`${root} is not empty: the demo needs a fresh directory`);
  }
  const ids = Array.from({ length: options.nodeCount }, (_, index) => index + 1);
  const dirOf = (id: number) => join(root, `node-${id}`);
  const checks: DemoCheck[] = [];
  const check = (name: string, ok: boolean, detail: string) => {
    checks.push({ name, ok, detail });
    options.say(`      ${ok ? 'ok  ' : 'FAIL'} ${name}${detail === '' ? '' : `: ${detail}`}`);
    if (!ok) throw new DemoFailure(`check failed: ${name}`);
  };
  let stepStarted = Date.now();
  const step = (number: number, title: string) => {
    stepStarted = Date.now();
    options.say();
    options.say(`[${number}/${options.totalSteps}] ${title}`);
  };
  const took = () => `${((Date.now() - stepStarted) / 1000).toFixed(1)} s`;
  /** Starts took()'s clock again within a step. */
  const restartClock = () => {
    stepStarted = Date.now();
  };
  return { root, ids, dirOf, checks, check, step, took, restartClock };
}

export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const started = Date.now();
  const write = options.write ?? ((text: string) => process.stdout.write(text));
  const say = (line = '') => write(line + '\n');
  const nodeCount = options.nodes ?? 3;
  if (!Number.isInteger(nodeCount) || nodeCount < 3 || nodeCount > 7) throw new RangeError('--nodes must be between 3 and 7');
  const entryCount = options.entries ?? 200;
  const keep = options.keep === true;
  const { root, ids, dirOf, checks, check, step, took, restartClock } = demoScaffold({
    ...(options.dir === undefined ? {} : { dir: options.dir }),
    nodeCount,
    temporaryPrefix: 'replicalog-demo-',
    totalSteps: TOTAL_STEPS,
    say,
  });

  const processes = new Map<number, NodeProcess>();
  let leaveRunning = false;
  const acknowledged = new Map<string, string>();

  say(`replicalog demo: a ${nodeCount}-node raft cluster of separate processes on ReplicaLogStores (loopback only, mutual TLS between members)`);
  say(`data directory: ${root}`);

  try {
    // ---------------------------------------------------------------- 1. fixture
    step(1, `Writing a pre-Raft WAL (the way Gitaly leaves one) into ${dirOf(1)}`);
    const fixture = writePreRaftWal({ dir: dirOf(1), entries: entryCount, seed: 42 });
    const migratedState = deriveStateFromPreRaftWal(dirOf(1));
    say(`      ${fixture.entries} entries (LSN ${fixture.firstIndex}..${fixture.lastIndex}), ${fixture.payloadFiles} payload files; no RAFT files, no hard state`);
    say(`      their MANIFESTs set/delete keys: replaying them in LSN order gives ${migratedState.size} keys (digest ${migratedState.digest()})`);
    const before = await verifyTree(dirOf(1));
    check('the fixture is a valid pre-Raft tree', before.ok, `${before.problems.length} problems, notices: ${before.notices.map((notice) => notice.code).join(', ') || 'none'}`);

    // ---------------------------------------------------------------- 2. migrate
    step(2, 'Migrating it: every entry gets a RAFT file (ReplicaLogStore.backfill)');
    {
      const store = await ReplicaLogStore.open({ dir: dirOf(1) });
      try {
        say(`      before: status ${store.status}, ${store.pendingBackfill} entries without a RAFT file`);
        let lastShown = 0;
        const { backfilled } = await store.backfill({
          onProgress: (done, total) => {
            if (done === total || done - lastShown >= total / 4) {
              lastShown = done;
              say(`      backfill ${done}/${total}`);
            }
          },
        });
        say(`      after:  status ${store.status}, ${store.pendingBackfill} without a RAFT file (the status turns 'bootstrapped' with the first hard state, next step)`);
        check('every entry was backfilled', backfilled === entryCount && store.pendingBackfill === 0, `${backfilled} RAFT files written, log ${store.firstIndex()}..${store.lastIndex()}`);
      } finally {
        await store.close();
      }
    }

    // ---------------------------------------------------------------- 3. bootstrap
    step(3, `Bootstrapping the cluster: voters [${ids.join(',')}]`);
    {
      const store = await ReplicaLogStore.open({ dir: dirOf(1) });
      try {
        const seeded = await bootstrapSeedStore(store, ids, migratedState, KEEP_ENTRIES);
        const hardState = store.initialState().hardState;
        say(`      node 1 (seed): snapshot at index ${seeded.snapshotIndex} (term ${seeded.snapshotTerm}${seeded.snapshotTerm === 0 ? ': migrated entries predate Raft' : ''}) holding the ${migratedState.size} migrated keys,`);
        say(`                     hard state {term ${hardState.term}, commit ${hardState.commit}}, log compacted to ${seeded.firstIndex}..${seeded.lastIndex}, status ${store.status}`);
        check('node 1 is bootstrapped', store.status === 'bootstrapped' && hardState.commit === fixture.lastIndex, `commit ${hardState.commit}`);
      } finally {
        await store.close();
      }
      for (const id of ids.slice(1)) {
        const store = await ReplicaLogStore.open({ dir: dirOf(id) });
        try {
          await bootstrapJoiningStore(store, ids);
        } finally {
          await store.close();
        }
      }
      say(`      nodes ${ids.slice(1).join(', ')}: empty logs that only know the voters; they wait for the leader's snapshot (and never campaign with an empty log)`);
    }

    // ---------------------------------------------------------------- 4. start
    step(4, `Starting ${nodeCount} node processes`);
    const ports = await freePorts(nodeCount * 2);
    const raftPeers = new Map<number, PeerAddress>(ids.map((id, i) => [id, { host: '127.0.0.1', port: ports[i]! }]));
    const peersArgument = [...raftPeers].map(([id, address]) => `${id}=${address.host}:${address.port}`).join(',');
    const entry = nodeEntryPath();
    // The secure path is the tested path: members talk over mutual TLS, with a CA and one
    // certificate per member made here with openssl (replicalog certs does the same).
    const certificates = createClusterCertificates(join(root, 'certs'), 'replicalog-demo', ids);
    say(`      mutual TLS between members: a CA and ${ids.length} member certificates in ${join(root, 'certs')} (made with openssl)`);
    for (const [i, id] of ids.entries()) {
      const node = new NodeProcess({
        id,
        dir: dirOf(id),
        httpPort: ports[nodeCount + i]!,
        peers: peersArgument,
        entry,
        clusterId: 'replicalog-demo',
        tickMs: TICK_MS,
        snapshotEvery: SNAPSHOT_EVERY,
        keepEntries: KEEP_ENTRIES,
        detached: keep,
        tls: certificates.get(id)!,
      });
      processes.set(id, node);
      node.start();
    }
    await Promise.all([...processes.values()].map((node) => node.waitReady()));
    for (const node of processes.values()) {
      say(`      node ${node.id}: pid ${node.pid}, raft 127.0.0.1:${raftPeers.get(node.id)!.port}, http 127.0.0.1:${node.httpPort}, log ${node.logPath}`);
    }
    const firstLeader = await waitForLeader(processes, 0, 15_000);
    check('a leader was elected', firstLeader !== undefined, firstLeader === undefined ? 'none within 15 s' : `node ${firstLeader.id} (term ${firstLeader.term}) after ${took()}`);
    check('the leader is the seed (the only node with data)', firstLeader!.id === 1, `node ${firstLeader!.id}`);
    const caughtUp = await waitUntil(15_000, async () => {
      const statuses = await allStatuses(processes);
      return statuses.every((status) => status !== undefined && status.applied >= fixture.lastIndex && status.keys === migratedState.size) ? statuses : undefined;
    });
    check(
      `nodes ${ids.slice(1).join(', ')} caught up by snapshot`,
      caughtUp !== undefined && caughtUp.every((status) => status!.snapshotIndex >= fixture.lastIndex && status!.digest === migratedState.digest()),
      caughtUp === undefined ? 'not within 15 s' : `each holds the ${migratedState.size} migrated keys (snapshot ≥ ${fixture.lastIndex}) after ${took()}`,
    );

    // ---------------------------------------------------------------- 5. puts
    let leader = firstLeader!.id;
    const client = new ClusterClient(processes, () => leader, (id) => (leader = id));
    step(5, 'Writing keys through the HTTP API (PUT /kv/<key>; every 4th one sent to a follower, which forwards it)');
    await client.putMany(40, 'demo/a', acknowledged, say, true);
    await expectConverged(processes, check, 'all replicas applied the same state', took);

    // ---------------------------------------------------------------- 6. follower crash
    const follower = [...processes.values()].filter((node) => node.id !== leader).at(-1)!;
    step(6, `Crashing follower node ${follower.id} (SIGKILL pid ${follower.pid}) while writing`);
    follower.kill('SIGKILL');
    await follower.waitExit(5000);
    await client.putMany(30, 'demo/b', acknowledged, say, false);
    check(`writes go on with ${nodeCount - 1} of ${nodeCount} nodes`, true, `30 puts acknowledged`);
    say(`      restarting node ${follower.id} from its directory…`);
    restartClock();
    follower.start();
    await follower.waitReady();
    await expectConverged(processes, check, `node ${follower.id} caught up`, took);

    // ---------------------------------------------------------------- 7. leader crash
    const oldLeader = processes.get(leader)!;
    const oldTerm = (await oldLeader.status())?.term ?? 0;
    step(7, `Crashing the leader, node ${oldLeader.id} (SIGKILL pid ${oldLeader.pid})`);
    oldLeader.kill('SIGKILL');
    await oldLeader.waitExit(5000);
    const newLeader = await waitForLeader(processes, oldTerm, 15_000);
    check('a new leader was elected', newLeader !== undefined && newLeader.id !== oldLeader.id, newLeader === undefined ? 'none within 15 s' : `node ${newLeader.id} (term ${newLeader.term}) after ${took()}`);
    leader = newLeader!.id;
    await client.putMany(30, 'demo/c', acknowledged, say, false);
    say(`      restarting node ${oldLeader.id} (the old leader) from its directory…`);
    restartClock();
    oldLeader.start();
    await oldLeader.waitReady();
    const converged = await expectConverged(processes, check, `node ${oldLeader.id} caught up and follows node ${leader}`, took);
    check(`node ${oldLeader.id} is a follower now`, converged.find((status) => status.id === oldLeader.id)?.raftState === 'StateFollower', '');
    const liveDigest = converged[0]!.digest;

    if (keep) {
      leaveRunning = true;
      step(8, 'Leaving the cluster running (--keep)');
      printKeepInstructions(say, processes, leader, root);
      return finish(true);
    }

    // ---------------------------------------------------------------- 8. stop, verify, compare
    step(8, 'Stopping every node (SIGTERM), verifying every directory, comparing the replicas on disk');
    for (const node of processes.values()) node.kill('SIGTERM');
    const exitCodes = await Promise.all([...processes.values()].map((node) => node.waitExit(10_000)));
    check('every node stopped cleanly', exitCodes.every((code) => code === 0), `exit codes ${exitCodes.map((code) => String(code)).join(', ')}`);
    for (const id of ids) {
      const result = await verifyTree(dirOf(id));
      check(`verify ${dirOf(id)}`, result.ok, result.ok ? 'no problem' : result.problems.map((problem) => `${problem.code} ${problem.message}`).join('; '));
    }
    const recovered = new Map<number, { state: KvStateMachine; firstIndex: number; lastIndex: number; commit: number; snapshot: number }>();
    for (const id of ids) {
      const store = await ReplicaLogStore.open({ dir: dirOf(id) });
      try {
        recovered.set(id, {
          state: recoverStateFromStorage(store),
          firstIndex: store.firstIndex(),
          lastIndex: store.lastIndex(),
          commit: store.initialState().hardState.commit,
          snapshot: store.snapshot().metadata.index,
        });
      } finally {
        await store.close();
      }
    }
    const digests = new Set([...recovered.values()].map((replica) => replica.state.digest()));
    check('all replicas hold the same state on disk', digests.size === 1 && digests.has(liveDigest), `digest ${[...digests].join(' ≠ ')}`);
    const reference = recovered.get(1)!.state;
    const missingMigrated = migratedState.entries().filter(([key, value]) => reference.get(key) !== value);
    check('the migrated keys are on every replica', missingMigrated.length === 0, `${migratedState.size - missingMigrated.length}/${migratedState.size}`);
    const lost = [...acknowledged].filter(([key, value]) => reference.get(key) !== value);
    check('no acknowledged put was lost', lost.length === 0, `${acknowledged.size - lost.length}/${acknowledged.size} present${lost.length > 0 ? `; lost ${lost.map(([key]) => key).join(', ')}` : ''}`);

    say();
    say('Summary');
    say('  node  log (first..last)  snapshot  commit  keys  digest');
    for (const [id, replica] of recovered) {
      say(
        `  ${String(id).padStart(4)}  ${`${replica.firstIndex}..${replica.lastIndex}`.padStart(17)}  ${String(replica.snapshot).padStart(8)}  ${String(replica.commit).padStart(6)}  ${String(replica.state.size).padStart(4)}  ${replica.state.digest()}`,
      );
    }
    return finish(true);
  } catch (error) {
    if (!(error instanceof DemoFailure)) {
      checks.push({ name: 'the demo ran to the end', ok: false, detail: (error as Error).message });
      say(`      FAIL ${(error as Error).message}`);
    }
    for (const node of processes.values()) {
      if (node.running || (error as Error).message.includes(`node ${node.id}`)) say(`      node ${node.id} log (${node.logPath}):\n${node.logTail(8)}`);
    }
    return finish(false);
  } finally {
    if (!leaveRunning) {
      for (const node of processes.values()) node.kill('SIGKILL');
      await Promise.all([...processes.values()].map((node) => node.waitExit(5000)));
    } else {
      // Let the demo process exit while the detached nodes run on.
      for (const node of processes.values()) node.child?.unref();
    }
  }

  function finish(ok: boolean): DemoResult {
    const passed = checks.filter((item) => item.ok).length;
    const allOk = ok && passed === checks.length;
    const wallMs = Date.now() - started;
    say();
    say(allOk ? `All ${checks.length} checks passed in ${(wallMs / 1000).toFixed(1)} s.` : `FAILED: ${checks.length - passed} of ${checks.length} checks failed (${(wallMs / 1000).toFixed(1)} s).`);
    say(`The data lives in ${root}: node-N/ (wal/, kv/, snapshot/) and node-N.log per node.`);
    say(`Inspect it with: replicalog inspect ${dirOf(1)}   ·   replicalog verify ${dirOf(2)}   ·   remove it with: rm -rf ${root}`);
    return { ok: allOk, dir: root, checks, wallMs };
  }
}

function printKeepInstructions(say: (line?: string) => void, processes: Map<number, NodeProcess>, leader: number, root: string): void {
  const leaderPort = processes.get(leader)!.httpPort;
  say(`      the nodes keep running; node ${leader} leads. Try:`);
  say(`        curl -X PUT --data 'world' http://127.0.0.1:${leaderPort}/kv/hello`);
  for (const node of processes.values()) say(`        curl http://127.0.0.1:${node.httpPort}/kv/hello      # node ${node.id}`);
  say(`        curl http://127.0.0.1:${leaderPort}/status`);
  say(`        curl http://127.0.0.1:${leaderPort}/kv`);
  say(`      stop them with: kill ${[...processes.values()].map((node) => node.pid).join(' ')}   (SIGTERM: clean stop)`);
  say(`      logs: ${root}/node-N.log`);
}

/** Waits until every node runs and applied the leader's commit with the same state. */
async function expectConverged(
  processes: Map<number, NodeProcess>,
  check: (name: string, ok: boolean, detail: string) => void,
  name: string,
  took: () => string,
): Promise<ReplicaNodeStatus[]> {
  const statuses = await waitUntil(20_000, async () => {
    const all = await allStatuses(processes);
    if (all.some((status) => status === undefined)) return undefined;
    const known = all as ReplicaNodeStatus[];
    const leader = known.find((status) => status.raftState === 'StateLeader');
    if (leader === undefined) return undefined;
    const ok = known.every((status) => status.applied === leader.commit && status.digest === leader.digest && status.lead === leader.id);
    return ok ? known : undefined;
  });
  check(
    name,
    statuses !== undefined,
    statuses === undefined ? 'not within 20 s' : `every node applied index ${statuses[0]!.applied}, ${statuses[0]!.keys} keys, digest ${statuses[0]!.digest} (${took()})`,
  );
  return statuses!;
}

