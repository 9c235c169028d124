import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pluginApi } from '../../../src/core/app.ts';
import { ConfigError, interpolateEnv, validateConfig } from '../../../src/core/config.ts';
import { ComponentRegistry } from '../../../src/core/registry.ts';
import { registerBuiltins } from '../../../src/builtins.ts';

function registry() {
  const r = new ComponentRegistry();
  registerBuiltins(pluginApi(r, 'built-in'));
  return r;
}

const valid = () => ({
  pipelines: [{ name: 'p', source: { type: 'http', listen: '127.0.0.1:0' }, sinks: [{ type: 'console' }] }],
});

function problems(raw: Record<string, unknown>): string[] {
  try {
    validateConfig(raw, 'test.yml', registry());
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  return [];
}

describe('config validation', () => {
  it('accepts a minimal config and applies defaults', () => {
    const config = validateConfig(valid(), 'test.yml', registry());
    const pipeline = config.pipelines[0]!;
    assert.equal(pipeline.batch.maxEvents, 500);
    assert.equal(pipeline.sinks[0]!.required, true);
    assert.equal(pipeline.sinks[0]!.retry.maxAttempts, 5);
    assert.equal(pipeline.actorField, 'actorId');
  });

  it('batch.flush auto takes the source\'s policy (http eager, nats interval); an explicit value wins', () => {
    const http = validateConfig(valid(), 'test.yml', registry()).pipelines[0]!;
    assert.equal(http.batch.eager, true);
    const interval = valid();
    (interval.pipelines[0] as any).batch = { flush: 'interval' };
    assert.equal(validateConfig(interval, 'test.yml', registry()).pipelines[0]!.batch.eager, false);
    const nats = { pipelines: [{ name: 'n', source: { type: 'nats', servers: 'nats://127.0.0.1:4222' }, sinks: [{ type: 'console' }] }] };
    assert.equal(validateConfig(nats, 'test.yml', registry()).pipelines[0]!.batch.eager, false);
    const bad = valid();
    (bad.pipelines[0] as any).batch = { flush: 'sometimes' };
    assert.match(problems(bad).join('\n'), /batch\.flush/);
  });

  it('names the file, pipeline, key, value and expectation for a wrong type', () => {
    const raw = valid();
    (raw.pipelines[0] as any).batch = { max_events: 'many' };
    const [problem] = problems(raw);
    assert.match(problem!, /test\.yml: pipeline "p": key "batch\.max_events": must be a positive integer/);
    assert.match(problem!, /many/);
  });

  it('reports unknown keys, unknown types and component keys', () => {
    const raw = valid();
    (raw.pipelines[0] as any).batchh = {};
    (raw.pipelines[0] as any).sinks = [{ type: 'consolee' }, { type: 'console', fd: -1 }];
    (raw.pipelines[0] as any).source.listen = 'nowhere';
    const all = problems(raw).join('\n');
    assert.match(all, /unknown key "batchh"/);
    assert.match(all, /sinks\[0\]: key "type": unknown sink type "consolee" \(known: console/);
    assert.match(all, /sinks\[1\] \(console\): key "fd"/);
    assert.match(all, /source \(http\): key "listen": must be host:port/);
  });

  it('requires pipelines and distinct names', () => {
    assert.match(problems({}).join('\n'), /"pipelines": must be a non-empty list/);
    const raw = valid();
    raw.pipelines.push(raw.pipelines[0]!);
    assert.match(problems(raw).join('\n'), /duplicate pipeline name/);
  });

  it('interpolates environment variables and refuses unset ones', () => {
    assert.deepEqual(
      interpolateEnv({ a: '${X}', b: '${Y:-8080}', c: ['x-${X}-y'], d: { e: '${T:-true}', f: 'h:${Y:-1}' } }, { X: 'one' }, 'f'),
      { a: 'one', b: 8080, c: ['x-one-y'], d: { e: true, f: 'h:1' } },
    );
    assert.throws(() => interpolateEnv({ a: { b: '${NOPE}' } }, {}, 'f.yml'), /f\.yml: key "a\.b": environment variable NOPE is not set/);
  });
});
