/**
 * `npm run bench`: pollbridge against this machine's own limits. Every figure is a ratio against
 * a baseline measured in the same run, so it holds on a noisy machine. Prints a table and writes
 * bench/results.json. The daemon runs as the real CLI in a child process (its memory is its own);
 * the simulator runs here, the receiver in a process of its own (the steady scenario, steady.ts,
 * runs its simulator in a process of its own too, and so does the callout scenario, callouts.ts,
 * with its load generator and its bare baseline server, and the fleet scenario, fleet.ts, its
 * simulator of many companies and its bare request loop; the PostgreSQL scenarios, postgres.ts
 * and failover.ts, start a PostgreSQL server of their own).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import got from 'got';
import { ConcurSim } from '../dist/sim/concurSim.js';
import { SqliteStore } from '../dist/store/sqliteStore.js';
import { cpuPerPage, PAGE, runBackfill, withBackfill } from './backfill.js';
import { INSTANCE, log, percentile, RESOURCE, ROOT, type Row, startDaemon, writeConfig } from './parts.js';
import { callouts } from './callouts.js';
import { fleet } from './fleet.js';
import { postgres } from './postgres.js';
import { failover } from './failover.js';
import { steady } from './steady.js';

const EVENTS_PER_NOTIFICATION = 10;

const rows: Row[] = [];

// ---------------------------------------------------------------------------------------------
// Baselines.

/**
 * Raw better-sqlite3 writing what one ingested page writes: the same 100 seen rows (the
 * simulator's own ids and dates) and 10 notification rows with bodies of the same size, one
 * transaction per page, WAL with synchronous=FULL.
 */
function sqliteBaseline(dir: string, keys: { id: string; updatedUs: number }[], bodyBytes: number): number {
  const records = keys.length;
  const path = join(dir, 'baseline.db');
  void new SqliteStore(path).close();
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.prepare('INSERT INTO streams (instance, resource, cursor_us, origin_us) VALUES (?, ?, 0, 0)').run(INSTANCE, RESOURCE);
  const seen = db.prepare('INSERT OR IGNORE INTO seen (stream_id, object_id, updated_us) VALUES (1, ?, ?)');
  const notification = db.prepare(`INSERT INTO notifications (id, stream_id, instance, body, event_count, next_attempt_at, created_at)
    VALUES (?, 1, ?, ?, 10, 0, 0)`);
  const body = 'x'.repeat(bodyBytes);
  const page = db.transaction((p: number) => {
    for (let n = 0; n < PAGE / EVENTS_PER_NOTIFICATION; n++) {
      const id = `N${p}-${n}`;
      notification.run(id, INSTANCE, body);
      for (let i = 0; i < EVENTS_PER_NOTIFICATION; i++) {
        const key = keys[p * PAGE + n * EVENTS_PER_NOTIFICATION + i]!;
        seen.run(key.id, key.updatedUs);
      }
    }
  });
  const start = performance.now();
  for (let p = 0; p < records / PAGE; p++) page(p);
  const seconds = (performance.now() - start) / 1000;
  db.close();
  return records / seconds;
}

/** A bare keep-alive got loop posting the same bodies with the same concurrency. */
async function gotBaseline(url: string, bodies: string[], concurrency: number): Promise<number> {
  const client = got.extend({
    agent: { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) },
    retry: { limit: 0 },
    throwHttpErrors: false,
  });
  let next = 0;
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < bodies.length) {
      const body = bodies[next++]!;
      await client.post(url, { body, headers: { 'content-type': 'application/json' } });
    }
  }));
  return bodies.length / ((performance.now() - start) / 1000);
}

// ---------------------------------------------------------------------------------------------
// Measurements.

async function ingestAndDelivery(records: number): Promise<void> {
  await withBackfill(records, async (backfill) => {
    const { dir, sim, receiver } = backfill;
    const { daemon, ingestRate, notifications, deliveryRate } = await runBackfill(backfill, 'SQLite');
    // The bodies as queued, so as sent: the baselines write and post the same bytes.
    const db = new Database(join(dir, 'pollbridge.db'), { readonly: true });
    const bodies = db.prepare('SELECT body FROM notifications ORDER BY seq').pluck().all() as string[];
    db.close();
    const bodyBytes = Math.round(bodies.reduce((a, b) => a + b.length, 0) / bodies.length);
    const keys = sim.allReports().map((r) => ({ id: r.ID, updatedUs: Date.parse(`${r.LastModifiedDate}Z`) * 1000 }));
    const baseline = sqliteBaseline(dir, keys, bodyBytes);
    rows.push({ metric: `ingest, ${records} records, ${PAGE}/page`, value: ingestRate, unit: 'records/s', baseline, ratio: ingestRate / baseline, target: '≥ 0.5× raw SQLite', ok: ingestRate / baseline >= 0.5 });
    // Where a page's time goes: CPU of the daemon (all threads) and of the simulator per page,
    // against the baseline's whole time per page (it runs alone, after the backfill).
    const cpu = cpuPerPage(daemon);
    if (cpu) {
      rows.push({ metric: 'daemon CPU per page (all threads)', value: cpu.daemonMs, unit: 'ms', target: '—', ok: true });
      rows.push({ metric: 'simulator CPU per page', value: cpu.simMs, unit: 'ms', target: '—', ok: true });
      rows.push({ metric: 'wall time per page: daemon / raw SQLite', value: (1000 * PAGE) / ingestRate, unit: 'ms', baseline: (1000 * PAGE) / baseline, target: '—', ok: true });
    }
    rows.push({ metric: `peak RSS of the daemon, ${records} backfill`, value: daemon.peakRssMb(), unit: 'MB', target: '≤ 150 MB', ok: daemon.peakRssMb() <= 150 });

    const gotRate = await gotBaseline(receiver.url, bodies, 4);
    rows.push({ metric: `delivery, ${notifications} notifications, 4 in flight`, value: deliveryRate, unit: 'notifications/s', baseline: gotRate, ratio: deliveryRate / gotRate, target: '≥ 0.5× bare got loop', ok: deliveryRate / gotRate >= 0.5 });
  });
}

/** Ingest of `records` new changes with `seen` changes already recorded for the stream. */
async function ingestWithSeen(seen: number, records: number): Promise<{ rate: number; rssMb: number }> {
  return withBackfill(records, async ({ dir, config, from }) => {
    const dbPath = join(dir, 'pollbridge.db');
    const store = new SqliteStore(dbPath);
    await store.openStream(INSTANCE, RESOURCE, (from - 1000) * 1000);
    await store.close();
    const db = new Database(dbPath);
    const insert = db.prepare("INSERT INTO seen (stream_id, object_id, updated_us) VALUES (1, ?, ?)");
    db.transaction(() => {
      for (let i = 0; i < seen; i++) insert.run(randomBytes(10).toString('hex').toUpperCase(), (from - 1000) * 1000 + i);
    })();
    db.close();
    log(`ingest with ${seen} seen: ${records} records…`);
    const daemon = startDaemon(['run', '--once', '-c', config]);
    if ((await daemon.exited) !== 0) throw new Error('daemon failed');
    const poll = daemon.logs.find((l) => l.message === 'poll finished')!;
    return { rate: records / ((poll.durationMs as number) / 1000), rssMb: daemon.peakRssMb() };
  });
}

async function latency(changes: number): Promise<void> {
  const dir = mkdtempSync(join(os.tmpdir(), 'pollbridge-bench-'));
  const sim = new ConcurSim();
  const simUrl = await sim.start();
  const made = new Map<string, number>();
  const latencies: number[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const at = performance.now();
      const { message } = JSON.parse(Buffer.concat(chunks).toString()) as { message: { events: { objectId: string }[] } };
      for (const e of message.events) {
        const t = made.get(e.objectId);
        if (t !== undefined) latencies.push(at - t);
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  try {
    const config = writeConfig(dir, simUrl, url, '* * * * * *', PAGE);
    const daemon = startDaemon(['run', '-c', config]);
    const deadline = Date.now() + 15_000;
    while (!daemon.logs.some((l) => l.message === 'poll finished')) {
      if (Date.now() > deadline) throw new Error('daemon did not poll');
      await new Promise((r) => setTimeout(r, 50));
    }
    log(`latency: ${changes} changes at random moments, 1 s poll schedule…`);
    for (let i = 0; i < changes; i++) {
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 250));
      made.set(sim.createReport().ID, performance.now());
    }
    const until = Date.now() + 10_000;
    while (latencies.length < changes && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    daemon.child.kill('SIGTERM');
    await daemon.exited;
    if (latencies.length < changes) throw new Error(`only ${latencies.length} of ${changes} changes arrived`);
    const p50 = percentile(latencies, 50) / 1000;
    const p95 = percentile(latencies, 95) / 1000;
    rows.push({ metric: `latency p50, change → receiver (${changes} changes)`, value: p50, unit: 's', target: '—', ok: true });
    rows.push({ metric: `latency p95, change → receiver (${changes} changes)`, value: p95, unit: 's', target: '≤ 1.5 s', ok: p95 <= 1.5 });
  } finally {
    server.closeAllConnections();
    server.close();
    await sim.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------

/** Counts (versions, polls) as whole numbers; measures with three significant places or so. */
const fmt = (n: number): string => (Number.isInteger(n) || n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(n >= 10 ? 1 : 3));

async function scale(): Promise<void> {
  const rates: Record<number, { rate: number; rssMb: number }> = {};
  for (const seen of [10_000, 100_000, 1_000_000]) rates[seen] = await ingestWithSeen(seen, 20_000);
  for (const seen of [10_000, 100_000, 1_000_000]) {
    const ratio = rates[seen]!.rate / rates[10_000]!.rate;
    rows.push({ metric: `ingest with ${seen.toLocaleString('en-US')} seen, 20,000 new`, value: rates[seen]!.rate, unit: 'records/s', baseline: rates[10_000]!.rate, ratio, target: seen === 1_000_000 ? '≥ 0.8× the 10k rate' : '—', ok: seen !== 1_000_000 || ratio >= 0.8 });
  }
  rows.push({ metric: 'peak RSS of the daemon, 1,000,000 seen', value: rates[1_000_000]!.rssMb, unit: 'MB', target: '≤ 150 MB', ok: rates[1_000_000]!.rssMb <= 150 });
}

/**
 * `--only steady,latency` runs those scenarios alone (the others' rows in results.json stay);
 * `--steady-seconds N` shortens the steady scenario's phases for a quick check.
 */
function options(): { parts: Part[]; steadySeconds: number } {
  const { values } = parseArgs({ options: { only: { type: 'string' }, 'steady-seconds': { type: 'string' } } });
  const parts = values.only === undefined ? [...PARTS] : values.only.split(',').map((p) => p.trim());
  const unknown = parts.filter((p) => !(PARTS as readonly string[]).includes(p));
  if (unknown.length > 0) throw new Error(`--only: unknown part ${unknown.join(', ')} (parts: ${PARTS.join(', ')})`);
  const steadySeconds = Number(values['steady-seconds'] ?? 120);
  if (!Number.isInteger(steadySeconds) || steadySeconds < 10) throw new Error(`--steady-seconds must be a whole number of seconds, at least 10, got "${values['steady-seconds']}"`);
  return { parts: parts as Part[], steadySeconds };
}

const PARTS = ['ingest', 'scale', 'latency', 'steady', 'callouts', 'fleet', 'postgres', 'failover'] as const;
type Part = (typeof PARTS)[number];

/** The rows of the parts not run this time, from the last results.json, so that `--only` keeps them. */
function previousRows(file: string, run: Part[]): Row[] {
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { rows: Row[] }).rows.filter((r) => r.part !== undefined && !run.includes(r.part as Part));
  } catch {
    return [];
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  const { parts, steadySeconds } = options();
  const run: Record<Part, () => Promise<void>> = {
    ingest: () => ingestAndDelivery(Number(process.env.BENCH_RECORDS ?? 200_000)),
    scale,
    latency: () => latency(60),
    steady: async () => void rows.push(...(await steady(steadySeconds))),
    callouts: async () => void rows.push(...(await callouts())),
    fleet: async () => void rows.push(...(await fleet())),
    postgres: async () => void rows.push(...(await postgres())),
    failover: async () => void rows.push(...(await failover())),
  };
  for (const part of PARTS.filter((p) => parts.includes(p))) {
    const from = rows.length;
    await run[part]();
    for (const row of rows.slice(from)) row.part = part;
  }

  const machine = `${os.cpus().length} × ${os.cpus()[0]?.model.trim() ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}`;
  const header = ['metric', 'value', 'baseline', 'ratio', 'target', 'ok'];
  const table = rows.map((r) => [r.metric, `${fmt(r.value)} ${r.unit}`, r.baseline === undefined ? '' : fmt(r.baseline), r.ratio === undefined ? '' : `${r.ratio.toFixed(2)}×`, r.target, r.ok ? 'yes' : 'NO']);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((t) => t[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  const out = [line(header), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...table.map(line)].join('\n');
  const command = ['npm run bench', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' ');
  process.stdout.write(`\nMachine: ${machine}\nCommand: ${command} (${Math.round((Date.now() - started) / 1000)} s)\n\n${out}\n`);
  const file = join(ROOT, 'bench/results.json');
  const kept = previousRows(file, parts);
  const all = PARTS.flatMap((p) => [...kept, ...rows].filter((r) => r.part === p));
  writeFileSync(file, JSON.stringify({ machine, date: new Date().toISOString(), rows: all }, null, 2) + '\n');
}

await main();
