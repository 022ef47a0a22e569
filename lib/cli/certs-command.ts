/**
 * `replicalog certs`: makes a cluster CA and one certificate per member for mutual TLS between
 * members (`replicalog node --peer-cert/--peer-key/--peer-ca`), with the `openssl` binary.
 *
 *   replicalog certs --cluster-id demo --ids 1,2,3 --out ./certs
 *
 * Writes ca.pem, ca.key (keep it offline), member-<id>.pem and member-<id>.key (0600). Each
 * member certificate names its member with the URI SAN replicalog://<cluster>/member/<id>.
 */
import { existsSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { createClusterCertificates } from '../transport/tls.js';
import { UsageError } from './io.js';

function parseIds(value: string): number[] {
  const ids = value.split(',').map((item) => item.trim());
  for (const id of ids) if (!/^[1-9][0-9]*$/.test(id) || !Number.isSafeInteger(Number(id))) throw new InvalidArgumentError(`"${id}" is not a member id`);
  if (new Set(ids).size !== ids.length) throw new InvalidArgumentError('an id is listed twice');
  return ids.map(Number);
}

export function registerCertsCommand(program: Command): Command {
  return program
    .command('certs')
    .description('make a CA and per-member certificates for mutual TLS between members (uses openssl)')
    .requiredOption('--ids <list>', 'member ids, e.g. 1,2,3', parseIds)
    .requiredOption('--out <dir>', 'directory to write into (must not hold a ca.pem already)')
    .option('--cluster-id <name>', 'the cluster id the certificates are valid for', 'replicalog')
    .option('--days <n>', 'validity in days', (value) => Number(value), 3650)
    .action((flags: { ids: number[]; out: string; clusterId: string; days: number }) => {
      if (existsSync(`${flags.out}/ca.pem`)) throw new UsageError(`${flags.out} already holds a ca.pem: choose another --out`);
      const files = createClusterCertificates(flags.out, flags.clusterId, flags.ids, flags.days);
      for (const [id, member] of files) {
        process.stdout.write(`member ${id}: --peer-cert ${member.cert} --peer-key ${member.key} --peer-ca ${member.ca}\n`);
      }
    });
}
