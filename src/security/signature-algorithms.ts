/**
 * What a signing key may be: the algorithms and the key id limit. Its own module because both the
 * key registry (which checks keys) and the signature code (which checks signatures) need it, and
 * neither should import the other for it.
 */
export const SIGNATURE_ALGORITHMS = ['EdDSA', 'RS256', 'PS256'] as const;
export type SignatureAlgorithm = (typeof SIGNATURE_ALGORITHMS)[number];

export const MAX_KEY_ID_CHARS = 256;
