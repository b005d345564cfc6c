/**
 * Failover (issue 16): three replicas of the built CLI on one PostgreSQL database (fsync on) poll
 * 50 companies × 2 resources of the fleet simulator at a 1-minute schedule, with the default
 * lease (15 s). The replica holding the most streams is killed (kill -9); then, once the other
 * two hold everything, one of them is stopped (SIGTERM). For each: how long until every stream
 * the replica held is held by another (the database's stream_leases, read every 100 ms), and the
 * worst schedule lag of those streams' polls in the two minutes after (what a change waits more
 * than it would have).
 *
 * BENCH_FAILOVER_COMPANIES (default 50) sets the fleet.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { DEFAULT_LEASE_SECONDS } from '../dist/config/types.js';
import { startPgServer } from '../dist/sim/pgServer.js';
import { awaitFirstRound, type Daemon, INTERVAL_MS, RESOURCES, startDaemon, startFleetSim, stopFleetDaemon, writeConfig } from './fleet.js';
import { timestampMs } from './fleetLogs.js';
import { log, type Row, sleep } from './parts.js';

const REPLICAS = 3;
/** After a failover, the polls watched: two of the streams' intervals. */
const WATCH_MS = 2 * INTERVAL_MS;

type Holding = Map<string, string>;

/** Who holds each stream now (an expired lease is nobody's), by `instance/resource`. */
async function holding(db: pg.Client): Promise<Holding> {
  const { rows } = await db.query<{ key: string; replica: string | null }>(`SELECT s.instance || '/' || s.resource AS key,
      CASE WHEN l.expires_at > now() THEN l.replica_name END AS replica
    FROM streams s LEFT JOIN stream_leases l ON l.stream_id = s.id WHERE s.resource <> '(callout)'`);
  return new Map(rows.map((r) => [r.key, r.replica ?? '']));
}

/** Waits (reading every 100 ms, 3 minutes at most) until `done` holds; the ms it took from `fromMs`. */
async function until(db: pg.Client, fromMs: number, done: (h: Holding) => boolean): Promise<number> {
  const deadline = Date.now() + 180_000;
  while (Date.now() < deadline) {
    if (done(await holding(db))) return Date.now() - fromMs;
    await sleep(100);
  }
  return NaN;
}

/** The worst lag (s) of the polls of `streams` that finished within WATCH_MS of `fromMs`, on the `daemons` still running. */
function worstLagS(daemons: Daemon[], streams: ReadonlySet<string>, fromMs: number): number {
  const lags = daemons.flatMap((d) => d.tail.read()).filter((l) => l.message === 'poll finished' && streams.has(`${String(l.instance)}/${String(l.resource)}`)
    && timestampMs(l) >= fromMs && timestampMs(l) <= fromMs + WATCH_MS).map((l) => Number(l.lagMs));
  return lags.length === 0 ? NaN : Math.max(...lags) / 1000;
}

export async function failover(): Promise<Row[]> {
  const companies = Number(process.env.BENCH_FAILOVER_COMPANIES ?? 50);
  const streams = companies * RESOURCES;
  const leaseS = DEFAULT_LEASE_SECONDS;
  const server = await startPgServer({ durable: true });
  const dir = mkdtempSync(join(os.tmpdir(), 'pollbridge-bench-'));
  const sim = startFleetSim(companies);
  const daemons: Daemon[] = [];
  const stopped = new Set<Daemon>();
  /** Each daemon stopped (and its log closed) once, whether by the measurement or at the end. */
  const stop = async (d: Daemon): Promise<void> => {
    if (stopped.has(d)) return;
    stopped.add(d);
    await stopFleetDaemon(d);
  };
  const url = await server.createDatabase('bench_failover');
  const db = new pg.Client({ connectionString: url });
  try {
    const { daemonUrl } = await sim.ask(undefined, 'ready', 30_000);
    const { file } = writeConfig(dir, companies, daemonUrl, url);
    log(`failover: ${REPLICAS} replicas, ${streams} streams, lease ${leaseS} s…`);
    for (let r = 0; r < REPLICAS; r++) daemons.push(startDaemon(dir, file, `r${r}`));
    await awaitFirstRound(daemons, streams);
    await db.connect();
    const settled = await until(db, Date.now(), (h) => h.size === streams && [...h.values()].every((r) => r !== '')
      && new Set(h.values()).size === REPLICAS);
    if (Number.isNaN(settled)) throw new Error('the replicas never held every stream between them');

    const killedHolding = await holding(db);
    const counts = [...Array(REPLICAS).keys()].map((r) => [...killedHolding.values()].filter((x) => x === `r${r}`).length);
    const victim = counts.indexOf(Math.max(...counts));
    const victimStreams = new Set([...killedHolding].filter(([, r]) => r === `r${victim}`).map(([k]) => k));
    log(`failover: streams held ${counts.join(' / ')}; kill -9 of r${victim} (${victimStreams.size} streams)…`);
    const killedAt = Date.now();
    daemons[victim]!.child.kill('SIGKILL');
    await daemons[victim]!.exited;
    const afterKill = await until(db, killedAt, (h) => [...victimStreams].every((k) => h.get(k) !== '' && h.get(k) !== `r${victim}`));
    const survivors = daemons.filter((_, i) => i !== victim);
    await sleep(killedAt + WATCH_MS - Date.now());
    const killLagS = worstLagS(survivors, victimStreams, killedAt);

    const stopping = daemons.findIndex((_, i) => i !== victim);
    const beforeStop = await holding(db);
    const stopStreams = new Set([...beforeStop].filter(([, r]) => r === `r${stopping}`).map(([k]) => k));
    log(`failover: SIGTERM of r${stopping} (${stopStreams.size} streams)…`);
    const stoppedAt = Date.now();
    await stop(daemons[stopping]!);
    const afterStop = await until(db, stoppedAt, (h) => [...stopStreams].every((k) => h.get(k) !== '' && h.get(k) !== `r${stopping}`));
    const last = daemons.filter((_, i) => i !== victim && i !== stopping);
    await sleep(stoppedAt + WATCH_MS - Date.now());
    const stopLagS = worstLagS(last, stopStreams, stoppedAt);

    const killTarget = leaseS * (4 / 3);
    return [
      { metric: `failover, kill -9 of a replica (${victimStreams.size} of ${streams} streams): all held by others after`, value: afterKill / 1000, unit: 's',
        target: `≤ ${killTarget.toFixed(0)} s (lease + a third)`, ok: afterKill / 1000 <= killTarget },
      { metric: 'failover, kill -9: worst schedule lag of its streams\' polls in the 2 min after', value: killLagS, unit: 's', target: `≤ ${killTarget.toFixed(0)} s`, ok: killLagS <= killTarget },
      { metric: `handover, SIGTERM of a replica (${stopStreams.size} streams): all held by others after`, value: afterStop / 1000, unit: 's',
        target: `≤ ${(leaseS / 3 + 1).toFixed(0)} s (a third of the lease)`, ok: afterStop / 1000 <= leaseS / 3 + 1 },
      { metric: 'handover, SIGTERM: worst schedule lag of its streams\' polls in the 2 min after', value: stopLagS, unit: 's', target: `≤ ${(leaseS / 3 + 1).toFixed(0)} s`, ok: stopLagS <= leaseS / 3 + 1 },
    ];
  } finally {
    for (const d of daemons) await stop(d);
    await db.end().catch(() => {});
    await sim.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
