/**
 * Usage errors on every command: the reason on one line and the command's usage on stderr, exit 64,
 * no stack trace and no JSON log; --help and --version on every command, exit 0.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { VERSION } from '../../../src/version.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const CLI = path.join(ROOT, 'src/cli/main.ts');

function cli(args: string[]) {
  const result = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** The first line of each command's usage. */
const USAGE: Record<string, RegExp> = {
  run: /^Usage: auditpipe run /m,
  validate: /^Usage: auditpipe validate /m,
  verify: /^Usage: auditpipe verify /m,
  keygen: /^Usage: auditpipe keygen /m,
  version: /^Usage: auditpipe version$/m,
  help: /^Usage: auditpipe help /m,
};

function assertUsageError(result: ReturnType<typeof cli>, command: string, reason: RegExp): void {
  assert.equal(result.code, 64, result.stderr);
  assert.equal(result.stdout, '');
  const [first, blank] = result.stderr.split('\n');
  assert.match(first!, new RegExp(`^auditpipe ${command}: `));
  assert.match(first!, reason);
  assert.equal(blank, '', 'the reason is one line');
  assert.match(result.stderr, USAGE[command]!);
  assert.doesNotMatch(result.stderr, /^\s+at /m, 'no stack trace');
  assert.doesNotMatch(result.stderr, /^\{/m, 'no JSON log line');
}

describe('CLI usage errors', () => {
  for (const command of Object.keys(USAGE)) {
    it(`${command}: an unknown option exits 64 with the reason and the usage on stderr`, () => {
      assertUsageError(cli([command, '--bogus']), command, /unknown option --bogus/);
    });

    it(`${command}: --help prints its usage to stdout and exits 0`, () => {
      for (const flag of ['--help', '-h']) {
        const result = cli([command, flag]);
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stdout, USAGE[command]!);
        assert.equal(result.stderr, '');
      }
    });

    it(`${command}: --version prints the version and exits 0`, () => {
      const result = cli([command, '--version']);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, `${VERSION}\n`);
      assert.equal(result.stderr, '');
    });
  }

  it('without a command: --version, --help, and an unknown option', () => {
    assert.equal(cli(['--version']).stdout, `${VERSION}\n`);
    const help = cli(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /auditpipe run \[--config FILE\]/);
    const bad = cli(['--bogus']);
    assert.equal(bad.code, 64);
    assert.match(bad.stderr, /^auditpipe: unknown option --bogus\n\n/);
    assert.doesNotMatch(bad.stderr, /^\s+at /m);
  });

  it('an unknown command exits 64 with the overview', () => {
    const result = cli(['frobnicate']);
    assert.equal(result.code, 64);
    assert.match(result.stderr, /^auditpipe: unknown command "frobnicate"\n\n/);
    assert.match(result.stderr, /auditpipe help \[COMMAND\]/);
  });

  it('a missing value, a value given to a flag, an unexpected argument, a bad --preset: each exits 64', () => {
    assertUsageError(cli(['validate', '--config']), 'validate', /option --config needs a value/);
    assertUsageError(cli(['keygen', '--out']), 'keygen', /option --out needs a value/);
    assertUsageError(cli(['verify', '--json=yes']), 'verify', /option --json takes no value/);
    assertUsageError(cli(['run', 'extra']), 'run', /unexpected argument "extra"/);
    assertUsageError(cli(['version', 'extra']), 'version', /unexpected argument "extra"/);
    assertUsageError(cli(['help', 'frobnicate']), 'help', /unknown command "frobnicate"/);
    assertUsageError(cli(['run', '--preset', 'nope']), 'run', /unknown preset "nope" \(known: argus\)/);
    assertUsageError(cli(['keygen']), 'keygen', /--out FILE is required/);
  });

  it('verify reports a wrong command line before it opens the store', () => {
    // Port 1 refuses connections: reaching the store would exit 2, not 64.
    const result = cli(['verify', '--database-url', 'postgres://u:secret@127.0.0.1:1/db', '--workers', '0']);
    assertUsageError(result, 'verify', /--workers must be an integer from 1 to 64/);
    assertUsageError(cli(['verify', '--data-dir', tmpdir(), '--s3-prefix', 'p']), 'verify', /--s3-prefix needs --s3-bucket/);
  });

  it('help COMMAND prints that command\'s usage', () => {
    for (const command of Object.keys(USAGE)) {
      const result = cli(['help', command]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, USAGE[command]!);
    }
  });

  it('an invalid configuration exits 78 listing the problems, without a stack or a JSON log', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-usage-'));
    const file = path.join(dir, 'bad.yml');
    writeFileSync(file, 'pipelines:\n  - name: p\n    source: { type: http }\n    sinks: [{ type: nowhere }]\n');
    for (const command of ['validate', 'run']) {
      const result = cli([command, '--config', file]);
      assert.equal(result.code, 78, result.stderr);
      assert.match(result.stderr, /^invalid configuration:\n {2}- /);
      assert.doesNotMatch(result.stderr, /^\s+at /m);
      assert.doesNotMatch(result.stderr, /^\{/m);
    }
  });
});
