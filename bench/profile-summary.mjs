#!/usr/bin/env node
/**
 * Self time of a V8 .cpuprofile, grouped by function and by package (or src/ folder), so a
 * benchmark's profile reads as "where the time goes" in a table.
 *
 *   node bench/profile-summary.mjs file.cpuprofile [top=25]
 */
import { readFileSync } from 'node:fs';

const [file, topArg] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: node bench/profile-summary.mjs file.cpuprofile [top]\n');
  process.exit(2);
}
const top = Number(topArg ?? 25);
const profile = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const selfUs = new Map();
const deltas = profile.timeDeltas;
for (let i = 0; i < profile.samples.length; i += 1) {
  const id = profile.samples[i];
  selfUs.set(id, (selfUs.get(id) ?? 0) + (deltas[i] ?? 0));
}
const total = [...selfUs.values()].reduce((a, b) => a + b, 0);

function area(url) {
  if (!url) return '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1];
  const src = /\/(src\/[^/]+(?:\/[^/]+)?)\//.exec(url);
  if (src) return src[1];
  if (url.startsWith('node:')) return 'node:' + url.slice(5).split('/')[0];
  return url.split('/').slice(-2).join('/');
}

const functions = new Map();
const areas = new Map();
for (const [id, us] of selfUs) {
  const frame = byId.get(id).callFrame;
  const name = `${frame.functionName || '(anonymous)'} ${frame.url ? frame.url.split('/').slice(-2).join('/') + ':' + (frame.lineNumber + 1) : ''}`.trim();
  functions.set(name, (functions.get(name) ?? 0) + us);
  const where = area(frame.url);
  areas.set(where, (areas.get(where) ?? 0) + us);
}
const pct = (us) => ((100 * us) / total).toFixed(1).padStart(5) + '%';
const print = (title, map) => {
  process.stdout.write(`\n${title}\n`);
  for (const [name, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${pct(us)}  ${name}\n`);
};
process.stdout.write(`profile ${file}: ${(total / 1e6).toFixed(2)} s sampled\n`);
print('self time by package / folder', areas);
print('self time by function', functions);
