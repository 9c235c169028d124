/**
 * No tracked file keeps the markers of an unresolved merge: docs/architecture.md carried both
 * sides of one onto main, and nothing else noticed (a Markdown file still renders).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const MARKER = /^(?:<{7}|>{7})(?: |$)|^={7}$/m;

describe('merge conflicts', () => {
  it('no tracked text file holds a conflict marker', () => {
    // -I skips binary files; git lists the tracked files of this checkout (a packed tarball has none to check).
    let files: string[];
    try {
      files = execFileSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8' }).split('\0').filter(Boolean);
    } catch {
      return;
    }
    const marked = files.filter((file) => /\.(?:ts|mjs|js|json|md|ya?ml|sh)$/.test(file) && MARKER.test(readFileSync(path.join(ROOT, file), 'utf8')));
    assert.deepEqual(marked, []);
  });
});
