#!/usr/bin/env node
// `npm run build` (also `prepare`, so `npm ci`, `npm pack` and git installs build): compiles src/
// to dist/ (ESM JavaScript, .d.ts, source maps with the sources inlined, since src/ is not
// published). Plain JavaScript so it also runs on the system Node that runs npm.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const dist = path.join(root, 'dist');
// dist/auditpipe is the single executable (npm run build:binary): not ours to delete.
const KEEP = new Set(['auditpipe']);

let tsc;
try {
  tsc = createRequire(path.join(root, 'package.json')).resolve('typescript/bin/tsc');
} catch {
  // npm ci --omit=dev: no compiler. bin/auditpipe.js then runs src/ with Node's type stripping.
  console.error('auditpipe build: typescript is not installed (devDependencies omitted?); dist/ not built');
  process.exit(0);
}

if (existsSync(dist)) {
  for (const entry of readdirSync(dist)) if (!KEEP.has(entry)) rmSync(path.join(dist, entry), { recursive: true, force: true });
}
const result = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
process.exit(result.status ?? 1);
