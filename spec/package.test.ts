/**
 * The published package (issue 17): `npm pack` builds (prepack) and ships what a user needs and
 * nothing else (no dev scripts, no source maps without their sources, a LICENSE); installed into
 * a scratch consumer project, `import 'replicalog'` opens a store, appends and reads back, and
 * `replicalog/spec` loads. Dependencies come from npm's cache when they are there.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { makeTempDir, removeTempDirs } from './helpers/temp-dir.js';
import { REPO_ROOT } from './cli/harness.js';

afterAll(removeTempDirs);

it('npm pack ships dist, bin, schemas, README and LICENSE only, and a consumer project can use it', () => {
  const scratch = makeTempDir('replicalog-pack-');
  const output = execFileSync('npm', ['pack', '--json', '--pack-destination', scratch], { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const [packed] = JSON.parse(output.slice(output.indexOf('['))) as { filename: string; files: { path: string }[] }[];
  const paths = packed!.files.map((file) => file.path);
  expect(paths).toContain('LICENSE');
  expect(paths).toContain('dist/index.js');
  expect(paths).toContain('dist/spec/conformance.js');
  expect(paths).toContain('bin/replicalog.js');
  expect(paths.filter((path) => path.endsWith('.map') || path.startsWith('dist/scripts/') || path.endsWith('.ts') && !path.endsWith('.d.ts'))).toEqual([]);

  const consumer = join(scratch, 'consumer');
  mkdirSync(consumer);
  writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', type: 'module', private: true }));
  // The conformance suite's optional peers come along, as a user of replicalog/spec installs them.
  execFileSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(scratch, packed!.filename), 'vitest', 'fast-check'], { cwd: consumer, stdio: 'ignore' });
  writeFileSync(
    join(consumer, 'main.js'),
    `import { ReplicaLogStore, EntryType } from 'replicalog';
const store = await ReplicaLogStore.open({ dir: process.argv[2] });
await store.append([{ index: 1, term: 1, type: EntryType.Normal, data: new TextEncoder().encode('hello') }]);
const spec = await import('replicalog/spec');
console.log(JSON.stringify({ last: store.lastIndex(), data: new TextDecoder().decode(store.entries(1, 2)[0].data), conformance: typeof spec.storageConformance }));
await store.close();
`,
  );
  const result = execFileSync(process.execPath, ['main.js', join(scratch, 'store')], { cwd: consumer, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  expect(JSON.parse(result)).toEqual({ last: 1, data: 'hello', conformance: 'function' });
  const help = execFileSync(join(consumer, 'node_modules', '.bin', 'replicalog'), ['--help'], { encoding: 'utf8' });
  expect(help).toContain('migrate');
}, 180_000);
