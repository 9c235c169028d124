/**
 * The package as a consumer gets it: `npm pack`, then `npm install <tgz>` in a scratch project
 * outside the repo, then imports, types and the CLI from there.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const NODE_DIR = path.dirname(process.execPath);
const env = { ...process.env, PATH: `${NODE_DIR}${path.delimiter}${process.env.PATH ?? ''}` };
const scratch = mkdtempSync(path.join(os.tmpdir(), 'auditpipe-consumer-'));
const app = path.join(scratch, 'app');

function npm(args: string[], cwd: string): string {
  return execFileSync('npm', args, { cwd, env, encoding: 'utf8', timeout: 240_000 });
}
function node(args: string[]) {
  return spawnSync(process.execPath, args, { cwd: app, env, encoding: 'utf8', timeout: 60_000 });
}

before(() => {
  const tgz = npm(['pack', '--silent', '--pack-destination', scratch], ROOT).trim().split('\n').at(-1)!;
  execFileSync('mkdir', ['-p', app]);
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
  npm(['install', '--no-audit', '--no-fund', '--prefer-offline', path.join(scratch, tgz)], app);
});
after(() => rmSync(scratch, { recursive: true, force: true }));

test('import("auditpipe/client") with plain node prints function', () => {
  const run = node(['-e', "import('auditpipe/client').then(m=>console.log(typeof m.HttpAuditClient))"]);
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout.trim(), 'function');
});

test('require("auditpipe/client") from a .cjs file works', () => {
  writeFileSync(path.join(app, 'c.cjs'), 'const c = require("auditpipe/client"); console.log(typeof c.HttpAuditClient);\n');
  const run = node(['c.cjs']);
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout.trim(), 'function');
});

test('tsc type-checks a consumer against the published types, and catches a wrong type', () => {
  const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc');
  const flags = ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node', '--typeRoots', path.join(ROOT, 'node_modules/@types')];
  writeFileSync(path.join(app, 'ok.mts'), "import { HttpAuditClient } from 'auditpipe/client';\nimport type { PluginApi } from 'auditpipe';\nexport const f = (api: PluginApi): number => api.apiVersion;\nexport const C: typeof HttpAuditClient = HttpAuditClient;\n");
  const ok = node([tsc, ...flags, 'ok.mts']);
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  writeFileSync(path.join(app, 'bad.mts'), "import { HttpAuditClient } from 'auditpipe/client';\nexport const n: number = HttpAuditClient;\n");
  const bad = node([tsc, ...flags, 'bad.mts']);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stdout, /TS2322/);
});

test('npx auditpipe version', () => {
  assert.equal(npm(['exec', '--', 'auditpipe', 'version'], app).trim(), JSON.parse(execFileSync('cat', [path.join(ROOT, 'package.json')], { encoding: 'utf8' })).version);
});
