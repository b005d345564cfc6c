import { copyFileSync, chmodSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import type { Daemon } from '../src/daemon/daemon.js';
import type { Store } from '../src/store/types.js';
import { ThreadedStore } from '../dist/store/threadedStore.js';
import { CONNECTOR, NOTIFY_PATH, basicAuth, post, withCallout } from './helpers/callout.js';
import { startCli } from './helpers/cli.js';
import { freePort } from './helpers/configFile.js';
import { harness } from './helpers/harness.js';
import { occupiedPort } from './helpers/ports.js';
import { rng } from './helpers/rng.js';
import { SIM_ENV } from './helpers/simConfig.js';
import { waitFor, writeJson } from './helpers/tmp.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const fixture = (name: string) => new URL(`./fixtures/tls/${name}`, import.meta.url);
const CA = readFileSync(fixture('a.crt'), 'utf8');

/** What the callout of a config looks like, in the terms the test varies. */
type Shape = { port: number; tls: boolean; on: boolean };
type ConfigJson = { callout: { listen: string; tls?: { cert: string; key: string } }; instances: { configuration: Record<string, unknown> }[] };

const SEEDS = Number(process.env.POLLBRIDGE_CALLOUT_LIFE_SEEDS ?? 4);
const FIRST_SEED = Number(process.env.POLLBRIDGE_CALLOUT_LIFE_FIRST_SEED ?? 1);

async function receiptCounts(database: string) {
  const store = await ThreadedStore.open(database);
  try {
    return await store.calloutCounts();
  } finally {
    await store.close();
  }
}

describe('seeded random start, reload and stop while Concur pushes', () => {
  for (let seed = FIRST_SEED; seed < FIRST_SEED + SEEDS; seed++) {
    it(`seed ${seed}: every notification answered 200 or failed at Concur ends as exactly one event`, { timeout: 180_000 }, async () => {
      const random = rng(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
      const ports = [await freePort(), await freePort()];
      const h = await harness({}, {}, (c) => withCallout(c, `127.0.0.1:${ports[0]}`, { 'pollbridge.callout.failedQueueMinutes': '1' }));
      for (const name of ['a.crt', 'a.key']) {
        copyFileSync(fixture(name), join(h.dir, name));
        chmodSync(join(h.dir, name), 0o600);
      }
      const base = JSON.parse(readFileSync(h.configFile, 'utf8')) as ConfigJson;
      const busy = await occupiedPort();
      const json = (shape: Shape, port = shape.port): ConfigJson => {
        const c = structuredClone(base);
        c.callout = { listen: `127.0.0.1:${port}`, ...(shape.tls ? { tls: { cert: './a.crt', key: './a.key' } } : {}) };
        c.instances[0]!.configuration['pollbridge.callout.enabled'] = String(shape.on);
        return c;
      };
      let files = 0;
      const load = (c: ConfigJson) => loadConfig(writeJson(h.dir, `variant-${files++}.json`, c), { env: SIM_ENV });
      const target = (shape: Shape) => h.sim.setCallout({
        url: `${shape.tls ? 'https' : 'http'}://127.0.0.1:${shape.port}${NOTIFY_PATH}`, ...CONNECTOR, retryDelaysMs: [30, 60, 120], timeoutMs: 3000,
        ...(shape.tls ? { ca: CA } : {}),
      });

      let shape: Shape = { port: ports[0]!, tls: false, on: true };
      let running: { daemon: Daemon; logs: { raw: string[] } } | undefined;
      const history: string[] = [];
      const startDaemon = async () => {
        writeJson(h.dir, 'poller.config.json', json(shape));
        const d = h.daemon();
        running = d;
        await d.daemon.start();
      };
      const objectRequests = () => [...h.sim.objectRequests.values()].reduce((a, b) => a + b, 0);
      const stopDaemon = async () => {
        await running!.daemon.stop();
        running = undefined;
        // Nothing of the stopped daemon fetches on.
        const after = objectRequests();
        await sleep(200);
        expect(objectRequests(), history.join(', ')).toBe(after);
      };

      // Slow object reads, so that stops and reloads find fetches in flight.
      const slow = rng(seed + 1_000_000);
      h.sim.faults.beforeObject = () => sleep(Math.floor(slow() * 120));
      await startDaemon();
      target(shape);
      let pushing = true;
      const reports: string[] = [];
      const pusher = (async () => {
        for (let i = 0; i < 400 && pushing; i++) {
          reports.push(h.sim.createReport({ ApprovalStatusCode: 'A_PEND' }).ID);
          await sleep(Math.floor(random() * 60));
        }
      })();

      const steps = 6 + Math.floor(random() * 8);
      for (let i = 0; i < steps; i++) {
        const r = random();
        const context = () => `seed ${seed}: ${history.join(', ')}`;
        if (r < 0.55 && running) {
          const next: Shape = pick([
            { ...shape },
            { ...shape, port: shape.port === ports[0] ? ports[1]! : ports[0]! },
            { ...shape, tls: !shape.tls },
            { ...shape, on: !shape.on },
          ]);
          history.push(`reload ${JSON.stringify({ port: ports.indexOf(next.port), tls: next.tls, on: next.on })}`);
          const config = load(json(next));
          expect(await running.daemon.reload(() => config), context()).toBe(true);
          shape = next;
          writeJson(h.dir, 'poller.config.json', json(shape));
          target(shape);
        } else if (r < 0.7 && running) {
          history.push('reload refused: callout port in use');
          const config = load(json({ ...shape, tls: !shape.tls, on: !shape.on }, busy));
          const result = await running.daemon.reload(() => config).catch((err: Error) => err);
          expect(result, context()).toBeInstanceOf(Error);
          // Everything as it was: the same listener answers Test Connection with the same routes.
          const answer = await post(`${shape.tls ? 'https' : 'http'}://127.0.0.1:${shape.port}/system/v1.0/testconnection`, '', { authorization: basicAuth(CONNECTOR.username, CONNECTOR.password) }, 'GET', CA);
          expect(answer.status, context()).toBe(shape.on ? 200 : 401);
        } else if (running) {
          history.push('stop');
          await stopDaemon();
        } else {
          history.push('start');
          await startDaemon();
        }
        await sleep(Math.floor(random() * 300));
      }
      pushing = false;
      await pusher;
      const context = `seed ${seed}: ${history.join(', ')}; ${reports.length} notifications`;

      // The end: the connector on, Concur's retries and its failed queue drained.
      if (!shape.on) {
        shape = { ...shape, on: true };
        if (running) expect(await running.daemon.reload(() => load(json(shape))), context).toBe(true);
        target(shape);
      }
      if (!running) await startDaemon();
      for (let round = 0; round < 5; round++) {
        await h.sim.calloutsSettled();
        if (h.sim.callouts.failed().length === 0) break;
        // A reload starts a new round of the failed queue at once.
        expect(await running!.daemon.reload(() => load(json(shape))), context).toBe(true);
        await waitFor(`${context}: the failed queue read`, () => h.sim.callouts.failed().length === 0 || undefined, 10_000).catch(() => undefined);
      }
      expect(h.sim.callouts.failed(), context).toEqual([]);
      expect(h.sim.callouts.queued(), context).toEqual([]);
      const database = running!.daemon.config.database;
      await waitFor(`${context}: nothing waits in the database`, async () => (await receiptCounts(database)).every((c) => c.awaitingEvent === 0 && c.awaitingDelete === 0) || undefined, 20_000)
        .catch(async (err: Error) => {
          throw new Error(`${err.message}: ${JSON.stringify(await receiptCounts(database))}\n${running!.logs.raw.filter((l) => /callout|failed/i.test(l)).slice(-15).join('\n')}`);
        });
      const pushed = () => h.receiver.accepted.filter((e) => (e.raw as { notification?: unknown }).notification);
      await waitFor(`${context}: an event per notification`, () => pushed().length >= reports.length || undefined, 20_000);
      await sleep(300);
      const ids = pushed().map((e) => e.events[0]!.objectId).sort();
      expect(ids, context).toEqual([...reports].sort());
      await running!.daemon.stop();
    });
  }
});

describe('a stop while a failed notification is DELETEd at Concur', () => {
  it('leaves no receipt waiting for its DELETE when Concur applied it but the answer was cut', { timeout: 60_000 }, async () => {
    const h = await harness({}, {}, (c) => withCallout(c));
    h.sim.setCallout({ url: 'http://127.0.0.1:9/nowhere', ...CONNECTOR, retryDelaysMs: [] });
    const report = h.sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    await h.sim.calloutsSettled();
    expect(h.sim.callouts.failed()).toHaveLength(1);
    h.sim.setCallout(undefined);
    let release!: () => void;
    const released = new Promise<void>((resolve) => { release = resolve; });
    let held = false;
    h.sim.faults.beforeDelete = async () => {
      held = true;
      await released;
      return 'apply';
    };
    const first = h.daemon().daemon;
    await first.start();
    await waitFor('the DELETE at Concur', () => held || undefined);
    const stopping = first.stop();
    // The daemon has hung up on its DELETE; Concur applies it all the same.
    await sleep(200);
    release();
    await stopping;
    await waitFor('the DELETE applied', () => h.sim.callouts.failed().length === 0 || undefined);
    h.sim.faults.beforeDelete = undefined;
    const database = first.config.database;
    expect((await receiptCounts(database))[0]).toMatchObject({ received: 1, awaitingDelete: 1 });

    const second = h.daemon().daemon;
    await second.start();
    await waitFor('the event', () => h.receiver.accepted.some((e) => (e.raw as { notification?: unknown }).notification) || undefined);
    await waitFor('the DELETE tried again', () => (h.sim.deletes.get([...h.sim.deletes.keys()][0]!) ?? 0) >= 2 || undefined);
    await second.stop();
    // Concur no longer holds it: nothing is to be deleted, every round, forever.
    expect((await receiptCounts(database))[0]).toMatchObject({ received: 1, awaitingEvent: 0, awaitingDelete: 0 });
    expect(h.receiver.accepted.filter((e) => (e.raw as { notification?: unknown }).notification).map((e) => e.events[0]!.objectId)).toEqual([report.ID]);
  });
});

describe("a reload that moves the callout listener's host on the same port", () => {
  it('takes the new address, or, when it cannot be had, keeps the old one answering', { timeout: 60_000 }, async () => {
    const port = await freePort();
    const h = await harness({}, {}, (c) => withCallout(c, `127.0.0.1:${port}`, { 'pollbridge.callout.failedQueueMinutes': '0' }));
    const base = JSON.parse(readFileSync(h.configFile, 'utf8')) as ConfigJson;
    const at = (listen: string) => loadConfig(writeJson(h.dir, `${listen.replace(/\W/g, '_')}.json`, { ...base, callout: { listen } }), { env: SIM_ENV });
    const { daemon } = h.daemon();
    await daemon.start();
    const testConnection = async () => (await post(`http://127.0.0.1:${port}/system/v1.0/testconnection`, '', { authorization: basicAuth(CONNECTOR.username, CONNECTOR.password) }, 'GET')).status;
    expect(await testConnection()).toBe(200);
    expect(await daemon.reload(() => at(`0.0.0.0:${port}`))).toBe(true);
    expect(daemon.calloutUrl).toBe(`http://0.0.0.0:${port}`);
    expect(await testConnection()).toBe(200);
    expect(await daemon.reload(() => at(`127.0.0.1:${port}`))).toBe(true);
    expect(daemon.calloutUrl).toBe(`http://127.0.0.1:${port}`);
    // Another program on 127.0.0.2:P makes 0.0.0.0:P unbindable whatever the daemon does.
    await occupiedPort(port, '127.0.0.2');
    await expect(daemon.reload(() => at(`0.0.0.0:${port}`))).rejects.toThrow(`cannot listen on 0.0.0.0:${port} (callout.listen): EADDRINUSE`);
    expect(daemon.calloutUrl).toBe(`http://127.0.0.1:${port}`);
    expect(await testConnection()).toBe(200);
    h.sim.setCallout({ url: `http://127.0.0.1:${port}${NOTIFY_PATH}`, ...CONNECTOR, retryDelaysMs: [50] });
    const report = h.sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    await h.sim.calloutsSettled();
    expect(h.sim.callouts.delivered().map((n) => n.reportId)).toEqual([report.ID]);
    await daemon.stop();
    expect(await testConnection().catch((err: Error) => err)).toBeInstanceOf(Error);
  });
});

/** The built store, with commits of receipts the test can hold. */
function holdingCommits() {
  const held: (() => void)[] = [];
  let holding = false;
  const open = async (path: string): Promise<Store> => {
    const store = await ThreadedStore.open(path);
    return new Proxy(store, {
      get(target, prop) {
        if (prop === 'recordCallouts' && holding) {
          return (...args: Parameters<Store['recordCallouts']>) => new Promise((resolve, reject) => held.push(() => target.recordCallouts(...args).then(resolve, reject)));
        }
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  };
  return { open, held, hold: (on: boolean) => { holding = on; } };
}

describe('a stop while pushed notifications wait for their commit', () => {
  it('answers 200 to what commits within the grace, and cuts, never 200, what does not', { timeout: 60_000 }, async () => {
    const h = await harness({}, {}, (c) => withCallout(c, '127.0.0.1:0', { 'pollbridge.callout.failedQueueMinutes': '0' }));
    const gate = holdingCommits();
    const [early, late] = [h.sim.createReport({ ApprovalStatusCode: 'A_PEND' }), h.sim.createReport({ ApprovalStatusCode: 'A_PEND' })];
    const pushOf = (url: string, id: string) => post(`${url}${NOTIFY_PATH}`, `<Notification><EventType>Report Entered Expense Report Workflow Step - SUBMIT</EventType><ObjectType>EXPRPT</ObjectType><ObjectURI>${h.simUrl}/api/expense/expensereport/v1.1/report/${id}</ObjectURI><EventDateTime>2026-11-26</EventDateTime><Context/></Notification>`,
      { authorization: basicAuth(CONNECTOR.username, CONNECTOR.password) }).then((r) => r.status, (err: Error) => err);

    // Committed during the stop's grace: answered 200, and its event comes.
    const first = h.daemon({ openStore: gate.open }).daemon;
    await first.start();
    gate.hold(true);
    const answered = pushOf(first.calloutUrl!, early.ID);
    await waitFor('the commit held', () => gate.held.length === 1 || undefined);
    const stopping = first.stop();
    await sleep(300);
    gate.hold(false);
    gate.held.shift()!();
    expect(await answered).toBe(200);
    await stopping;

    // Not committed by the end of the grace: the connection is cut, nothing answered 200.
    const second = h.daemon({ openStore: gate.open }).daemon;
    await second.start();
    gate.hold(true);
    const cut = pushOf(second.calloutUrl!, late.ID);
    await waitFor('the commit held', () => gate.held.length === 1 || undefined);
    await second.stop();
    gate.hold(false);
    gate.held.shift()!();
    expect(await cut).toBeInstanceOf(Error);

    const third = h.daemon().daemon;
    await third.start();
    await waitFor('the event of the committed push', () => h.receiver.accepted.some((e) => (e.raw as { notification?: unknown }).notification) || undefined);
    await sleep(300);
    expect(h.receiver.accepted.filter((e) => (e.raw as { notification?: unknown }).notification).map((e) => e.events[0]!.objectId)).toEqual([early.ID]);
    expect((await receiptCounts(third.config.database))[0]).toMatchObject({ received: 1, awaitingEvent: 0 });
  });
});

describe('a reload refused for its callout port leaves the http listener as it was', () => {
  for (const move of ['another port', 'another host on its port'] as const) {
    it(`when the http listener was to move to ${move}`, { timeout: 60_000 }, async () => {
      const [httpPort, calloutPort, newPort] = [await freePort(), await freePort(), await freePort()];
      const h = await harness({}, {}, (c) => ({ ...withCallout(c, `127.0.0.1:${calloutPort}`, { 'pollbridge.callout.failedQueueMinutes': '0' }), http: { listen: `127.0.0.1:${httpPort}` } }));
      const busy = await occupiedPort();
      const base = JSON.parse(readFileSync(h.configFile, 'utf8')) as ConfigJson & { http: { listen: string } };
      const { daemon, config } = h.daemon();
      await daemon.start();
      const httpListen = move === 'another port' ? `127.0.0.1:${newPort}` : `0.0.0.0:${httpPort}`;
      const next = loadConfig(writeJson(h.dir, 'next.json', { ...base, http: { listen: httpListen }, callout: { listen: `127.0.0.1:${busy}` } }), { env: SIM_ENV });
      await expect(daemon.reload(() => next)).rejects.toThrow(/callout\.listen/);
      expect(daemon.config).toBe(config);
      expect(daemon.httpUrl).toBe(`http://127.0.0.1:${httpPort}`);
      expect((await fetch(`http://127.0.0.1:${httpPort}/healthz`)).status).toBeLessThan(600);
      if (move === 'another port') expect(await fetch(`http://127.0.0.1:${newPort}/healthz`).catch((err: Error) => err)).toBeInstanceOf(Error);
      expect(daemon.calloutUrl).toBe(`http://127.0.0.1:${calloutPort}`);
      const answer = await post(`http://127.0.0.1:${calloutPort}/system/v1.0/testconnection`, '', { authorization: basicAuth(CONNECTOR.username, CONNECTOR.password) }, 'GET');
      expect(answer.status).toBe(200);
    });
  }
});

describe('a reload that adds and removes a callout instance', () => {
  it("answers the new instance's path with its own credentials, its receipts become its events, and its path is gone once removed", { timeout: 60_000 }, async () => {
    const h = await harness({}, {}, (c) => withCallout(c, '127.0.0.1:0', { 'pollbridge.callout.failedQueueMinutes': '0' }));
    const base = JSON.parse(readFileSync(h.configFile, 'utf8')) as ConfigJson & { instances: { name: string; configuration: Record<string, unknown> }[] };
    const two = { username: 'second-connector', password: 'another-long-connector-password' };
    const withTwo = structuredClone(base);
    withTwo.instances.push({
      ...structuredClone(base.instances[0]!), name: 'ConcurTwo',
      configuration: {
        ...base.instances[0]!.configuration,
        'pollbridge.callout.path': '/two/notify', 'pollbridge.callout.username': two.username, 'pollbridge.callout.password': two.password,
      },
    });
    const { daemon, config } = h.daemon();
    await daemon.start();
    const url = daemon.calloutUrl!;
    const report = h.sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    const body = `<Notification><EventType>Report Entered Expense Report Workflow Step - SUBMIT</EventType><ObjectType>EXPRPT</ObjectType><ObjectURI>${h.simUrl}/api/expense/expensereport/v1.1/report/${report.ID}</ObjectURI><EventDateTime>2026-11-26</EventDateTime><Context/></Notification>`;
    const pushTwo = (username = two.username, password = two.password) => post(`${url}/two/notify`, body, { authorization: basicAuth(username, password) });
    expect((await pushTwo()).status).toBe(404);
    expect(await daemon.reload(() => loadConfig(writeJson(h.dir, 'two.json', withTwo), { env: SIM_ENV }))).toBe(true);
    expect(daemon.calloutUrl).toBe(url);
    expect((await pushTwo(CONNECTOR.username, CONNECTOR.password)).status).toBe(401);
    expect((await pushTwo()).status).toBe(200);
    const event = await waitFor("ConcurTwo's event", () => h.receiver.accepted.find((e) => (e.raw as { notification?: unknown }).notification));
    expect((JSON.parse(event.body) as { message: { instanceName: string } }).message.instanceName).toBe('ConcurTwo');
    expect(await daemon.reload(() => config)).toBe(true);
    expect((await pushTwo()).status).toBe(404);
  });
});

describe("a push committed while a reload turns its instance's callout off", () => {
  it('still becomes an event, without waiting for another reload or a restart', { timeout: 60_000 }, async () => {
    const h = await harness({}, {}, (c) => withCallout(c, '127.0.0.1:0', { 'pollbridge.callout.failedQueueMinutes': '0' }));
    const base = JSON.parse(readFileSync(h.configFile, 'utf8')) as ConfigJson;
    const off = structuredClone(base);
    off.instances[0]!.configuration['pollbridge.callout.enabled'] = 'false';
    const gate = holdingCommits();
    const { daemon } = h.daemon({ openStore: gate.open });
    await daemon.start();
    const report = h.sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    gate.hold(true);
    const answered = post(`${daemon.calloutUrl!}${NOTIFY_PATH}`, `<Notification><EventType>Report Entered Expense Report Workflow Step - SUBMIT</EventType><ObjectType>EXPRPT</ObjectType><ObjectURI>${h.simUrl}/api/expense/expensereport/v1.1/report/${report.ID}</ObjectURI><EventDateTime>2026-11-26</EventDateTime><Context/></Notification>`,
      { authorization: basicAuth(CONNECTOR.username, CONNECTOR.password) });
    await waitFor('the commit held', () => gate.held.length === 1 || undefined);
    expect(await daemon.reload(() => loadConfig(writeJson(h.dir, 'off.json', off), { env: SIM_ENV }))).toBe(true);
    gate.hold(false);
    gate.held.shift()!();
    expect((await answered).status).toBe(200);
    const event = await waitFor('the event of the push answered 200', () => h.receiver.accepted.find((e) => (e.raw as { notification?: unknown }).notification), 10_000);
    expect(event.events[0]!.objectId).toBe(report.ID);
  });
});

describe('the built CLI: SIGHUP and SIGTERM while Concur pushes', () => {
  it('reloads and exits 0 with pushes in flight; every notification then ends as exactly one event', { timeout: 120_000 }, async () => {
    const port = await freePort();
    const h = await harness({}, {}, (c) => withCallout(c, `127.0.0.1:${port}`));
    const p = startCli(['run', '-c', h.configFile], SIM_ENV);
    await p.waitForLog("Concur's callout answered");
    h.sim.setCallout({ url: `http://127.0.0.1:${port}${NOTIFY_PATH}`, ...CONNECTOR, retryDelaysMs: [30, 60, 120], timeoutMs: 3000 });
    const reports: string[] = [];
    for (let i = 0; i < 30; i++) {
      reports.push(h.sim.createReport({ ApprovalStatusCode: 'A_PEND' }).ID);
      if (i === 8 || i === 16) p.child.kill('SIGHUP');
      if (i === 24) p.child.kill('SIGTERM');
      await sleep(20);
    }
    expect(await p.exited).toEqual({ code: 0, signal: null });
    await h.sim.calloutsSettled();
    // What was not answered 200 is failed at Concur: the next daemon reads it at its start.
    const { daemon } = h.daemon();
    await daemon.start();
    await waitFor('the failed queue drained', () => h.sim.callouts.failed().length === 0 || undefined);
    const pushed = () => h.receiver.accepted.filter((e) => (e.raw as { notification?: unknown }).notification);
    await waitFor('an event per notification', () => pushed().length >= reports.length || undefined, 20_000);
    await waitFor('nothing waits in the database', async () => (await receiptCounts(daemon.config.database)).every((c) => c.awaitingEvent === 0 && c.awaitingDelete === 0) || undefined);
    await sleep(300);
    expect(pushed().map((e) => e.events[0]!.objectId).sort()).toEqual([...reports].sort());
  });
});
