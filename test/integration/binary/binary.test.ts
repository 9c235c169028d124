import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { freePort, waitReady } from '../../helpers/servers.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const BINARY = path.join(ROOT, 'dist', 'auditpipe');

/** A directory holding only the executable, a config and a plugin, as an operator would ship it. */
function emptyDirWithBinary(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-binary-'));
  copyFileSync(BINARY, path.join(dir, 'auditpipe'));
  mkdirSync(path.join(dir, 'plugins'));
  copyFileSync(path.join(ROOT, 'examples/plugins/ndjson-file/index.js'), path.join(dir, 'plugins', 'ndjson-file.js'));
  writeFileSync(path.join(dir, 'plugins.json'), '{"plugins": ["./plugins/ndjson-file.js"]}');
  return dir;
}

/** Runs `exe run` in `dir`, posts `ids` as NDJSON, and returns the ids the ndjson_file sink wrote to `file`. */
async function postThroughPlugin(exe: string, dir: string, port: number, ids: string[], file: string): Promise<{ inFile: string[]; stdout: string }> {
  const child = spawn(exe, ['run', '--config', 'auditpipe.yml'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => (stdout += c));
  child.stderr.on('data', (c) => (stderr += c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    await waitReady(`http://127.0.0.1:${port}`, () => stderr);
    const res = await fetch(`http://127.0.0.1:${port}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: ids.map((id, i) => JSON.stringify({ id, actorId: `actor-${i}` }) + '\n').join(''),
    });
    assert.equal(res.status, 200);
    const inFile = readFileSync(path.join(dir, 'data', file), 'utf8').trim().split('\n').map((l) => JSON.parse(l).id);
    return { inFile, stdout };
  } finally {
    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
  }
}

describe('the single executable', () => {
  before(() => {
    execFileSync(process.execPath, [path.join(ROOT, 'scripts/build-binary.mjs')], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'], timeout: 300_000 });
  });

  it('runs alone in an empty directory: version, validate, and a pipeline with the plugin', async () => {
    const dir = emptyDirWithBinary();
    const exe = path.join(dir, 'auditpipe');
    const version = spawnSync(exe, ['version'], { cwd: dir, encoding: 'utf8' });
    assert.equal(version.status, 0, version.stderr);
    assert.match(version.stdout, /^\d+\.\d+\.\d+/);

    const port = await freePort();
    writeFileSync(path.join(dir, 'auditpipe.yml'), [
      'data_dir: ./data',
      'plugins_file: plugins.json',
      'pipelines:',
      '  - name: default',
      `    source: { type: http, listen: "127.0.0.1:${port}" }`,
      '    sinks: [{ type: ndjson_file, path: events.ndjson }, { type: console }]',
    ].join('\n'));
    const validate = spawnSync(exe, ['validate', '--config', 'auditpipe.yml'], { cwd: dir, encoding: 'utf8' });
    assert.equal(validate.status, 0, validate.stderr);

    const { inFile, stdout } = await postThroughPlugin(exe, dir, port, ['b1', 'b2'], 'events.ndjson');
    assert.deepEqual(inFile, ['b1', 'b2']);
    assert.deepEqual(stdout.trim().split('\n').map((l) => JSON.parse(l).id), ['b1', 'b2']);
  });

  it('loads a plugin installed with npm as a package and listed in plugins.json by name', async () => {
    const dir = emptyDirWithBinary();
    const exe = path.join(dir, 'auditpipe');
    const npmEnv = { ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}` };
    const npm = (args: string[]) => execFileSync('npm', args, { cwd: dir, env: npmEnv, encoding: 'utf8', timeout: 120_000 });
    const pluginDir = path.join(ROOT, 'examples/plugins/ndjson-file');
    const pluginName = JSON.parse(readFileSync(path.join(pluginDir, 'package.json'), 'utf8')).name as string;
    const tgz = execFileSync('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: pluginDir, env: npmEnv, encoding: 'utf8' }).trim().split('\n').at(-1)!;
    writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'binary-operator', private: true }));
    // Only the plugin: its auditpipe peer is optional, the executable is the host.
    npm(['install', '--no-audit', '--no-fund', '--offline', path.join(dir, tgz)]);
    assert.equal(existsSync(path.join(dir, 'node_modules', 'auditpipe')), false);
    writeFileSync(path.join(dir, 'plugins.json'), JSON.stringify({ plugins: [pluginName] }));

    const port = await freePort();
    writeFileSync(path.join(dir, 'auditpipe.yml'), [
      'data_dir: ./data',
      'plugins_file: plugins.json',
      'pipelines:',
      '  - name: default',
      `    source: { type: http, listen: "127.0.0.1:${port}" }`,
      '    sinks: [{ type: ndjson_file, path: packaged.ndjson }]',
    ].join('\n'));
    const { inFile } = await postThroughPlugin(exe, dir, port, ['n1', 'n2'], 'packaged.ndjson');
    assert.deepEqual(inFile, ['n1', 'n2']);
  });

  it('runs the default pipeline (embedded chain store) and verify works on what it stored', async () => {
    const dir = emptyDirWithBinary();
    const exe = path.join(dir, 'auditpipe');
    copyFileSync(path.join(ROOT, 'config/auditpipe.yml'), path.join(dir, 'auditpipe.yml'));
    const port = await freePort();
    const env = { ...process.env, AUDITPIPE_HTTP_PORT: String(port), AUDITPIPE_DATA_DIR: path.join(dir, 'data') };
    const child = spawn(exe, ['run', '--config', 'auditpipe.yml'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c) => (stderr += c));
    child.stdout.resume();
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitReady(`http://127.0.0.1:${port}`, () => stderr, 1_200);
      const res = await fetch(`http://127.0.0.1:${port}/v1/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-ndjson' },
        body: '{"id":"c1","actorId":"alice"}\n{"id":"c2","actorId":"alice"}\n{"id":"c3","actorId":"bob"}\n',
      });
      assert.equal(res.status, 200);
    } finally {
      child.kill('SIGTERM');
      assert.equal(await exited, 0, stderr);
    }
    const verify = spawnSync(exe, ['verify', '--config', 'auditpipe.yml', '--json'], { cwd: dir, env, encoding: 'utf8' });
    assert.equal(verify.status, 0, verify.stderr + verify.stdout);
    const report = JSON.parse(verify.stdout);
    assert.equal(report.events, 3);
    assert.equal(report.actors, 2);
    // Worker threads need module files, which the executable does not have: one thread, said so.
    const threaded = spawnSync(exe, ['verify', '--config', 'auditpipe.yml', '--workers', '2', '--json'], { cwd: dir, env, encoding: 'utf8' });
    assert.equal(threaded.status, 0, threaded.stderr + threaded.stdout);
    assert.match(threaded.stderr, /one thread; --workers is ignored/);
    assert.equal(JSON.parse(threaded.stdout).events, 3);
  });
});
