/**
 * The short soak (scripts/soak/run.ts): auditpipe as a child process under HTTP load, SIGKILLed at
 * random moments ten times and restarted on the same data. Fails when an acknowledged event is
 * missing, an event is twice in the chain, a chain has a gap, or verify fails.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';

const ROOT = path.resolve(import.meta.dirname, '../../..');

interface SoakResult {
  ok: boolean;
  cycles: { cycles: number };
  load: { acknowledged: number };
  sinks: { chain: { missing: number; duplicated: number; missingSample: string[] } };
  chain: { gappedActors: number; brokenLinks: number; staleHeads: number };
  verify: { code: number | null };
  problems: string[];
}

function soak(args: string[]): SoakResult {
  const run = spawnSync(process.execPath, [path.join(ROOT, 'scripts/soak/run.ts'), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 300_000, env: process.env });
  let result: SoakResult;
  try {
    result = JSON.parse(run.stdout) as SoakResult;
  } catch {
    throw new Error(`the soak printed no JSON (exit ${run.status}): ${run.stderr.slice(-4_000)}`);
  }
  assert.equal(run.status, result.ok ? 0 : 1, 'the exit code says whether the run held');
  return result;
}

function assertHeld(result: SoakResult): void {
  assert.ok(result.cycles.cycles >= 10, `${result.cycles.cycles} kill cycles`);
  assert.ok(result.load.acknowledged > 0, 'some events were acknowledged');
  assert.equal(result.sinks.chain.missing, 0, `acknowledged but missing: ${result.sinks.chain.missingSample.join(', ')}`);
  assert.equal(result.sinks.chain.duplicated, 0, 'stored twice in the chain');
  assert.deepEqual(result.chain, { gappedActors: 0, brokenLinks: 0, staleHeads: 0 });
  assert.equal(result.verify.code, 0, 'auditpipe verify passes');
  assert.deepEqual(result.problems, []);
  assert.equal(result.ok, true);
}

describe('short soak: SIGKILL at random moments under HTTP load', () => {
  it('embedded store (PGlite): 10 kills, nothing acknowledged lost, nothing twice, verify passes', { timeout: 300_000 }, () => {
    assertHeld(soak(['--profile', 'short', '--cycles', '10', '--seconds', '90']));
  });

  it('PostgreSQL: 10 kills, nothing acknowledged lost, nothing twice, verify passes', { timeout: 300_000 }, () => {
    assertHeld(soak(['--profile', 'http-postgres', '--cycles', '10', '--seconds', '90']));
  });
});
