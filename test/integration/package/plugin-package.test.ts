/**
 * A third-party plugin as its own npm package: examples/plugins/ndjson-file packed with `npm pack`,
 * installed next to the packed auditpipe in a scratch project outside the repo, listed in
 * plugins.json by package name, type-checked against the published types, and run.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { freePort, waitReady } from '../../helpers/servers.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const PLUGIN_DIR = path.join(ROOT, 'examples/plugins/ndjson-file');
const PLUGIN = JSON.parse(readFileSync(path.join(PLUGIN_DIR, 'package.json'), 'utf8')).name as string;
const NODE_DIR = path.dirname(process.execPath);
const env = { ...process.env, PATH: `${NODE_DIR}${path.delimiter}${process.env.PATH ?? ''}` };
const scratch = mkdtempSync(path.join(os.tmpdir(), 'auditpipe-plugin-'));
const app = path.join(scratch, 'app');
const installedBin = path.join(app, 'node_modules/auditpipe/bin/auditpipe.js');

function npm(args: string[], cwd: string): string {
  return execFileSync('npm', args, { cwd, env, encoding: 'utf8', timeout: 240_000 });
}
const pack = (dir: string) => path.join(scratch, npm(['pack', '--silent', '--pack-destination', scratch], dir).trim().split('\n').at(-1)!);

before(() => {
  const auditpipeTgz = pack(ROOT);
  const pluginTgz = pack(PLUGIN_DIR);
  mkdirSync(app);
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'plugin-user', private: true }));
  npm(['install', '--no-audit', '--no-fund', '--prefer-offline', auditpipeTgz, pluginTgz], app);
});
after(() => rmSync(scratch, { recursive: true, force: true }));

test('the plugin package holds plain JavaScript and does not need auditpipe at run time', () => {
  const manifest = JSON.parse(readFileSync(path.join(app, 'node_modules', PLUGIN, 'package.json'), 'utf8'));
  assert.equal(manifest.dependencies, undefined, 'no run-time dependencies');
  assert.equal(manifest.peerDependenciesMeta?.auditpipe?.optional, true, 'auditpipe is an optional peer: types only');
  const source = readFileSync(path.join(app, 'node_modules', PLUGIN, 'index.js'), 'utf8');
  assert.doesNotMatch(source, /^\s*import\s[^;]*['"]auditpipe/m, 'no run-time import of auditpipe');
});

test('its JSDoc types check against the published auditpipe types, and a wrong use is caught', () => {
  const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc');
  const flags = ['--noEmit', '--allowJs', '--checkJs', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node', '--typeRoots', path.join(ROOT, 'node_modules/@types')];
  const ok = spawnSync(process.execPath, [tsc, ...flags, path.join('node_modules', PLUGIN, 'index.js')], { cwd: app, env, encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  writeFileSync(path.join(app, 'bad.js'), "/** @param {import('auditpipe').PluginApi} api */\nexport function register(api) { api.registerSink({ type: 1 }); }\n");
  const bad = spawnSync(process.execPath, [tsc, ...flags, 'bad.js'], { cwd: app, env, encoding: 'utf8' });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stdout, /bad\.js.*TS\d+/);
});

test('listed in plugins.json by package name, it works with the installed auditpipe validate and run', async () => {
  const port = await freePort();
  writeFileSync(path.join(app, 'plugins.json'), JSON.stringify({ plugins: [PLUGIN] }));
  writeFileSync(path.join(app, 'auditpipe.yml'), [
    'data_dir: ./data',
    'plugins_file: plugins.json',
    'pipelines:',
    '  - name: app',
    `    source: { type: http, listen: "127.0.0.1:${port}" }`,
    '    sinks: [{ type: ndjson_file, path: events.ndjson }]',
    '',
  ].join('\n'));
  const validate = spawnSync(process.execPath, [installedBin, 'validate', '--config', 'auditpipe.yml'], { cwd: app, env, encoding: 'utf8' });
  assert.equal(validate.status, 0, validate.stdout + validate.stderr);

  const child = spawn(process.execPath, [installedBin, 'run', '--config', 'auditpipe.yml'], { cwd: app, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    await waitReady(`http://127.0.0.1:${port}`, () => stderr);
    const res = await fetch(`http://127.0.0.1:${port}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: '{"id":"p1","actorId":"a"}\n{"id":"p2","actorId":"b"}\n',
    });
    assert.equal(res.status, 200, await res.text());
    const ids = readFileSync(path.join(app, 'data/events.ndjson'), 'utf8').trim().split('\n').map((line) => JSON.parse(line).id);
    assert.deepEqual(ids, ['p1', 'p2']);
  } finally {
    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
  }
});

test('a plugins.json naming a package that is not installed fails validate with the name', () => {
  writeFileSync(path.join(app, 'missing.json'), JSON.stringify({ plugins: ['auditpipe-plugin-not-installed'] }));
  writeFileSync(path.join(app, 'missing.yml'), 'plugins_file: missing.json\npipelines:\n  - name: app\n    source: { type: http, listen: "127.0.0.1:0" }\n    sinks: [{ type: console }]\n');
  const run = spawnSync(process.execPath, [installedBin, 'validate', '--config', 'missing.yml'], { cwd: app, env, encoding: 'utf8' });
  assert.notEqual(run.status, 0);
  assert.match(run.stdout + run.stderr, /auditpipe-plugin-not-installed/);
  assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
});
