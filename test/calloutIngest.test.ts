import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { drainFailedQueue } from '../src/callout/failedQueue.js';
import { type CalloutInstance, CalloutIngester } from '../src/callout/ingest.js';
import type { InstanceConfig } from '../src/config/types.js';
import { type AuthDeps, createAuthenticator } from '../src/poll/auth.js';
import { createGetText, createHttpClient } from '../src/poll/httpClient.js';
import type { ConcurSim } from '../src/sim/concurSim.js';
import type { Store } from '../src/store/types.js';
import { ThreadedStore } from '../dist/store/threadedStore.js';
import { CONNECTOR, NOTIFICATION_XML, NOTIFY_PATH, basicAuth, post, withCallout } from './helpers/callout.js';
import { captureLogger, FAST_FETCH, harness } from './helpers/harness.js';
import { rng } from './helpers/rng.js';
import { tempDir, waitFor } from './helpers/tmp.js';

const servers: Server[] = [];
const stores: Store[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
  for (const s of stores.splice(0)) await s.close().catch(() => {});
});

type PushedRaw = { notification?: { ObjectURI: string; source: string }; fetchError?: string; reports?: unknown[] };
const pushedEvents = (h: Awaited<ReturnType<typeof harness>>) => h.receiver.accepted.filter((r) => (r.raw as PushedRaw).notification);
const push = (url: string, objectUri: string, eventDate?: string) =>
  post(`${url}${NOTIFY_PATH}`, NOTIFICATION_XML(objectUri, eventDate), { authorization: basicAuth(CONNECTOR.username, CONNECTOR.password) });
const objectUriOf = (simUrl: string, id: string) => `${simUrl}/api/expense/expensereport/v1.1/report/${id}`;

/** A real store whose reads of the callouts to ingest the test can hold. */
function holdingReads(store: Store) {
  const held: (() => void)[] = [];
  let holding = false;
  const proxy = new Proxy(store, {
    get(target, prop) {
      if (prop === 'calloutsToIngest' && holding) {
        return (...args: Parameters<Store['calloutsToIngest']>) => new Promise((resolve) => held.push(() => resolve(target.calloutsToIngest(...args))));
      }
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { store: proxy, hold: () => { holding = true; }, held };
}

/** Holds the simulator's answers to object reads until the returned function is called. */
function holdObjectReads(sim: ConcurSim): () => void {
  let release!: () => void;
  const released = new Promise<void>((resolve) => { release = resolve; });
  sim.faults.beforeObject = () => released;
  return release;
}

describe('the callout ingester', () => {
  it('stops at once when the stop comes while it reads its work, rather than after its idle check', { timeout: 60_000 }, async () => {
    const dir = tempDir();
    const store = await ThreadedStore.open(join(dir, 'pollbridge.db'));
    stores.push(store);
    const gate = holdingReads(store);
    const ingester = new CalloutIngester({
      store: gate.store, getText: createGetText({ timeoutMs: 5000 }), fetchPolicy: FAST_FETCH, log: captureLogger().log, newId: () => 'x',
      instances: () => new Map(), onQueued: () => {},
    });
    ingester.start();
    // The first read finds nothing: the ingester waits to be woken.
    await new Promise((r) => setTimeout(r, 100));
    gate.hold();
    ingester.wake();
    await waitFor('the read held', () => gate.held.length === 1 || undefined);
    const stopped = ingester.stop().then(() => 'stopped' as const);
    gate.held[0]!();
    // The idle check is 30 s away: a stop that waits for it is a stop that hangs.
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), 10_000); });
    expect(await Promise.race([stopped, late])).toBe('stopped');
    clearTimeout(timer);
  });
});

describe('the callout ingester on a database whose thread died', () => {
  it('reads its work again after a pause, not in a hot loop, and stops at once', { timeout: 30_000 }, async () => {
    const store = await ThreadedStore.open(join(tempDir(), 'pollbridge.db'));
    stores.push(store);
    let reads = 0;
    const counting = new Proxy(store, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target) as unknown;
        if (prop === 'calloutsToIngest') reads++;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    await (store as unknown as { worker: Worker }).worker.terminate();
    await store.died;
    const logs = captureLogger();
    const ingester = new CalloutIngester({
      store: counting, getText: createGetText({ timeoutMs: 5000 }), fetchPolicy: FAST_FETCH, log: logs.log, newId: () => 'x',
      instances: () => new Map(), onQueued: () => {},
    });
    ingester.start();
    await waitFor('a failed read', () => logs.messages('cannot read the callouts waiting for their event; trying again').length > 0 || undefined);
    await new Promise((r) => setTimeout(r, 1500));
    // One read a second at most (a hot loop makes thousands), each failure logged once.
    expect(reads).toBeGreaterThanOrEqual(1);
    expect(reads).toBeLessThan(6);
    expect(logs.messages('cannot read the callouts waiting for their event; trying again')).toHaveLength(reads);
    await ingester.stop();
    const after = reads;
    await new Promise((r) => setTimeout(r, 1200));
    expect(reads).toBe(after);
  });
});

describe('callout ingestion in the daemon', () => {
  it('sends no token to an ObjectURI on another host: the event says the fetch was not made', { timeout: 30_000 }, async () => {
    const other = createServer((req, res) => res.end('{}'));
    const seen: { url?: string; authorization?: string }[] = [];
    other.on('request', (req) => seen.push({ url: req.url, authorization: req.headers.authorization }));
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    servers.push(other);
    const h = await harness({}, {}, (c) => withCallout(c));
    const { daemon } = h.daemon();
    await daemon.start();
    const report = h.sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    const foreign = `http://127.0.0.1:${(other.address() as AddressInfo).port}/api/expense/expensereport/v1.1/report/${report.ID}`;
    expect((await push(daemon.calloutUrl!, foreign)).status).toBe(200);
    const [event] = await waitFor('the pushed event', () => { const e = pushedEvents(h); return e.length > 0 ? e : undefined; });
    const raw = event!.raw as PushedRaw;
    expect(raw.fetchError).toMatch(/not on the instance's API host/);
    expect(raw.reports).toEqual([]);
    expect(event!.events[0]!.objectId).toBe(report.ID);
    expect(seen).toEqual([]);
  });

  it('ends a 404, a 500 that never ends and a refused token each in one event with the fetch error', { timeout: 60_000 }, async () => {
    const h = await harness({}, {}, (c) => withCallout(c, '127.0.0.1:0', { 'pollbridge.callout.failedQueueMinutes': '0' }));
    const { daemon, logs } = h.daemon();
    await daemon.start();
    // 404: a report Concur no longer has.
    expect((await push(daemon.calloutUrl!, objectUriOf(h.simUrl, 'GONE'))).status).toBe(200);
    await waitFor('the 404 event', () => pushedEvents(h).length === 1 || undefined);
    // 500 for every try.
    const failing = h.sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    h.sim.faults.objectFailures.push(...Array.from({ length: 20 }, () => ({ status: 500 })));
    expect((await push(daemon.calloutUrl!, objectUriOf(h.simUrl, failing.ID))).status).toBe(200);
    await waitFor('the 500 event', () => pushedEvents(h).length === 2 || undefined);
    expect(h.sim.objectRequests.get(failing.ID)).toBe(FAST_FETCH.retries + 1);
    h.sim.faults.objectFailures.length = 0;
    // The token refused: the event still comes, without the object.
    h.sim.revokeAccessTokens();
    h.sim.faults.tokenError = { status: 400, error: 'invalid_grant' };
    const refused = h.sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    expect((await push(daemon.calloutUrl!, objectUriOf(h.simUrl, refused.ID))).status).toBe(200);
    await waitFor('the refused-token event', () => pushedEvents(h).length === 3 || undefined);
    const [gone, fiveHundred, noToken] = pushedEvents(h).map((r) => r.raw as PushedRaw);
    expect(gone!.fetchError).toMatch(/answered 404/);
    expect(fiveHundred!.fetchError).toMatch(/answered 500/);
    expect(noToken!.fetchError).toMatch(/invalid_grant/);
    expect(h.sim.objectRequests.get(refused.ID)).toBeUndefined();
    for (const raw of [gone, fiveHundred, noToken]) expect(raw!.reports).toEqual([]);
    for (const token of h.sim.issuedTokens) expect(logs.raw.join('\n')).not.toContain(token);
    expect(JSON.stringify(h.receiver.accepted)).not.toContain(CONNECTOR.password);
  });

  it('makes one event of the same notification pushed five times at once, and of its re-send', { timeout: 30_000 }, async () => {
    const h = await harness({}, {}, (c) => withCallout(c, '127.0.0.1:0', { 'pollbridge.callout.failedQueueMinutes': '0' }));
    const { daemon } = h.daemon();
    await daemon.start();
    const report = h.sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    const uri = objectUriOf(h.simUrl, report.ID);
    const answers = await Promise.all(Array.from({ length: 5 }, () => push(daemon.calloutUrl!, uri)));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    await waitFor('every receipt done', async () => (await daemonCounts(daemon)).awaitingEvent === 0 || undefined);
    expect((await push(daemon.calloutUrl!, uri)).status).toBe(200);
    await waitFor('the re-send done', async () => { const c = await daemonCounts(daemon); return c.received === 6 && c.awaitingEvent === 0 || undefined; });
    await waitFor('the event delivered', () => pushedEvents(h).length > 0 || undefined);
    expect(pushedEvents(h)).toHaveLength(1);
    // A new state of the report (sent back, submitted again) is a new event.
    h.sim.updateReport(report.ID);
    expect((await push(daemon.calloutUrl!, uri)).status).toBe(200);
    await waitFor('the second event', () => pushedEvents(h).length === 2 || undefined);
  });

  it('makes one event of a notification pushed and then listed in the failed queue with a date and time', { timeout: 30_000 }, async () => {
    const h = await harness({}, {}, (c) => withCallout(c));
    // Concur's pushes did not reach us: the notification is failed at Concur.
    h.sim.setCallout({ url: 'http://127.0.0.1:9/nowhere', ...CONNECTOR, retryDelaysMs: [] });
    const report = h.sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    await h.sim.calloutsSettled();
    const [failed] = h.sim.callouts.failed();
    expect(failed!.eventDateTime).toMatch(/T/);
    h.sim.setCallout(undefined);
    const { daemon } = h.daemon();
    // Yet one push did arrive, its 200 lost: the same notification, as its push wrote it.
    mkdirSync(join(h.dir, 'state'), { recursive: true });
    const store = await ThreadedStore.open(join(h.dir, 'state/pollbridge.db'));
    await store.recordCallouts([{
      instance: 'ConcurTest', source: 'push', body: failed!.xml, notificationUri: undefined, receivedAt: Date.now(),
      notification: { eventType: failed!.eventType, objectType: 'EXPRPT', objectUri: failed!.objectUri, eventDateTime: failed!.eventDate, context: '' },
    }]);
    await store.close();
    await daemon.start();
    await waitFor('the failed notification deleted at Concur', () => h.sim.callouts.failed().length === 0 || undefined);
    await waitFor('both receipts done', async () => { const c = await daemonCounts(daemon); return c.received === 2 && c.awaitingEvent === 0 && c.awaitingDelete === 0 || undefined; });
    await waitFor('the event', () => pushedEvents(h).length > 0 || undefined);
    await new Promise((r) => setTimeout(r, 300));
    expect(pushedEvents(h).map((r) => r.events[0]!.objectId)).toEqual([report.ID]);
  });

  it('does not end a receipt without its object because a reload replaced the token its fetch was using', { timeout: 30_000 }, async () => {
    const h = await harness({}, {}, (c) => withCallout(c, '127.0.0.1:0', { 'pollbridge.callout.failedQueueMinutes': '0' }));
    const { daemon, config } = h.daemon();
    await daemon.start();
    const release = holdObjectReads(h.sim);
    // The held request is answered 401: the fetch asks its authenticator for a new token.
    h.sim.faults.objectFailures.push({ status: 401 });
    const report = h.sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    expect((await push(daemon.calloutUrl!, objectUriOf(h.simUrl, report.ID))).status).toBe(200);
    await waitFor('the fetch started', () => h.sim.objectRequests.has(report.ID) || undefined);
    // New credentials (here the same ones, written differently): a new authenticator, the old one closed.
    const [instance] = config.instances;
    const auth = { ...instance!.auth, tokenUrl: `${h.simUrl}/oauth2/v0/token?reloaded=1` };
    expect(await daemon.reload(() => ({ ...config, instances: [{ ...instance!, auth }] }))).toBe(true);
    h.sim.faults.beforeObject = undefined;
    release();
    const event = await waitFor('the event', () => pushedEvents(h)[0]);
    expect((event.raw as PushedRaw).fetchError).toBeUndefined();
    expect((event.raw as PushedRaw).reports).toHaveLength(1);
  });

  it("keeps the receipts of an instance taken out of the config until it comes back", { timeout: 30_000 }, async () => {
    const h = await harness({}, {}, (c) => withCallout(c, '127.0.0.1:0', { 'pollbridge.callout.failedQueueMinutes': '0' }));
    const { daemon, config } = h.daemon();
    await daemon.start();
    // Hold the object's fetch so the instance leaves while the receipt waits.
    const release = holdObjectReads(h.sim);
    const report = h.sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    expect((await push(daemon.calloutUrl!, objectUriOf(h.simUrl, report.ID))).status).toBe(200);
    await waitFor('the fetch started', () => h.sim.objectRequests.has(report.ID) || undefined);
    expect(await daemon.reload(() => ({ ...config, instances: [] }))).toBe(true);
    release();
    await new Promise((r) => setTimeout(r, 500));
    expect(pushedEvents(h)).toEqual([]);
    h.sim.faults.beforeObject = undefined;
    expect(await daemon.reload(() => config)).toBe(true);
    await waitFor('the event once the instance is back', () => pushedEvents(h).length === 1 || undefined);
    expect(pushedEvents(h)[0]!.events[0]!.objectId).toBe(report.ID);
    expect((pushedEvents(h)[0]!.raw as PushedRaw).fetchError).toBeUndefined();
  });
});

async function daemonCounts(daemon: { config: { database: string } }) {
  const store = await ThreadedStore.open(daemon.config.database);
  try {
    const counts = await store.calloutCounts();
    return counts.find((c) => c.instance === 'ConcurTest') ?? { received: 0, awaitingEvent: 0, awaitingDelete: 0 };
  } finally {
    await store.close();
  }
}

type FakeConcur = { url: string; deletes: Map<string, number>; authorizations: string[] };

/** Concur's failed-notification API on a local port: the list as given, each DELETE answered by `deleteAnswer`. */
async function fakeConcur(list: () => { status: number; body: string; type?: string }, deleteAnswer: (id: string, n: number) => number | 'reset'): Promise<FakeConcur> {
  const deletes = new Map<string, number>();
  const authorizations: string[] = [];
  const server = createServer((req, res) => {
    authorizations.push(req.headers.authorization ?? '');
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method === 'GET' && url.pathname === '/api/platform/notifications/v1.0/notification') {
      const answer = list();
      res.writeHead(answer.status, { 'content-type': answer.type ?? 'application/json' }).end(answer.body);
      return;
    }
    const id = /\/notification\/([^/]+)$/.exec(url.pathname)?.[1];
    if (req.method === 'DELETE' && id) {
      const n = (deletes.get(id) ?? 0) + 1;
      deletes.set(id, n);
      const answer = deleteAnswer(id, n);
      if (answer === 'reset') req.socket.destroy();
      else res.writeHead(answer).end();
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, deletes, authorizations };
}

const failedItem = (base: string, id: string, objectUri = `${base}/api/expense/expensereport/v1.1/report/R${id}`) => ({
  Context: '', EventDateTime: '2026-11-26T10:00:00', EventType: 'Report Entered Expense Report Workflow Step - SUBMIT',
  NotificationURI: `${base}/api/platform/notifications/v1.0/notification/${id}`, ObjectType: 'EXPRPT', ObjectURI: objectUri,
});

/** The failed queue of one instance against a fake Concur, on the built store. */
async function setup(list: (base: string) => { status: number; body: string; type?: string }, deleteAnswer: (id: string, n: number) => number | 'reset') {
  let base = '';
  const concur = await fakeConcur(() => list(base), deleteAnswer);
  base = concur.url;
  const store = await ThreadedStore.open(join(tempDir(), 'pollbridge.db'));
  stores.push(store);
  const http = createHttpClient({ timeoutMs: 5000 });
  const auth = createAuthenticator({ type: 'bearer', token: 'fake-bearer-token' }, {} as AuthDeps);
  const instance: CalloutInstance = { config: { name: 'Fake', elementKey: 'concur', baseUrl: base } as InstanceConfig, streamId: 0, auth };
  const logs = captureLogger();
  let received = 0;
  const round = () => drainFailedQueue(instance, { store, http, getText: createGetText({ timeoutMs: 5000 }), fetchPolicy: FAST_FETCH, log: logs.log, onReceived: () => { received++; } }, new AbortController().signal);
  return { concur, store, round, logs, received: () => received };
}

describe("Concur's failed-notification queue, against a local stand-in", () => {
  it('leaves items it cannot read at Concur, and DELETEs the others only', { timeout: 30_000 }, async () => {
    const t = await setup((base) => ({ status: 200, body: JSON.stringify([failedItem(base, 'A'), { ...failedItem(base, 'B'), ObjectURI: 'not a url' }, failedItem(base, 'C')]) }), () => 200);
    expect(await t.round()).toEqual({ listed: 2, received: 2, deleted: 2, problems: 1 });
    expect([...t.concur.deletes.keys()].sort()).toEqual(['A', 'C']);
    expect(t.logs.messages("an item of Concur's failed-notification list cannot be read; it is left there")).toHaveLength(1);
  });

  it('DELETEs again next round what was answered 403, 500 or cut off, and marks only what Concur took', { timeout: 30_000 }, async () => {
    const first: Record<string, number | 'reset'> = { A: 403, B: 500, C: 'reset', D: 200 };
    let listing = ['A', 'B', 'C', 'D'];
    const t = await setup((base) => ({ status: 200, body: JSON.stringify(listing.map((id) => failedItem(base, id))) }), (id, n) => (n === 1 ? first[id]! : 200));
    expect(await t.round()).toEqual({ listed: 4, received: 4, deleted: 1, problems: 0 });
    expect((await t.store.calloutCounts())[0]).toMatchObject({ received: 4, awaitingDelete: 3 });
    listing = ['A', 'B', 'C'];
    expect(await t.round()).toEqual({ listed: 3, received: 0, deleted: 3, problems: 0 });
    expect(Object.fromEntries(t.concur.deletes)).toEqual({ A: 2, B: 2, C: 2, D: 1 });
    expect((await t.store.calloutCounts())[0]).toMatchObject({ received: 4, awaitingDelete: 0 });
    expect(t.received()).toBe(1);
  });

  it('records a notification Concur lists twice once, and DELETEs it once', { timeout: 30_000 }, async () => {
    const t = await setup((base) => ({ status: 200, body: JSON.stringify([failedItem(base, 'A'), failedItem(base, 'A')]) }), () => 200);
    expect(await t.round()).toMatchObject({ listed: 2, received: 1, deleted: 1 });
    expect(Object.fromEntries(t.concur.deletes)).toEqual({ A: 1 });
    expect((await t.store.calloutCounts())[0]).toMatchObject({ received: 1, awaitingEvent: 1, awaitingDelete: 0 });
  });

  it('keeps asking for a DELETE answered 400 while Concur still lists the notification', { timeout: 30_000 }, async () => {
    const t = await setup((base) => ({ status: 200, body: JSON.stringify([failedItem(base, 'A')]) }), () => 400);
    expect(await t.round()).toMatchObject({ deleted: 0 });
    expect(await t.round()).toMatchObject({ deleted: 0 });
    expect((await t.store.calloutCounts())[0]).toMatchObject({ awaitingDelete: 1 });
  });

  it('fails the round, naming the list, when Concur answers garbage; nothing is recorded or deleted', { timeout: 30_000 }, async () => {
    for (const answer of [{ status: 200, body: '<html>maintenance</html>', type: 'text/html' }, { status: 200, body: '{"not":"a list"}' }, { status: 200, body: '[1,' }]) {
      const t = await setup(() => answer, () => 200);
      await expect(t.round()).rejects.toThrow(/notification\?status=failed answered 200 with /);
      expect(await t.store.calloutCounts()).toEqual([]);
      expect(t.concur.deletes.size).toBe(0);
    }
  });
});

describe('failedQueueMinutes 0', () => {
  it('reads nothing from Concur and deletes nothing there', { timeout: 30_000 }, async () => {
    const h = await harness({}, {}, (c) => withCallout(c, '127.0.0.1:0', { 'pollbridge.callout.failedQueueMinutes': '0' }));
    h.sim.setCallout({ url: 'http://127.0.0.1:9/nowhere', ...CONNECTOR, retryDelaysMs: [] });
    h.sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    await h.sim.calloutsSettled();
    h.sim.setCallout(undefined);
    const { daemon } = h.daemon();
    await daemon.start();
    await waitFor('a poll', () => h.sim.listQueries.length > 0 || undefined);
    await new Promise((r) => setTimeout(r, 500));
    await daemon.stop();
    expect(h.sim.callouts.failed()).toHaveLength(1);
    expect(h.sim.deletes.size).toBe(0);
    expect(await daemonCounts(daemon)).toMatchObject({ received: 0 });
  });
});

const QUEUE_SEEDS = Number(process.env.POLLBRIDGE_FAILED_QUEUE_SEEDS ?? 30);

describe("seeded rounds of Concur's failed queue with DELETEs refused, cut, or applied and their answer lost", () => {
  for (let seed = 1; seed <= QUEUE_SEEDS; seed++) {
    it(`seed ${seed}: one receipt per notification, none marked deleted while Concur holds it, all deleted in the end`, { timeout: 30_000 }, async () => {
      const random = rng(seed);
      const atConcur = new Set<string>();
      let next = 0;
      let calm = false;
      const fates = ['ok', 'ok', 'lost', '403', '500', '401', 'reset'] as const;
      const t = await setup((base) => ({ status: 200, body: JSON.stringify([...atConcur].map((id) => failedItem(base, id))) }), (id) => {
        if (!atConcur.has(id)) return 400;
        const fate = calm ? 'ok' : fates[Math.floor(random() * fates.length)]!;
        if (fate === 'ok' || fate === 'lost') atConcur.delete(id);
        return fate === 'ok' ? 200 : fate === 'lost' || fate === 'reset' ? 'reset' : Number(fate);
      });
      const history: string[] = [];
      const everListed = new Set<string>();
      for (let round = 0; round < 12; round++) {
        calm = round >= 9;
        if (!calm) for (let n = Math.floor(random() * 4); n > 0; n--) atConcur.add(`N${next++}`);
        for (const id of atConcur) everListed.add(id);
        const result = await t.round();
        history.push(`round ${round}: ${JSON.stringify(result)}, at Concur ${[...atConcur].join(' ')}`);
        const counts = (await t.store.calloutCounts())[0] ?? { received: 0, awaitingDelete: 0 };
        const context = `seed ${seed}: ${history.join('; ')}`;
        expect(counts.received, context).toBe(everListed.size);
        expect(counts.awaitingDelete, context).toBeGreaterThanOrEqual(atConcur.size);
      }
      const context = `seed ${seed}: ${history.join('; ')}`;
      expect(atConcur.size, context).toBe(0);
      expect((await t.store.calloutCounts())[0]?.awaitingDelete ?? 0, context).toBe(0);
    });
  }
});
