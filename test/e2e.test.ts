import { afterEach, describe, expect, it } from 'vitest';
import { runCli, startCli } from './helpers/cli.js';
import { type Received, startSimAndReceiver } from './helpers/receiver.js';
import { SIM_ENV, simConfig } from './helpers/simConfig.js';
import { tempDir, waitFor, writeJson } from './helpers/tmp.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(configuration: Record<string, unknown> = {}) {
  const { key, sim, simUrl, receiver } = await startSimAndReceiver(cleanups);
  const dir = tempDir();
  const config = writeJson(dir, 'poller.config.json', simConfig(simUrl, receiver.url, key, configuration));
  return { sim, receiver, dir, config, key };
}

const events = (received: Received[]) => received.flatMap((r) => r.events.map((e) => ({ ...e, notificationId: r.id })));

function expectEachChangeOnce(received: Received[]) {
  const all = events(received);
  const keys = all.map((e) => `${e.objectId}@${e.date}`);
  expect(new Set(keys).size).toBe(keys.length);
  const ids = received.map((r) => r.id);
  expect(new Set(ids).size).toBe(ids.length);
}

describe('end to end: the built CLI against the simulator and a verifying receiver', () => {
  it('delivers each create and update exactly once with the right type, also across a restart', async () => {
    const { sim, receiver, config } = await setup();
    const before = new Date(Date.now() - 1000).toISOString();
    const a = sim.createReport();
    const b = sim.createReport();
    const c = sim.createReport();
    const d = sim.createReport();

    const daemon = startCli(['run', '-c', config, '--since', before], SIM_ENV);
    await waitFor('4 CREATED events', () => events(receiver.accepted).length >= 4);
    sim.updateReport(a.ID);
    sim.updateReport(b.ID);
    await waitFor('2 UPDATED events', () => events(receiver.accepted).length >= 6);
    const e = sim.createReport();
    await waitFor('one more CREATED', () => events(receiver.accepted).length >= 7);

    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toEqual({ code: 0, signal: null });
    expect(daemon.logs().some((l) => l.message === 'pollbridge stopped')).toBe(true);

    const got = events(receiver.accepted).map((x) => `${x.eventType} ${x.objectId}`).sort();
    expect(got).toEqual([
      `CREATED ${a.ID}`, `CREATED ${b.ID}`, `CREATED ${c.ID}`, `CREATED ${d.ID}`, `CREATED ${e.ID}`,
      `UPDATED ${a.ID}`, `UPDATED ${b.ID}`,
    ].sort());
    expect(receiver.failures).toEqual([]);
    for (const r of receiver.accepted) {
      expect(r.raw.objectType).toBe('reports');
      expect((r.raw.reports as { ID: string }[]).map((x) => x.ID)).toEqual(r.events.map((x) => x.objectId));
    }

    // Same database: the windows go on from where the first daemon stopped (a second back), the
    // stored access token is used, still valid, and nothing is announced a second time.
    const tokensBefore = sim.tokenRequestCount;
    const again = startCli(['run', '-c', config], SIM_ENV);
    const polled = await again.waitForLog('poll finished', 2);
    expect(polled).toMatchObject({ fresh: 0, settled: true, duplicates: polled.records });
    again.child.kill('SIGINT');
    expect((await again.exited).code).toBe(0);
    expect(sim.tokenRequestCount).toBe(tokensBefore);
    expect(events(receiver.accepted)).toHaveLength(7);
    expectEachChangeOnce(receiver.accepted);
  });

  it('run --once polls, delivers and exits; a second daemon on the same database is refused', async () => {
    const { sim, receiver, config, dir } = await setup();
    const since = new Date(Date.now() - 1000).toISOString();
    for (let i = 0; i < 7; i++) sim.createReport();
    const once = await runCli(['run', '-c', config, '--once', '--since', since], SIM_ENV);
    expect(once.code).toBe(0);
    expect(events(receiver.accepted)).toHaveLength(7);
    expect(once.logs.find((l) => l.message === 'poll finished')).toMatchObject({ fresh: 7, settled: true });

    const daemon = startCli(['run', '-c', config], SIM_ENV);
    await daemon.waitForLog('pollbridge started');
    const second = await runCli(['run', '-c', config], SIM_ENV);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/^pollbridge: database .*pollbridge\.db is in use by another pollbridge daemon/);
    daemon.child.kill('SIGTERM');
    expect((await daemon.exited).code).toBe(0);

    const status = await runCli(['status', '--db', `${dir}/state/pollbridge.db`, '--json']);
    expect(status.stderr).toBe('');
    const parsed = JSON.parse(status.stdout) as { streams: { resource: string; lastPollOk: boolean }[]; notifications: Record<string, number> };
    expect(parsed.notifications).toEqual({ pending: 0, delivered: new Set(receiver.accepted.map((r) => r.id)).size, dead: 0 });
    expect(parsed.streams[0]).toMatchObject({ resource: 'reports', lastPollOk: true });
  });

  it('an invalid config stops `run` with one line per problem and no stack trace', async () => {
    const dir = tempDir();
    const config = writeJson(dir, 'bad.json', { name: 'x', element: { key: 'concur' }, provider: { baseUrl: 'http://127.0.0.1:1' }, configuration: { 'event.vendor.type': 'polling' } });
    const result = await runCli(['run', '-c', config]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('bad.json: configuration["event.notification.callback.url"]: is required');
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});
