/**
 * Mutual TLS between members (issue 14): a 3-node cluster of real processes over mTLS elects and
 * replicates; a client without a certificate, with one from another CA, or holding member 2's
 * certificate while claiming to be member 3 (or the leader) is refused; member 2's own
 * certificate claiming member 2 is accepted (the control that shows the refusals are specific).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClusterCertificates, memberIdOfCertificate, memberUri } from '../../lib/transport/tls.js';
import { attack, CLUSTER_ID, startCluster, statusOf, type Cluster } from './harness.js';

let cluster: Cluster;
const strangers = mkdtempSync(join(tmpdir(), 'replicalog-other-ca-'));

beforeAll(async () => {
  cluster = await startCluster({ tls: true });
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
  rmSync(strangers, { recursive: true, force: true });
});

describe('mutual TLS between members', () => {
  it('the cluster elects and replicates over mTLS', async () => {
    await cluster.put('over-tls', 'yes');
    const digests = await cluster.converged();
    expect(new Set(digests).size).toBe(1);
  });

  it('refuses plain TCP, TLS without a certificate, a certificate from another CA, and a member claiming another id', async () => {
    const leader = await cluster.leader();
    const target = [1, 2, 3].find((id) => id !== leader.id)!;
    const port = cluster.raftPorts.get(target)!;
    const other = createClusterCertificates(strangers, CLUSTER_ID, [1, 2, 3]);
    const impostor = [1, 2, 3].find((id) => id !== target && id !== leader.id)!;
    const before = (await statusOf(cluster, target)).refused.transport;

    const cases = [
      { name: 'plain TCP', connection: attack(port, { senderId: impostor, receiverId: target }) },
      { name: 'TLS without a certificate', connection: attack(port, { senderId: impostor, receiverId: target }, { tls: {} }) },
      { name: 'a certificate from another CA', connection: attack(port, { senderId: impostor, receiverId: target }, { tls: other.get(impostor)! }) },
      {
        name: `member ${impostor}'s certificate claiming the leader (${leader.id})`,
        connection: attack(port, { senderId: leader.id, receiverId: target }, { tls: cluster.certificates!.get(impostor)! }),
      },
    ];
    for (const { name, connection } of cases) {
      const outcome = await connection.outcome;
      expect(outcome.accepted, name).toBe(false);
      connection.close();
    }
    const claimed = await attack(port, { senderId: leader.id, receiverId: target }, { tls: cluster.certificates!.get(impostor)! }).outcome;
    expect(claimed).toEqual({ accepted: false, reason: `the certificate is member ${impostor}'s, not member ${leader.id}'s` });
    const after = (await statusOf(cluster, target)).refused.transport;
    expect(after.tlsFailures).toBeGreaterThan(before.tlsFailures);
    expect(after.handshakesRefused).toBeGreaterThan(before.handshakesRefused);

    // The control: the same certificate claiming its own id is accepted.
    const honest = attack(port, { senderId: impostor, receiverId: target }, { tls: cluster.certificates!.get(impostor)! });
    expect(await honest.outcome).toEqual({ accepted: true });
    honest.close();

    await cluster.put('after-tls-attacks', 'yes');
    expect(new Set(await cluster.converged()).size).toBe(1);
    expect(cluster.allRunning()).toBe(true);
  });
});

describe('member identity in a certificate', () => {
  it.each([
    ['one member of this cluster', `URI:${memberUri(CLUSTER_ID, 7)}`, { id: 7 }],
    ['a member of another cluster only', `URI:${memberUri('other', 7)}`, { refusal: 'the certificate names no member of this cluster' }],
    ['two members of this cluster', `URI:${memberUri(CLUSTER_ID, 7)}, URI:${memberUri(CLUSTER_ID, 8)}`, { refusal: 'the certificate names more than one member of this cluster' }],
    ['no URI at all', 'DNS:localhost', { refusal: 'the certificate names no member of this cluster' }],
    ['an id with a leading zero', `URI:replicalog://${CLUSTER_ID}/member/07`, { refusal: 'the certificate names no member of this cluster' }],
  ])('%s', (_name, subjectaltname, expected) => {
    expect(memberIdOfCertificate({ subjectaltname } as Parameters<typeof memberIdOfCertificate>[0], CLUSTER_ID)).toEqual(expected);
  });
});
