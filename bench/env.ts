/** A test-server endpoint from the environment; a benchmark without one exits with how to get it. */
export function requiredEnv(name: string): string {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`${name} is not set; run "npm run servers:up" and "set -a; . .servers/env; set +a" first (or "npm run bench", which starts them)\n`);
    process.exit(2);
  }
  return value;
}
