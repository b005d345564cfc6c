import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { notificationXml, parseCalloutTarget, retryDelayMs } from '../src/sim/calloutSender.js';
import { ConcurSim, DEFAULT_SIM_CREDENTIALS, type SimCalloutTarget, type SimOptions } from '../src/sim/concurSim.js';
import { runCli, startCli } from './helpers/cli.js';
import { rng as seeded } from './helpers/rng.js';
import { waitFor } from './helpers/tmp.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type Arrival = { method: string; url: string; headers: http.IncomingHttpHeaders; body: string };
/** What the connector does with one request: answer a status, reset the connection, or never answer. */
type Answer = number | 'reset' | 'hang';

const USER = 'concur-user';
const PASSWORD = 'pa:ss wörd';
const basic = (user: string, password: string) => 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64');

/** A connector written for the test: records every request and answers as `answer` says. */
async function startConnector(answer: (a: Arrival, n: number) => Answer = () => 200, tls?: { cert: string; key: string }) {
  const arrivals: Arrival[] = [];
  const sockets = new Set<Socket>();
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const arrival = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      arrivals.push(arrival);
      const a = answer(arrival, arrivals.length);
      if (a === 'hang') return;
      if (a === 'reset') {
        req.socket.destroy();
        return;
      }
      res.writeHead(a, { 'content-type': 'application/txt' });
      res.end(a === 200 ? 'OK' : 'no');
    });
  };
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('secureConnection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const close = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  cleanups.push(close);
  return { arrivals, sockets, origin: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`, url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}/concur/v1.0/notify` };
}

async function startSim(target?: Partial<SimCalloutTarget> & { url: string }, options: SimOptions = {}) {
  const sim = new ConcurSim({ ...options, ...(target ? { callout: { username: USER, password: PASSWORD, retryDelaysMs: [20, 20], ...target } } : {}) });
  const base = await sim.start();
  cleanups.push(() => sim.stop());
  return { sim, base };
}

/** An access token from the simulator's OAuth2 endpoint, as pollbridge would get one. */
async function accessToken(base: string): Promise<string> {
  const c = DEFAULT_SIM_CREDENTIALS;
  const res = await fetch(`${base}/oauth2/v0/token`, {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'refresh_token', client_id: c.clientId, client_secret: c.clientSecret, refresh_token: c.refreshToken }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { access_token: string }).access_token;
}

/** The body Concur documents, written out here rather than by the simulator's code. */
const expectedXml = (objectUri: string, date: string) =>
  '<Notification><EventType>Report Entered Expense Report Workflow Step - SUBMIT</EventType><ObjectType>EXPRPT</ObjectType>' +
  `<ObjectURI>${objectUri}</ObjectURI><EventDateTime>${date}</EventDateTime><Context/></Notification>`;

const today = () => new Date().toISOString().slice(0, 10);
const FAILED = '/api/platform/notifications/v1.0/notification';

/** Every notification fails at a connector answering 500 and is listed by the failed API. */
async function failedOnes(count: number) {
  const connector = await startConnector(() => 500);
  const { sim, base } = await startSim({ url: connector.url });
  const reports = Array.from({ length: count }, () => sim.createReport({ ApprovalStatusCode: 'A_PEND', ApprovalStatusName: 'Submitted & Pending Approval' }));
  await sim.calloutsSettled();
  expect(sim.callouts.failed().length).toBe(count);
  return { sim, base, reports, connector, token: await accessToken(base) };
}

describe('the simulator pushes Event Notifications as Concur does', () => {
  it('POSTs a report entering Submitted with Basic auth and the documented XML, once, and counts it delivered', async () => {
    const connector = await startConnector();
    const { sim, base } = await startSim({ url: connector.url });
    const before = today();
    const report = sim.createReport();
    sim.updateReport(report.ID); // A_NOTF → A_PEND: Submitted
    sim.updateReport(report.ID); // → A_APPR: no notification
    const created = sim.createReport({ ApprovalStatusCode: 'A_PEND', ApprovalStatusName: 'Submitted & Pending Approval' });
    await sim.calloutsSettled();
    const after = today();

    expect(connector.arrivals).toHaveLength(2);
    const uris = [report.ID, created.ID].map((id) => `${base}/api/expense/expensereport/v1.1/report/${id}`);
    for (const [i, a] of connector.arrivals.entries()) {
      expect(a.method).toBe('POST');
      expect(a.url).toBe('/concur/v1.0/notify');
      expect(a.headers.authorization).toBe(basic(USER, PASSWORD));
      expect(a.headers['content-type']).toBe('application/xml');
      expect([expectedXml(uris[i]!, before), expectedXml(uris[i]!, after)]).toContain(a.body);
    }
    const delivered = sim.callouts.delivered();
    expect(delivered.map((n) => n.reportId).sort()).toEqual([report.ID, created.ID].sort());
    expect(delivered.map((n) => n.tries)).toEqual([1, 1]);
    expect(sim.callouts.queued()).toEqual([]);
    expect(sim.callouts.attempts.map((a) => a.status)).toEqual([200, 200]);
  });

  it('names the v3 report as ObjectURI when asked, and XML-escapes what it sends', async () => {
    const connector = await startConnector();
    const { sim, base } = await startSim({ url: connector.url, objectUri: 'v3' });
    const report = sim.createReport({ ID: 'A&B<1>', ApprovalStatusCode: 'A_PEND' });
    await sim.calloutsSettled();
    expect(connector.arrivals).toHaveLength(1);
    expect(connector.arrivals[0]!.body).toContain(`<ObjectURI>${base}/api/v3.0/expense/reports/A&amp;B&lt;1&gt;</ObjectURI>`);
    expect(report.URI).toBe(`${base}/api/v3.0/expense/reports/A&B<1>`);
  });

  it('sends nothing while no connector is set', async () => {
    const connector = await startConnector();
    const { sim } = await startSim();
    sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    await sim.calloutsSettled();
    expect(sim.callouts.queued()).toEqual([]);
    sim.setCallout({ url: connector.url, username: USER, password: PASSWORD });
    await sim.calloutsSettled();
    expect(connector.arrivals).toEqual([]);
  });

  it('retries after a 500 with the same bytes, and the notification ends delivered', async () => {
    const connector = await startConnector((_a, n) => (n === 1 ? 500 : 200));
    const { sim } = await startSim({ url: connector.url });
    sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    await sim.calloutsSettled();
    expect(connector.arrivals).toHaveLength(2);
    expect(connector.arrivals[1]!.body).toBe(connector.arrivals[0]!.body);
    expect(connector.arrivals[1]!.headers.authorization).toBe(basic(USER, PASSWORD));
    expect(sim.callouts.attempts.map((a) => a.status)).toEqual([500, 200]);
    expect(sim.callouts.delivered().map((n) => n.tries)).toEqual([2]);
    expect(sim.callouts.failed()).toEqual([]);
  });

  it.each([
    ['answers 500', 500 as Answer, {}],
    ['resets the connection', 'reset' as Answer, {}],
    ['never answers', 'hang' as Answer, { timeoutMs: 100 }],
  ])('marks a notification failed after the first try and every retry when the connector %s', async (_name, answer, extra) => {
    const connector = await startConnector(() => answer);
    const { sim } = await startSim({ url: connector.url, ...extra });
    sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    await sim.calloutsSettled();
    expect(connector.arrivals).toHaveLength(3);
    expect(new Set(connector.arrivals.map((a) => a.body)).size).toBe(1);
    const [failed] = sim.callouts.failed();
    expect(failed?.tries).toBe(3);
    expect(sim.callouts.queued()).toEqual([]);
    expect(sim.callouts.attempts).toHaveLength(3);
    if (answer === 500) expect(sim.callouts.attempts.every((a) => a.status === 500 && a.error === undefined)).toBe(true);
    else expect(sim.callouts.attempts.every((a) => a.status === undefined && typeof a.error === 'string')).toBe(true);
  });

  it('sends several notifications at once rather than one after another', async () => {
    const connector = await startConnector(() => 'hang');
    const { sim } = await startSim({ url: connector.url, timeoutMs: 5000 });
    for (let i = 0; i < 4; i++) sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    await waitFor('4 notifications in flight together', () => connector.arrivals.length === 4);
    expect(sim.callouts.attempts).toEqual([]);
    expect(sim.callouts.queued()).toHaveLength(4);
  });

  it('pushes over https to a connector with a self-signed certificate given as ca, and refuses it otherwise', async () => {
    const fixture = (name: string) => readFileSync(new URL(`./fixtures/tls/${name}`, import.meta.url), 'utf8');
    const pem = { cert: fixture('a.crt'), key: fixture('a.key') };
    const connector = await startConnector(() => 200, pem);
    const trusted = await startSim({ url: connector.url, ca: pem.cert });
    trusted.sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    await trusted.sim.calloutsSettled();
    expect(trusted.sim.callouts.delivered()).toHaveLength(1);
    expect(connector.arrivals[0]!.headers.authorization).toBe(basic(USER, PASSWORD));
    expect(await trusted.sim.testConnection()).toBe(200);

    const untrusting = await startSim({ url: connector.url });
    untrusting.sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    await untrusting.sim.calloutsSettled();
    expect(untrusting.sim.callouts.failed()).toHaveLength(1);
    expect(untrusting.sim.callouts.attempts[0]!.error).toMatch(/certificate/i);
    expect(connector.arrivals).toHaveLength(2); // the trusted push and the test connection
  });

  it('stop() cancels what is in flight and every retry: nothing is sent afterwards and nothing is left open', async () => {
    const connector = await startConnector((_a, n) => (n === 1 ? 500 : 'hang'));
    const { sim } = await startSim({ url: connector.url, retryDelaysMs: [1000], timeoutMs: 5000 });
    const first = sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    await waitFor('the first try answered 500', () => sim.callouts.attempts.length === 1);
    const second = sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    await waitFor('the second notification in flight', () => connector.arrivals.length === 2);
    await sim.stop();
    await sim.calloutsSettled();
    await waitFor('the connector sees the cancelled request close', () => connector.sockets.size === 0, 2000);
    // Past the first notification's retry delay: a timer left running would send it now.
    await new Promise((r) => setTimeout(r, 1200));
    expect(connector.arrivals).toHaveLength(2);
    // The cancelled send does not count as a try: Concur never got an answer to it.
    expect(sim.callouts.queued().map((n) => [n.reportId, n.tries]).sort()).toEqual([[first.ID, 1], [second.ID, 0]].sort());
    expect(sim.callouts.attempts.map((a) => a.status)).toEqual([500]);
  });

  it('parks a waiting retry while no connector is set, and sends it to the next one', async () => {
    const down = await startConnector(() => 500);
    const up = await startConnector(() => 200);
    // A long wait, so the retry is surely still waiting when the connector is taken away.
    const { sim } = await startSim({ url: down.url, retryDelaysMs: [5000, 5000] });
    const report = sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    await waitFor('the first try answered 500', () => sim.callouts.attempts.length === 1);
    sim.setCallout(undefined);
    await sim.calloutsSettled();
    expect(sim.callouts.queued().map((n) => n.reportId)).toEqual([report.ID]);
    sim.setCallout({ url: up.url, username: USER, password: PASSWORD, retryDelaysMs: [5000, 5000] });
    await sim.calloutsSettled();
    expect(down.arrivals).toHaveLength(1);
    expect(up.arrivals.map((a) => a.body)).toEqual([down.arrivals[0]!.body]);
    expect(sim.callouts.delivered().map((n) => n.tries)).toEqual([2]);
  });
});

describe("the simulator's failed-notification API", () => {
  it('lists failed notifications as JSON with Accept: application/json, with NotificationURI, and deletes them', async () => {
    const { sim, base, reports, token } = await failedOnes(2);
    const res = await fetch(`${base}${FAILED}?status=failed`, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
    expect(res.status).toBe(200);
    const list = (await res.json()) as Record<string, string>[];
    expect(list).toHaveLength(2);
    const ids = sim.callouts.failed().map((n) => n.id);
    for (const entry of list) {
      expect(Object.keys(entry).sort()).toEqual(['Context', 'EventDateTime', 'EventType', 'NotificationURI', 'ObjectType', 'ObjectURI']);
      expect(entry.EventType).toBe('Report Entered Expense Report Workflow Step - SUBMIT');
      expect(entry.ObjectType).toBe('EXPRPT');
      expect(entry.Context).toBe('');
      expect(entry.EventDateTime).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/);
      expect(ids.map((id) => `${base}${FAILED}/${id}`)).toContain(entry.NotificationURI);
    }
    expect(list.map((e) => e.ObjectURI).sort()).toEqual(reports.map((r) => `${base}/api/expense/expensereport/v1.1/report/${r.ID}`).sort());

    const del = await fetch(list[0]!.NotificationURI!, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
    expect(del.status).toBe(200);
    expect(sim.callouts.failed()).toHaveLength(1);
    const again = await fetch(list[0]!.NotificationURI!, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
    expect(again.status).toBe(400);
    const unknown = await fetch(`${base}${FAILED}/NOSUCHID`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
    expect(unknown.status).toBe(400);
    const deletedId = list[0]!.NotificationURI!.split('/').pop()!;
    expect([...sim.deletes]).toEqual([[deletedId, 2], ['NOSUCHID', 1]]);
    const rest = (await (await fetch(`${base}${FAILED}?status=failed`, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' } })).json()) as unknown[];
    expect(rest).toHaveLength(1);
  });

  it('lists them as an XML NotificationList without Accept JSON, and when the XML switch is on', async () => {
    const { sim, base, reports, token } = await failedOnes(1);
    const [n] = sim.callouts.failed();
    const uri = `${base}${FAILED}/${n!.id}`;
    for (const accept of [undefined, 'application/json']) {
      sim.faults.failedListAsXml = accept !== undefined;
      const res = await fetch(`${base}${FAILED}?status=failed`, { headers: { authorization: `Bearer ${token}`, ...(accept ? { accept } : {}) } });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/xml');
      expect(n!.eventDateTime).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/);
      expect(await res.text()).toBe(
        '<NotificationList xmlns="http://www.concursolutions.com/api/notification/2012/06"><Notification><Context/>' +
          `<EventDateTime>${n!.eventDateTime}</EventDateTime><EventType>Report Entered Expense Report Workflow Step - SUBMIT</EventType>` +
          `<NotificationURI>${uri}</NotificationURI><ObjectType>EXPRPT</ObjectType>` +
          `<ObjectURI>${base}/api/expense/expensereport/v1.1/report/${reports[0]!.ID}</ObjectURI></Notification></NotificationList>`,
      );
    }
  });

  it("a DELETE that beforeDelete drops is not applied: the connection closes and the notification stays listed", async () => {
    const { sim, base, token } = await failedOnes(1);
    const [n] = sim.callouts.failed();
    let release: (v: 'apply' | 'drop') => void = () => {};
    const seen: string[] = [];
    sim.faults.beforeDelete = (id) => {
      seen.push(id);
      return new Promise((resolve) => (release = resolve));
    };
    const pending = fetch(`${base}${FAILED}/${n!.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
    await waitFor('the DELETE held', () => seen.length === 1);
    expect(sim.callouts.failed()).toHaveLength(1);
    release('drop');
    await expect(pending).rejects.toThrow();
    expect(sim.callouts.failed().map((x) => x.id)).toEqual([n!.id]);
    sim.faults.beforeDelete = async () => 'apply';
    const res = await fetch(`${base}${FAILED}/${n!.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(sim.callouts.failed()).toEqual([]);
    expect(sim.deletes.get(n!.id)).toBe(2);
  });

  it('answers 401 without a valid Bearer token: failed list, DELETE and the objects', async () => {
    const { sim, base, reports } = await failedOnes(1);
    const [n] = sim.callouts.failed();
    const id = reports[0]!.ID;
    for (const auth of [undefined, 'Bearer not-a-token', basic(USER, PASSWORD)]) {
      const headers = auth ? { authorization: auth } : undefined;
      expect((await fetch(`${base}${FAILED}?status=failed`, { headers })).status).toBe(401);
      expect((await fetch(`${base}${FAILED}/${n!.id}`, { method: 'DELETE', headers })).status).toBe(401);
      expect((await fetch(`${base}/api/expense/expensereport/v1.1/report/${id}`, { headers })).status).toBe(401);
      expect((await fetch(`${base}/api/v3.0/expense/reports/${id}`, { headers })).status).toBe(401);
    }
    expect(sim.callouts.failed()).toHaveLength(1);
    expect(sim.deletes.size).toBe(0);
    expect(sim.objectRequests.size).toBe(0);
  });
});

describe("the objects a notification's ObjectURI names", () => {
  it('serves the v1.1 report details as XML and the v3 report as JSON, 404 for an unknown id, and counts the requests', async () => {
    const { sim, base } = await startSim();
    const token = await accessToken(base);
    const report = sim.createReport({ Name: 'Trip <to> "A&B"', OwnerName: 'Ann & Bo' });
    const auth = { authorization: `Bearer ${token}` };
    const v11 = await fetch(`${base}/api/expense/expensereport/v1.1/report/${report.ID}`, { headers: { ...auth, accept: 'application/json' } });
    expect(v11.status).toBe(200);
    expect(v11.headers.get('content-type')).toBe('application/xml');
    expect(await v11.text()).toBe(
      '<ReportDetails xmlns="http://www.concursolutions.com/api/expense/expensereport/2011/03">' +
        `<ReportID>${report.ID}</ReportID><ReportName>Trip &lt;to&gt; &quot;A&amp;B&quot;</ReportName><ReportTotal>${report.Total}</ReportTotal>` +
        `<CurrencyCode>USD</CurrencyCode><ApprovalStatusCode>A_NOTF</ApprovalStatusCode><ApprovalStatusName>Not Submitted</ApprovalStatusName>` +
        `<LastModifiedDate>${report.LastModifiedDate}</LastModifiedDate><EmployeeName>Ann &amp; Bo</EmployeeName></ReportDetails>`,
    );
    const v3 = await fetch(`${base}/api/v3.0/expense/reports/${report.ID}`, { headers: auth });
    expect(v3.status).toBe(200);
    expect(await v3.json()).toEqual(report);
    expect((await fetch(`${base}/api/v3.0/expense/reports/NOSUCH`, { headers: auth })).status).toBe(404);
    expect((await fetch(`${base}/api/expense/expensereport/v1.1/report/NOSUCH`, { headers: auth })).status).toBe(404);
    expect(sim.objectRequests.get(report.ID)).toBe(2);
    expect(sim.objectRequests.get('NOSUCH')).toBe(2);
  });

  it('answers scripted failures first, and holds a request while beforeObject waits', async () => {
    const { sim, base } = await startSim();
    const token = await accessToken(base);
    const report = sim.createReport();
    const url = `${base}/api/expense/expensereport/v1.1/report/${report.ID}`;
    const headers = { authorization: `Bearer ${token}` };
    sim.faults.objectFailures.push({ status: 503, retryAfter: '1' }, { status: 0, reset: true });
    const first = await fetch(url, { headers });
    expect(first.status).toBe(503);
    expect(first.headers.get('retry-after')).toBe('1');
    await expect(fetch(url, { headers })).rejects.toThrow();
    let release = () => {};
    sim.faults.beforeObject = (id) => {
      expect(id).toBe(report.ID);
      return new Promise<void>((resolve) => (release = resolve));
    };
    let answered = false;
    const held = fetch(url, { headers }).then((r) => {
      answered = true;
      return r;
    });
    await waitFor('the object request held', () => sim.objectRequests.get(report.ID) === 3);
    expect(answered).toBe(false);
    release();
    expect((await held).status).toBe(200);
  });
});

describe('Test Connection and the control routes', () => {
  it("testConnection GETs the connector's test route with the Basic credentials and returns its status", async () => {
    const connector = await startConnector((a) => (a.headers.authorization === basic(USER, PASSWORD) ? 200 : 401));
    const { sim, base } = await startSim({ url: connector.url });
    expect(await sim.testConnection()).toBe(200);
    expect(connector.arrivals[0]!.method).toBe('GET');
    expect(connector.arrivals[0]!.url).toBe('/system/v1.0/testconnection');
    expect(connector.arrivals[0]!.headers.authorization).toBe(basic(USER, PASSWORD));
    sim.setCallout({ url: connector.url, username: USER, password: 'wrong' });
    expect(await sim.testConnection()).toBe(401);
    const viaHttp = await fetch(`${base}/_sim/callout/test`, { method: 'POST' });
    expect(await viaHttp.json()).toEqual({ status: 401 });
    sim.setCallout(undefined);
    await expect(sim.testConnection()).rejects.toThrow(/no callout target/);
  });

  it('another process sets the target, reads the callouts, turns it off with {}, and gets 400 naming a bad field', async () => {
    const connector = await startConnector((_a, n) => (n === 1 ? 500 : 200));
    const { sim, base } = await startSim();
    const set = await fetch(`${base}/_sim/callout`, { method: 'POST', body: JSON.stringify({ url: connector.url, username: USER, password: PASSWORD, retryDelaysMs: [10] }) });
    expect(await set.json()).toEqual({ enabled: true });
    await fetch(`${base}/_sim/reports`, { method: 'POST', body: JSON.stringify({ ApprovalStatusCode: 'A_PEND' }) });
    await sim.calloutsSettled();
    const state = (await (await fetch(`${base}/_sim/callouts`)).json()) as Record<string, { tries?: number; status?: number }[]>;
    expect(state.queued).toEqual([]);
    expect(state.failed).toEqual([]);
    expect(state.delivered!.map((n) => n.tries)).toEqual([2]);
    expect(state.attempts!.map((a) => a.status)).toEqual([500, 200]);

    expect(await (await fetch(`${base}/_sim/callout`, { method: 'POST', body: '{}' })).json()).toEqual({ enabled: false });
    sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    await sim.calloutsSettled();
    expect(connector.arrivals).toHaveLength(2);

    const bad = await fetch(`${base}/_sim/callout`, { method: 'POST', body: JSON.stringify({ url: connector.url, username: USER }) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { Message: string }).Message).toBe('callout target: password must be a string');
  });
});

describe('pollbridge sim --callout-*', () => {
  it('pushes to the connector given on the command line, lists the new routes, and never prints the password', async () => {
    const connector = await startConnector();
    const secret = 'cli-secret-password';
    const sim = startCli(['sim', '--port', '0', '--rate', '0', '--callout-url', connector.url, '--callout-user', USER, '--callout-password', secret]);
    try {
      await waitFor('the banner', () => sim.stdout.some((l) => l.startsWith('  control:')));
      const banner = sim.stdout.join('\n');
      expect(banner).toContain(`callout: POST ${connector.url} as ${USER} when a report enters Submitted`);
      expect(banner).toMatch(/failed: +GET +http:\/\/127\.0\.0\.1:\d+\/api\/platform\/notifications\/v1\.0\/notification\?status=failed, DELETE/);
      expect(banner).toMatch(/report: +GET +http:\/\/127\.0\.0\.1:\d+\/api\/expense\/expensereport\/v1\.1\/report\/ID/);
      const base = /Concur simulator on (\S+)/.exec(banner)![1]!;
      await fetch(`${base}/_sim/reports`, { method: 'POST', body: JSON.stringify({ ApprovalStatusCode: 'A_PEND' }) });
      await waitFor('the push', () => connector.arrivals.length === 1);
      expect(connector.arrivals[0]!.headers.authorization).toBe(basic(USER, secret));
      expect(await (await fetch(`${base}/_sim/callout/test`, { method: 'POST' })).json()).toEqual({ status: 200 });
    } finally {
      sim.child.kill('SIGTERM');
      expect(await sim.exited).toEqual({ code: 0, signal: null });
    }
    expect([...sim.stdout, ...sim.stderr].join('\n')).not.toContain(secret);
  });

  it('refuses a partial or bad callout in one line', async () => {
    const partial = await runCli(['sim', '--port', '0', '--callout-user', 'u']);
    expect(partial.code).toBe(1);
    expect(partial.stderr).toBe('pollbridge: the callout needs --callout-url, --callout-user and --callout-password together; missing --callout-url, --callout-password');
    const bad = await runCli(['sim', '--port', '0', '--callout-url', 'ftp://x/', '--callout-user', 'u', '--callout-password', 'p']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe('pollbridge: --callout-url must be an http or https URL such as http://127.0.0.1:8443/concur/v1.0/notify, got "ftp://x/"');
  });
});

describe('the pure parts', () => {
  it('notificationXml escapes every field', () => {
    expect(notificationXml({ eventType: 'a<b', objectType: 'EXPRPT', objectUri: 'https://x/r?a=1&b="2"', eventDate: "2024-01-0'1" })).toBe(
      '<Notification><EventType>a&lt;b</EventType><ObjectType>EXPRPT</ObjectType><ObjectURI>https://x/r?a=1&amp;b=&quot;2&quot;</ObjectURI>' +
        '<EventDateTime>2024-01-0&apos;1</EventDateTime><Context/></Notification>',
    );
  });

  it('retryDelayMs gives the wait after each try, then none', () => {
    expect([1, 2, 3].map((t) => retryDelayMs([20, 40], t))).toEqual([20, 40, undefined]);
    expect(retryDelayMs([], 1)).toBeUndefined();
  });

  it('parseCalloutTarget names what is wrong', () => {
    expect(parseCalloutTarget({})).toBeUndefined();
    const ok = { url: 'https://h/concur/v1.0/notify', username: 'u', password: 'p' };
    expect(parseCalloutTarget(ok)).toEqual(ok);
    expect(() => parseCalloutTarget([])).toThrow('callout target: expected a JSON object');
    expect(() => parseCalloutTarget({ ...ok, url: 'ftp://h/' })).toThrow('callout target: url must be http or https');
    expect(() => parseCalloutTarget({ ...ok, url: 'nope' })).toThrow('callout target: url is not a URL');
    expect(() => parseCalloutTarget({ ...ok, retryDelaysMs: [1, -1] })).toThrow(/retryDelaysMs/);
    expect(() => parseCalloutTarget({ ...ok, objectUri: 'v2' })).toThrow(/objectUri/);
    expect(() => parseCalloutTarget({ ...ok, timeoutMs: 0 })).toThrow(/timeoutMs/);
  });
});

describe('seeded: any sequence of connector answers', () => {
  it('each notification ends delivered at its first 200 within 1 + retries tries, else failed, always the same bytes', async () => {
    const plans = new Map<string, Answer[]>();
    const reportOf = (body: string) => /\/report\/([^<]+)<\/ObjectURI>/.exec(body)?.[1] ?? '';
    const connector = await startConnector((a) => plans.get(reportOf(a.body))?.[connector.arrivals.filter((b) => b.body === a.body).length - 1] ?? 500);
    const delays = [1, 1, 1];
    for (let seed = 1; seed <= 25; seed++) {
      const rng = seeded(seed);
      const { sim } = await startSim({ url: connector.url, retryDelaysMs: delays });
      const ids: string[] = [];
      const count = 1 + Math.floor(rng() * 6);
      for (let i = 0; i < count; i++) {
        const plan = Array.from({ length: 5 }, () => ([200, 500, 503, 'reset', 302] as Answer[])[Math.floor(rng() * 5)]!);
        // The plan is in place before the request can arrive: sending starts, the answer comes on a later turn.
        const r = sim.createReport({ ApprovalStatusCode: 'A_PEND' });
        plans.set(r.ID, plan);
        ids.push(r.ID);
      }
      await sim.calloutsSettled();
      try {
        const all = [...sim.callouts.delivered(), ...sim.callouts.failed()];
        expect(all.map((n) => n.reportId).sort()).toEqual([...ids].sort());
        for (const n of all) {
          const plan = plans.get(n.reportId)!.slice(0, 1 + delays.length);
          const ok = plan.indexOf(200);
          expect(n.state).toBe(ok === -1 ? 'failed' : 'delivered');
          expect(n.tries).toBe(ok === -1 ? plan.length : ok + 1);
          expect(connector.arrivals.filter((a) => a.body === n.xml)).toHaveLength(n.tries);
        }
        expect(sim.callouts.queued()).toEqual([]);
      } catch (err) {
        throw new Error(`seed ${seed}: ${String(err)}`, { cause: err });
      }
      await sim.stop();
    }
  });
});
