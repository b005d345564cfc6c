import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { firstPageUrl } from '../src/poll/requestUrl.js';
import { concurDate } from '../src/sim/concurList.js';
import {
  FLEET_TOKEN_PATH, type FleetRequest, FleetSim, type FleetSimOptions, fleetConfigFor, fleetCredentials, fleetInstanceName,
} from '../src/sim/fleetSim.js';
import { runCli, startCli } from './helpers/cli.js';
import { startReceiver } from './helpers/receiver.js';
import { tempDir, waitFor, writeJson } from './helpers/tmp.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startFleet(options: Partial<FleetSimOptions> = {}) {
  const requests: FleetRequest[] = [];
  const sim = new FleetSim({ companies: 3, onRequest: (r) => requests.push(r), ...options });
  const url = await sim.start();
  cleanups.push(() => sim.stop());
  return { sim, url, requests };
}

type TokenAnswer = { access_token?: string; refresh_token?: string; expires_in?: string; geolocation?: string; error?: string };

async function refresh(url: string, company: number, refreshToken: string, clientOf = company): Promise<{ status: number; body: TokenAnswer }> {
  const c = fleetCredentials(clientOf);
  const res = await fetch(`${url}${FLEET_TOKEN_PATH}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', client_id: c.clientId, client_secret: c.clientSecret, refresh_token: refreshToken }),
  });
  return { status: res.status, body: (await res.json()) as TokenAnswer };
}

/** An access token of `company`, from its first refresh token. */
async function accessToken(url: string, company: number): Promise<string> {
  const { status, body } = await refresh(url, company, fleetCredentials(company).refreshToken);
  expect(status).toBe(200);
  return body.access_token!;
}

type ListAnswer = { Items: { ID: string; LastModifiedDate: string }[]; NextPage: string | null };

async function list(target: string, token: string): Promise<{ status: number; headers: Headers; body: ListAnswer }> {
  const res = await fetch(target, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, headers: res.headers, body: (await res.json()) as ListAnswer };
}

const reportsUrl = (url: string, query = '') => `${url}/api/v3.0/expense/reports?user=ALL&limit=100${query}`;

describe('fleet simulator: token endpoint', () => {
  it('rotates each company refresh token on every refresh and refuses the old one at once with invalid_grant, counted', async () => {
    const { sim, url } = await startFleet({ tokenLifetimeSec: 120 });
    const first = fleetCredentials(1).refreshToken;
    const a = await refresh(url, 1, first);
    expect(a.status).toBe(200);
    expect(a.body.expires_in).toBe('120');
    expect(a.body.geolocation).toBe(url);
    expect(a.body.refresh_token).not.toBe(first);
    expect(sim.currentRefreshToken(1)).toBe(a.body.refresh_token);

    const reused = await refresh(url, 1, first);
    expect(reused).toEqual({ status: 400, body: expect.objectContaining({ error: 'invalid_grant' }) });
    expect(sim.counters.invalidGrant).toBe(1);
    expect(sim.byCompany.invalidGrant[1]).toBe(1);

    const b = await refresh(url, 1, a.body.refresh_token!);
    expect(b.status).toBe(200);
    // The other companies' tokens did not move.
    expect((await refresh(url, 0, fleetCredentials(0).refreshToken)).status).toBe(200);
    expect(sim.counters.invalidGrant).toBe(1);
    expect([...sim.byCompany.tokens]).toEqual([1, 3, 0]);
  });

  it('refuses a company refresh token presented by another company client, and a wrong client secret', async () => {
    const { sim, url } = await startFleet();
    const other = await refresh(url, 0, fleetCredentials(0).refreshToken, 2);
    expect(other).toEqual({ status: 400, body: expect.objectContaining({ error: 'invalid_grant' }) });
    const res = await fetch(`${url}${FLEET_TOKEN_PATH}`, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'refresh_token', client_id: fleetCredentials(0).clientId, client_secret: 'wrong', refresh_token: fleetCredentials(0).refreshToken }),
    });
    expect(res.status).toBe(401);
    expect(sim.counters.invalidClient).toBe(1);
    // Neither attempt used up company 0's refresh token.
    expect((await refresh(url, 0, fleetCredentials(0).refreshToken)).status).toBe(200);
  });
});

describe('fleet simulator: lists', () => {
  it('serves each company only its own records, by the company its access token names', async () => {
    const { sim, url, requests } = await startFleet();
    const mine = sim.change(0);
    const theirs = sim.change(1);
    const entry = sim.change(0, 'entries');
    const token0 = await accessToken(url, 0);
    const token1 = await accessToken(url, 1);
    expect((await list(reportsUrl(url), token0)).body.Items.map((r) => r.ID)).toEqual([mine.id]);
    expect((await list(reportsUrl(url), token1)).body.Items.map((r) => r.ID)).toEqual([theirs.id]);
    const entries = await list(`${url}/api/v3.0/expense/entries?limit=10`, token0);
    expect(entries.body.Items.map((r) => r.ID)).toEqual([entry.id]);
    expect((await list(reportsUrl(url), 'not-a-token')).status).toBe(401);
    expect(sim.counters.unauthorized).toBe(1);
    expect(sim.byCompany.lists.reports[0]).toBe(1);
    expect(sim.byCompany.lists.entries[0]).toBe(1);
    const lists = requests.filter((r) => r.kind === 'list');
    expect(lists.map((r) => [r.company, r.resource])).toEqual([[0, 'reports'], [1, 'reports'], [0, 'entries'], [undefined, 'reports']]);
    expect(lists[2]!.query?.get('limit')).toBe('10');
  });

  it('shows a change in every window that holds its LastModifiedDate and in no other, paged by limit and NextPage', async () => {
    const { sim, url } = await startFleet();
    const before = concurDate(Date.now() - 1000);
    const made = [sim.change(2), sim.change(2), sim.change(2)];
    const updated = sim.change(2, 'reports', made[0]!.id);
    expect(updated.lastModified > made[2]!.lastModified).toBe(true);
    const token = await accessToken(url, 2);

    const after = concurDate(Date.now() + 1000);
    const ids: string[] = [];
    let next: string | null = reportsUrl(url, `&modifiedDateAfter=${before}&modifiedDateBefore=${after}`).replace('limit=100', 'limit=2');
    for (let pages = 0; next !== null && pages < 5; pages++) {
      const page = await list(next, token);
      expect(page.status).toBe(200);
      ids.push(...page.body.Items.map((r) => r.ID));
      next = page.body.NextPage;
    }
    // Oldest change first: the update moved the first report to the end.
    expect(ids).toEqual([made[1]!.id, made[2]!.id, made[0]!.id]);
    expect(sim.records(2, 'reports').find((r) => r.ID === made[0]!.id)?.LastModifiedDate).toBe(updated.lastModified);

    const later = await list(reportsUrl(url, `&modifiedDateAfter=${updated.lastModified}`), token);
    expect(later.body).toEqual({ Items: [], NextPage: null });
    const bad = await list(reportsUrl(url, '&modifiedDateAfter=yesterday'), token);
    expect(bad.status).toBe(400);
  });

  it('answers 429 with Retry-After over a company rate limit, counted for that company alone', async () => {
    const { sim, url } = await startFleet({ rateLimitPerSec: 2 });
    const token0 = await accessToken(url, 0);
    const token1 = await accessToken(url, 1);
    // Six at once span at most two seconds of the clock: at most 4 fit in company 0's limit.
    const burst = await Promise.all(Array.from({ length: 6 }, () => list(reportsUrl(url), token0)));
    const limited = burst.filter((r) => r.status === 429);
    expect(limited.length).toBeGreaterThanOrEqual(2);
    expect(limited.every((r) => r.headers.get('retry-after') === '1')).toBe(true);
    expect((await list(reportsUrl(url), token1)).status).toBe(200);
    expect(sim.byCompany.rateLimited[0]).toBe(limited.length);
    expect(sim.byCompany.rateLimited[1]).toBe(0);
    expect(sim.counters.rateLimited).toBe(limited.length);
  });

  it('sends every answer, token answers included, latencyMs after its request arrived', async () => {
    const latencyMs = 300;
    const { url, requests } = await startFleet({ latencyMs });
    const tokenAnswered = await (async () => {
      await accessToken(url, 0);
      return Date.now();
    })();
    const token = await accessToken(url, 1);
    await list(reportsUrl(url), token);
    const listAnswered = Date.now();
    const [firstToken, , firstList] = requests;
    expect(firstToken?.kind).toBe('token');
    expect(firstList?.kind).toBe('list');
    // Timers may fire a millisecond early; the answers cannot come sooner than that.
    expect(tokenAnswered - firstToken!.atMs).toBeGreaterThanOrEqual(latencyMs - 2);
    expect(listAnswered - firstList!.atMs).toBeGreaterThanOrEqual(latencyMs - 2);
  });
});

describe('fleet simulator: configs for the built daemon', () => {
  it('writes one instance per company that the config loader reads, both resources mapped onto the simulator routes', () => {
    const dir = tempDir();
    const key = 'whsec_' + randomBytes(24).toString('base64');
    const instances = fleetConfigFor([4, 7], 'http://127.0.0.1:9', 'http://127.0.0.1:10/hook', { signatureKey: key, pageSize: 20 });
    expect(instances.map((i) => i.name)).toEqual([fleetInstanceName(4), fleetInstanceName(7)]);
    const config = loadConfig(writeJson(dir, 'poller.config.json', { database: './p.db', instances }));
    const [first] = config.instances;
    expect(first?.auth).toMatchObject({ type: 'oauth2_refresh_token', clientId: fleetCredentials(4).clientId, refreshToken: fleetCredentials(4).refreshToken });
    const urls = first!.resources.map((r) => firstPageUrl(r, 'concur', 'http://127.0.0.1:9', Date.UTC(2026, 10, 26) * 1000));
    expect(urls.map((u) => new URL(u).pathname)).toEqual(['/api/v3.0/expense/reports', '/api/v3.0/expense/entries']);
    expect(urls.every((u) => new URL(u).searchParams.get('limit') === '20')).toBe(true);
  });

  it('lets the built CLI poll three companies, two resources each, delivering every change with no invalid_grant', async () => {
    const { sim, url } = await startFleet({ latencyMs: 50 });
    const key = 'whsec_' + randomBytes(24).toString('base64');
    const receiver = await startReceiver(key);
    cleanups.push(() => receiver.close());
    const dir = tempDir();
    const since = new Date(Date.now() - 1000).toISOString();
    const changes = [0, 1, 2].flatMap((c) => [sim.change(c, 'reports'), sim.change(c, 'entries')]);
    const config = writeJson(dir, 'poller.config.json', { database: './pollbridge.db', instances: fleetConfigFor(3, url, receiver.url, { signatureKey: key }) });
    const result = await runCli(['run', '-c', config, '--once', '--since', since]);
    expect(result.code, result.stderr).toBe(0);
    const got = receiver.accepted.flatMap((r) => {
      const { instanceName } = (JSON.parse(r.body) as { message: { instanceName: string } }).message;
      return r.events.map((e) => `${instanceName} ${e.objectType} ${e.objectId}`);
    });
    expect(got.sort()).toEqual(changes.map((c) => `${fleetInstanceName(c.company)} ${c.resource} ${c.id}`).sort());
    expect(sim.counters.invalidGrant).toBe(0);
    expect([...sim.byCompany.tokens]).toEqual([1, 1, 1]);
  });
});

describe('pollbridge sim --companies', () => {
  it('serves many companies and writes one owner-only instance file each, which the built daemon polls; refuses to overwrite them', async () => {
    const key = 'whsec_' + randomBytes(24).toString('base64');
    const receiver = await startReceiver(key);
    cleanups.push(() => receiver.close());
    const dir = tempDir();
    const instancesDir = join(dir, 'instances.d');
    const sim = startCli(['sim', '--port', '0', '--rate', '0', '--companies', '3', '--latency-ms', '20', '--instances-dir', instancesDir, '--callback-url', receiver.url]);
    try {
      const banner = await waitFor('the banner', () => sim.stdout.find((l) => l.startsWith('Concur simulator of 3 companies on ')));
      expect(banner).toMatch(/every answer 20 ms late/);
      const files = readdirSync(instancesDir).sort();
      expect(files).toEqual([0, 1, 2].map((c) => `${fleetInstanceName(c)}.json`));
      expect(statSync(join(instancesDir, files[0]!)).mode & 0o777).toBe(0o600);
      const instances = files.map((f) => JSON.parse(readFileSync(join(instancesDir, f), 'utf8')) as unknown);
      const config = writeJson(dir, 'poller.config.json', { database: './pollbridge.db', instances });
      const once = await runCli(['run', '-c', config, '--once'], { POLLBRIDGE_SIGNATURE_KEY: key });
      expect(once.code, once.stderr).toBe(0);
      expect(once.logs.filter((l) => l.message === 'poll finished')).toHaveLength(6);

      const again = await runCli(['sim', '--port', '0', '--companies', '3', '--instances-dir', instancesDir, '--callback-url', receiver.url]);
      expect(again.code).toBe(1);
      expect(again.stderr).toBe(`pollbridge: 3 instance file(s) already exist in ${instancesDir} (the first: ${join(instancesDir, files[0]!)}); choose an empty --instances-dir`);
    } finally {
      sim.child.kill('SIGTERM');
      expect(await sim.exited).toEqual({ code: 0, signal: null });
    }
  });

  it('says which options go together', async () => {
    const alone = await runCli(['sim', '--port', '0', '--latency-ms', '5']);
    expect(alone.stderr).toBe('pollbridge: --latency-ms and --instances-dir go with --companies (the simulator of many companies)');
    const noCallback = await runCli(['sim', '--port', '0', '--companies', '2', '--instances-dir', tempDir()]);
    expect(noCallback.stderr).toBe('pollbridge: --instances-dir needs --callback-url, the URL the instances deliver their events to');
  });
});
