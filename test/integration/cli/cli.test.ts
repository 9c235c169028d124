import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { freePort, waitReady } from '../../helpers/servers.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const CLI = path.join(ROOT, 'src/cli/main.ts');

interface Running {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

function runCli(args: string[], env: Record<string, string>, cwd = ROOT): Running {
  const child = spawn(process.execPath, [CLI, ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (chunk) => (out += chunk));
  child.stderr!.on('data', (chunk) => (err += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal, at: Date.now() }));
  });
  return { child, stdout: () => out, stderr: () => err, exited };
}

async function waitReadyChild(port: number, running: Running): Promise<void> {
  await waitReady(`http://127.0.0.1:${port}`, () => (running.child.exitCode !== null ? `exited early: ${running.stderr()}` : running.stderr()));
}

const jsonLines = (text: string) => text.split('\n').filter(Boolean).map((line) => JSON.parse(line));

describe('auditpipe CLI', () => {
  it('runs the default pipeline: three events posted come back as three JSON lines on stdout', async () => {
    const port = await freePort();
    const dataDir = mkdtempSync(path.join(tmpdir(), 'auditpipe-default-'));
    const running = runCli(['run'], { AUDITPIPE_HTTP_PORT: String(port), AUDITPIPE_DATA_DIR: dataDir });
    try {
      await waitReadyChild(port, running);
      const res = await fetch(`http://127.0.0.1:${port}/v1/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-ndjson' },
        body: '{"id":"d1","actorId":"alice","action":"login"}\n{"id":"d2","actorId":"bob"}\n{"id":"d3","actorId":"alice"}\n',
      });
      assert.equal(res.status, 200);
      // The answer comes after the console sink wrote the lines, so they are on stdout already.
      const printed = jsonLines(running.stdout()).filter((l) => ['d1', 'd2', 'd3'].includes(l.id));
      assert.deepEqual(printed.map((l) => l.id).sort(), ['d1', 'd2', 'd3']);
      assert.equal(printed.find((l) => l.id === 'd1').action, 'login');
    } finally {
      running.child.kill('SIGTERM');
      const { code } = await running.exited;
      assert.equal(code, 0);
    }
  });

  it('validate exits 0 for a valid config and non-zero naming the key for a wrong type', () => {
    const ok = spawnSync(process.execPath, [CLI, 'validate', '--config', 'config/auditpipe.yml'], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /valid/);

    const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-validate-'));
    const bad = path.join(dir, 'bad.yml');
    writeFileSync(bad, 'pipelines:\n  - name: p\n    source: { type: http }\n    batch: { max_events: lots }\n    sinks: [{ type: console, retry: { max_attempts: -3 } }]\n');
    const result = spawnSync(process.execPath, [CLI, 'validate', '--config', bad], { cwd: ROOT, encoding: 'utf8' });
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /bad\.yml: pipeline "p": key "batch\.max_events": must be a positive integer/);
    assert.match(result.stderr, /sinks\[0\]: key "retry\.max_attempts"/);
  });

  it('prints help and version', () => {
    const help = spawnSync(process.execPath, [CLI, '--help'], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(help.status, 0);
    assert.match(help.stdout, /auditpipe run/);
    const version = spawnSync(process.execPath, [CLI, 'version'], { cwd: ROOT, encoding: 'utf8' });
    assert.match(version.stdout.trim(), /^\d+\.\d+\.\d+/);
  });

  it('SIGTERM with events in flight: every event answered 2xx is on stdout, and it exits within the bound', async () => {
    const port = await freePort();
    const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-sigterm-'));
    const config = path.join(dir, 'auditpipe.yml');
    // Slow flushes keep events in flight when the signal arrives.
    writeFileSync(config, [
      `data_dir: ${dir}`,
      'shutdown_timeout_ms: 5000',
      'pipelines:',
      '  - name: default',
      '    source: { type: http, listen: "127.0.0.1:${AUDITPIPE_HTTP_PORT}" }',
      '    batch: { max_events: 50, interval_ms: 300, max_in_flight: 1 }',
      '    sinks: [{ type: console }]',
    ].join('\n'));
    const running = runCli(['run', '--config', config], { AUDITPIPE_HTTP_PORT: String(port) });
    await waitReadyChild(port, running);
    const answered: string[] = [];
    const refused: string[] = [];
    let signalledAt = 0;
    const senders = Array.from({ length: 8 }, async (_, sender) => {
      for (let i = 0; i < 40; i += 1) {
        const id = `s${sender}-${i}`;
        try {
          const res = await fetch(`http://127.0.0.1:${port}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id }) });
          (res.status === 200 ? answered : refused).push(id);
        } catch {
          refused.push(id);
        }
        if (signalledAt && Date.now() - signalledAt > 1_000) return;
      }
    });
    await new Promise((r) => setTimeout(r, 700));
    signalledAt = Date.now();
    running.child.kill('SIGTERM');
    await Promise.all(senders);
    const { code, at } = await running.exited;
    assert.equal(code, 0);
    assert.ok(at - signalledAt < 5_000 + 2_000, 'exits within the shutdown bound');
    assert.ok(answered.length > 0, 'some events were answered before the signal');
    const printed = new Set(jsonLines(running.stdout()).map((l) => l.id));
    const missing = answered.filter((id) => !printed.has(id));
    assert.deepEqual(missing, [], 'an event answered 2xx is missing from stdout');
  });

  it('keeps its compile cache in a private directory of the user, never in one others can write', () => {
    const start = (cacheHome: string, extra: Record<string, string> = {}) => {
      const env: NodeJS.ProcessEnv = { ...process.env, XDG_CACHE_HOME: cacheHome, ...extra };
      delete env.NODE_COMPILE_CACHE;
      delete env.NODE_DISABLE_COMPILE_CACHE;
      const run = spawnSync(process.execPath, [CLI, 'verify', '--help'], { cwd: ROOT, env, encoding: 'utf8' });
      assert.equal(run.status, 0, run.stderr);
    };
    const files = (dir: string) => readdirSync(dir, { recursive: true }).filter((name) => statSync(path.join(dir, String(name))).isFile()).length;

    const home = mkdtempSync(path.join(tmpdir(), 'auditpipe-cache-'));
    start(home);
    const cache = path.join(home, 'auditpipe', 'compile-cache');
    assert.equal(statSync(cache).mode & 0o077, 0);
    assert.equal(statSync(path.dirname(cache)).mode & 0o077, 0);
    assert.ok(files(cache) > 10, 'the modules verify loads are cached');

    const shared = mkdtempSync(path.join(tmpdir(), 'auditpipe-cache-'));
    const open = path.join(shared, 'auditpipe', 'compile-cache');
    mkdirSync(open, { recursive: true });
    chmodSync(open, 0o777);
    start(shared);
    assert.equal(files(open), 0, 'a directory anyone can write is not used');

    const off = mkdtempSync(path.join(tmpdir(), 'auditpipe-cache-'));
    start(off, { AUDITPIPE_COMPILE_CACHE: 'off' });
    assert.equal(existsSync(path.join(off, 'auditpipe')), false);

    // A relative XDG_CACHE_HOME is invalid (XDG base directory spec): ~/.cache instead, not the working directory.
    const userHome = mkdtempSync(path.join(tmpdir(), 'auditpipe-home-'));
    start('relative-cache', { HOME: userHome });
    assert.equal(existsSync(path.join(ROOT, 'relative-cache')), false);
    assert.ok(files(path.join(userHome, '.cache', 'auditpipe', 'compile-cache')) > 10);
  });

  describe('plugins', () => {
    it('loads the example plugin from plugins.json and delivers events to it', async () => {
      const port = await freePort();
      const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-plugin-'));
      const plugins = path.join(dir, 'plugins.json');
      writeFileSync(plugins, JSON.stringify({ plugins: [path.join(ROOT, 'examples/plugins/ndjson-file/index.js')] }));
      const config = path.join(dir, 'auditpipe.yml');
      writeFileSync(config, [
        `data_dir: ${dir}`,
        'plugins_file: plugins.json',
        'pipelines:',
        '  - name: default',
        `    source: { type: http, listen: "127.0.0.1:${port}" }`,
        '    sinks: [{ type: ndjson_file, path: out.ndjson }]',
      ].join('\n'));
      const running = runCli(['run', '--config', config], {});
      try {
        await waitReadyChild(port, running);
        const res = await fetch(`http://127.0.0.1:${port}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '[{"id":"x1"},{"id":"x2"}]' });
        assert.equal(res.status, 200);
        const { readFileSync } = await import('node:fs');
        assert.deepEqual(jsonLines(readFileSync(path.join(dir, 'out.ndjson'), 'utf8')).map((l) => l.id), ['x1', 'x2']);
      } finally {
        running.child.kill('SIGTERM');
        await running.exited;
      }
    });

    const failing: Array<[string, string, RegExp]> = [
      ['a missing file', '["./nope.js"]', /plugin "\.\/nope\.js".*failed to load/],
      ['the wrong shape', '["./shape.js"]', /plugin "\.\/shape\.js".*must export a function "register\(api\)"/],
      ['an invalid definition', '["./baddef.js"]', /plugin "\.\/baddef\.js".*invalid sink definition/],
    ];
    for (const [what, list, message] of failing) {
      it(`stops start-up naming the plugin when it has ${what}`, () => {
        const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-badplugin-'));
        writeFileSync(path.join(dir, 'shape.js'), 'export const notRegister = 1;\n');
        writeFileSync(path.join(dir, 'baddef.js'), 'export function register(api) { api.registerSink({ type: "Bad Type" }); }\n');
        writeFileSync(path.join(dir, 'plugins.json'), `{"plugins": ${list}}`);
        const result = spawnSync(process.execPath, [CLI, 'validate', '--config', 'config/auditpipe.yml', '--plugins', path.join(dir, 'plugins.json')], { cwd: ROOT, encoding: 'utf8' });
        assert.notEqual(result.status, 0);
        assert.match(result.stderr, message);
      });
    }

    it('rejects a plugin sink config that fails the plugin schema, naming the key', () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-plugincfg-'));
      writeFileSync(path.join(dir, 'plugins.json'), JSON.stringify({ plugins: [path.join(ROOT, 'examples/plugins/ndjson-file/index.js')] }));
      writeFileSync(path.join(dir, 'a.yml'), 'pipelines:\n  - name: p\n    source: { type: http }\n    sinks: [{ type: ndjson_file, path: x, fsyncc: true }]\n');
      const result = spawnSync(process.execPath, [CLI, 'validate', '--config', path.join(dir, 'a.yml'), '--plugins', path.join(dir, 'plugins.json')], { cwd: ROOT, encoding: 'utf8' });
      assert.notEqual(result.status, 0);
      assert.match(result.stderr, /sinks\[0\] \(ndjson_file\): unknown key "fsyncc"/);
    });
  });
});
