/** A PostgreSQL identifier the chain tables' schema may have (kept apart so the component's index loads no SQL library). */
export const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
