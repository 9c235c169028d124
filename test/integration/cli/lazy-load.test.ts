/**
 * A component's implementation, and so its client library, loads only when a pipeline creates it
 * (src/*\/*\/index.ts import a schema and src/public only). The CLI runs with a resolve hook that
 * records every package it loads.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { freePort, serverEnv, uniqueName, waitReady } from '../../helpers/servers.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const CLI = path.join(ROOT, 'src/cli/main.ts');
const HOOK = path.join(ROOT, 'test/helpers/record-packages.mjs');
const HEAVY = ['kafkajs', '@aws-sdk/client-s3', '@electric-sql/pglite', 'pg', 'undici', '@nats-io/jetstream', '@nats-io/transport-node'];

interface Outcome { readonly code: number | null; readonly stderr: string; readonly packages: Set<string> }

/** Runs the CLI; with `readyPort`, waits for /readyz 200 there, then stops it with SIGTERM. */
async function cli(args: string[], readyPort?: number): Promise<Outcome> {
  const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-lazy-'));
  const loaded = path.join(dir, 'loaded.txt');
  writeFileSync(loaded, '');
  const child = spawn(process.execPath, ['--import', HOOK, CLI, ...args], {
    cwd: dir,
    env: { ...process.env, AUDITPIPE_TEST_LOADED_FILE: loaded, AUDITPIPE_DATA_DIR: dir },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  if (readyPort !== undefined) {
    try {
      await waitReady(`http://127.0.0.1:${readyPort}`, () => stderr);
    } finally {
      child.kill('SIGTERM');
    }
  }
  const code = await exited;
  return { code, stderr, packages: new Set(readFileSync(loaded, 'utf8').split('\n').filter(Boolean)) };
}

function config(text: string): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'auditpipe-lazy-config-')), 'auditpipe.yml');
  writeFileSync(file, text);
  return file;
}

const loadedOf = (outcome: Outcome, names: readonly string[]) => names.filter((name) => outcome.packages.has(name));

describe('lazy loading of component implementations', () => {
  it('`auditpipe validate` of the default config loads no component library', async () => {
    const outcome = await cli(['validate', '--config', path.join(ROOT, 'config/auditpipe.yml')]);
    assert.equal(outcome.code, 0, outcome.stderr);
    assert.ok(outcome.packages.has('convict'), 'the hook records packages');
    assert.deepEqual(loadedOf(outcome, HEAVY), []);
  });

  it('`auditpipe run` of a console-only pipeline loads no component library', async () => {
    const port = await freePort();
    const file = config(`pipelines:\n  - name: plain\n    source: { type: http, listen: "127.0.0.1:${port}" }\n    sinks: [{ type: console }]\n`);
    const outcome = await cli(['run', '--config', file], port);
    assert.equal(outcome.code, 0, outcome.stderr);
    assert.deepEqual(loadedOf(outcome, HEAVY), []);
  });

  it('`auditpipe run` of NATS → VictoriaLogs loads the NATS client, not Kafka, the AWS SDK, PGlite or pg', async () => {
    const port = await freePort();
    const namespace = uniqueName('lazy');
    const file = config([
      `admin: { listen: "127.0.0.1:${port}" }`,
      'pipelines:',
      '  - name: logs',
      `    source: { type: nats, servers: ["${serverEnv('NATS_URL')}"], token: "\${NATS_TOKEN:-}", namespace: ${namespace}, stream: logs }`,
      `    sinks: [{ type: victorialogs, url: "${serverEnv('VICTORIA_URL')}" }]`,
      '',
    ].join('\n'));
    try {
      const outcome = await cli(['run', '--config', file], port);
      assert.equal(outcome.code, 0, outcome.stderr);
      assert.ok(outcome.packages.has('@nats-io/transport-node'), 'the pipeline used loads its client');
      assert.deepEqual(loadedOf(outcome, ['kafkajs', '@aws-sdk/client-s3', '@electric-sql/pglite', 'pg']), []);
    } finally {
      const nc = await connect({ servers: serverEnv('NATS_URL'), token: process.env.NATS_TOKEN || undefined });
      const jsm = await jetstreamManager(nc);
      for (const stream of [`${namespace}_logs`, `${namespace}_logs_dlq`]) await jsm.streams.delete(stream).catch(() => false);
      await nc.close();
    }
  });
});
