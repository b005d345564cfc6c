import { existsSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createScheduler } from '../src/daemon/schedule.js';
import type { Store } from '../src/store/types.js';
import { ThreadedStore } from '../dist/store/threadedStore.js';
import { startCli } from './helpers/cli.js';
import { harness } from './helpers/harness.js';
import { SIM_ENV } from './helpers/simConfig.js';
import { freePort, rewrite } from './helpers/configFile.js';
import { waitFor } from './helpers/tmp.js';

const HOLD_LOADING = fileURLToPath(new URL('./fixtures/holdLoading.mjs', import.meta.url));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((resolve) => s.close(resolve));
});

describe('reloads and stop are one queue', () => {
  it('overlapping reloads leave one loop per stream, and after stop() nothing polls', { timeout: 60_000 }, async () => {
    const h = await harness();
    const { daemon, config } = h.daemon();
    await daemon.start();
    await waitFor('a first poll', () => h.sim.listQueries.length > 0);
    // Three reloads asked in one tick: each must run after the one before, never beside it.
    const reloads = [daemon.reload(() => config), daemon.reload(() => config), daemon.reload(() => config)];
    expect(await Promise.all(reloads)).toEqual([true, true, true]);
    await daemon.stop();
    const after = h.sim.listQueries.length;
    // The schedule is every second: a leaked loop would have polled in three of them.
    await sleep(3500);
    expect(h.sim.listQueries.length).toBe(after);
  });

  it('a stop asked during a reload waits for it, and no loop starts after the stop', { timeout: 60_000 }, async () => {
    const h = await harness();
    const { daemon, config } = h.daemon();
    await daemon.start();
    const reloading = daemon.reload(() => config);
    const stopping = daemon.stop();
    // The reload was asked first: it may run, but the loops it would start must not outlive the stop.
    await Promise.all([reloading, stopping]);
    const after = h.sim.listQueries.length;
    await sleep(2500);
    expect(h.sim.listQueries.length).toBe(after);
    expect(await daemon.reload(() => config)).toBe(false);
  });

  it('the CLI: two SIGHUPs a few ms apart, then SIGTERM, exits 0 with one "stopped"', { timeout: 60_000 }, async () => {
    const h = await harness();
    const p = startCli(['run', '-c', h.configFile], SIM_ENV);
    await p.waitForLog('pollbridge started');
    p.child.kill('SIGHUP');
    await sleep(5);
    p.child.kill('SIGHUP');
    await p.waitForLog('config reloaded');
    h.sim.createReport();
    await waitFor('an event after the reloads', () => h.events().length === 1);
    p.child.kill('SIGTERM');
    const exited = await Promise.race([p.exited, sleep(15_000).then(() => 'still running' as const)]);
    expect(exited).toEqual({ code: 0, signal: null });
    expect(p.logs().filter((l) => l.message === 'pollbridge stopped')).toHaveLength(1);
  });
});

describe('a reload does not pause delivery', () => {
  it('a notification in flight when a reload adds an instance is answered on its first attempt, its connection never cut', { timeout: 60_000 }, async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => { release = resolve; });
    let arrived = 0;
    const h = await harness({}, {}, undefined, async () => {
      arrived++;
      await held;
      return 200;
    });
    const { daemon, logs } = h.daemon();
    await daemon.start();
    h.sim.createReport();
    await waitFor('a notification at the receiver, held', () => arrived === 1);
    const next = rewrite(h.configFile, (c) => {
      const running = c.instances[0]!;
      c.instances = [running, { ...running, name: 'Added', configuration: { ...running.configuration, 'event.notification.enabled': 'false' } }];
    });
    expect(await daemon.reload(() => next)).toBe(true);
    expect(daemon.config.instances.map((i) => i.name)).toEqual(['ConcurTest', 'Added']);
    release();
    await waitFor('the held notification delivered', () => logs.messages('notification delivered').length === 1);
    expect(logs.messages('notification delivered')[0]).toMatchObject({ attempt: 1, statusCode: 200 });
    expect(arrived).toBe(1);
    expect(h.receiver.accepted).toHaveLength(1);
  });
});

describe('a refused reload leaves the running config running', () => {
  it('another process holds the write lock while the new config adds an instance: the old streams go on polling', { timeout: 90_000 }, async () => {
    const h = await harness();
    const { daemon, config } = h.daemon();
    await daemon.start();
    await waitFor('a first poll', () => h.sim.listQueries.length > 0);
    const next = rewrite(h.configFile, (c) => c.instances.push({ ...c.instances[0]!, name: 'ConcurTwo' }));
    const other = new Database(config.database);
    other.exec('BEGIN IMMEDIATE');
    const refused = daemon.reload(() => next).then(() => undefined, (err: unknown) => err as Error);
    // The daemon's store waits 5 s for the lock before it gives up.
    const error = await refused;
    other.exec('ROLLBACK');
    other.close();
    expect(error?.message).toMatch(/database is locked/);
    expect(daemon.config.instances.map((i) => i.name)).toEqual(['ConcurTest']);
    const report = h.sim.createReport();
    await waitFor('the old config still polls and delivers', () => h.events().some((e) => e.objectId === report.ID), 20_000);
  });

  it('a new http.listen applies on reload; one that cannot bind is refused and the old one keeps answering', { timeout: 60_000 }, async () => {
    const first = await freePort();
    const h = await harness({}, {}, (c) => ({ ...c, http: { listen: `127.0.0.1:${first}` } }));
    const { daemon } = h.daemon();
    await daemon.start();
    expect((await fetch(`http://127.0.0.1:${first}/metrics`)).status).toBe(200);

    const busy = createServer();
    servers.push(busy);
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const taken = (busy.address() as AddressInfo).port;
    const refused = rewrite(h.configFile, (c) => { c.http = { listen: `127.0.0.1:${taken}` }; });
    await expect(daemon.reload(() => refused)).rejects.toThrow(new RegExp(`cannot listen on 127.0.0.1:${taken} \\(http.listen\\): EADDRINUSE`));
    expect((await fetch(`http://127.0.0.1:${first}/metrics`)).status).toBe(200);
    const report = h.sim.createReport();
    await waitFor('polling went on', () => h.events().some((e) => e.objectId === report.ID));

    const second = await freePort();
    const moved = rewrite(h.configFile, (c) => { c.http = { listen: `127.0.0.1:${second}` }; });
    expect(await daemon.reload(() => moved)).toBe(true);
    expect(daemon.httpUrl).toBe(`http://127.0.0.1:${second}`);
    expect((await fetch(`http://127.0.0.1:${second}/metrics`)).status).toBe(200);
    await expect(fetch(`http://127.0.0.1:${first}/metrics`)).rejects.toThrow();
  });

  it('the CLI: a config with another database is refused, and polling goes on', { timeout: 60_000 }, async () => {
    const h = await harness();
    const p = startCli(['run', '-c', h.configFile], SIM_ENV);
    try {
      await p.waitForLog('pollbridge started');
      rewrite(h.configFile, (c) => { c.database = './elsewhere.db'; });
      p.child.kill('SIGHUP');
      const refused = await p.waitForLog('config reload refused: the running config stays');
      expect(refused.error).toMatch(/^the database cannot change on reload \(.*pollbridge\.db → .*elsewhere\.db\); restart instead$/);
      const report = h.sim.createReport();
      await waitFor('an event under the old config', () => h.events().some((e) => e.objectId === report.ID));
      expect(existsSync(join(h.dir, 'elsewhere.db'))).toBe(false);
    } finally {
      p.child.kill('SIGTERM');
      expect((await p.exited).code).toBe(0);
    }
  });
});

describe('a poll interrupted by a reload that changed its instance', () => {
  it('is read again by the new stream: each change announced once', { timeout: 60_000 }, async () => {
    const h = await harness();
    const p = startCli(['run', '-c', h.configFile], SIM_ENV);
    try {
      await p.waitForLog('pollbridge started');
      await waitFor('a first poll', () => h.sim.listQueries.length > 0);
      const reports = [h.sim.createReport(), h.sim.createReport(), h.sim.createReport(), h.sim.createReport()];
      h.sim.faults.listDelayMs = 1500;
      const asked = h.sim.listQueries.length;
      // The moment: a list request is with the provider, unanswered.
      await waitFor('a list request in flight', () => h.sim.listQueries.length > asked);
      // A reload interrupts the polls of the instances it changes, and only those.
      rewrite(h.configFile, (c) => { c.instances[0]!.configuration['pollbridge.delivery.timeoutMs'] = 14_000; });
      p.child.kill('SIGHUP');
      await p.waitForLog('poll interrupted; the next goes on from its last committed part');
      await p.waitForLog('config reloaded');
      h.sim.faults.listDelayMs = 0;
      await waitFor('every change announced', () => reports.every((r) => h.events().some((e) => e.objectId === r.ID)), 20_000);
      const keys = h.events().map((e) => `${e.objectId}@${e.date}`);
      expect(new Set(keys).size).toBe(keys.length);
    } finally {
      p.child.kill('SIGTERM');
      expect((await p.exited).code).toBe(0);
    }
  });
});

describe('signals at awkward moments', () => {
  it('SIGHUP while the modules are still loading is applied once started, not fatal', { timeout: 60_000 }, async () => {
    const h = await harness();
    const marker = join(h.dir, 'loading');
    const release = join(h.dir, 'release');
    const p = startCli(['run', '-c', h.configFile], { ...SIM_ENV, HOLD_MARKER: marker, HOLD_RELEASE: release }, undefined, ['--import', HOLD_LOADING]);
    try {
      await waitFor('the program module is loading', () => existsSync(marker));
      p.child.kill('SIGHUP');
      await sleep(50);
      writeFileSync(release, '');
      await p.waitForLog('pollbridge started');
      await p.waitForLog('config reloaded');
    } finally {
      p.child.kill('SIGTERM');
      expect(await p.exited).toEqual({ code: 0, signal: null });
    }
  });

  it('SIGHUP during run --once is ignored with a warning; the run completes', { timeout: 60_000 }, async () => {
    const h = await harness();
    h.sim.createReport();
    h.sim.faults.listDelayMs = 1000;
    const p = startCli(['run', '--once', '-c', h.configFile, '--since', new Date(Date.now() - 60_000).toISOString()], SIM_ENV);
    await waitFor('a list request in flight', () => h.sim.listQueries.length > 0);
    p.child.kill('SIGHUP');
    expect(await p.exited).toEqual({ code: 0, signal: null });
    expect(p.logs().filter((l) => l.message === 'SIGHUP ignored: run --once reads its config once')).toHaveLength(1);
    expect(h.events()).toHaveLength(1);
  });

  it('a second SIGTERM exits at once, while the first waits for a delivery in flight', { timeout: 60_000 }, async () => {
    const h = await harness({}, {}, undefined, () => 'hang');
    h.sim.createReport();
    const p = startCli(['run', '-c', h.configFile, '--grace-ms', '60000', '--since', new Date(Date.now() - 60_000).toISOString()], SIM_ENV);
    await waitFor('a delivery in flight', () => h.receiver.requests > 0);
    p.child.kill('SIGTERM');
    await p.waitForLog('stopping');
    p.child.kill('SIGTERM');
    // Without the second signal the stop would wait 60 s for the hung receiver.
    const exited = await Promise.race([p.exited, sleep(15_000).then(() => 'still running' as const)]);
    expect(exited).toEqual({ code: 1, signal: null });
    expect(p.stderr.join('\n')).toContain('pollbridge: second SIGTERM: exiting now');
  });
});

describe('the database thread dies under the running daemon', () => {
  it('the daemon settles `failed` with the error (run exits 1 on it) and says why', { timeout: 60_000 }, async () => {
    const h = await harness();
    let store: Store | undefined;
    const { daemon, logs } = h.daemon({ openStore: async (path) => (store = await ThreadedStore.open(path)) });
    await daemon.start();
    await waitFor('a first poll', () => h.sim.listQueries.length > 0);
    await (store as unknown as { worker: Worker }).worker.terminate();
    const error = await daemon.failed;
    expect(error.message).toBe('the database thread stopped (exit code 1)');
    expect(logs.messages('the database stopped under the running daemon; exiting so that the service manager restarts pollbridge')).toHaveLength(1);
    await daemon.stop();
  });
});

describe('/healthz stall limit follows the schedule', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('counts scheduled polls of an irregular cron schedule, not a nominal interval', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    // Friday 17:00:05 local time; polls at 09:00 and 17:00 on weekdays.
    vi.setSystemTime(new Date(2026, 10, 27, 17, 0, 5));
    const scheduler = createScheduler({ kind: 'cron', expression: '0 0 9,17 * * 1-5' });
    try {
      // Monday 09:00, Monday 17:00, Tuesday 09:00 came and went: stalled from Tuesday 17:00.
      expect(new Date(scheduler.nthNextRun(4))).toEqual(new Date(2026, 11, 1, 17, 0, 0));
    } finally {
      scheduler.dispose();
    }
  });

  it('an interval schedule: four intervals from now', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_000_000);
    expect(createScheduler({ kind: 'interval', intervalMs: 60_000 }).nthNextRun(4)).toBe(1_240_000);
  });
});
