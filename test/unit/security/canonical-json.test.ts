import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canonicalJson, CanonicalJsonError } from '../../../src/security/canonical-json.ts';

test('RFC 8785 §3.2.2 example: numbers, strings, literals', () => {
  const input = JSON.parse('{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],"string":"\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/","literals":[null,true,false]}');
  assert.equal(canonicalJson(input),
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}');
});

test('RFC 8785 §3.2.3 example: keys sorted by UTF-16 code units', () => {
  const input = JSON.parse('{"\\u20ac":"Euro Sign","\\r":"Carriage Return","\\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\\ud83d\\ude00":"Emoji: Grinning Face","\\u0080":"Control","\\u00f6":"Latin Small Letter O With Diaeresis"}');
  const out = canonicalJson(input);
  assert.equal(out, '{"\\r":"Carriage Return","1":"One","\u0080":"Control","ö":"Latin Small Letter O With Diaeresis","€":"Euro Sign","😀":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}');
});

test('RFC 8785 Appendix B number serialisation samples', () => {
  const samples: Array<[number, string]> = [
    [0, '0'], [-0, '0'], [1e21, '1e+21'], [1e-7, '1e-7'], [9007199254740991, '9007199254740991'],
    [-1.5, '-1.5'], [5e-324, '5e-324'], [1.7976931348623157e308, '1.7976931348623157e+308'], [295147905179352830000, '295147905179352830000'],
  ];
  for (const [value, text] of samples) assert.equal(canonicalJson(value), text, `number ${value}`);
});

test('nested objects and arrays keep array order and drop whitespace', () => {
  assert.equal(canonicalJson({ b: [3, { z: 1, a: 2 }], a: 'x' }), '{"a":"x","b":[3,{"a":2,"z":1}]}');
});

test('values without a canonical form are rejected with a clear error', () => {
  for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, { a: Number.NEGATIVE_INFINITY }, { s: 'lone \ud800 surrogate' }, 10n, undefined, () => 1]) {
    assert.throws(() => canonicalJson(bad), (error: unknown) => error instanceof CanonicalJsonError && /no RFC 8785 canonical form/.test(error.message));
  }
});

test('agrees with the reference implementation (the canonicalize package) on random JSON', async () => {
  const { default: reference } = await import('canonicalize');
  let seed = 42;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const strings = ['', 'a', 'é', '€', '😀', '\n\t"\\', '\u0000\u001f', 'z', 'A', '\ufb33', '10', '1'];
  const value = (depth: number): unknown => {
    const r = random();
    if (depth > 3 || r < 0.3) {
      const p = random();
      if (p < 0.25) return strings[Math.floor(random() * strings.length)]! + strings[Math.floor(random() * strings.length)]!;
      if (p < 0.5) return (random() - 0.5) * 10 ** Math.floor(random() * 40 - 20);
      if (p < 0.6) return Math.floor(random() * 1e6);
      if (p < 0.8) return random() < 0.5;
      return null;
    }
    if (r < 0.6) return Array.from({ length: Math.floor(random() * 4) }, () => value(depth + 1));
    return Object.fromEntries(Array.from({ length: Math.floor(random() * 5) }, () => [strings[Math.floor(random() * strings.length)]! + Math.floor(random() * 3), value(depth + 1)]));
  };
  for (let i = 0; i < 2_000; i += 1) {
    const input = JSON.parse(JSON.stringify(value(0)));
    assert.equal(canonicalJson(input), reference(input));
  }
});

test('strings around the length where the escape check changes method agree with the reference', async () => {
  const { default: reference } = await import('canonicalize');
  for (const length of [0, 1, 31, 32, 33, 100]) {
    for (const last of ['x', '"', '\\', '\n', '\u0001', '\u007f', 'é', '😀', '\u2028']) {
      const text = 'a'.repeat(Math.max(0, length - last.length)) + last;
      assert.equal(canonicalJson({ [text]: text }), reference({ [text]: text }), JSON.stringify(text));
    }
    assert.throws(() => canonicalJson({ s: `${'a'.repeat(length)}\ud800` }), CanonicalJsonError);
  }
});

test('very deep nesting is a clear error, not a crash', () => {
  const deep = JSON.parse('['.repeat(200_000) + ']'.repeat(200_000));
  assert.throws(() => canonicalJson(deep), CanonicalJsonError);
});

test('keys in any order, and more keys than the insertion sort takes, sort as the reference does', async () => {
  const { default: reference } = await import('canonicalize');
  for (const count of [2, 3, 31, 32, 33, 200]) {
    const keys = Array.from({ length: count }, (_, i) => `k${(i * 7919) % count}${['', 'é', '😀'][i % 3]}`);
    for (const order of [keys, [...keys].sort(), [...keys].sort().reverse()]) {
      const input = Object.fromEntries(order.map((key, i) => [key, i]));
      assert.equal(canonicalJson(input), reference(input), `${count} keys`);
    }
  }
});

test('a toJSON method that canonicalises while its caller is mid-way gets its own pieces', () => {
  const inner = { toJSON: () => canonicalJson({ z: 1, a: [2] }) };
  assert.equal(canonicalJson({ b: inner, a: 'x' }), '{"a":"x","b":"{\\"a\\":[2],\\"z\\":1}"}');
  assert.equal(canonicalJson({ c: 3 }), '{"c":3}', 'and the shared pieces are free again after');
});

test('a value refused mid-way leaves nothing behind for the next call', () => {
  assert.throws(() => canonicalJson({ a: 'kept?', b: [1, 2, Number.NaN] }), CanonicalJsonError);
  assert.equal(canonicalJson({ d: 4 }), '{"d":4}');
  assert.equal(canonicalJson('s'), '"s"');
});

test('keys objects enumerate out of insertion order (integer-like) and an own "__proto__" key sort as the reference does', async () => {
  const { default: reference } = await import('canonicalize');
  const inputs = [
    JSON.parse('{"10":1,"9":2,"05":3,"a":4,"":5,"-1":6,"4294967295":7,"1.5":8}'),
    JSON.parse('{"b":{"2":"x","1":"y"},"a":[{"11":0,"2":0}]}'),
    JSON.parse('{"__proto__":{"x":1},"a":2}'),
    JSON.parse('{"z":{"__proto__":[1]},"y":1}'),
  ];
  for (const input of inputs) assert.equal(canonicalJson(input), reference(input), JSON.stringify(input));
  assert.equal(canonicalJson(inputs[2]), '{"__proto__":{"x":1},"a":2}');
});

test('a toJSON method is called once, and a lone surrogate in a key is refused', () => {
  let calls = 0;
  assert.equal(canonicalJson({ b: 1, a: { toJSON: () => { calls += 1; return { y: 2, x: 1 }; } } }), '{"a":{"x":1,"y":2},"b":1}');
  assert.equal(calls, 1);
  assert.throws(() => canonicalJson({ ['k\udc00']: 1 }), CanonicalJsonError);
  assert.throws(() => canonicalJson([1, { a: 2n }]), CanonicalJsonError);
});
