#!/usr/bin/env node
// `npm test`: starts the real test servers unless the environment already points at some,
// runs every test with node's runner (TAP, so CI reads "# pass N" / "# fail N"), then stops
// what it started. Extra arguments are passed to node --test (e.g. a file pattern).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const SERVER_VARS = ['NATS_URL', 'DATABASE_URL', 'KAFKA_BROKERS', 'S3_ENDPOINT', 'VICTORIA_URL'];
const env = { ...process.env };
const missing = SERVER_VARS.filter((name) => !env[name]);
let started = false;

function sh(script) {
  const result = spawnSync('bash', [path.join(root, 'scripts/servers', script)], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], env });
  return result.status ?? 1;
}

if (missing.length > 0) {
  console.error(`# starting test servers (${missing.join(', ')} not set)`);
  if (sh('up.sh') !== 0) {
    console.error('# test servers failed to start; see the output above');
    sh('down.sh');
    process.exit(1);
  }
  started = true;
  const file = path.join(root, '.servers/env');
  if (!existsSync(file)) {
    console.error('# .servers/env missing after up.sh');
    process.exit(1);
  }
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const match = /^export ([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (match) env[match[1]] = match[2].replace(/^'(.*)'$/, '$1').replace(/^"(.*)"$/, '$1');
  }
}

const patterns = process.argv.slice(2);
const args = [
  // --test-force-exit: a file whose tests are done but whose event loop stays alive (a client
  // reconnecting after a failed hook, say) must not hold CI until its time limit; its failure
  // is already reported.
  '--test', '--test-reporter=tap', '--test-concurrency=1', '--test-timeout=600000', '--test-force-exit',
  ...(patterns.length > 0 ? patterns : ['test/**/*.test.ts']),
];
const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit', env });
const code = result.status ?? 1;
if (started && !env.AUDITPIPE_KEEP_SERVERS) sh('down.sh');
process.exit(code);
