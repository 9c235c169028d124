import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TokenAuthenticator, parseTokenSpecs } from '../../../src/security/tokens.ts';

describe('bearer tokens', () => {
  const auth = new TokenAuthenticator(parseTokenSpecs(['writer-token', { token: 'reader-token', scopes: ['read'] }]), false);
  it('accepts any configured token with the right scope', () => {
    assert.equal(auth.check('Bearer writer-token', 'ingest').ok, true);
    assert.equal(auth.check('bearer reader-token', 'read').ok, true);
  });
  it('rejects missing, malformed, wrong and under-scoped tokens', () => {
    assert.deepEqual(auth.check(undefined, 'ingest'), { ok: false, status: 401, reason: 'missing Authorization header' });
    assert.equal(auth.check('Basic abc', 'ingest').ok, false);
    assert.equal(auth.check('Bearer  writer-token', 'ingest').ok, false);
    assert.equal(auth.check('Bearer writer-tokenX', 'ingest').ok, false);
    const scoped = auth.check('Bearer reader-token', 'ingest');
    assert.equal(scoped.ok === false && scoped.status, 403);
  });
  it('fails closed when auth is required but no token is configured', () => {
    const closed = new TokenAuthenticator([], true);
    const result = closed.check('Bearer anything', 'ingest');
    assert.equal(result.ok, false);
    assert.match(result.ok ? '' : result.reason, /not configured/);
  });
  it('is open only when nothing is configured and nothing is required', () => {
    assert.equal(new TokenAuthenticator([], false).check(undefined, 'ingest').ok, true);
  });
});
