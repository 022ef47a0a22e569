// The package entry point (dist/index.js): everything public is exported by lib/index.ts.
export * from './lib/index.js';
