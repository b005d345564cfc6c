import { X509Certificate } from 'node:crypto';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { basicAuth, CONNECTOR, NOTIFICATION_XML, NOTIFY_PATH, withCallout } from './helpers/callout.js';
import { startCli } from './helpers/cli.js';
import { harness } from './helpers/harness.js';
import { SIM_ENV } from './helpers/simConfig.js';
import { waitFor } from './helpers/tmp.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const FIXTURES = fileURLToPath(new URL('./fixtures/tls/', import.meta.url));
const fixture = (name: string) => readFileSync(join(FIXTURES, name), 'utf8');
const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;
const LISTENING = "Concur's callout answered";
const RELOADED = 'config reloaded';
const REFUSED = 'config reload refused: the running config stays';

type Config = { instances: { name: string; configuration: Record<string, unknown> }[] };

/** The built CLI answering the callout; `tls`: its certificate and key copied to files the test may replace. */
async function startDaemon(tlsPair?: 'a') {
  let files: { cert: string; key: string } | undefined;
  const h = await harness({}, {}, (c) => withCallout(c));
  if (tlsPair) {
    files = { cert: join(h.dir, 'callout.crt'), key: join(h.dir, 'callout.key') };
    copyFileSync(join(FIXTURES, `${tlsPair}.crt`), files.cert);
    copyFileSync(join(FIXTURES, `${tlsPair}.key`), files.key);
    editConfig(h.configFile, (c) => { (c as Config & { callout: { tls?: unknown } }).callout.tls = files; });
  }
  const p = startCli(['run', '-c', h.configFile], SIM_ENV);
  cleanups.push(async () => {
    if (p.child.exitCode === null && p.child.signalCode === null) {
      p.child.kill('SIGTERM');
      await p.exited;
    }
  });
  const url = String((await p.waitForLog(LISTENING)).url);
  await p.waitForLog('pollbridge started');
  return { h, p, url, port: Number(new URL(url).port), files: files! };
}

function editConfig(file: string, edit: (c: Config) => void): void {
  const json = JSON.parse(readFileSync(file, 'utf8')) as Config;
  edit(json);
  writeFileSync(file, JSON.stringify(json, null, 2));
}

/** SIGHUP, and the outcome's log line (the n-th of its kind). */
async function reload(d: Awaited<ReturnType<typeof startDaemon>>, expect: typeof RELOADED | typeof REFUSED, nth: number) {
  d.p.child.kill('SIGHUP');
  return d.p.waitForLog(expect, nth);
}

/** A new TLS connection's view of the server: its certificate's fingerprint and the protocol, or the error. */
function handshake(port: number, options: tls.ConnectionOptions = {}): Promise<{ fingerprint256: string; protocol: string | null } | { error: NodeJS.ErrnoException }> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options }, () => {
      const result = { fingerprint256: socket.getPeerCertificate().fingerprint256, protocol: socket.getProtocol() };
      socket.end();
      resolve(result);
    });
    socket.on('error', (error: NodeJS.ErrnoException) => resolve({ error }));
  });
}

function request(url: string, headers: Record<string, string>, body: string, ca?: string): Promise<number> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = (target.protocol === 'https:' ? https : http).request(target, { method: 'POST', headers: { 'content-type': 'application/xml', ...headers }, agent: false, ...(ca ? { ca } : {}) }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const pushedIds = (h: Awaited<ReturnType<typeof harness>>) =>
  h.receiver.accepted.filter((r) => (r.raw as { notification?: unknown }).notification).flatMap((r) => r.events.map((e) => e.objectId));

/** The simulator, as Concur, pushes a new submitted report over `url`, trusting `ca`; its event arrives. */
async function pushOne(d: Awaited<ReturnType<typeof startDaemon>>, ca?: string) {
  d.h.sim.setCallout({ url: `${d.url}${NOTIFY_PATH}`, ...CONNECTOR, retryDelaysMs: [100, 100, 100], ...(ca ? { ca } : {}) });
  const report = d.h.sim.createReport({ ApprovalStatusCode: 'A_PEND' });
  await d.h.sim.calloutsSettled();
  expect(d.h.sim.callouts.delivered().map((n) => n.reportId)).toContain(report.ID);
  await waitFor(`the pushed event of ${report.ID}`, () => pushedIds(d.h).includes(report.ID) || undefined, 20_000);
}

describe('the callout over TLS (built CLI)', () => {
  it('the simulator pushes over HTTPS with the self-signed certificate and the event arrives; TLS 1.1 is refused, 1.2 served', { timeout: 60_000 }, async () => {
    const d = await startDaemon('a');
    expect(d.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    await pushOne(d, fixture('a.crt'));
    // The client allows TLS 1.1 (security level 0): only the server can be the one that refuses.
    const old = await handshake(d.port, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
    expect('error' in old && old.error.code).toBe('ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
    // Counted and said, as every other refusal is.
    expect(await d.p.waitForLog('callout refused'), JSON.stringify(d.p.logs().filter((l) => l.message === 'callout refused'))).toMatchObject({ result: 'tls_failed', from: '127.0.0.1' });
    expect(await handshake(d.port, { maxVersion: 'TLSv1.2' })).toMatchObject({ protocol: 'TLSv1.2', fingerprint256: fingerprint(fixture('a.crt')) });
    // Plain HTTP to the TLS port: the connection is dropped, nothing answered in clear.
    await expect(request(`http://127.0.0.1:${d.port}${NOTIFY_PATH}`, { authorization: basicAuth(CONNECTOR.username, CONNECTOR.password) }, NOTIFICATION_XML('https://x.example/r'))).rejects.toThrow(/socket hang up|ECONNRESET/);
  });

  it('a certificate renewed on disk is served to new connections after SIGHUP, without a restart; a key that does not match is refused and the old pair kept', { timeout: 90_000 }, async () => {
    const d = await startDaemon('a');
    const pid = d.p.child.pid;
    expect((await handshake(d.port)) as object).toMatchObject({ fingerprint256: fingerprint(fixture('a.crt')) });

    copyFileSync(join(FIXTURES, 'b.crt'), d.files.cert);
    copyFileSync(join(FIXTURES, 'b.key'), d.files.key);
    await reload(d, RELOADED, 1);
    expect(await handshake(d.port)).toMatchObject({ fingerprint256: fingerprint(fixture('b.crt')), protocol: 'TLSv1.3' });
    const old = await handshake(d.port, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
    expect('error' in old && old.error.code).toBe('ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
    // Verified against b alone: the simulator trusts only the new certificate now.
    await pushOne(d, fixture('b.crt'));

    copyFileSync(join(FIXTURES, 'a.crt'), d.files.cert);
    copyFileSync(join(FIXTURES, 'other.key'), d.files.key);
    const refused = await reload(d, REFUSED, 1);
    expect(JSON.stringify(refused)).toMatch(/callout\.tls\.key.*is not the private key of the certificate/);
    expect(JSON.stringify(d.p.logs())).not.toContain(fixture('other.key').split('\n')[1]!);
    expect(await handshake(d.port)).toMatchObject({ fingerprint256: fingerprint(fixture('b.crt')) });
    await pushOne(d, fixture('b.crt'));

    expect(d.p.child.pid).toBe(pid);
    expect(d.p.child.exitCode).toBeNull();
    expect(d.p.logs().filter((l) => l.message === LISTENING)).toHaveLength(1);
    expect(d.p.logs().filter((l) => l.message === 'pollbridge started')).toHaveLength(1);
  });
});

describe('routes follow the config on SIGHUP, on the same listener (built CLI)', () => {
  it("an instance added answers on its path, removed answers 404; a changed password: the old one 401, the new one 200", { timeout: 90_000 }, async () => {
    const d = await startDaemon();
    const pid = d.p.child.pid;
    const body = NOTIFICATION_XML(`${d.h.simUrl}/api/expense/expensereport/v1.1/report/NOPE`);
    const A = basicAuth(CONNECTOR.username, CONNECTOR.password);
    const B = { path: '/second/v1.0/notify', auth: basicAuth('connector-two', 'second-connector-password') };
    const post = (path: string, authorization: string) => request(`${d.url}${path}`, { authorization }, body);
    expect(await post(B.path, B.auth)).toBe(404);

    editConfig(d.h.configFile, (c) => {
      const first = c.instances[0]!;
      c.instances.push({ ...first, name: 'ConcurTwo', configuration: { ...first.configuration, 'pollbridge.callout.path': B.path, 'pollbridge.callout.username': 'connector-two', 'pollbridge.callout.password': 'second-connector-password' } });
    });
    await reload(d, RELOADED, 1);
    expect(await post(B.path, B.auth)).toBe(200);
    expect(await post(NOTIFY_PATH, A)).toBe(200);
    // Each instance's credentials on its own path only.
    expect(await post(B.path, A)).toBe(401);

    editConfig(d.h.configFile, (c) => { c.instances.pop(); });
    await reload(d, RELOADED, 2);
    expect(await post(B.path, B.auth)).toBe(404);
    expect(await post(NOTIFY_PATH, A)).toBe(200);

    editConfig(d.h.configFile, (c) => { c.instances[0]!.configuration['pollbridge.callout.password'] = 'a-new-connector-password'; });
    await reload(d, RELOADED, 3);
    expect(await post(NOTIFY_PATH, A)).toBe(401);
    expect(await post(NOTIFY_PATH, basicAuth(CONNECTOR.username, 'a-new-connector-password'))).toBe(200);

    expect(d.p.child.pid).toBe(pid);
    expect(d.p.child.exitCode).toBeNull();
    expect(d.p.logs().filter((l) => l.message === LISTENING)).toHaveLength(1);
    const output = [...d.p.stdout, ...d.p.stderr].join('\n');
    for (const secret of [CONNECTOR.password, 'second-connector-password', 'a-new-connector-password']) expect(output).not.toContain(secret);
  });
});
