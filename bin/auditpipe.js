#!/usr/bin/env -S node --max-semi-space-size=4
// Runs the compiled CLI when `npm run build` produced dist/, else the TypeScript sources directly
// (Node >= 22.18 strips types; npm scripts here run Node 24 from the `node` devDependency).
// A small young generation keeps the resident set flat under load (docs/benchmarks.md, memory).
import { existsSync } from 'node:fs';

const compiled = new URL('../dist/cli/main.js', import.meta.url);
await import(existsSync(compiled) ? compiled.href : new URL('../src/cli/main.ts', import.meta.url).href);
