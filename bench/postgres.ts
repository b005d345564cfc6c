/**
 * The PostgreSQL store (issue 16) on this machine, against SQLite where they compare. A server of
 * its own is started here with fsync on (what production pays: `startPgServer({ durable: true })`),
 * a fresh database for each measurement, and stopped at the end.
 *
 * - Ingest and delivery: the backfill of the ingest rows (bench/backfill.ts), `run --once` on
 *   SQLite and then on PostgreSQL, each over a simulator seeded alike; SQLite's rates, measured in
 *   the same run, are the baselines.
 * - Schedule lag at 4,000 streams: the fleet scenario's setup (fleet.ts: 2,000 companies × 2
 *   resources, a 1-minute schedule, the fleet simulator in a process of its own) with the daemon
 *   on PostgreSQL, as 1 replica and then as 3 (`run --replica rN` on one config and one database,
 *   a log file each); the lag of the steady polls of all replicas together, the polls a minute,
 *   and how the streams spread over the replicas.
 *
 * BENCH_PG_RECORDS (default 50,000) sets the backfill; BENCH_FLEET_COMPANIES and
 * BENCH_FLEET_MINUTES shorten the fleet runs as they shorten fleet.ts's.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { type PgServer, startPgServer } from '../dist/sim/pgServer.js';
import { type BackfillRun, cpuPerPage, PAGE, runBackfill, withBackfill } from './backfill.js';
import {
  awaitFirstRound, type Daemon, fleetSize, hasExited, INTERVAL_MS, lagS, startDaemon, startFleetSim, stopFleetDaemon, TARGET, writeConfig,
} from './fleet.js';
import { pollsOf, type ReplicaPoll, splitFirstRound, spreadOf, timestampMs } from './fleetLogs.js';
import { log, type Row, sleep } from './parts.js';

/**
 * Between the first round and the steady minutes: two lease periods at the default 15 s, for the
 * replicas, which start together, to have settled who holds which stream.
 */
const SETTLE_MS = 30_000;
/** Polls due just before the steady minutes end finish a little after (each request takes 500 ms). */
const FINISH_MS = 5_000;
/** How far from an even share each replica's streams may be: rendezvous hashing spreads them by chance. */
const SPREAD_TOLERANCE = 0.1;

function backfillRecords(): number {
  const records = Number(process.env.BENCH_PG_RECORDS ?? 50_000);
  if (!Number.isInteger(records) || records < 2 * PAGE) throw new Error(`BENCH_PG_RECORDS must be a whole number ≥ ${2 * PAGE}, got "${process.env.BENCH_PG_RECORDS}"`);
  return records;
}

const load = (): string => os.loadavg().map((l) => l.toFixed(2)).join(' ');

async function ingestAndDelivery(server: PgServer): Promise<Row[]> {
  const records = backfillRecords();
  log(`postgres: load average ${load()}`);
  const sqlite: BackfillRun = await withBackfill(records, (b) => runBackfill(b, 'SQLite'));
  const pg: BackfillRun = await withBackfill(records, (b) => runBackfill(b, 'PostgreSQL'), await server.createDatabase('bench_ingest'));
  log(`postgres: load average ${load()}`);
  const rows: Row[] = [
    {
      metric: `postgres: ingest, ${records} records, ${PAGE}/page (baseline: SQLite, same run)`, value: pg.ingestRate, unit: 'records/s',
      baseline: sqlite.ingestRate, ratio: pg.ingestRate / sqlite.ingestRate, target: '—', ok: true,
    },
    {
      metric: `postgres: delivery, ${pg.notifications} notifications, 4 in flight (baseline: SQLite, ${sqlite.notifications})`, value: pg.deliveryRate, unit: 'notifications/s',
      baseline: sqlite.deliveryRate, ratio: pg.deliveryRate / sqlite.deliveryRate, target: '—', ok: true,
    },
  ];
  // The daemon's own CPU: on PostgreSQL the server's work is in another process, not counted here.
  const [pgCpu, sqliteCpu] = [cpuPerPage(pg.daemon), cpuPerPage(sqlite.daemon)];
  if (pgCpu && sqliteCpu) {
    rows.push({
      metric: 'postgres: daemon CPU per ingested page, all threads, server not counted (baseline: SQLite)', value: pgCpu.daemonMs, unit: 'ms',
      baseline: sqliteCpu.daemonMs, ratio: pgCpu.daemonMs / sqliteCpu.daemonMs, target: '—', ok: true,
    });
  }
  return rows;
}

type Schedule = { rows: Row[]; lagP95s: number };

/**
 * The fleet on one fresh database, as `replicas` replicas started together. `single`: the
 * 1-replica run's lag p95, the baseline of a run with more.
 */
async function scheduleLag(server: PgServer, replicas: number, single?: number): Promise<Schedule> {
  const { companies, minutes, streams } = fleetSize();
  const names = Array.from({ length: replicas }, (_, i) => `r${i + 1}`);
  const name = `postgres, fleet ${streams.toLocaleString('en-US')} streams, ${replicas} replica${replicas === 1 ? '' : 's'}`;
  const dir = mkdtempSync(join(os.tmpdir(), 'pollbridge-bench-'));
  // A simulator of its own: its refresh tokens rotate, and each run's fresh database starts from the config's.
  const sim = startFleetSim(companies);
  const daemons: Daemon[] = [];
  try {
    const { daemonUrl } = await sim.ask(undefined, 'ready', 30_000);
    const layout = writeConfig(dir, companies, daemonUrl, await server.createDatabase('bench_fleet'));
    log(`${name}: ${companies} companies (${layout.layout}), a 1-minute schedule; load average ${load()}…`);
    for (const replica of names) daemons.push(startDaemon(dir, layout.file, replica));
    const started = await awaitFirstRound(daemons, streams);
    await sleep(SETTLE_MS);
    const steadyFrom = Date.now();
    log(`${name}: ${minutes} steady min…`);
    await sleep(minutes * INTERVAL_MS);
    const steadyTo = Date.now();
    await sleep(FINISH_MS);
    log(`${name}: done; load average ${load()}`);
    const died = daemons.flatMap((d, i) => (hasExited(d) ? [`${names[i]}: ${d.child.exitCode ?? d.child.signalCode}`] : []));
    const stats = await sim.ask({ type: 'stats' }, 'stats', 10_000);

    const polls: ReplicaPoll[] = daemons.flatMap((d, i) => pollsOf(d.tail.read(), timestampMs(started[i]!), INTERVAL_MS).map((p) => ({ ...p, replica: names[i]! })));
    const steady = splitFirstRound(polls).later.filter((p) => p.dueMs >= steadyFrom && p.dueMs < steadyTo);
    const steadyMinutes = (steadyTo - steadyFrom) / INTERVAL_MS;
    const finished = polls.filter((p) => p.finishedMs >= steadyFrom && p.finishedMs < steadyTo).length;
    // By due time, not finish: a poll ends a second or so after it is due, and a count by finish
    // would lose that much of the span's edge.
    const perMinute = steady.length / steadyMinutes;
    const expected = Math.round(streams * steadyMinutes);
    const lagP95s = lagS(steady, 95);
    log(`${name}: ${polls.length} polls; steady ${steady.length} due (about ${expected}), ${finished} finished; `
      + `sim: ${stats.daemon.tokens} token requests, ${stats.daemon.invalidGrant} invalid_grant, ${stats.daemon.rateLimited} 429s`);

    const rows: Row[] = [
      { metric: `${name}: steady ${minutes} min, lag p50 (${steady.length} polls due, about ${expected} expected)`, value: lagS(steady, 50), unit: 's', target: '—', ok: true },
      {
        metric: `${name}: steady, lag p95${single === undefined ? '' : ' (baseline: 1 replica)'}`, value: lagP95s, unit: 's',
        ...(single === undefined ? {} : { baseline: single, ratio: lagP95s / single }), target: `≤ ${TARGET.lagP95s} s`, ok: lagP95s <= TARGET.lagP95s,
      },
      { metric: `${name}: steady, lag max`, value: lagS(steady, 100), unit: 's', target: '—', ok: true },
      {
        metric: `${name}: polls a minute, due in the steady minutes and run, all replicas (baseline: one per stream)`, value: perMinute, unit: 'polls/min',
        baseline: streams, ratio: perMinute / streams, target: '≥ 0.99×', ok: perMinute / streams >= 0.99,
      },
    ];
    if (replicas > 1) {
      const { held, moved } = spreadOf(polls, names, steadyFrom, steadyTo);
      const even = streams / replicas;
      log(`${name}: streams held at the end: ${[...held].map(([r, n]) => `${r} ${n}`).join(', ')}; ${moved} handed over in the steady minutes`);
      const counts = [...held.values()];
      for (const [which, value] of [['fewest', Math.min(...counts)], ['most', Math.max(...counts)]] as const) {
        rows.push({
          metric: `${name}: streams held at the end of the steady minutes, ${which} of one replica (baseline: an even share)`, value, unit: 'streams',
          baseline: even, ratio: value / even, target: `within ${SPREAD_TOLERANCE * 100} % of even`, ok: Math.abs(value / even - 1) <= SPREAD_TOLERANCE,
        });
      }
      rows.push({ metric: `${name}: streams handed over between replicas during the steady minutes`, value: moved, unit: 'streams', target: '—', ok: true });
    }
    rows.push(
      { metric: `${name}: replicas that exited during the run${died.length === 0 ? '' : ` (${died.join(', ')})`}`, value: died.length, unit: 'exits', target: '0', ok: died.length === 0 },
      { metric: `${name}: invalid_grant answers (one refresh at a time per company across replicas)`, value: stats.daemon.invalidGrant, unit: 'answers', target: '0', ok: stats.daemon.invalidGrant === 0 },
    );
    return { rows, lagP95s };
  } finally {
    await Promise.all(daemons.map(stopFleetDaemon));
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function postgres(): Promise<Row[]> {
  const server = await startPgServer({ durable: true });
  try {
    const rows = await ingestAndDelivery(server);
    const one = await scheduleLag(server, 1);
    const three = await scheduleLag(server, 3, one.lagP95s);
    return [...rows, ...one.rows, ...three.rows];
  } finally {
    await server.stop();
  }
}
