#!/usr/bin/env node
// `npm run build:binary`: one self-contained executable at dist/auditpipe, built the standard way
// for Node single executable applications: bundle the CLI to one CommonJS file (esbuild), turn it
// into a SEA blob (node --experimental-sea-config), inject it into a copy of this Node binary
// (postject). Files a dependency loads from disk at run time (PGlite's WASM and data) go in as
// SEA assets; plugins stay on disk and are loaded from the plugins.json next to the config.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { build } from 'esbuild';

const root = path.resolve(import.meta.dirname, '..');
const work = path.join(root, '.cache', 'sea');
const out = path.join(root, 'dist', 'auditpipe');
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
mkdirSync(path.dirname(out), { recursive: true });

const bundle = path.join(work, 'auditpipe.cjs');
await build({
  entryPoints: [path.join(root, 'src/cli/main.ts')],
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node24',
  outfile: bundle,
  // ESM-only code reads import.meta.url; inside the executable it is the executable itself.
  define: { 'import.meta.url': '__auditpipeMetaUrl', 'import.meta.dirname': '__dirname' },
  banner: { js: 'const __auditpipeMetaUrl = require("node:url").pathToFileURL(process.execPath).href;' },
  logLevel: 'warning',
});

// Assets: PGlite's runtime files, when the embedded store is part of the build.
const assets = {};
const require = createRequire(path.join(root, 'package.json'));
try {
  const pgliteDir = path.dirname(require.resolve('@electric-sql/pglite'));
  for (const file of readdirSync(pgliteDir)) {
    if (file.endsWith('.wasm') || file.endsWith('.data')) assets[`pglite/${file}`] = path.join(pgliteDir, file);
  }
} catch {
  // PGlite not installed: the embedded store is not in this build.
}

const seaConfig = path.join(work, 'sea-config.json');
const blob = path.join(work, 'sea-prep.blob');
// execArgv: the same small young generation `npm start` and bin/auditpipe.js use (docs/benchmarks.md).
writeFileSync(seaConfig, JSON.stringify({ main: bundle, output: blob, disableExperimentalSEAWarning: true, useCodeCache: false, assets, execArgv: ['--max-semi-space-size=4'] }, null, 2));
execFileSync(process.execPath, ['--experimental-sea-config', seaConfig], { stdio: 'inherit' });

if (existsSync(out)) rmSync(out);
copyFileSync(process.execPath, out);
chmodSync(out, 0o755);
const postject = path.join(root, 'node_modules', 'postject', 'dist', 'cli.js');
execFileSync(process.execPath, [postject, out, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2'], { stdio: 'inherit' });
console.log(JSON.stringify({ binary: out, assets: Object.keys(assets) }));
