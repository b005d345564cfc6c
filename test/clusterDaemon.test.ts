import { afterEach, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { assign } from '../src/daemon/assignment.js';
import { Daemon } from '../src/daemon/daemon.js';
import { parseConcurDate } from '../src/sim/concurSim.js';
import { withCallout } from './helpers/callout.js';
import { runCli } from './helpers/cli.js';
import { captureLogger, FAST_FETCH } from './helpers/harness.js';
import { describePg, freshPgDatabase, holders, query } from './helpers/pg.js';
import { startSimAndReceiver } from './helpers/receiver.js';
import { SIM_ENV, simConfig } from './helpers/simConfig.js';
import { tenantInstance } from './helpers/tenants.js';
import { startTcpProxy } from './helpers/tcpProxy.js';
import { tempDir, waitFor, writeJson } from './helpers/tmp.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

const TENANTS = Array.from({ length: 12 }, (_, i) => `tenant-${i}`);



/** Where rendezvous puts the tenants' streams over replicas of these names. */
function expected(names: string[]): Map<string, string> {
  const streams = TENANTS.map((t, i) => ({ id: i, instance: t, resource: 'reports' }));
  const owners = assign(streams, names.map((name) => ({ id: name, name })));
  return new Map(TENANTS.map((t, i) => [t, owners.get(i)!]));
}

const same = (a: Map<string, string>, b: Map<string, string>): boolean => a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);

/**
 * The simulator, a receiver, and a config on `url` for the tenants; `start` runs a daemon in-process
 * as replica NAME (on `database` instead, a proxy of it, say). `round` makes changes; every
 * version it makes is one a poll can see.
 */
async function cluster(url: string) {
  const { key, sim, simUrl, receiver } = await startSimAndReceiver(cleanups);
  const dir = tempDir();
  const configOn = (database: string): unknown => ({
    database,
    http: { listen: '127.0.0.1:0' },
    'pollbridge.cluster.leaseSeconds': 2,
    instances: TENANTS.map((t) => tenantInstance(t, simUrl, receiver.url, key, { 'pollbridge.poller.cron': '* * * * * *' })),
  });
  const configFile = writeJson(dir, 'poller.config.json', configOn(url));
  const daemons = new Map<string, { daemon: Daemon; logs: ReturnType<typeof captureLogger> }>();
  const everyLog: ReturnType<typeof captureLogger>[] = [];
  const start = async (name: string, database = url): Promise<Daemon> => {
    const file = database === url ? configFile : writeJson(dir, `${name}.config.json`, configOn(database));
    const config = loadConfig(file, { env: SIM_ENV });
    const logs = captureLogger(config.secrets);
    const daemon = new Daemon({ config, log: logs.log, fetchPolicy: FAST_FETCH, graceMs: 1000, replicaName: name });
    cleanups.push(() => daemon.stop());
    daemons.set(name, { daemon, logs });
    everyLog.push(logs);
    await daemon.start();
    return daemon;
  };
  // Each change goes to every tenant (the simulator serves them all the same records), once. A
  // round creates reports and updates some of the round before's, each seen by then.
  const made: { id: string; date: string }[] = [];
  let previous: string[] = [];
  const round = (): void => {
    const reports = [...Array.from({ length: 4 }, () => sim.createReport()), ...previous.slice(0, 2).map((id) => sim.updateReport(id))];
    for (const r of reports) made.push({ id: r.ID, date: new Date(parseConcurDate(r.LastModifiedDate)!).toISOString() });
    previous = reports.slice(0, 4).map((r) => r.ID);
  };
  const delivered = (): Map<string, number> => {
    const counts = new Map<string, number>();
    for (const r of receiver.accepted) {
      const { instanceName } = (JSON.parse(r.body) as { message: { instanceName: string } }).message;
      for (const e of r.events) counts.set(`${instanceName} ${e.objectId} ${e.date}`, (counts.get(`${instanceName} ${e.objectId} ${e.date}`) ?? 0) + 1);
    }
    return counts;
  };
  const allDelivered = (): boolean => {
    const counts = delivered();
    return made.every((m) => TENANTS.every((t) => counts.has(`${t} ${m.id} ${m.date}`)));
  };
  const announcedUnderTwoIds = (): string[] => {
    const ids = new Map<string, Set<string>>();
    for (const r of receiver.accepted) {
      const { instanceName } = (JSON.parse(r.body) as { message: { instanceName: string } }).message;
      for (const e of r.events) {
        const k = `${instanceName} ${e.objectId} ${e.date}`;
        ids.set(k, (ids.get(k) ?? new Set()).add(r.id));
      }
    }
    return [...ids].filter(([, set]) => set.size > 1).map(([k, set]) => `${k}: ${[...set].join(', ')}`);
  };
  return { configFile, daemons, everyLog, start, round, delivered, allDelivered, announcedUnderTwoIds };
}

describePg('daemons on one PostgreSQL database', () => {
  it('spread the streams, deliver every change once, hand a stopped replica\'s streams over at once and give them back when it returns', async () => {
    const url = await freshPgDatabase();
    const { configFile, daemons, everyLog, start, round, delivered, allDelivered } = await cluster(url);
    for (const name of ['vm-a', 'vm-b', 'vm-c']) await start(name);
    await waitFor('the streams placed as rendezvous says', async () => same(await holders(url), expected(['vm-a', 'vm-b', 'vm-c'])), 20_000);

    round();
    await waitFor('every change delivered to every tenant', allDelivered, 30_000);

    // /metrics: every series names the replica; the leases it holds are counted.
    const a = daemons.get('vm-a')!.daemon;
    const metrics = await (await fetch(`${a.httpUrl}/metrics`)).text();
    const samples = metrics.split('\n').filter((l) => l && !l.startsWith('#'));
    expect(samples.length).toBeGreaterThan(0);
    expect(samples.filter((l) => !l.includes('replica="vm-a"'))).toEqual([]);
    const mine = [...expected(['vm-a', 'vm-b', 'vm-c']).values()].filter((n) => n === 'vm-a').length;
    expect(samples).toContain(`pollbridge_stream_leases_held{replica="vm-a"} ${mine}`);
    expect((await fetch(`${a.httpUrl}/healthz`)).status).toBe(200);

    // status, of the built CLI: who holds each stream, in the JSON and as a column.
    const json = await runCli(['status', '-c', configFile, '--json'], SIM_ENV);
    expect(json.code, json.stderr).toBe(0);
    const listed = (JSON.parse(json.stdout) as { streams: { instance: string; replica: string | null }[] }).streams;
    expect(new Map(listed.map((s) => [s.instance, s.replica]))).toEqual(expected(['vm-a', 'vm-b', 'vm-c']));
    const text = await runCli(['status', '-c', configFile, '--instance', 'tenant-1'], SIM_ENV);
    expect(text.stdout).toMatch(new RegExp(`^INSTANCE +RESOURCE +REPLICA .*\\ntenant-1 +reports +${expected(['vm-a', 'vm-b', 'vm-c']).get('tenant-1')} `, 's'));

    // A clean stop lets go at once: no lease of vm-b is left for the others to wait out.
    await daemons.get('vm-b')!.daemon.stop();
    expect([...(await holders(url)).values()]).not.toContain('vm-b');
    expect(await query(url, `SELECT id FROM replicas WHERE name = 'vm-b'`)).toEqual([]);
    await waitFor('vm-b\'s streams taken over by the others', async () => same(await holders(url), expected(['vm-a', 'vm-c'])), 20_000);
    round();
    await waitFor('every change delivered after the handover', allDelivered, 30_000);

    // vm-b returns (a new process, the same name): exactly its streams come back to it.
    await start('vm-b');
    await waitFor('vm-b\'s streams back with it', async () => same(await holders(url), expected(['vm-a', 'vm-b', 'vm-c'])), 20_000);
    round();
    await waitFor('every change delivered after the return', allDelivered, 30_000);

    const twice = [...delivered()].filter(([, n]) => n > 1);
    expect(twice).toEqual([]);
    // No poll failed, no round failed, nothing was refused on the way.
    for (const logs of everyLog) expect(logs.lines.filter((l) => l.level === 'error')).toEqual([]);
  }, 180_000);

  it('a replica cut off from the database stops polling, says so on /healthz, and its streams go on elsewhere; healed, it takes its share back', async () => {
    const url = await freshPgDatabase();
    const proxy = await startTcpProxy(url);
    // First among the clean-ups: a daemon stopping waits for its calls held by the partition.
    cleanups.push(async () => proxy.heal());
    const { daemons, start, round, allDelivered, announcedUnderTwoIds } = await cluster(url);
    const cutOff = await start('vm-a', proxy.url);
    await start('vm-b');
    await waitFor('the streams placed as rendezvous says', async () => same(await holders(url), expected(['vm-a', 'vm-b'])), 20_000);
    round();
    await waitFor('every change delivered to every tenant', allDelivered, 30_000);

    proxy.cut();
    await waitFor('vm-b polls every stream', async () => [...(await holders(url)).values()].every((n) => n === 'vm-b') && (await holders(url)).size === TENANTS.length, 20_000);
    const logs = daemons.get('vm-a')!.logs;
    expect(logs.messages('stream leases lost').length).toBeGreaterThan(0);
    const health = await fetch(`${cutOff.httpUrl}/healthz`);
    expect(health.status).toBe(503);
    const { reasons } = (await health.json()) as { reasons: string[] };
    expect(reasons).toEqual([expect.stringMatching(/^database cannot be written: .*no answer to a test write within 3 s/)]);
    // Changes made meanwhile are vm-b's to announce.
    round();
    await waitFor('every change delivered while vm-a is cut off', allDelivered, 30_000);

    proxy.heal();
    await waitFor('vm-a\'s streams back with it', async () => same(await holders(url), expected(['vm-a', 'vm-b'])), 30_000);
    await waitFor('vm-a healthy again', async () => (await fetch(`${cutOff.httpUrl}/healthz`)).status === 200, 20_000);
    round();
    await waitFor('every change delivered after the partition', allDelivered, 30_000);
    // A delivery answered while vm-a could not record it is sent again (at least once), under
    // its one notification id: no change is ever announced under two.
    expect(announcedUnderTwoIds()).toEqual([]);
  }, 180_000);

  it('run --once on a cluster polls the streams no running replica holds, leaves the others to theirs, and lets go as it exits', async () => {
    const url = await freshPgDatabase();
    const { configFile, round, allDelivered, delivered, start } = await cluster(url);
    round();
    const alone = await runCli(['run', '-c', configFile, '--once', '--replica', 'once-1', '--since', new Date(Date.now() - 60_000).toISOString()], SIM_ENV);
    expect(alone.code, alone.stderr).toBe(0);
    expect(allDelivered()).toBe(true);
    expect(await query(url, 'SELECT name FROM replicas')).toEqual([]);
    expect((await holders(url)).size).toBe(0);
    // A daemon holds every stream: a --once beside it polls none and says so.
    await start('vm-a');
    await waitFor('vm-a holds every stream', async () => (await holders(url)).size === TENANTS.length, 20_000);
    const beside = await runCli(['run', '-c', configFile, '--once', '--replica', 'once-2', '--log-format', 'json'], SIM_ENV);
    expect(beside.code, beside.stderr).toBe(0);
    expect(beside.stdout).toContain('"polled":0');
    expect([...(await holders(url)).values()].every((n) => n === 'vm-a')).toBe(true);
    expect([...delivered()].filter(([, n]) => n > 1)).toEqual([]);
  }, 120_000);

  it('reads Concur\'s failed-notification queue of an instance on one replica only, the holder of its callout stream; another once it stops', async () => {
    const url = await freshPgDatabase();
    const { key, sim, simUrl, receiver } = await startSimAndReceiver(cleanups);
    const config = withCallout(simConfig(simUrl, receiver.url, key), '127.0.0.1:0', { 'pollbridge.callout.failedQueueMinutes': '0.005' });
    const file = writeJson(tempDir(), 'poller.config.json', { ...config, database: url, 'pollbridge.cluster.leaseSeconds': 2 });
    const rounds = async (d: Daemon): Promise<number> => {
      const text = await d.metrics.registry.getSingleMetricAsString('pollbridge_callout_failed_queue_rounds_total');
      return text.split('\n').filter((l) => l.startsWith('pollbridge_callout')).reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
    };
    const daemons = new Map<string, Daemon>();
    for (const name of ['vm-a', 'vm-b']) {
      const loaded = loadConfig(file, { env: SIM_ENV });
      const daemon = new Daemon({ config: loaded, log: captureLogger(loaded.secrets).log, fetchPolicy: FAST_FETCH, graceMs: 1000, replicaName: name });
      cleanups.push(() => daemon.stop());
      daemons.set(name, daemon);
      await daemon.start();
    }
    const instance = config.instances[0]!.name;
    const owner = assign([{ id: 0, instance, resource: '(callout)' }], [{ id: 'vm-a', name: 'vm-a' }, { id: 'vm-b', name: 'vm-b' }]).get(0)!;
    const holder = daemons.get(owner)!;
    const other = daemons.get(owner === 'vm-a' ? 'vm-b' : 'vm-a')!;
    // The first replica up held every stream for a moment, alone: counted from once the leases settle.
    await waitFor('the callout stream held by its owner', async () => (await query<{ replica: string }>(url, `
      SELECT r.name AS replica FROM stream_leases l JOIN streams s ON s.id = l.stream_id JOIN replicas r ON r.id = l.replica_id
      WHERE s.resource = '(callout)' AND l.expires_at > now() AND r.expires_at > now()`))[0]?.replica === owner, 20_000);
    const [holderFrom, otherFrom] = [await rounds(holder), await rounds(other)];
    await waitFor('a few rounds on the holder', async () => (await rounds(holder)) >= holderFrom + 3, 20_000);
    expect(await rounds(other)).toBe(otherFrom);
    await holder.stop();
    await waitFor('the other replica reads the queue once the holder is gone', async () => (await rounds(other)) >= otherFrom + 2, 20_000);
  }, 60_000);
});
