import { execFileSync } from 'node:child_process';
import path from 'node:path';

/** A test-server endpoint from the environment; a benchmark without one exits with how to get it. */
export function requiredEnv(name: string): string {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`${name} is not set; run "npm run servers:up" and "set -a; . .servers/env; set +a" first (or "npm run bench", which starts them)\n`);
    process.exit(2);
  }
  return value;
}

/**
 * The CLI a memory figure is measured on: by default the compiled package (`dist/`, built here
 * first), which is what `npm install` users run; `src` runs the TypeScript sources as a git checkout
 * does, which costs ~20 MB more (Node's type stripping; docs/decisions.md, "Memory").
 */
export function cliEntry(root: string, from: string): string {
  if (from === 'src') return path.join(root, 'src/cli/main.ts');
  if (from !== 'dist') throw new Error(`--from must be dist or src, not ${JSON.stringify(from)}`);
  execFileSync(process.execPath, [path.join(root, 'scripts/build.mjs')], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  return path.join(root, 'dist/cli/main.js');
}
