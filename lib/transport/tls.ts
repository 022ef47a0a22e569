/**
 * Mutual TLS between members: how a certificate names a member, and how to make a cluster's
 * certificates with the `openssl` binary.
 *
 * Identity. A member's certificate carries a URI subject alternative name
 *
 *     replicalog://<cluster id, percent-encoded>/member/<member id>
 *
 * and is signed by the cluster's CA. A connection is accepted only when the TLS handshake proved
 * such a certificate (both ways: the dialer checks the acceptor's too) AND the id claimed in Hello
 * is the id the certificate names, for this cluster. A certificate that names another cluster, no
 * member, or two members is refused. Host names are not checked: members are identified by their
 * certificate's member id, not by their address.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PeerCertificate } from 'node:tls';
import { ErrorCode, ReplicaLogError } from '../errors.js';

const MEMBER_URI = /^replicalog:\/\/([^/]*)\/member\/([1-9][0-9]{0,15})$/;

/** The URI SAN naming member `id` of cluster `clusterId`. */
export function memberUri(clusterId: string, id: number): string {
  return `replicalog://${encodeURIComponent(clusterId)}/member/${id}`;
}

/**
 * The member id a peer certificate proves for `clusterId`, or a reason it proves none. Only the
 * certificate's URI SANs are read; a certificate naming members of several clusters is fine as
 * long as it names exactly one member of this one.
 */
export function memberIdOfCertificate(certificate: PeerCertificate | undefined, clusterId: string): { id: number } | { refusal: string } {
  const names = certificate?.subjectaltname;
  if (names === undefined || names === '') return { refusal: 'the certificate names no member (no URI subject alternative name)' };
  const ids = new Set<number>();
  for (const name of names.split(', ')) {
    if (!name.startsWith('URI:')) continue;
    const match = MEMBER_URI.exec(name.slice('URI:'.length));
    if (match === null) continue;
    let cluster: string;
    try {
      cluster = decodeURIComponent(match[1]!);
    } catch {
      continue;
    }
    if (cluster !== clusterId) continue;
    const id = Number(match[2]);
    if (Number.isSafeInteger(id)) ids.add(id);
  }
  if (ids.size === 0) return { refusal: 'the certificate names no member of this cluster' };
  if (ids.size > 1) return { refusal: 'the certificate names more than one member of this cluster' };
  return { id: [...ids][0]! };
}

/** Paths of one member's TLS files, as `replicalog node --peer-cert/--peer-key/--peer-ca` take them. */
export interface MemberTlsFiles {
  cert: string;
  key: string;
  ca: string;
}

/** Reads a member's TLS files into the Transport's `tls` option. */
export function readTlsFiles(files: MemberTlsFiles): { cert: Buffer; key: Buffer; ca: Buffer } {
  const read = (path: string, what: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (error) {
      throw new ReplicaLogError(ErrorCode.InvalidArgument, `cannot read the ${what} ${path}: ${(error as Error).message}`, { path });
    }
  };
  return { cert: read(files.cert, 'certificate'), key: read(files.key, 'private key'), ca: read(files.ca, 'CA certificate') };
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString('utf8').trim() ?? '';
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new ReplicaLogError(
      ErrorCode.InvalidArgument,
      missing ? 'the openssl binary is needed to make certificates (apt-get install openssl)' : `openssl ${args[0]} failed: ${stderr || (error as Error).message}`,
    );
  }
}

/**
 * Makes a CA and one certificate per member (P-256 keys, valid `days`) in `dir`, with the
 * `openssl` binary: `ca.pem`, `ca.key`, and `member-<id>.pem` / `member-<id>.key`. Keys are 0600.
 * For the demo, the tests and a first cluster; production clusters use their own PKI with the
 * same URI SAN (see memberUri).
 */
export function createClusterCertificates(dir: string, clusterId: string, memberIds: readonly number[], days = 3650): Map<number, MemberTlsFiles> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = join(dir, 'ca.pem');
  const caKey = join(dir, 'ca.key');
  const curve = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(['req', '-x509', ...curve, '-keyout', caKey, '-out', ca, '-days', String(days), '-subj', `/CN=replicalog CA`], dir);
  chmodSync(caKey, 0o600);
  const files = new Map<number, MemberTlsFiles>();
  for (const id of memberIds) {
    const cert = join(dir, `member-${id}.pem`);
    const key = join(dir, `member-${id}.key`);
    const request = join(dir, `member-${id}.csr`);
    const extensions = join(dir, `member-${id}.ext`);
    writeFileSync(
      extensions,
      `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=URI:${memberUri(clusterId, id)}\n`,
    );
    openssl(['req', ...curve, '-keyout', key, '-out', request, '-subj', `/CN=replicalog member ${id}`], dir);
    chmodSync(key, 0o600);
    openssl(['x509', '-req', '-in', request, '-CA', ca, '-CAkey', caKey, '-set_serial', `0x${Date.now().toString(16)}${id.toString(16)}`, '-days', String(days), '-extfile', extensions, '-out', cert], dir);
    rmSync(request, { force: true });
    rmSync(extensions, { force: true });
    files.set(id, { cert, key, ca });
  }
  return files;
}
