/**
 * The attack suite's tools: a real 3-node cluster of `replicalog node` processes on loopback,
 * and an attacker that speaks the transport's wire protocol by hand (raw frames over TCP or TLS).
 *
 * After every attack the suite checks what a user cares about: the cluster still accepts a write
 * within a couple of election timeouts, every replica holds the same state (equal digests), and
 * no node process died.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as connectTcp, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as connectTls } from 'node:tls';
import { encodeMessage } from '../../lib/codec.js';
import { bootstrapJoiningStore, bootstrapSeedStore } from '../../lib/node/bootstrap.js';
import { httpCall, NodeProcess, nodeEntryPath, sleep, waitForLeader, waitUntil } from '../../lib/node/local-cluster.js';
import type { ReplicaNodeStatus } from '../../lib/node/node.js';
import { freePorts } from '../../lib/node/ports.js';
import { KvStateMachine } from '../../lib/node/state-machine.js';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { encodeFrame, FrameDecoder, FrameKind } from '../../lib/transport/framing.js';
import { createClusterCertificates, type MemberTlsFiles } from '../../lib/transport/tls.js';
import { encodeGroupBatch, encodeHello, PROTOCOL_VERSION } from '../../lib/transport/wire.js';
import type { Message } from '../../lib/types.js';
import { ensureBuilt } from '../node/build.js';

export const CLUSTER_ID = 'attack-test';
export const TICK_MS = 50;
/** raft's election timeout is 10-20 ticks. */
export const ELECTION_TIMEOUT_MS = 20 * TICK_MS;

export interface Cluster {
  root: string;
  processes: Map<number, NodeProcess>;
  raftPorts: Map<number, number>;
  certificates: Map<number, MemberTlsFiles> | undefined;
  leader(): Promise<ReplicaNodeStatus>;
  /** A put through the leader, retried for up to `withinMs`; returns the time it took. */
  put(key: string, value: string, withinMs?: number): Promise<number>;
  /** Waits until every replica applied the same state; returns the digests. */
  converged(): Promise<string[]>;
  /** Every node process is still running. */
  allRunning(): boolean;
  rssBytes(id: number): number;
  stop(): Promise<void>;
}

export async function startCluster(options: { tls?: boolean; snapshotEvery?: number; keepEntries?: number } = {}): Promise<Cluster> {
  await ensureBuilt();
  const root = mkdtempSync(join(tmpdir(), 'replicalog-attacks-'));
  const ids = [1, 2, 3];
  const dirOf = (id: number) => join(root, `node-${id}`);
  const seed = await ReplicaLogStore.open({ dir: dirOf(1) });
  await bootstrapSeedStore(seed, ids, KvStateMachine.from([['seed', 'yes']], 0));
  await seed.close();
  for (const id of [2, 3]) {
    const store = await ReplicaLogStore.open({ dir: dirOf(id) });
    await bootstrapJoiningStore(store, ids);
    await store.close();
  }
  const certificates = options.tls === true ? createClusterCertificates(join(root, 'certs'), CLUSTER_ID, ids) : undefined;
  const ports = await freePorts(6);
  const raftPorts = new Map(ids.map((id, i) => [id, ports[i]!]));
  const peers = ids.map((id) => `${id}=127.0.0.1:${raftPorts.get(id)}`).join(',');
  const processes = new Map<number, NodeProcess>();
  const entry = nodeEntryPath();
  for (const [i, id] of ids.entries()) {
    const node = new NodeProcess({
      id,
      dir: dirOf(id),
      httpPort: ports[3 + i]!,
      peers,
      entry,
      clusterId: CLUSTER_ID,
      tickMs: TICK_MS,
      snapshotEvery: options.snapshotEvery ?? 1000,
      keepEntries: options.keepEntries ?? 50,
      ...(certificates === undefined ? {} : { tls: certificates.get(id)! }),
    });
    processes.set(id, node);
    node.start();
  }
  await Promise.all([...processes.values()].map((node) => node.waitReady()));

  const cluster: Cluster = {
    root,
    processes,
    raftPorts,
    certificates,
    async leader() {
      const leader = await waitForLeader(processes, 0, 10_000);
      if (leader === undefined) throw new Error(`no leader:\n${[...processes.values()].map((node) => node.logTail(8)).join('\n')}`);
      return leader;
    },
    async put(key, value, withinMs = 3 * ELECTION_TIMEOUT_MS) {
      const started = Date.now();
      const done = await waitUntil(withinMs, async () => {
        for (const node of processes.values()) {
          try {
            const answer = await httpCall(node.httpPort, 'PUT', `/kv/${encodeURIComponent(key)}`, value, 2000);
            if (answer.status === 200) return true;
          } catch {
            // try the next node
          }
        }
        return undefined;
      });
      if (done === undefined) throw new Error(`put ${key} not acknowledged within ${withinMs} ms:\n${[...processes.values()].map((node) => node.logTail(8)).join('\n')}`);
      return Date.now() - started;
    },
    async converged() {
      const digests = await waitUntil(10_000, async () => {
        const statuses = await Promise.all([...processes.values()].map((node) => node.status()));
        if (statuses.some((status) => status === undefined)) return undefined;
        const applied = new Set(statuses.map((status) => status!.applied));
        const digests = statuses.map((status) => status!.digest);
        return applied.size === 1 && new Set(digests).size === 1 ? digests : undefined;
      });
      if (digests === undefined) {
        const statuses = await Promise.all([...processes.values()].map((node) => node.status()));
        throw new Error(`replicas did not converge: ${JSON.stringify(statuses.map((status) => status && { id: status.id, applied: status.applied, digest: status.digest }))}`);
      }
      return digests;
    },
    allRunning: () => [...processes.values()].every((node) => node.running),
    rssBytes(id) {
      const pid = processes.get(id)!.pid!;
      const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      return Number(match![1]) * 1024;
    },
    async stop() {
      for (const node of processes.values()) node.kill('SIGTERM');
      await Promise.all([...processes.values()].map((node) => node.waitExit(10_000)));
      for (const node of processes.values()) node.kill('SIGKILL');
      rmSync(root, { recursive: true, force: true });
    },
  };
  await cluster.leader();
  return cluster;
}

/** A full raftpb Message from the fields an attack sets. */
export function forged(fields: Partial<Message> & Pick<Message, 'type' | 'from' | 'to'>): Message {
  return { term: 0, logTerm: 0, index: 0, entries: [], commit: 0, vote: 0, reject: false, rejectHint: 0, responses: [], ...fields };
}

export interface AttackerConnection {
  socket: Socket;
  /** 'accepted', or the refusal text / error that ended the handshake. */
  outcome: Promise<{ accepted: true } | { accepted: false; reason: string }>;
  sendMessage(message: Message): void;
  /**
   * Sends messages for partition 1 in one GroupBatch frame, so they are delivered together: the
   * real member, redialing after this connection superseded its own, supersedes this one in
   * turn, and frames still unread then are lost (messages sent one frame each may be).
   */
  sendMessagesTogether(messages: Message[]): void;
  sendFrame(kind: FrameKind, payload: Uint8Array): void;
  /** Resolves when the node closed the connection (or after `ms`, with false). */
  closedWithin(ms: number): Promise<boolean>;
  close(): void;
}

/**
 * Opens a connection to a node's raft port and says Hello as `senderId` (TLS with `tls` files:
 * whatever certificate the attacker holds, or none with `tls: {}`).
 */
export function attack(
  port: number,
  hello: { senderId: number; receiverId: number; clusterId?: string },
  options: { localAddress?: string; tls?: Partial<MemberTlsFiles> } = {},
): AttackerConnection {
  const socket =
    options.tls === undefined
      ? connectTcp({ host: '127.0.0.1', port, ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }) })
      : connectTls({
          host: '127.0.0.1',
          port,
          ...(options.tls.cert === undefined ? {} : { cert: readFileSync(options.tls.cert), key: readFileSync(options.tls.key!) }),
          ...(options.tls.ca === undefined ? {} : { ca: readFileSync(options.tls.ca) }),
          rejectUnauthorized: false,
        });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const decoder = new FrameDecoder({ maxFrameBytes: 64 * 1024 });
  const outcome = new Promise<{ accepted: true } | { accepted: false; reason: string }>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const frame of decoder.push(chunk)) {
          if (frame.kind === FrameKind.HelloAccept) resolve({ accepted: true });
          if (frame.kind === FrameKind.HelloRefuse) resolve({ accepted: false, reason: frame.payload.toString('utf8') });
        }
      } catch (error) {
        resolve({ accepted: false, reason: (error as Error).message });
      }
    });
    socket.once('close', () => resolve({ accepted: false, reason: 'closed' }));
  });
  const helloFrame = encodeFrame(
    FrameKind.Hello,
    encodeHello({ version: PROTOCOL_VERSION, senderId: hello.senderId, receiverId: hello.receiverId, clusterId: hello.clusterId ?? CLUSTER_ID }),
  );
  socket.once(options.tls === undefined ? 'connect' : 'secureConnect', () => socket.write(helloFrame));
  return {
    socket,
    outcome,
    sendMessage: (message) => socket.write(encodeFrame(FrameKind.Message, encodeMessage(message))),
    sendMessagesTogether: (messages) =>
      socket.write(encodeFrame(FrameKind.GroupBatch, encodeGroupBatch(messages.map((message) => ({ group: 1, flags: 0, bytes: encodeMessage(message) }))))),
    sendFrame: (kind, payload) => socket.write(encodeFrame(kind, payload)),
    closedWithin: async (ms) => {
      const timer = sleep(ms).then(() => false);
      return Promise.race([closed.then(() => true), timer]);
    },
    close: () => socket.destroy(),
  };
}

/** The status of node `id` (throws when it does not answer). */
export async function statusOf(cluster: Cluster, id: number): Promise<ReplicaNodeStatus> {
  const status = await cluster.processes.get(id)!.status();
  if (status === undefined) throw new Error(`node ${id} does not answer:\n${cluster.processes.get(id)!.logTail()}`);
  return status;
}
