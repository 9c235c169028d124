#!/usr/bin/env -S node --max-semi-space-size=4
// In a git checkout (src/ present) runs the TypeScript sources, so an edit is never shadowed by a
// stale dist/; the published package has no src/ and runs the compiled dist/. Node without type
// stripping (< 22.18) falls back to dist/ in a checkout too.
// A small young generation keeps the resident set flat under load (docs/benchmarks.md, memory).
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/main.ts', import.meta.url);
const compiled = new URL('../dist/cli/main.js', import.meta.url);
const runSource = existsSync(source) && (process.features.typescript || !existsSync(compiled));
await import(runSource ? source.href : compiled.href);
