/**
 * Compiles the crash driver (scripts/crash-driver.ts and every lib/ module) to plain JS in a
 * private temporary directory, with TypeScript's transpileModule (no type check: ~1 s), so the
 * kill tests always run the current sources without depending on a stale dist/. node_modules
 * and schemas/ are linked beside it so the compiled files resolve classic-level and protobufjs.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function sources(directory: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(directory, { withFileTypes: true })) {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) out.push(...sources(path));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') && !entry.name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

export interface BuiltDriver {
  /** node <driver> '<config json>' */
  driver: string;
  remove(): void;
}

export function buildDriver(): BuiltDriver {
  const out = mkdtempSync(join(tmpdir(), 'replicalog-driver-'));
  const files = [...sources(join(root, 'lib')), join(root, 'scripts', 'crash-driver.ts')];
  for (const file of files) {
    const result = ts.transpileModule(readFileSync(file, 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false, isolatedModules: true },
      fileName: file,
    });
    const target = join(out, relative(root, file)).replace(/\.ts$/, '.js');
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, result.outputText);
  }
  writeFileSync(join(out, 'package.json'), JSON.stringify({ type: 'module' }));
  symlinkSync(join(root, 'node_modules'), join(out, 'node_modules'), 'dir');
  // lib/codec.ts loads schemas/*.proto relative to itself.
  symlinkSync(join(root, 'schemas'), join(out, 'schemas'), 'dir');
  return { driver: join(out, 'scripts', 'crash-driver.js'), remove: () => rmSync(out, { recursive: true, force: true }) };
}
