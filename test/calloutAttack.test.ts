import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { type CalloutResult, startCalloutServer } from '../src/callout/server.js';
import { type Admission, AuthThrottle } from '../src/callout/throttle.js';
import { loadConfig } from '../src/config/load.js';
import { basicAuth, CONNECTOR, NOTIFICATION_XML, NOTIFY_PATH, withCallout } from './helpers/callout.js';
import { type CliProcess, startCli } from './helpers/cli.js';
import { captureLogger, harness } from './helpers/harness.js';
import { rng } from './helpers/rng.js';
import { SIM_ENV } from './helpers/simConfig.js';
import { tempDir, waitFor } from './helpers/tmp.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A second instance on the same listener, with its own path and credentials. */
const B = { name: 'ConcurB', path: '/concur-b/v1.0/notify', username: 'connector-b', password: 'b-connector-password-long' };
const RESULTS = [
  'accepted', 'test_connection', 'unauthorized', 'throttled', 'too_large', 'malformed', 'unsafe_xml', 'not_found', 'method_not_allowed', 'timeout', 'unavailable',
  'tls_failed', 'not_http', 'headers_too_large', 'headers_timeout',
];

type Instances = { instances: { name: string; configuration: Record<string, unknown> }[] };

/** Adds instance B (a copy of the first, its callout on B.path as B.username). */
function withSecondCallout<T extends Instances>(c: T): T {
  const first = c.instances[0]!;
  return {
    ...c,
    instances: [...c.instances, {
      ...first,
      name: B.name,
      configuration: { ...first.configuration, 'pollbridge.callout.path': B.path, 'pollbridge.callout.username': B.username, 'pollbridge.callout.password': B.password },
    }],
  };
}

/**
 * The built CLI with two callout instances on one listener and /metrics on another, and no
 * reports at the simulator: nothing the daemon does on its own puts a row in the outbox.
 */
async function startConnector() {
  const h = await harness({}, {}, (c) => withSecondCallout(withCallout({ ...c, http: { listen: '127.0.0.1:0' } })));
  const p = startCli(['run', '-c', h.configFile], SIM_ENV);
  cleanups.push(async () => {
    if (p.child.exitCode === null && p.child.signalCode === null) {
      p.child.kill('SIGTERM');
      await p.exited;
    }
  });
  const calloutUrl = String((await p.waitForLog("Concur's callout answered")).url);
  const httpUrl = String((await p.waitForLog('health and metrics listening')).url);
  await p.waitForLog('pollbridge started');
  const database = loadConfig(h.configFile, { env: SIM_ENV }).database;
  return { h, p, calloutUrl, httpUrl, database, port: Number(new URL(calloutUrl).port) };
}

type Connector = Awaited<ReturnType<typeof startConnector>>;

/** `pollbridge_callouts_total` by result, from the daemon's /metrics (absent results: 0). */
async function calloutCounts(httpUrl: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${httpUrl}/metrics`)).text();
  const counts: Record<string, number> = Object.fromEntries(RESULTS.map((r) => [r, 0]));
  for (const m of text.matchAll(/^pollbridge_callouts_total\{result="(\w+)"\} (\d+)$/gm)) counts[m[1]!] = Number(m[2]);
  return counts;
}

function tableCounts(database: string): { callouts: number; outbox: number } {
  const db = new Database(database, { readonly: true });
  try {
    return {
      callouts: db.prepare('SELECT count(*) FROM callouts').pluck().get() as number,
      outbox: db.prepare('SELECT count(*) FROM notifications').pluck().get() as number,
    };
  } finally {
    db.close();
  }
}

/** Every byte of the database's files (main, WAL, journal) as latin1 text, to look for a string in. */
function databaseBytes(database: string): string {
  const dir = dirname(database);
  return readdirSync(dir).filter((f) => f.startsWith(database.slice(dir.length + 1))).map((f) => readFileSync(join(dir, f)).toString('latin1')).join('\n');
}

type Answer = { status: number; headers: http.IncomingHttpHeaders; body: string };

/** One request from `from` (any 127.0.0.0/8 address: Linux routes them all to lo), never throwing on status. */
function send(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer; from?: string } = {}): Promise<Answer> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: target.hostname, port: target.port, path: target.pathname, method: opts.method ?? 'POST', agent: false,
      headers: { 'content-type': 'application/xml', ...opts.headers }, ...(opts.from ? { localAddress: opts.from } : {}),
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/**
 * A raw connection: `write` what the test wants, then wait for the status line of an answer.
 * Write errors are kept, not thrown: a server that answered early may close while we still send.
 */
function rawConnection(port: number, from = '127.0.0.1') {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress: from });
  let received = '';
  let closed = false;
  socket.on('data', (c: Buffer) => { received += c.toString('latin1'); });
  socket.on('error', () => {});
  socket.on('close', () => { closed = true; });
  cleanups.push(() => { socket.destroy(); });
  return {
    socket,
    get received() { return received; },
    get closed() { return closed; },
    write: (data: string | Buffer) => new Promise<void>((resolve) => {
      if (socket.destroyed) return resolve();
      socket.write(data, () => resolve());
    }),
    /** The answer's body, its chunked encoding undone. */
    body: () => {
      const [head = '', ...rest] = received.split('\r\n\r\n');
      let body = rest.join('\r\n\r\n');
      if (!/^transfer-encoding: chunked$/im.test(head)) return body;
      let decoded = '';
      for (let size = 0, n = 0; n < 1000 && (size = Number.parseInt(body, 16)) > 0; n++) {
        const start = body.indexOf('\r\n') + 2;
        decoded += body.slice(start, start + size);
        body = body.slice(start + size + 2);
      }
      return decoded;
    },
    status: (timeoutMs = 15_000) => waitFor('an answer on the raw connection', () => /^HTTP\/1\.1 (\d{3})/.exec(received)?.[1], timeoutMs).then(Number),
  };
}

const MARK = 'BODY-MARK-7f3a91';
const objectUri = (c: Connector) => `${c.h.simUrl}/api/expense/expensereport/v1.1/report/${MARK}`;
const validBody = (c: Connector) => NOTIFICATION_XML(objectUri(c));
const auth = basicAuth(CONNECTOR.username, CONNECTOR.password);

/**
 * What every refused request must leave: its answer, nothing stored, its result counted once and
 * nothing else counted, and one log line naming the result with neither credentials nor body.
 */
async function expectRefused(c: Connector, answer: Answer, expected: { status: number; result: string }, secrets: string[] = []) {
  expect(answer.status).toBe(expected.status);
  expect(answer.body.length).toBeLessThan(400);
  expect(answer.body.trimEnd().split('\n')).toHaveLength(1);
  const counts = await calloutCounts(c.httpUrl);
  expect(counts).toEqual({ ...Object.fromEntries(RESULTS.map((r) => [r, 0])), [expected.result]: 1 });
  const line = await waitFor(`a log line for ${expected.result}`, () => c.p.logs().find((l) => l.message === 'callout refused' && l.result === expected.result));
  expect(line).toMatchObject({ level: 'warn', status: expected.status });
  expect(tableCounts(c.database)).toEqual({ callouts: 0, outbox: 0 });
  const output = [...c.p.stdout, ...c.p.stderr].join('\n');
  for (const secret of [CONNECTOR.password, B.password, auth.slice('Basic '.length), MARK, ...secrets]) {
    expect(output, `"${secret}" is in the output`).not.toContain(secret);
    expect(answer.body).not.toContain(secret);
  }
}

describe('bad credentials: 401, nothing stored, counted and logged without the credentials (built CLI)', () => {
  const cases: { name: string; headers: (c: Connector) => Record<string, string>; path?: string; secrets: string[] }[] = [
    { name: 'a wrong password', headers: () => ({ authorization: basicAuth(CONNECTOR.username, 'wrong-password-guess-1') }), secrets: ['wrong-password-guess-1', basicAuth(CONNECTOR.username, 'wrong-password-guess-1').slice(6)] },
    { name: 'a wrong user name', headers: () => ({ authorization: basicAuth('not-the-connector', CONNECTOR.password) }), secrets: [basicAuth('not-the-connector', CONNECTOR.password).slice(6)] },
    { name: 'no Authorization header', headers: () => ({}), secrets: [] },
    { name: 'another scheme (Bearer)', headers: () => ({ authorization: 'Bearer tok-3b1d5e9c0a' }), secrets: ['tok-3b1d5e9c0a'] },
    { name: "instance A's credentials on instance B's path", headers: () => ({ authorization: auth }), path: B.path, secrets: [] },
    { name: "instance B's credentials on instance A's path", headers: () => ({ authorization: basicAuth(B.username, B.password) }), secrets: [basicAuth(B.username, B.password).slice(6)] },
  ];
  for (const k of cases) {
    it(k.name, { timeout: 60_000 }, async () => {
      const c = await startConnector();
      const answer = await send(`${c.calloutUrl}${k.path ?? NOTIFY_PATH}`, { headers: k.headers(c), body: validBody(c) });
      expect(answer.headers['www-authenticate']).toMatch(/^Basic /);
      await expectRefused(c, answer, { status: 401, result: 'unauthorized' }, k.secrets);
    });
  }

  it('both instances accept their own credentials on their own path, each a receipt of its own instance (the control)', { timeout: 60_000 }, async () => {
    const c = await startConnector();
    expect((await send(`${c.calloutUrl}${NOTIFY_PATH}`, { headers: { authorization: auth }, body: validBody(c) })).status).toBe(200);
    expect((await send(`${c.calloutUrl}${B.path}`, { headers: { authorization: basicAuth(B.username, B.password) }, body: validBody(c) })).status).toBe(200);
    expect((await calloutCounts(c.httpUrl)).accepted).toBe(2);
    const db = new Database(c.database, { readonly: true });
    try {
      expect(db.prepare('SELECT instance FROM callouts ORDER BY id').pluck().all()).toEqual(['ConcurTest', B.name]);
    } finally {
      db.close();
    }
  });
});

describe('XML that must not be expanded: 400 before parsing, nothing read or fetched (built CLI)', () => {
  it('an external entity naming a local file: its content appears nowhere', { timeout: 60_000 }, async () => {
    const c = await startConnector();
    const secretFile = join(tempDir(), 'secret.txt');
    const secret = 'FILE-CONTENT-d41d8cd98f';
    writeFileSync(secretFile, secret);
    const body = `<?xml version="1.0"?><!DOCTYPE Notification [<!ENTITY xxe SYSTEM "file://${secretFile}">]>`
      + `<Notification><EventType>&xxe;</EventType><ObjectType>EXPRPT</ObjectType><ObjectURI>${objectUri(c)}</ObjectURI><EventDateTime>2026-11-26</EventDateTime><Context>&xxe;</Context></Notification>`;
    const answer = await send(`${c.calloutUrl}${NOTIFY_PATH}`, { headers: { authorization: auth }, body });
    await expectRefused(c, answer, { status: 400, result: 'unsafe_xml' }, [secret]);
    expect(databaseBytes(c.database)).not.toContain(secret);
  });

  it('an external entity naming a URL: the server there receives no request', { timeout: 60_000 }, async () => {
    const c = await startConnector();
    let requests = 0;
    const bait = http.createServer((_req, res) => { requests++; res.end('BAIT-CONTENT'); });
    await new Promise<void>((resolve) => bait.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => bait.close(() => resolve())));
    const url = `http://127.0.0.1:${(bait.address() as AddressInfo).port}/entity`;
    for (const dtd of [`<!DOCTYPE Notification [<!ENTITY xxe SYSTEM "${url}">]>`, `<!DOCTYPE Notification SYSTEM "${url}">`, `<!DOCTYPE Notification [<!ENTITY % p SYSTEM "${url}"> %p;]>`]) {
      const body = `${dtd}<Notification><EventType>&xxe;</EventType><ObjectType>EXPRPT</ObjectType><ObjectURI>${objectUri(c)}</ObjectURI><EventDateTime>2026-11-26</EventDateTime><Context/></Notification>`;
      expect((await send(`${c.calloutUrl}${NOTIFY_PATH}`, { headers: { authorization: auth }, body })).status).toBe(400);
    }
    // A fetch would have been made while parsing, before the answer; a moment more for a late one.
    await sleep(300);
    expect(requests).toBe(0);
    expect((await calloutCounts(c.httpUrl)).unsafe_xml).toBe(3);
    expect(tableCounts(c.database)).toEqual({ callouts: 0, outbox: 0 });
  });

  it('billion laughs', { timeout: 60_000 }, async () => {
    const c = await startConnector();
    const levels = Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i};`.repeat(10)}">`).join('');
    const body = `<?xml version="1.0"?><!DOCTYPE Notification [<!ENTITY lol0 "lol">${levels}]>`
      + `<Notification><EventType>&lol9;</EventType><ObjectType>EXPRPT</ObjectType><ObjectURI>${objectUri(c)}</ObjectURI><EventDateTime>2026-11-26</EventDateTime><Context/></Notification>`;
    const answer = await send(`${c.calloutUrl}${NOTIFY_PATH}`, { headers: { authorization: auth }, body });
    await expectRefused(c, answer, { status: 400, result: 'unsafe_xml' }, ['lollollol']);
  });

  it('a DOCTYPE alone, before an otherwise valid notification', { timeout: 60_000 }, async () => {
    const c = await startConnector();
    const answer = await send(`${c.calloutUrl}${NOTIFY_PATH}`, { headers: { authorization: auth }, body: `<!DOCTYPE Notification>${validBody(c)}` });
    await expectRefused(c, answer, { status: 400, result: 'unsafe_xml' });
  });
});

describe('bodies that are not a notification: 400, one-line reason (built CLI)', () => {
  const cases: { name: string; body: (c: Connector) => string }[] = [
    { name: 'malformed XML', body: (c) => validBody(c).replace('</EventType>', '') },
    { name: 'not XML at all', body: () => `{"ObjectURI": "${MARK}"}` },
    { name: 'well-formed, but not a <Notification>', body: (c) => `<Invoice><ObjectURI>${objectUri(c)}</ObjectURI></Invoice>` },
    { name: 'an unknown ObjectType', body: (c) => validBody(c).replace('<ObjectType>EXPRPT</ObjectType>', '<ObjectType>INVOICE</ObjectType>') },
    { name: 'an empty body', body: () => '' },
  ];
  for (const k of cases) {
    it(k.name, { timeout: 60_000 }, async () => {
      const c = await startConnector();
      const answer = await send(`${c.calloutUrl}${NOTIFY_PATH}`, { headers: { authorization: auth }, body: k.body(c) });
      expect(answer.body).toMatch(/^not a Concur notification: /);
      await expectRefused(c, answer, { status: 400, result: 'malformed' });
    });
  }
});

describe('paths and methods (built CLI)', () => {
  it('an unknown path is 404 even with valid credentials', { timeout: 60_000 }, async () => {
    const c = await startConnector();
    const answer = await send(`${c.calloutUrl}/concur/v1.0/other`, { headers: { authorization: auth }, body: validBody(c) });
    await expectRefused(c, answer, { status: 404, result: 'not_found' });
  });

  it('GET on the notify path is 405 with Allow: POST', { timeout: 60_000 }, async () => {
    const c = await startConnector();
    const answer = await send(`${c.calloutUrl}${NOTIFY_PATH}`, { method: 'GET', headers: { authorization: auth } });
    expect(answer.headers.allow).toBe('POST');
    await expectRefused(c, answer, { status: 405, result: 'method_not_allowed' });
  });
});

describe('oversize bodies: 413 without reading on (built CLI)', () => {
  it('70 KiB declared in Content-Length: answered while the client is still sending', { timeout: 60_000 }, async () => {
    const c = await startConnector();
    const conn = rawConnection(c.port);
    await conn.write(`POST ${NOTIFY_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${auth}\r\nContent-Type: application/xml\r\nContent-Length: ${70 * 1024}\r\n\r\n`);
    await conn.write(`<Notification><EventType>${MARK}`.padEnd(1024, 'x'));
    // 69 KiB of the body are never sent: the answer cannot have waited for them.
    expect(await conn.status()).toBe(413);
    await waitFor('the connection closed by the server', () => conn.closed);
    await expectRefused(c, { status: 413, headers: {}, body: conn.body() }, { status: 413, result: 'too_large' });
  });

  it('over 64 KiB in chunks, without Content-Length', { timeout: 60_000 }, async () => {
    const c = await startConnector();
    const conn = rawConnection(c.port);
    await conn.write(`POST ${NOTIFY_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${auth}\r\nContent-Type: application/xml\r\nTransfer-Encoding: chunked\r\n\r\n`);
    const chunk = Buffer.alloc(8 * 1024, 'y');
    for (let i = 0; i < 9 && !conn.received; i++) await conn.write(Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]));
    expect(await conn.status()).toBe(413);
    await waitFor('the connection closed by the server', () => conn.closed);
    await expectRefused(c, { status: 413, headers: {}, body: conn.body() }, { status: 413, result: 'too_large' });
  });
});

describe('requests node refuses before they reach a route: answered, counted once, logged (built CLI)', () => {
  it('headers over 16 KiB: 431', { timeout: 60_000 }, async () => {
    const c = await startConnector();
    const conn = rawConnection(c.port);
    await conn.write(`POST ${NOTIFY_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${auth}\r\nX-Pad: ${'p'.repeat(20_000)}\r\n\r\n`);
    expect(await conn.status()).toBe(431);
    await waitFor('the connection closed by the server', () => conn.closed);
    await expectRefused(c, { status: 431, headers: {}, body: conn.body() }, { status: 431, result: 'headers_too_large' });
  });

  it('not HTTP at all: 400', { timeout: 60_000 }, async () => {
    const c = await startConnector();
    const conn = rawConnection(c.port);
    await conn.write(`HELLO ${MARK}\r\n\r\n`);
    expect(await conn.status()).toBe(400);
    await waitFor('the connection closed by the server', () => conn.closed);
    await expectRefused(c, { status: 400, headers: {}, body: conn.body() }, { status: 400, result: 'not_http' });
  });
});

describe('answers before the body is read close the connection: nothing more is read (built CLI)', () => {
  for (const k of [
    { name: 'POST to the Test Connection path: 405', path: '/system/v1.0/testconnection', status: 405, result: 'method_not_allowed' },
    { name: 'POST to the notify path with a wrong password: 401', path: NOTIFY_PATH, status: 401, result: 'unauthorized' },
    { name: 'POST to an unknown path: 404', path: '/elsewhere', status: 404, result: 'not_found' },
  ]) {
    it(k.name, { timeout: 60_000 }, async () => {
      const c = await startConnector();
      const conn = rawConnection(c.port);
      await conn.write(`POST ${k.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${basicAuth(CONNECTOR.username, 'wrong-password-xyz')}\r\nContent-Length: ${60 * 1024}\r\n\r\n`);
      await conn.write('z'.repeat(1024));
      expect(await conn.status()).toBe(k.status);
      expect(conn.received).toMatch(/\r\nconnection: close\r\n/i);
      await waitFor('the connection closed by the server, the body unread', () => conn.closed, 5000);
      await expectRefused(c, { status: k.status, headers: {}, body: conn.body() }, k, ['wrong-password-xyz']);
    });
  }
});

describe('slow clients are cut off (built CLI, the real 10 s timeouts)', () => {
  it('headers never finished, and a body trickled slower than the timeout: 408 each, counted and logged', { timeout: 60_000 }, async () => {
    // Two daemons side by side: both are result "timeout", and one daemon logs a result once per 10 s.
    const [headersOnly, trickled] = await Promise.all([startConnector(), startConnector()]);
    const slowHeaders = rawConnection(headersOnly.port);
    await slowHeaders.write(`POST ${NOTIFY_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${auth}\r\n`);
    const slowBody = rawConnection(trickled.port);
    const body = validBody(trickled);
    await slowBody.write(`POST ${NOTIFY_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${auth}\r\nContent-Type: application/xml\r\nContent-Length: ${body.length}\r\n\r\n`);
    // One byte every 200 ms: 30 s for the whole body, so the body timeout (10 s) comes first.
    for (let i = 0; i < 100 && !slowBody.received && !slowBody.closed; i++) {
      await slowBody.write(body[i]!);
      await sleep(200);
    }
    expect(await slowBody.status(1000)).toBe(408);
    expect(await slowHeaders.status(15_000)).toBe(408);
    await waitFor('both connections closed by the server', () => slowHeaders.closed && slowBody.closed);
    await expectRefused(trickled, { status: 408, headers: {}, body: slowBody.body() }, { status: 408, result: 'timeout' });
    await expectRefused(headersOnly, { status: 408, headers: {}, body: slowHeaders.body() }, { status: 408, result: 'headers_timeout' });
  });
});

describe('Test Connection (built CLI)', () => {
  it("200 with either instance's credentials, 401 with WWW-Authenticate: Basic otherwise; the simulator's button works", { timeout: 60_000 }, async () => {
    const c = await startConnector();
    const url = `${c.calloutUrl}/system/v1.0/testconnection`;
    expect((await send(url, { method: 'GET', headers: { authorization: auth } })).status).toBe(200);
    expect((await send(url, { method: 'GET', headers: { authorization: basicAuth(B.username, B.password) } })).status).toBe(200);
    const refusedHeaders: Record<string, string>[] = [{}, { authorization: basicAuth(CONNECTOR.username, B.password) }, { authorization: basicAuth(B.username, 'nope-not-it') }];
    for (const headers of refusedHeaders) {
      const answer = await send(url, { method: 'GET', headers, from: '127.0.0.9' });
      expect(answer.status).toBe(401);
      expect(answer.headers['www-authenticate']).toMatch(/^Basic realm=/);
    }
    c.h.sim.setCallout({ url: `${c.calloutUrl}${NOTIFY_PATH}`, ...CONNECTOR });
    expect(await c.h.sim.testConnection()).toBe(200);
    c.h.sim.setCallout({ url: `${c.calloutUrl}${NOTIFY_PATH}`, username: CONNECTOR.username, password: 'not-the-password' });
    expect(await c.h.sim.testConnection()).toBe(401);
    const counts = await calloutCounts(c.httpUrl);
    expect([counts.test_connection, counts.unauthorized]).toEqual([3, 4]);
    expect(tableCounts(c.database)).toEqual({ callouts: 0, outbox: 0 });
  });
});

/** The daemon's throttle, recording when it admitted what and when it counted a failure. */
class RecordingThrottle extends AuthThrottle {
  readonly admissions: { address: string; admission: Admission; at: number }[] = [];
  readonly failures: { address: string; at: number }[] = [];

  override admit(address: string, now: number): Admission {
    const admission = super.admit(address, now);
    this.admissions.push({ address, admission, at: now });
    return admission;
  }

  override failed(address: string, now: number): void {
    this.failures.push({ address, at: now });
    super.failed(address, now);
  }
}

describe('failed Basic auth from one address is paced (in-process, a real listener)', () => {
  it('a burst of guesses gets one credential check per interval, the rest 429 unchecked; another address is answered at once; the guessing address is slowed, never locked out', { timeout: 60_000 }, async () => {
    const intervalMs = 400;
    const throttle = new RecordingThrottle({ intervalMs });
    const results: CalloutResult[] = [];
    const received: string[] = [];
    const logs = captureLogger();
    const server = await startCalloutServer({ host: '127.0.0.1', port: 0, tls: undefined }, {
      routes: () => [{ instance: 'A', path: NOTIFY_PATH, ...CONNECTOR }],
      receive: async (instance) => { received.push(instance); },
      onResult: (r) => results.push(r),
      log: logs.log,
      throttle,
    });
    cleanups.push(() => server.close());
    const url = `${server.url}${NOTIFY_PATH}`;
    const body = NOTIFICATION_XML('https://us.api.concursolutions.com/api/expense/expensereport/v1.1/report/R1');
    const guess = (n: number, from = '127.0.0.2') => send(url, { headers: { authorization: basicAuth(CONNECTOR.username, `guess-${n}`) }, body, from });
    const right = (from: string) => send(url, { headers: { authorization: auth }, body, from });

    // The free failures: answered at once, each checked.
    for (let n = 0; n < 5; n++) expect((await guess(n)).status).toBe(401);
    // 19 wrong guesses at once: 8 are admitted (the first checked now, the others one interval apart), 11 refused unchecked.
    const burst = Array.from({ length: 19 }, (_, n) => guess(100 + n));
    await waitFor('8 admitted and 11 refused', () => throttle.waitingCount('127.0.0.2') === 8 && results.filter((r) => r === 'throttled').length === 11);
    // The right password now, from the guessing address: refused like the rest, it is not checked (a 429 tells nothing).
    const hidden = await right('127.0.0.2');
    expect(hidden.status).toBe(429);
    expect(Number(hidden.headers['retry-after'])).toBeGreaterThan(0);
    // Concur, from another address, meanwhile: answered 200 while the guesses are still being paced.
    expect((await right('127.0.0.3')).status).toBe(200);
    expect(throttle.waitingCount('127.0.0.2')).toBeGreaterThan(1);
    const answers = await Promise.all(burst);
    expect(answers.filter((a) => a.status === 401)).toHaveLength(8);
    expect(answers.filter((a) => a.status === 429)).toHaveLength(11);
    // The i-th check of the burst no sooner than i intervals after the first one's slot: never
    // faster than the pace, however late the event loop ran one of them (2 ms for clock rounding).
    const paced = throttle.failures.filter((f) => f.address === '127.0.0.2').slice(5).map((f) => f.at);
    expect(paced).toHaveLength(8);
    const first = throttle.admissions.filter((a) => a.address === '127.0.0.2')[5]!;
    const firstSlot = first.at + (first.admission.kind === 'wait' ? first.admission.ms : 0);
    paced.forEach((at, i) => expect(at - firstSlot, `check ${i}`).toBeGreaterThanOrEqual(i * intervalMs - 2));
    // The right password from the guessing address once its turn comes: slowed, accepted.
    const late = await right('127.0.0.2');
    expect(late.status).toBe(200);
    expect(throttle.admissions.filter((a) => a.address === '127.0.0.2').at(-1)!.admission.kind).toBe('wait');
    expect(received).toEqual(['A', 'A']);
    expect(throttle.failures.filter((f) => f.address === '127.0.0.3')).toEqual([]);
    expect(results.filter((r) => r === 'unauthorized')).toHaveLength(13);
    expect(results.filter((r) => r === 'throttled')).toHaveLength(12);
    expect(logs.raw.join('\n')).not.toMatch(/guess-|a-long-connector-password/);
  });
});

describe('503 when the database cannot take the write (built CLI)', () => {
  it('another process holds the write lock past the busy timeout: 503, nothing stored; once released, the re-send makes exactly one event', { timeout: 90_000 }, async () => {
    const c = await startConnector();
    const other = new Database(c.database);
    cleanups.push(() => {
      if (other.inTransaction) other.exec('ROLLBACK');
      other.close();
    });
    other.exec('BEGIN IMMEDIATE');
    c.h.sim.setCallout({ url: `${c.calloutUrl}${NOTIFY_PATH}`, ...CONNECTOR, retryDelaysMs: [300, 300, 300, 300, 300, 300, 300, 300], timeoutMs: 30_000 });
    const report = c.h.sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    // The store waits 5 s for the lock, then the listener answers 503.
    await waitFor(`a 503 to the simulator (attempts: ${JSON.stringify(c.h.sim.callouts.attempts)})`, () => c.h.sim.callouts.attempts.some((a) => a.status === 503), 30_000);
    expect(other.prepare('SELECT count(*) FROM callouts').pluck().get()).toBe(0);
    expect(other.prepare('SELECT count(*) FROM notifications').pluck().get()).toBe(0);
    other.exec('ROLLBACK');
    await c.h.sim.calloutsSettled();
    expect(c.h.sim.callouts.delivered().map((n) => n.reportId)).toEqual([report.ID]);
    const pushed = () => c.h.receiver.accepted.filter((r) => (r.raw as { notification?: unknown }).notification);
    await waitFor('the pushed event', () => pushed().length === 1, 20_000);
    expect(pushed()[0]!.events.map((e) => e.objectId)).toEqual([report.ID]);
    const attempts = c.h.sim.callouts.attempts.map((a) => a.status);
    expect(attempts.at(-1)).toBe(200);
    expect(attempts.filter((s) => s === 200)).toHaveLength(1);
    const counts = await calloutCounts(c.httpUrl);
    expect(counts.unavailable).toBe(attempts.filter((s) => s === 503).length);
    expect(counts.accepted).toBe(1);
    expect(tableCounts(c.database).callouts).toBe(1);
    const refused = c.p.logs().filter((l) => l.message === 'callout not committed; answered 503 so that Concur sends it again');
    expect(refused.length).toBe(counts.unavailable);
    expect(refused[0]).toMatchObject({ level: 'error', instance: 'ConcurTest' });
    // A moment for a second event that must not come (the polled one is on its own stream).
    await sleep(1000);
    expect(pushed()).toHaveLength(1);
  });
});

describe('paced guessing over random waves of requests from several addresses (in-process, a real listener)', () => {
  const SEEDS = 25;
  const intervalMs = 40;
  const freeFailures = 3;

  /** One seed; a description of what broke, or undefined. */
  async function runSeed(seed: number): Promise<string | undefined> {
    const random = rng(seed);
    const throttle = new RecordingThrottle({ intervalMs, freeFailures, maxWaiting: 3 });
    let received = 0;
    const server = await startCalloutServer({ host: '127.0.0.1', port: 0, tls: undefined }, {
      routes: () => [{ instance: 'A', path: NOTIFY_PATH, ...CONNECTOR }],
      receive: async () => { received++; },
      onResult: () => {},
      log: captureLogger().log,
      throttle,
    });
    try {
      const url = `${server.url}${NOTIFY_PATH}`;
      const body = NOTIFICATION_XML('https://us.api.concursolutions.com/api/expense/expensereport/v1.1/report/R1');
      // Concur never fails; the attacker mostly does; the proxy carries both.
      const senders = [{ from: '127.0.0.20', wrong: 0 }, { from: '127.0.0.21', wrong: 0.9 }, { from: '127.0.0.22', wrong: 0.5 }];
      const wrongChecks = new Map<string, number>();
      const started = Date.now();
      let accepted = 0;
      for (let wave = 0; wave < 10; wave++) {
        const requests = Array.from({ length: 1 + Math.floor(random() * 8) }, () => {
          const sender = senders[Math.floor(random() * senders.length)]!;
          const wrong = random() < sender.wrong;
          const authorization = wrong ? basicAuth(CONNECTOR.username, `guess-${Math.floor(random() * 1e6)}`) : auth;
          return send(url, { headers: { authorization }, body, from: sender.from }).then((a) => ({ ...a, wrong, from: sender.from }));
        });
        for (const a of await Promise.all(requests)) {
          const allowed = a.wrong ? [401, 429] : a.from === senders[0]!.from ? [200] : [200, 429];
          if (!allowed.includes(a.status)) return `seed ${seed}: ${a.wrong ? 'wrong' : 'right'} credentials from ${a.from} answered ${a.status}`;
          if (a.status === 401) wrongChecks.set(a.from, (wrongChecks.get(a.from) ?? 0) + 1);
          if (a.status === 200) accepted++;
        }
        await sleep(Math.floor(random() * 15));
      }
      const elapsed = Date.now() - started;
      for (const [from, checks] of wrongChecks) {
        const allowed = freeFailures + Math.ceil(elapsed / intervalMs) + 1;
        if (checks > allowed) return `seed ${seed}: ${checks} wrong guesses from ${from} checked in ${elapsed} ms, more than the pace allows (${allowed})`;
      }
      if (throttle.admissions.some((a) => a.address === senders[0]!.from && a.admission.kind !== 'now')) return `seed ${seed}: an address without failures was slowed`;
      if (received !== accepted) return `seed ${seed}: ${received} received but ${accepted} answered 200`;
      if (throttle.waitingCount() !== 0) return `seed ${seed}: ${throttle.waitingCount()} requests still counted waiting after all were answered`;
      return undefined;
    } finally {
      await server.close();
    }
  }

  it(`${SEEDS} seeds: answers as the credentials say, guesses never checked faster than the pace, Concur's address never slowed, nothing left waiting`, { timeout: 120_000 }, async () => {
    const failures: string[] = [];
    for (let seed = 1; seed <= SEEDS; seed++) {
      const failure = await runSeed(seed);
      if (failure) failures.push(failure);
    }
    expect(failures).toEqual([]);
  });
});
