import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AuditEvent, AuditEventBuilder, newAuditEvent } from '../../../src/client/index.ts';

describe('transfer AuditEvent builder', () => {
  it('has the Go SDK JSON fields, in its order, with extra omitted while empty', () => {
    const event = newAuditEvent('audits', 'User logged in');
    const json = JSON.parse(JSON.stringify(event));
    assert.deepEqual(Object.keys(json), ['time', 'stream', 'msg', 'platform', 'resource', 'action', 'object_id', 'user_id', 'path', 'ip']);
    assert.equal(json.stream, 'audits');
    assert.equal(json.msg, 'User logged in');
    assert.equal(json.object_id, null);
    assert.equal(json.user_id, 0);
    assert.ok(Math.abs(Date.parse(json.time) - Date.now()) < 60_000);
    assert.match(json.time, /Z$/);
  });

  it('fills fields and extra like the Go With* methods, chained', () => {
    const event = new AuditEvent('audits', 'login')
      .withMeta('admin', 'user', 'login', [1, 2], 123)
      .withRequest('/api/login', { username: 'test' })
      .withResponse(200, { success: true })
      .withClient('192.168.1.1', 'Mozilla/5.0')
      .withExtra('tenant', 't1');
    assert.ok(event instanceof AuditEventBuilder);
    const json = event.toJSON();
    assert.equal(json.platform, 'admin');
    assert.equal(json.resource, 'user');
    assert.equal(json.action, 'login');
    assert.deepEqual(json.object_id, [1, 2]);
    assert.equal(json.user_id, 123);
    assert.equal(json.path, '/api/login');
    assert.equal(json.ip, '192.168.1.1');
    assert.deepEqual(json.extra, { body: { username: 'test' }, code: 200, response: { success: true }, agent: 'Mozilla/5.0', tenant: 't1' });
  });

  it('leaves extra empty for absent body, response and agent, but always records the code', () => {
    const none = newAuditEvent('s', 'm').withRequest('/p').withClient('1.1.1.1', '');
    assert.equal('extra' in JSON.parse(JSON.stringify(none)), false);
    const code = newAuditEvent('s', 'm').withResponse(500, null);
    assert.deepEqual(code.toJSON().extra, { code: 500 });
  });

  it('keeps its id across publishes (the Nats-Msg-Id) and accepts a caller id', () => {
    const event = newAuditEvent('s', 'm');
    assert.match(event.id, /^[0-9a-f-]{36}$/);
    assert.notEqual(event.id, newAuditEvent('s', 'm').id);
    assert.equal(event.withId('evt-1').id, 'evt-1');
    assert.throws(() => event.withId(''), /non-empty/);
    assert.equal('id' in JSON.parse(JSON.stringify(event)), false);
  });
});
