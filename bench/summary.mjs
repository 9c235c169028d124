// One table from one `npm run bench` file: each figure beside the floor measured in the same run,
// their ratio, and the target of issue 17 it is held to. Used by run-all.mjs; also runs alone on a
// saved file: `node bench/summary.mjs bench/results/<time>.json` prints the Markdown table.
import { readFileSync } from 'node:fs';

const round = (x, digits = 0) => (typeof x === 'number' && Number.isFinite(x) ? Number(x.toFixed(digits)) : undefined);
const ratioOf = (value, floor) => (value && floor ? round(value / floor, 2) : undefined);

/** Rows `{ job, figure, unit, value, floor, floorName, ratio, target, met }`; missing results give no row. */
export function summarise(results) {
  const r = results.results ?? {};
  const rows = [];
  const add = (row) => {
    if (row.value === undefined) return;
    rows.push({ floor: undefined, floorName: '', ratio: ratioOf(row.value, row.floor), target: '', met: undefined, ...row });
  };

  const nats = r['nats-victorialogs'];
  if (nats && !nats.error) {
    const value = nats.auditpipe_events_per_s;
    const floor = nats.bare_jetstream_consume_ack_per_s;
    add({ job: 'NATS JetStream -> VictoriaLogs', figure: 'throughput', unit: 'events/s', value, floor, floorName: 'bare JetStream consume + ack', target: '>= 0.9x and >= 40,000', met: value / floor >= 0.9 && value >= 40_000 });
    add({ job: 'NATS JetStream -> VictoriaLogs', figure: 'floor of the sink: bare VictoriaLogs POST loop', unit: 'events/s', value: nats.bare_victorialogs_post_per_s });
  }

  const append = r['postgres-chain']?.append_4_handed_in?.events_per_s;
  for (const [name, connections] of [['http-chain', 4], ['http-chain-32', 32]]) {
    const run = r[name];
    if (!run || run.error) continue;
    const value = run.engine?.eventsPerSecond;
    add({ job: `HTTP bulk 1,000 -> PostgreSQL chain, ${connections} conns`, figure: 'throughput', unit: 'events/s', value, floor: append, floorName: 'chain append alone, 4 in flight', target: '>= 0.85x and >= 30,000', met: append ? value / append >= 0.85 && value >= 30_000 : undefined });
  }
  const pg = r['postgres-chain'];
  if (pg && !pg.error) {
    add({ job: 'PostgreSQL chain store', figure: 'append, 4 in flight', unit: 'events/s', value: append, floor: pg.copy?.events_per_s, floorName: 'plain COPY into the same table', target: '>= 30,000', met: append >= 30_000 });
    add({ job: 'PostgreSQL chain store', figure: 'verify', unit: 'events/s', value: pg.verify?.events_per_s, floor: pg.verify_read_floor?.events_per_s, floorName: 'binary COPY read alone', target: '>= 200,000', met: pg.verify?.events_per_s >= 200_000 });
  }
  const file = r['http-ingest'];
  if (file && !file.error) {
    add({ job: 'HTTP bulk 1,000 -> ndjson_file (fsync)', figure: 'throughput', unit: 'events/s', value: file.engine?.eventsPerSecond, floor: file.bareHttpLimit?.eventsPerSecond, floorName: 'bare node:http reading the bodies' });
  }

  for (const [name, store] of [['small-embedded', 'embedded'], ['small-postgres', 'PostgreSQL']]) {
    const run = r[name];
    if (!run || run.error) continue;
    for (const load of ['single', 'bulk']) {
      const l = run[load];
      if (!l) continue;
      const value = l.engine?.requestsPerSecond;
      const floor = l.bareHttpLimit?.requestsPerSecond;
      const target = load === 'single' ? (store === 'PostgreSQL' ? '>= 10,000 req/s' : '>= 0.5x bare') : '';
      const met = load !== 'single' ? undefined : store === 'PostgreSQL' ? value >= 10_000 : value / floor >= 0.5;
      add({
        job: `argus ${load === 'single' ? 'single-event POST' : `bulk of ${l.eventsPerRequest}`}, ${l.connections} conns -> ${store} chain`,
        figure: `requests/s (p50 ${l.engine?.p50Ms} ms, p99 ${l.engine?.p99Ms} ms)`, unit: 'req/s', value, floor,
        floorName: `bare node:http (p50 ${l.bareHttpLimit?.p50Ms} ms)`, target, met,
      });
    }
  }

  const memory = r.memory;
  if (memory && !memory.error) {
    const flat = Math.abs(memory.lastMinuteAvgRssMb - memory.firstMinuteAvgRssMb) <= 0.05 * memory.firstMinuteAvgRssMb;
    add({ job: `NATS -> VictoriaLogs at ${memory.achievedRate} events/s, ${memory.minutes} min`, figure: `max RSS (first / last minute ${memory.firstMinuteAvgRssMb} / ${memory.lastMinuteAvgRssMb} MB)`, unit: 'MB', value: memory.maxRssMb, target: '<= 200 MB, flat within 5%', met: memory.maxRssMb <= 200 && flat });
  }
  const idle = r.idle?.median;
  if (idle) {
    add({ job: 'default pipeline idle (HTTP -> embedded chain + console)', figure: `RSS (ready in ${idle.default.readyMs} ms)`, unit: 'MB', value: idle.default.rssMb, target: '<= 120 MB', met: idle.default.rssMb <= 120 });
    add({ job: 'console-only pipeline idle', figure: `RSS (ready in ${idle.console.readyMs} ms)`, unit: 'MB', value: idle.console.rssMb });
  }
  const fanout = r.fanout;
  if (fanout && !fanout.error) {
    add({ job: 'NATS -> PostgreSQL + S3 + Kafka (fan-out)', figure: `throughput (ack p99 ${fanout.ack_latency_ms?.p99} ms at ${fanout.latency_rate_events_per_s}/s)`, unit: 'events/s', value: fanout.throughput_events_per_s });
  }
  return rows;
}

const fmt = (x) => (x === undefined ? '' : typeof x === 'number' ? x.toLocaleString('en-US') : String(x));
const verdict = (met) => (met === undefined ? '' : met ? 'met' : 'missed');

/** The rows as a Markdown table. */
export function markdownTable(rows) {
  const lines = ['| job | figure | value | floor (same run) | ratio | target | |', '|---|---|---|---|---|---|---|'];
  for (const row of rows) {
    lines.push(`| ${row.job} | ${row.figure} | ${fmt(row.value)} ${row.unit} | ${row.floor === undefined ? row.floorName : `${fmt(row.floor)} (${row.floorName})`} | ${fmt(row.ratio)} | ${row.target} | ${verdict(row.met)} |`);
  }
  return lines.join('\n');
}

/** The rows as aligned plain text for a terminal. */
export function textTable(rows) {
  const cells = rows.map((row) => [row.job, row.figure, `${fmt(row.value)} ${row.unit}`, row.floor === undefined ? '' : fmt(row.floor), fmt(row.ratio), row.target, verdict(row.met)]);
  const head = ['job', 'figure', 'value', 'floor', 'ratio', 'target', ''];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  return [head, ...cells].map((c) => c.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node bench/summary.mjs bench/results/<time>.json\n');
    process.exit(64);
  }
  console.log(markdownTable(summarise(JSON.parse(readFileSync(file, 'utf8')))));
}
