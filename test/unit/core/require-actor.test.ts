/**
 * `require_actor`: on by default when a pipeline writes to a chain store (postgres, embedded or
 * server), off otherwise, and overridable both ways; toEvent rejects an event without the actor.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { registerBuiltins } from '../../../src/builtins.ts';
import { pluginApi } from '../../../src/core/app.ts';
import { ConfigError, validateConfig } from '../../../src/core/config.ts';
import { InvalidEventError, toEvent } from '../../../src/core/event.ts';
import { ComponentRegistry } from '../../../src/core/registry.ts';

function registry(): ComponentRegistry {
  const r = new ComponentRegistry();
  registerBuiltins(pluginApi(r, 'built-in'));
  return r;
}

const EMBEDDED = { type: 'postgres', checkpoint_key_generate: true };
const SERVER = { type: 'postgres', url: 'postgres://auditpipe@127.0.0.1:5432/audit', checkpoint_key_file: 'key.pem' };
const CONSOLE = { type: 'console' };

function requireActor(pipeline: Record<string, unknown>, r = registry()): boolean {
  const config = validateConfig({ pipelines: [{ name: 'p', source: { type: 'http', listen: '127.0.0.1:0' }, ...pipeline }] }, 'test.yml', r);
  return config.pipelines[0]!.requireActor;
}

describe('require_actor', () => {
  it('defaults to on when a sink is the chain store, embedded or on a server', () => {
    assert.equal(requireActor({ sinks: [EMBEDDED] }), true);
    assert.equal(requireActor({ sinks: [SERVER] }), true);
    assert.equal(requireActor({ sinks: [CONSOLE, { ...EMBEDDED, required: false }] }), true);
    assert.equal(requireActor({ sinks: [EMBEDDED], require_actor: 'auto' }), true);
  });

  it('defaults to off without a chain store, a dead-letter store not counting', () => {
    assert.equal(requireActor({ sinks: [CONSOLE] }), false);
    assert.equal(requireActor({ sinks: [CONSOLE], dead_letter: EMBEDDED }), false);
  });

  it('is overridden both ways', () => {
    assert.equal(requireActor({ sinks: [EMBEDDED], require_actor: false }), false);
    assert.equal(requireActor({ sinks: [SERVER], require_actor: false }), false);
    assert.equal(requireActor({ sinks: [CONSOLE], require_actor: true }), true);
  });

  it('a plugin sink declaring itself a chain store turns it on too', () => {
    const r = registry();
    pluginApi(r, 'plugin').registerSink({ type: 'ledger', description: 'test', schema: {}, chainStore: true, create: () => ({ write: async () => undefined }) });
    assert.equal(requireActor({ sinks: [{ type: 'ledger' }] }, r), true);
  });

  it('rejects another value naming the key', () => {
    assert.throws(() => requireActor({ sinks: [CONSOLE], require_actor: 'sometimes' }), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.problems.join('\n'), /pipeline "p": key "require_actor": must be true, false or auto/);
      return true;
    });
  });

  it('toEvent rejects an event without the actor field when required, naming the field', () => {
    const options = { actorField: 'actor.id', requireActor: true };
    assert.throws(() => toEvent({ id: 'a', action: 'login' }, options), (error: unknown) => {
      assert.ok(error instanceof InvalidEventError);
      assert.equal(error.message, '"actor.id" (the actor id) is required: this pipeline has require_actor on');
      return true;
    });
    assert.throws(() => toEvent({ id: 'a', actor: {} }, options), InvalidEventError);
    assert.equal(toEvent({ id: 'a', actor: { id: 'alice' } }, options).actorId, 'alice');
    // `action` is not required: the actor is what the chain needs.
    assert.equal(toEvent({ id: 'b', actor: { id: 'alice' } }, options).data.action, undefined);
    assert.equal(toEvent({ id: 'c' }, { actorField: 'actor.id', requireActor: false }).actorId, undefined);
    assert.equal(toEvent({ id: 'd' }, { actorField: 'actor.id' }).actorId, undefined);
  });
});
