/**
 * The HTTP API's optional protections (issue 14): HTTPS with a client CA, and a bearer token.
 * One in-process node on loopback.
 */
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { bootstrapSeedStore } from '../../lib/node/bootstrap.js';
import { ReplicaNode } from '../../lib/node/node.js';
import { freePorts } from '../../lib/node/ports.js';
import { KvStateMachine } from '../../lib/node/state-machine.js';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { createClusterCertificates, type MemberTlsFiles } from '../../lib/transport/tls.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';

const TOKEN = 'a-token-of-enough-length';
let node: ReplicaNode;
let files: Map<number, MemberTlsFiles>;

beforeAll(async () => {
  const root = makeTempDir('replicalog-http-security-');
  // Member 1's certificate serves HTTPS; member 2's is a client certificate the same CA signed.
  files = createClusterCertificates(join(root, 'certs'), 'http', [1, 2]);
  const dir = join(root, 'node');
  const store = await ReplicaLogStore.open({ dir });
  await bootstrapSeedStore(store, [1], KvStateMachine.from([['k', 'v']], 0));
  await store.close();
  const [raftPort] = await freePorts(1);
  const server = files.get(1)!;
  node = await ReplicaNode.start({
    id: 1,
    dir,
    peers: new Map([[1, { host: '127.0.0.1', port: raftPort! }]]),
    httpPort: 0,
    tickMs: 20,
    log: () => undefined,
    httpTls: { cert: readFileSync(server.cert), key: readFileSync(server.key), ca: readFileSync(server.ca) },
    httpAuthToken: TOKEN,
  });
}, 30_000);

afterAll(async () => {
  await node?.close();
  removeTempDirs();
});

function get(path: string, options: { token?: string; client?: MemberTlsFiles }): Promise<number | string> {
  return new Promise((resolve) => {
    const outgoing = httpsRequest(
      {
        host: '127.0.0.1',
        port: node.httpAddress!.port,
        path,
        ca: readFileSync(files.get(1)!.ca),
        checkServerIdentity: () => undefined,
        ...(options.client === undefined ? {} : { cert: readFileSync(options.client.cert), key: readFileSync(options.client.key) }),
        headers: options.token === undefined ? {} : { authorization: `Bearer ${options.token}` },
      },
      (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      },
    );
    outgoing.on('error', (error) => resolve(error.message));
    outgoing.end();
  });
}

it.each([
  { name: 'a client certificate and the token', client: 2, token: TOKEN, expected: 200 },
  { name: 'a client certificate and a wrong token', client: 2, token: 'a-token-of-enough-lengtH', expected: 401 },
  { name: 'a client certificate and no token', client: 2, token: undefined, expected: 401 },
])('answers $expected to $name', async ({ client, token, expected }) => {
  expect(await get('/status', { client: files.get(client)!, ...(token === undefined ? {} : { token }) })).toBe(expected);
});

it('refuses a client without a certificate at the TLS handshake', async () => {
  const outcome = await get('/status', { token: TOKEN });
  expect(typeof outcome).toBe('string');
});
