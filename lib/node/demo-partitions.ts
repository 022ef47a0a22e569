/**
 * `replicalog demo --partitions N` (issue 19): the multi-raft walk. A bounded, self-checking run
 * on loopback, every step saying what it did and checked:
 *
 *   1. write N pre-Raft (Gitaly-style) partitions into node 1's storage, one WAL per partition
 *      directory (storage.partitionDirectory(id)), each with its own keys
 *   2. migrate each (ReplicaLogStore.backfill) and bootstrap it as the seed of its group (a
 *      snapshot of its MANIFESTs' key-value state); nodes 2..: every partition joins empty
 *   3. start one `replicalog node --partitions N` process per node: N raft groups each, over one
 *      connection per peer; wait for a leader in every group; the joiners catch up by snapshot
 *   4. check every replica of a few partitions holds that partition's migrated state
 *   5. put keys in several partitions (through followers too), read them back everywhere; a
 *      partition does not see another's keys; an unknown partition is refused
 *   6. wait until every group quiesces; an idle cluster then sends heartbeat frames only
 *   7. stop every node (SIGTERM)
 */
import { writePreRaftWal } from '../fixture.js';
import { ReplicaLogStorage } from '../storage.js';
import { bootstrapJoiningStore, bootstrapSeedStore } from './bootstrap.js';
import { DemoFailure, demoScaffold, type DemoResult } from './demo.js';
import { httpCall, NodeProcess, nodeEntryPath, sleep, waitUntil } from './local-cluster.js';
import type { ReplicaNodeStatus } from './node.js';
import { freePorts } from './ports.js';
import { deriveStateFromPreRaftWal } from './state-machine.js';

export interface PartitionsDemoOptions {
  partitions: number;
  nodes?: number;
  dir?: string;
  /** Entries of each partition's pre-Raft WAL (default 20). */
  entries?: number;
  write?: (text: string) => void;
}

const TOTAL_STEPS = 7;
const TICK_MS = 100;


export async function runPartitionsDemo(options: PartitionsDemoOptions): Promise<DemoResult> {
  const started = Date.now();
  const write = options.write ?? ((text: string) => process.stdout.write(text));
  const say = (line = '') => write(line + '\n');
  const partitions = options.partitions;
  if (!Number.isSafeInteger(partitions) || partitions < 1 || partitions > 100_000) throw new RangeError('--partitions must be between 1 and 100000');
  const nodeCount = options.nodes ?? 3;
  if (!Number.isInteger(nodeCount) || nodeCount < 3 || nodeCount > 7) throw new RangeError('--nodes must be between 3 and 7');
  const entryCount = options.entries ?? 20;
  const { root, ids, dirOf, checks, check, step, took } = demoScaffold({
    ...(options.dir === undefined ? {} : { dir: options.dir }),
    nodeCount,
    temporaryPrefix: 'replicalog-demo-partitions-',
    totalSteps: TOTAL_STEPS,
    say,
  });
  // A few partitions looked at closely: the first, one in the middle, the last.
  const sampled = [...new Set([1, Math.ceil(partitions / 2), partitions])];
  const processes = new Map<number, NodeProcess>();
  const migratedDigests = new Map<number, string>();

  say(`replicalog demo --partitions ${partitions}: ${nodeCount} node processes, each hosting ${partitions} raft groups on one storage (loopback only)`);
  say(`data directory: ${root}`);
  try {
    // ---------------------------------------------------------------- 1 and 2. fixtures, migration
    step(1, `Writing ${partitions} pre-Raft partitions (${entryCount} entries each) into the storage ${dirOf(1)}`);
    {
      const storage = await ReplicaLogStorage.open({ dir: dirOf(1) });
      try {
        let entries = 0;
        for (let partition = 1; partition <= partitions; partition++) {
          const fixture = writePreRaftWal({ dir: storage.partitionDirectory(partition), entries: entryCount, seed: 1000 + partition });
          entries += fixture.entries;
        }
        const listed = await storage.listPartitions();
        check('the storage lists every partition', listed.length === partitions, `${listed.length} partition directories, ${entries} entries, no RAFT files, no hard state`);
        step(2, 'Migrating every partition (backfill) and bootstrapping it as the seed of its raft group');
        let backfilledTotal = 0;
        let keys = 0;
        for (let partition = 1; partition <= partitions; partition++) {
          const store = await storage.openPartition(partition);
          try {
            const { backfilled } = await store.backfill();
            backfilledTotal += backfilled;
            const state = deriveStateFromPreRaftWal(store.dir, store.lastIndex());
            migratedDigests.set(partition, state.digest());
            keys += state.size;
            await bootstrapSeedStore(store, ids, state);
          } finally {
            await store.close();
          }
          if (partition % Math.max(1, Math.floor(partitions / 10)) === 0) say(`      ${partition}/${partitions} partitions migrated`);
        }
        check('every entry was backfilled', backfilledTotal === partitions * entryCount, `${backfilledTotal} RAFT files, ${keys} keys over ${partitions} partitions, in ${took()}`);
      } finally {
        await storage.close();
      }
      for (const id of ids.slice(1)) {
        const other = await ReplicaLogStorage.open({ dir: dirOf(id) });
        try {
          for (let partition = 1; partition <= partitions; partition++) {
            const store = await other.openPartition(partition);
            try {
              await bootstrapJoiningStore(store, ids);
            } finally {
              await store.close();
            }
          }
        } finally {
          await other.close();
        }
      }
      say(`      nodes ${ids.slice(1).join(', ')}: ${partitions} empty partitions each, with the conf state only`);
    }

    // ---------------------------------------------------------------- 3. start
    step(3, `Starting ${nodeCount} node processes with --partitions ${partitions}`);
    const ports = await freePorts(2 * nodeCount);
    const peers = ids.map((id, index) => `${id}=127.0.0.1:${ports[index]}`).join(',');
    const entry = nodeEntryPath();
    for (const [index, id] of ids.entries()) {
      const node = new NodeProcess({
        id,
        dir: dirOf(id),
        httpPort: ports[nodeCount + index]!,
        peers,
        entry,
        clusterId: 'replicalog-demo-partitions',
        tickMs: TICK_MS,
        extraArguments: ['--partitions', String(partitions)],
      });
      processes.set(id, node);
      node.start();
    }
    for (const node of processes.values()) await node.waitReady(60_000 + partitions * 20);
    const statuses = async () => Promise.all(ids.map((id) => processes.get(id)!.status()));
    const led = await waitUntil(60_000 + partitions * 20, async () => {
      const all = await statuses();
      if (all.some((status) => status === undefined || status.groups.withoutLeader !== 0)) return undefined;
      return all.reduce((sum, status) => sum + status!.groups.leading, 0) === partitions ? (all as ReplicaNodeStatus[]) : undefined;
    });
    check('every group elected a leader, known on every node', led !== undefined, led === undefined ? 'not within the time' : `after ${took()}: node 1 leads ${led[0]!.groups.leading} groups`);

    // ---------------------------------------------------------------- 4. migrated state
    step(4, `Checking the migrated state of partitions ${sampled.join(', ')} on every node`);
    for (const partition of sampled) {
      let found: string[] = [];
      const digests = await waitUntil(30_000, async () => {
        const answers = await Promise.all(ids.map((id) => httpCall(processes.get(id)!.httpPort, 'GET', `/p/${partition}/status`).catch(() => undefined)));
        found = answers.map((answer) => (answer?.status === 200 ? (answer.body as ReplicaNodeStatus).digest : 'no answer'));
        return found.every((digest) => digest === migratedDigests.get(partition)) ? found : undefined;
      });
      check(
        `partition ${partition}: every replica holds its migrated state`,
        digests !== undefined,
        `digest ${migratedDigests.get(partition)}${digests === undefined ? `; the nodes hold ${found.join(', ')}` : ''}`,
      );
    }

    // ---------------------------------------------------------------- 5. writes
    step(5, `Writing through the HTTP API: PUT /p/<partition>/kv/<key> in partitions ${sampled.join(', ')}, through every node`);
    for (const partition of sampled) {
      for (const id of ids) {
        const key = `demo-${partition}-via-${id}`;
        const acknowledged = await waitUntil(15_000, async () => {
          const answer = await httpCall(processes.get(id)!.httpPort, 'PUT', `/p/${partition}/kv/${key}`, `value of ${key}`).catch(() => undefined);
          return answer?.status === 200 ? true : undefined;
        });
        check(`put ${key}`, acknowledged === true, '');
      }
      for (const id of ids) {
        const seen = await waitUntil(15_000, async () => {
          const answer = await httpCall(processes.get(id)!.httpPort, 'GET', `/p/${partition}/kv/demo-${partition}-via-1`).catch(() => undefined);
          return answer?.status === 200 ? answer.text : undefined;
        });
        check(`node ${id} reads partition ${partition}'s key`, seen === `value of demo-${partition}-via-1`, '');
      }
    }
    if (partitions > 1) {
      const elsewhere = await httpCall(processes.get(1)!.httpPort, 'GET', '/p/2/kv/demo-1-via-1');
      check("a partition does not see another's keys", elsewhere.status === 404, `GET /p/2/kv/demo-1-via-1: ${elsewhere.status}`);
    }
    const unknown = await httpCall(processes.get(1)!.httpPort, 'GET', `/p/${partitions + 1}/kv/x`);
    check(`partition ${partitions + 1} is refused`, unknown.status === 404 && (unknown.body as { code?: string }).code === 'ERR_NO_SUCH_PARTITION', `${unknown.status} ${(unknown.body as { code?: string }).code}`);

    // ---------------------------------------------------------------- 6. quiescence
    step(6, 'Leaving the cluster idle: every group quiesces');
    const quiet = await waitUntil(60_000, async () => {
      const all = await statuses();
      return all.every((status) => status?.groups.quiesced === partitions) ? (all as ReplicaNodeStatus[]) : undefined;
    });
    check('every group quiesced on every node', quiet !== undefined, quiet === undefined ? 'not within 60 s' : `after ${took()}`);
    const before = await statuses();
    await sleep(2000);
    const after = await statuses();
    const messages = after.map((status, index) => status!.transport.groupBatches.messagesSent - before[index]!.transport.groupBatches.messagesSent);
    const frames = after.map((status, index) => status!.transport.groupBatches.framesSent - before[index]!.transport.groupBatches.framesSent);
    check('idle, no raft message is sent; one heartbeat frame per peer per tick', messages.every((count) => count === 0), `over 2 s: raft messages ${messages.join(' / ')}, frames ${frames.join(' / ')}`);

    // ---------------------------------------------------------------- 7. stop
    step(7, 'Stopping every node (SIGTERM)');
    for (const node of processes.values()) node.kill('SIGTERM');
    const exitCodes = await Promise.all([...processes.values()].map((node) => node.waitExit(30_000)));
    check('every node stopped cleanly', exitCodes.every((code) => code === 0), `exit codes ${exitCodes.map((code) => String(code)).join(', ')}`);
    say();
    say(`demo passed: ${checks.length} checks in ${((Date.now() - started) / 1000).toFixed(1)} s (logs: ${root}/node-N.log)`);
    return { ok: true, dir: root, checks, wallMs: Date.now() - started };
  } catch (error) {
    if (!(error instanceof DemoFailure)) {
      say(`      FAIL ${(error as Error).message}`);
      checks.push({ name: 'unexpected error', ok: false, detail: (error as Error).message });
    }
    for (const node of processes.values()) if (node.running) say(`      node ${node.id} log:\n${node.logTail(10)}`);
    return { ok: false, dir: root, checks, wallMs: Date.now() - started };
  } finally {
    for (const node of processes.values()) node.kill('SIGKILL');
  }
}
