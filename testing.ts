// The package's secondary entry point `replicalog/testing` (dist/testing.js): test hooks and
// internals, no stability promise (see lib/testing.ts). The product is the main entry, index.ts.
export * from './lib/testing.js';
