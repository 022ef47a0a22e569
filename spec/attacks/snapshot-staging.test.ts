/**
 * Issue 14, "snapshots streamed to a file under staging/, never held whole in memory", against
 * real node processes: a lagging follower installs a snapshot of about 40 MiB (the data passes
 * through a file in its staging/ directory) with its RSS bounded; a snapshot stream cut off
 * mid-way, and attachments (which a node never accepts), leave nothing in staging/.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { encodeMessage } from '../../lib/codec.js';
import { sleep, waitUntil } from '../../lib/node/local-cluster.js';
import { FrameKind } from '../../lib/transport/framing.js';
import { encodeStreamHeader } from '../../lib/transport/wire.js';
import { EntryType, MessageType } from '../../lib/types.js';
import { attack, forged, startCluster, statusOf, type Cluster } from './harness.js';

const MiB = 1024 * 1024;
let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster({ snapshotEvery: 20, keepEntries: 5 });
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

const stagingOf = (id: number) => join(cluster.processes.get(id)!.dir, 'staging');
const stagedSnapshotFiles = (id: number) => (existsSync(stagingOf(id)) ? readdirSync(stagingOf(id)).filter((name) => name.startsWith('transport-snapshot-')) : []);

it('a lagging follower installs a 40 MiB snapshot through a file in staging/, its RSS bounded', async () => {
  const leader = await cluster.leader();
  const lagging = [1, 2, 3].find((id) => id !== leader.id)!;
  const node = cluster.processes.get(lagging)!;
  node.kill('SIGTERM');
  expect(await node.waitExit(10_000)).toBe(0);

  // 40 values of 1 MiB (just under the body limit): the leader snapshots every 20 entries and
  // keeps 5, so the stopped follower can only catch up by snapshot.
  const value = 'v'.repeat(MiB - 1024);
  for (let key = 0; key < 40; key++) await cluster.put(`big-${key}`, value, 10_000);
  const leaderStatus = await statusOf(cluster, leader.id);
  // Each member snapshots on its own grid of 20 (lib/node/group.ts nextSnapshotAt): at 20, 25 or 30 first.
  expect(leaderStatus.snapshotIndex).toBeGreaterThanOrEqual(20);
  expect(leaderStatus.firstIndex).toBeGreaterThan(2);

  node.start();
  let peakRss = 0;
  let baselineRss = 0;
  let largestStagedFile = 0;
  const sampler = setInterval(() => {
    if (!node.running) return;
    try {
      const rss = cluster.rssBytes(lagging);
      peakRss = Math.max(peakRss, rss);
      for (const name of stagedSnapshotFiles(lagging)) largestStagedFile = Math.max(largestStagedFile, statSync(join(stagingOf(lagging), name)).size);
    } catch {
      // the process or the file went away between two calls
    }
  }, 10);
  try {
    await node.waitReady();
    baselineRss = cluster.rssBytes(lagging);
    const caughtUp = await waitUntil(30_000, async () => {
      const status = await node.status();
      return status !== undefined && status.keys >= 41 && status.applied >= leaderStatus.applied ? status : undefined;
    });
    expect(caughtUp, node.logTail()).toBeDefined();
  } finally {
    clearInterval(sampler);
  }
  const status = await statusOf(cluster, lagging);
  // What the node itself must hold: the snapshot read back once (40 MiB), raft's and the
  // store's copy of it, and the state it decodes to. The transport adds at most a chunk.
  console.log(`snapshot install: RSS ${(baselineRss / MiB).toFixed(0)} MiB once started, peak ${(peakRss / MiB).toFixed(0)} MiB; largest staged file seen ${(largestStagedFile / MiB).toFixed(1)} MiB`);
  expect(status.snapshotIndex).toBeGreaterThanOrEqual(20);
  // The data went through a file (seen while it grew), and the file is gone.
  expect(largestStagedFile).toBeGreaterThan(MiB);
  expect(stagedSnapshotFiles(lagging)).toEqual([]);
  expect(status.transport.stagedBytes).toBe(0);
  // From whichever member led when the snapshot went out (a CI run saw the leadership move
  // during the 40 MiB of writes, and the snapshot come from the new leader).
  const received = status.transport.peers.reduce((sum, peer) => sum + peer.received, 0);
  expect(received).toBeGreaterThan(35 * MiB); // the snapshot holds the values written before it (about 38 of 40)
  // Measured: 125 to 150 MiB above the start (three copies, more when GC runs late under
  // load); five copies is the bound.
  expect(peakRss - baselineRss).toBeLessThan(5 * 40 * MiB);
  await cluster.put('after-install', 'ok');
  const digests = await cluster.converged();
  expect(new Set(digests).size).toBe(1);
}, 120_000);

it('a snapshot stream cut off mid-way, and attachments, leave nothing in staging/', async () => {
  const leader = await cluster.leader();
  const [target, absent] = [1, 2, 3].filter((id) => id !== leader.id) as [number, number];
  const port = cluster.raftPorts.get(target)!;
  // TLS is off: any local process can claim to be a member (the member checks are tested
  // elsewhere); what it streams must still not outlive its connection. The member it claims to
  // be is stopped, so that the real one does not reconnect and supersede the attacker.
  const absentNode = cluster.processes.get(absent)!;
  absentNode.kill('SIGTERM');
  expect(await absentNode.waitExit(10_000)).toBe(0);
  const connection = attack(port, { senderId: absent, receiverId: target });
  expect(await connection.outcome).toEqual({ accepted: true });
  const message = forged({
    type: MessageType.MsgSnap,
    from: absent,
    to: target,
    term: leader.term,
    snapshot: { metadata: { index: leader.commit + 1000, term: leader.term, confState: { voters: [1, 2, 3], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } } },
  });
  connection.sendFrame(FrameKind.StreamBegin, encodeStreamHeader({ messageBytes: encodeMessage(message), snapshotDataLength: 20 * MiB, attachments: [] }));
  for (let chunk = 0; chunk < 4; chunk++) connection.sendFrame(FrameKind.StreamChunk, Buffer.alloc(MiB, 7));
  const staged = await waitUntil(5000, async () => {
    const names = stagedSnapshotFiles(target);
    return names.length === 1 && statSync(join(stagingOf(target), names[0]!)).size === 4 * MiB ? names : undefined;
  });
  expect(staged, 'the partial snapshot file while the stream is open').toBeDefined();
  expect((await statusOf(cluster, target)).transport.stagedBytes).toBe(4 * MiB);
  connection.close();
  // Only the stream's file: staging/ may also hold compacted entry directories a journal
  // checkpoint will reuse (a batch-* directory), which are not the transport's.
  const emptied = await waitUntil(5000, async () => (stagedSnapshotFiles(target).length === 0 ? true : undefined));
  expect(emptied).toBe(true);
  expect((await statusOf(cluster, target)).transport.stagedBytes).toBe(0);

  // Attachments: refused at the header (nodes never enable them), nothing created.
  const before = (await statusOf(cluster, target)).refused.transport.malformedFrames;
  const withAttachments = attack(port, { senderId: absent, receiverId: target });
  expect(await withAttachments.outcome).toEqual({ accepted: true });
  const entries = [{ index: leader.commit + 1, term: leader.term, type: EntryType.Normal, data: new Uint8Array(0) }];
  const append = forged({ type: MessageType.MsgApp, from: absent, to: target, term: leader.term, index: leader.commit, logTerm: leader.term, entries });
  withAttachments.sendFrame(
    FrameKind.StreamBegin,
    encodeStreamHeader({ messageBytes: encodeMessage(append), snapshotDataLength: undefined, attachments: [{ index: entries[0]!.index, files: [{ name: 'MANIFEST', size: MiB }] }] }),
  );
  withAttachments.sendFrame(FrameKind.StreamChunk, Buffer.alloc(MiB));
  expect(await withAttachments.closedWithin(3000)).toBe(true);
  await sleep(100);
  // Nothing but the store's own batch directories (writes, compacted directories kept for reuse).
  expect(readdirSync(stagingOf(target)).filter((name) => !name.startsWith('batch-'))).toEqual([]);
  expect((await statusOf(cluster, target)).refused.transport.malformedFrames).toBe(before + 1);

  absentNode.start();
  await absentNode.waitReady();
  await cluster.put('after-cut-streams', 'ok');
  const digests = await cluster.converged();
  expect(new Set(digests).size).toBe(1);
  expect(cluster.allRunning()).toBe(true);
}, 60_000);
