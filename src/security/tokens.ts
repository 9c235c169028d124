import { createHash, timingSafeEqual } from 'node:crypto';

export type Scope = 'ingest' | 'read';
export const ALL_SCOPES: readonly Scope[] = ['ingest', 'read'];

export interface TokenSpec {
  readonly token: string;
  readonly scopes: readonly Scope[];
}

export type AuthResult =
  | { readonly ok: true; readonly scopes: readonly Scope[] }
  | { readonly ok: false; readonly status: 401 | 403; readonly reason: string };

const sha256 = (value: string) => createHash('sha256').update(value, 'utf8').digest();

/**
 * Bearer-token check. Tokens are compared as SHA-256 digests with `timingSafeEqual`, against every
 * configured token without an early exit, so neither a token's content nor its length leaks
 * through timing. With `required` set and no token configured, every request fails (fail closed).
 */
export class TokenAuthenticator {
  private readonly digests: ReadonlyArray<{ digest: Buffer; scopes: readonly Scope[] }>;
  readonly required: boolean;

  constructor(tokens: readonly TokenSpec[], required: boolean) {
    this.digests = tokens.filter((t) => t.token.length > 0).map((t) => ({ digest: sha256(t.token), scopes: t.scopes }));
    this.required = required || this.digests.length > 0;
  }

  check(authorization: string | undefined, scope: Scope): AuthResult {
    if (!this.required) return { ok: true, scopes: ALL_SCOPES };
    if (this.digests.length === 0) return { ok: false, status: 401, reason: 'server authentication is not configured' };
    if (!authorization) return { ok: false, status: 401, reason: 'missing Authorization header' };
    const match = /^Bearer ([^\s]+)$/i.exec(authorization);
    if (!match) return { ok: false, status: 401, reason: 'Authorization header must be "Bearer <token>"' };
    const presented = sha256(match[1]!);
    let scopes: readonly Scope[] | undefined;
    for (const { digest, scopes: candidate } of this.digests) {
      if (timingSafeEqual(digest, presented)) scopes = candidate;
    }
    if (!scopes) return { ok: false, status: 401, reason: 'invalid token' };
    if (!scopes.includes(scope)) return { ok: false, status: 403, reason: `token lacks the "${scope}" scope` };
    return { ok: true, scopes };
  }
}

/** Parses config entries: a bare string (all scopes) or `{token, scopes}`. */
export function parseTokenSpecs(value: unknown): TokenSpec[] {
  if (!Array.isArray(value)) throw new Error('must be a list of tokens or {token, scopes} entries');
  return value.map((entry, i) => {
    if (typeof entry === 'string') return { token: entry, scopes: ALL_SCOPES };
    if (entry && typeof entry === 'object' && typeof (entry as any).token === 'string') {
      const scopes = (entry as any).scopes ?? ALL_SCOPES;
      if (!Array.isArray(scopes) || scopes.some((s) => !ALL_SCOPES.includes(s))) {
        throw new Error(`entry ${i}: scopes must be a list of ${ALL_SCOPES.join(', ')}`);
      }
      return { token: (entry as any).token, scopes };
    }
    throw new Error(`entry ${i}: must be a string or {token, scopes}`);
  });
}
