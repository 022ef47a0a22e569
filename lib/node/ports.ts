/**
 * Free loopback ports for local clusters (the demo, tests).
 *
 * A port the kernel hands out for `listen(0)` comes from the ephemeral range, the same range
 * it picks the local ports of outgoing connections from: between our check and the node's own
 * listen, any connection made on this machine (other nodes dialling, HTTP clients) may take
 * it (EADDRINUSE, seen once several clusters ran at once). So ports are drawn at random from
 * below the ephemeral range, where nothing is handed out implicitly, and checked free.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

const FALLBACK_EPHEMERAL_START = 32768;
const LOWEST = 10000;

/** The first port of the kernel's ephemeral range (Linux), else the IANA default's start. */
function ephemeralStart(): number {
  try {
    const [start] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return start !== undefined && Number.isInteger(start) && start > LOWEST + 1000 ? start : FALLBACK_EPHEMERAL_START;
  } catch {
    return FALLBACK_EPHEMERAL_START;
  }
}

/** Listens on `port` (0: any) on 127.0.0.1 and closes again; resolves the port, or undefined when it is taken. */
function tryPort(port: number): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) => (error.code === 'EADDRINUSE' || error.code === 'EACCES' ? resolve(undefined) : reject(error)));
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      const bound = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(bound));
    });
  });
}

/** A TCP port on 127.0.0.1 that was free a moment ago, below the ephemeral range when possible. */
export async function freePort(): Promise<number> {
  const limit = ephemeralStart();
  for (let attempt = 0; attempt < 64; attempt++) {
    const candidate = LOWEST + Math.floor(Math.random() * (limit - LOWEST));
    const port = await tryPort(candidate);
    if (port !== undefined) return port;
  }
  // Everything tried was taken: let the kernel choose.
  const port = await tryPort(0);
  if (port === undefined) throw new Error('no free TCP port on 127.0.0.1');
  return port;
}

/** `count` distinct free ports. */
export async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}
