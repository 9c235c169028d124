/**
 * The drift check: each built-in component's README holds the key table its schema generates
 * (scripts/component-docs.ts). CI runs npm test, so a schema changed without its docs fails here.
 */
import assert from 'node:assert/strict';
import { homedir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { componentDocs, END, generatedBlock, keyRows, keyTable, ROOT, START, withBlock } from '../../../scripts/component-docs.ts';

describe('generated component docs', () => {
  const docs = componentDocs();

  it('covers every built-in source and sink', () => {
    assert.deepEqual(docs.map((d) => `${d.kind}:${d.type}`).sort(),
      ['sink:console', 'sink:kafka', 'sink:postgres', 'sink:s3', 'sink:victorialogs', 'source:http', 'source:nats']);
  });

  for (const doc of docs) {
    it(`${doc.kind} ${doc.type}: the README's key table is what its schema generates`, () => {
      const file = path.relative(ROOT, doc.readme);
      assert.ok(doc.current.includes(START) && doc.current.includes(END), `${file} has no ${START} … ${END} block: run npm run docs:components`);
      assert.ok(doc.current === doc.expected, `${file} is not current with the ${doc.type} schema: run npm run docs:components (and commit the README)`);
    });
  }

  it('never prints the default of a sensitive key, nor one that depends on the machine', () => {
    const rows = keyRows({
      password: { doc: 'secret', format: String, default: 'hunter2', sensitive: true },
      token: { doc: 'empty secret', format: String, default: '', sensitive: true },
      dir: { doc: 'somewhere', format: String, default: path.join(homedir(), 'audit') },
      cwd: { doc: 'here', format: String, default: process.cwd() },
      plain: { doc: 'ordinary', format: 'positive-int', default: 5 },
    });
    const table = keyTable(rows);
    assert.ok(!table.includes('hunter2'));
    assert.ok(!table.includes(homedir()));
    assert.ok(!table.includes(process.cwd()));
    assert.deepEqual(rows.map((r) => [r.key, r.default, r.sensitive]), [
      ['password', '(not shown: sensitive)', true],
      ['token', '`""`', true],
      ['dir', '(depends on the machine)', false],
      ['cwd', '(depends on the machine)', false],
      ['plain', '`5`', false],
    ]);
  });

  it('names nested keys by their path and shows type, env and choices', () => {
    const rows = keyRows({
      tls: { ca_file: { doc: 'CA | bundle', format: String, default: '', env: 'CA_FILE' }, inner: { deep: { doc: 'd', format: Boolean, default: true } } },
      mode: { doc: 'm', format: ['a', 'b'], default: 'a' },
      list: { doc: 'l', format: (v: unknown) => v, default: [] },
    });
    assert.deepEqual(rows.map((r) => [r.key, r.format, r.env]), [
      ['tls.ca_file', 'string', 'CA_FILE'],
      ['tls.inner.deep', 'boolean', ''],
      ['mode', 'one of `a`, `b`', ''],
      ['list', 'list, checked', ''],
    ]);
    assert.match(keyTable(rows), /CA \\\| bundle/, 'a pipe in a doc string does not end the cell');
  });

  it('replaces only the block between the markers, adds one when missing, and refuses broken markers', () => {
    const block = generatedBlock([]);
    const readme = `# x\n\nprose before\n\n${START}\nold table\n${END}\n\nprose after\n`;
    assert.equal(withBlock(readme, block, 'x'), `# x\n\nprose before\n\n${block}\n\nprose after\n`);
    assert.equal(withBlock('# y\n\nprose\n', block, 'y'), `# y\n\nprose\n\n## Configuration\n\n${block}\n`);
    assert.throws(() => withBlock(`# z\n${START}\n`, block, 'z.md'), /z\.md: expected one/);
    assert.throws(() => withBlock(`# z\n${END}\n${START}\n`, block, 'z.md'), /z\.md: expected one/);
  });
});
