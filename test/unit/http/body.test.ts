// The HTTP body policy's quick path (key counts instead of a Set per object) must answer every
// text exactly as the exact scan does: same values, same errors, same item indexes. The
// reference below is the policy written the slow way, scanJson then JSON.parse.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BodyError, ndjsonLines, parseJsonBody, scanJson } from '../../../src/sources/http/body.ts';

const DEPTH = 8;

function referenceLine(line: string): { value?: unknown; error?: string } {
  const scan = scanJson(line, DEPTH);
  const problem = scan.whole ?? scan.items.values().next().value;
  if (problem !== undefined) return { error: `line 1: ${problem}` };
  try {
    return { value: JSON.parse(line) };
  } catch (error) {
    return { error: `line 1: malformed JSON: ${(error as Error).message}` };
  }
}

function referenceBody(text: string): { value?: unknown; itemErrors?: Map<number, string>; error?: string } {
  const scan = scanJson(text, DEPTH);
  if (scan.whole) return { error: `invalid JSON: ${scan.whole}` };
  try {
    return { value: JSON.parse(text), itemErrors: new Map(scan.items) };
  } catch (error) {
    return { error: `malformed JSON: ${(error as Error).message}` };
  }
}

function actualBody(text: string): { value?: unknown; itemErrors?: Map<number, string>; error?: string } {
  try {
    const { value, itemErrors } = parseJsonBody(Buffer.from(text), DEPTH);
    return { value, itemErrors: new Map(itemErrors) };
  } catch (error) {
    assert.ok(error instanceof BodyError);
    return { error: `${error.message}: ${error.details}` };
  }
}

function assertSame(text: string): void {
  const lines = ndjsonLines(Buffer.from(`${text}\n`), DEPTH);
  const expected = referenceLine(text);
  assert.deepEqual(lines, [{ index: 0, ...expected }], `NDJSON line ${text}`);
  assert.deepEqual(actualBody(text), referenceBody(text), `JSON body ${text}`);
  const array = `[{"id":"a"},${text},{"id":"b"}]`;
  assert.deepEqual(actualBody(array), referenceBody(array), `JSON array ${array}`);
}

const CASES = [
  '{"id":"e1","actorId":"a","meta":{"k":1,"j":[1,2,{"x":null}]}}',
  '{"id":"e1","id":"e2"}',
  '{"a":{"k":1,"k":2}}',
  '{"a":[{"k":1},{"k":1,"k":1}]}',
  '{"m":{"k":1,"\\u006b":2}}',
  '{"__proto__":1,"__proto__":2}',
  '{"__proto__":{"a":1}}',
  '{"1":1,"01":2,"1":3}',
  '{"a":"x:y,{[","b":"\\"quoted\\" \\\\"}',
  '{"a":"\\ud83e\\udd8a"}',
  '{"a":"\\udc00"}',
  '{"\\ud800k":1}',
  '{"a":[[[[[[[[1]]]]]]]]}',
  '{"a":[[[[[[[1]]]]]]]}',
  '{"a":1,"a":',
  '{"a":1',
  '{"a" 1}',
  '[{"k":1,"k":2},{"k":1}]',
  '[]',
  '[1,2,3]',
  '{}',
  '"just a string"',
  '12',
  '{"a":"unterminated',
  '{"a":1}garbage',
];

describe('HTTP body policy, quick path against the exact scan', () => {
  for (const text of CASES) it(`answers ${text} as the exact scan does`, () => assertSame(text));

  it('agrees on 2,000 generated objects, a tenth of them with a key repeated somewhere', () => {
    let seed = 7;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const value = (depth: number): string => {
      const r = random();
      if (depth > 5 || r < 0.4) return JSON.stringify(['x', 1, null, true, 'a:b', '\u00e9', '\\'][Math.floor(random() * 7)]);
      if (r < 0.6) return `[${Array.from({ length: Math.floor(random() * 4) }, () => value(depth + 1)).join(',')}]`;
      const keys = Array.from({ length: Math.floor(random() * 5) }, (_, i) => `k${i}`);
      if (keys.length > 1 && random() < 0.1) keys.push(keys[0]!);
      return `{${keys.map((key) => `${JSON.stringify(key)}:${value(depth + 1)}`).join(',')}}`;
    };
    let duplicates = 0;
    for (let n = 0; n < 2_000; n += 1) {
      const text = value(0);
      if (/appears twice/.test(referenceLine(text).error ?? '')) duplicates += 1;
      assertSame(text);
    }
    assert.ok(duplicates > 20, `the generator repeats keys (${duplicates})`);
  });
});
