/**
 * Attacks on the daemon side of replicas: configs that differ between replicas, `run --once`
 * alone and beside running replicas, a clean stop while a delivery is in flight.
 */
import { afterEach, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { Daemon } from '../src/daemon/daemon.js';
import { captureLogger, FAST_FETCH } from './helpers/harness.js';
import { describePg, freshPgDatabase, holders, query } from './helpers/pg.js';
import { randomBytes } from 'node:crypto';
import { ConcurSim } from '../src/sim/concurSim.js';
import { instantFromMs } from '../src/time/instant.js';
import { startReceiver } from './helpers/receiver.js';
import { SIM_ENV } from './helpers/simConfig.js';
import { tenantInstance } from './helpers/tenants.js';
import { tempDir, waitFor, writeJson } from './helpers/tmp.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

const TENANTS = Array.from({ length: 12 }, (_, i) => `tenant-${i}`);



async function fences(url: string): Promise<Map<string, number>> {
  const rows = await query<{ instance: string; fence: string }>(url, 'SELECT s.instance, l.fence FROM stream_leases l JOIN streams s ON s.id = l.stream_id');
  return new Map(rows.map((r) => [r.instance, Number(r.fence)]));
}

async function fleet(url: string, tenants = TENANTS) {
  const key = 'whsec_' + randomBytes(24).toString('base64');
  const sim = new ConcurSim();
  const simUrl = await sim.start();
  cleanups.push(() => sim.stop());
  // The receiver's answer can be changed as the test goes; `inFlight` counts requests not answered yet.
  const receiver = { respond: (): number | Promise<number> => 200, inFlight: 0 };
  const server = await startReceiver(key, async () => {
    receiver.inFlight++;
    try {
      return await receiver.respond();
    } finally {
      receiver.inFlight--;
    }
  });
  cleanups.push(() => server.close());
  const dir = tempDir();
  const configFor = (names: string[], extra: Record<string, unknown> = {}): string => writeJson(dir, `poller-${names.length}-${Math.random().toString(36).slice(2)}.config.json`, {
    database: url,
    http: { listen: '127.0.0.1:0' },
    'pollbridge.cluster.leaseSeconds': 2,
    instances: names.map((t) => tenantInstance(t, simUrl, server.url, key, { 'pollbridge.poller.cron': '* * * * * *', 'pollbridge.delivery.concurrency': 16 })),
    ...extra,
  });
  const start = async (name: string, file: string, graceMs = 1000): Promise<{ daemon: Daemon; logs: ReturnType<typeof captureLogger> }> => {
    const config = loadConfig(file, { env: SIM_ENV });
    const logs = captureLogger(config.secrets);
    const daemon = new Daemon({ config, log: logs.log, fetchPolicy: FAST_FETCH, graceMs, replicaName: name });
    cleanups.push(() => daemon.stop());
    await daemon.start();
    return { daemon, logs };
  };
  return { sim, receiver, configFor, start, all: configFor(tenants) };
}

describePg('replicas under attack', () => {
  it('a replica whose config lacks some instances leaves none of their streams unpolled: the replicas that have them poll them', async () => {
    const url = await freshPgDatabase();
    const { configFor, start, all } = await fleet(url);
    await start('vm-a', all);
    // vm-b knows only half of the instances (a config not yet rolled out to it, say).
    await start('vm-b', configFor(TENANTS.slice(0, 6)));
    await waitFor('both replicas hold streams', async () => new Set((await holders(url)).values()).size === 2, 20_000);
    // Every stream has a replica that can poll it: each must be held, whatever rendezvous says.
    const held = await waitFor('every stream held by a replica that has it', async () => {
      const h = await holders(url);
      return h.size === TENANTS.length && h;
    }, 10_000).catch(async () => holders(url));
    expect(TENANTS.filter((t) => !held.has(t)), 'streams nobody polls').toEqual([]);
  }, 60_000);

  it('run --once alone on PostgreSQL finishes a poll that lasts longer than a lease', async () => {
    const url = await freshPgDatabase();
    const { sim, start: _start, configFor } = await fleet(url, ['tenant-0']);
    void _start;
    // 4 pages of 50, each answered after 1 s: the poll lasts past the 2 s lease.
    const since = new Date(Date.now() - 60_000).toISOString();
    for (let i = 0; i < 180; i++) sim.createReport();
    sim.faults.listDelayMs = 1000;
    const file = configFor(['tenant-0']);
    const config = loadConfig(file, { env: SIM_ENV });
    const logs = captureLogger(config.secrets);
    const daemon = new Daemon({ config, log: logs.log, fetchPolicy: FAST_FETCH, graceMs: 1000, replicaName: 'once', since: instantFromMs(Date.parse(since)) });
    cleanups.push(() => daemon.stop());
    const result = await daemon.runOnce();
    // No other replica exists: no page may be refused, and the poll ends (its leases go only as the run stops).
    expect(logs.messages('poll finished')).toHaveLength(1);
    expect(logs.lines.filter((l) => /^poll ended: the stream's lease moved/.test(String(l.message)))).toEqual([]);
    expect(result.failedPolls).toBe(0);
  }, 60_000);

  it('run --once beside a running replica takes none of its streams away from it', async () => {
    const url = await freshPgDatabase();
    const { sim, start, all, configFor } = await fleet(url);
    const a = await start('vm-a', all);
    await waitFor('vm-a holds every stream', async () => (await holders(url)).size === TENANTS.length, 20_000);
    const before = await fences(url);
    // The --once run has one instance more, free for it: its poll (pages answered after 1.5 s)
    // lasts a few of vm-a's lease rounds (every 2/3 s).
    const config = loadConfig(configFor([...TENANTS, 'tenant-extra']), { env: SIM_ENV });
    sim.faults.listDelayMs = 1500;
    const once = new Daemon({ config, log: captureLogger(config.secrets).log, fetchPolicy: FAST_FETCH, graceMs: 1000, replicaName: 'once' });
    cleanups.push(() => once.stop());
    await once.runOnce();
    expect(a.logs.messages('stream leases lost')).toEqual([]);
    const after = await fences(url);
    expect(new Map([...after].filter(([k]) => k !== 'tenant-extra'))).toEqual(before);
  }, 60_000);

  it('a clean stop hands the streams over at once, not after the deliveries in flight have ended', async () => {
    const url = await freshPgDatabase();
    const { sim, receiver, start, all } = await fleet(url);
    const a = await start('vm-a', all, 60_000);
    const b = await start('vm-b', all);
    void b;
    await waitFor('both replicas hold streams', async () => new Set((await holders(url)).values()).size === 2, 20_000);
    // vm-a's deliveries hang until released: its stop waits for them (its grace is a minute).
    let release!: () => void;
    const answered = new Promise<void>((r) => { release = r; });
    receiver.respond = () => answered.then(() => 200);
    sim.createReport();
    await waitFor('a delivery of vm-a\'s in flight', async () => (await query(url, `SELECT 1 FROM notifications n JOIN replicas r ON r.id = n.claimed_by
      WHERE r.name = 'vm-a' AND n.status = 'pending' AND n.claim_until > now()`)).length > 0 && receiver.inFlight > 0, 20_000);
    let stopped = false;
    const stopping = a.daemon.stop().finally(() => { stopped = true; });
    cleanups.push(() => stopping);
    cleanups.push(async () => release());
    // The order, not a time: vm-b holds every stream while vm-a's delivery is still unanswered.
    await waitFor('vm-b polls every stream while vm-a finishes its deliveries', async () => {
      const h = await holders(url);
      return h.size === TENANTS.length && [...h.values()].every((n) => n === 'vm-b');
    }, 20_000);
    expect(receiver.inFlight).toBeGreaterThan(0);
    expect(stopped).toBe(false);
    release();
    await stopping;
  }, 90_000);
});
