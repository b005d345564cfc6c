import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { geolocationOrigin, refreshMarginMs, refreshUrl } from '../src/poll/auth.js';
import { runCli, startCli } from './helpers/cli.js';
import { harness } from './helpers/harness.js';
import { SIM_ENV } from './helpers/simConfig.js';
import { waitFor } from './helpers/tmp.js';

const POLL_FAILED = 'poll failed; the next poll goes on from its last committed part';
const UNSAVED = /^the rotated refresh token could not be saved; it is kept in memory/;

/** A minute ago, as the daemon's `since` (µs): reports made by the test are announced. */
const since = () => (Date.now() - 60_000) * 1000;

/** The refresh token the daemon stored, read as another process would. */
function storedRefreshToken(dir: string): string | undefined {
  const db = new Database(join(dir, 'state/pollbridge.db'), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT refresh_token FROM auth_state').pluck().get() as string | undefined) ?? undefined;
  } finally {
    db.close();
  }
}

/** A port nothing listens on right now, for a config that `status` must be able to read it from. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('when to refresh, and where', () => {
  it('the margin before expiry is a tenth of the token life, at most a minute', () => {
    expect(refreshMarginMs(3_600_000)).toBe(60_000);
    expect(refreshMarginMs(600_000)).toBe(60_000);
    expect(refreshMarginMs(20_000)).toBe(2_000);
    expect(refreshMarginMs(0)).toBe(0);
  });

  it('refreshes go to the geolocation host with the configured path, once a geolocation is known', () => {
    const us = 'https://us.api.concursolutions.com/oauth2/v0/token';
    expect(refreshUrl(us, undefined)).toBe(us);
    expect(refreshUrl(us, 'https://emea.api.concursolutions.com')).toBe('https://emea.api.concursolutions.com/oauth2/v0/token');
    expect(refreshUrl('http://127.0.0.1:8080/proxy/oauth2/v0/token', 'http://127.0.0.1:9090')).toBe('http://127.0.0.1:9090/proxy/oauth2/v0/token');
  });

  it('a geolocation is taken as an https origin (http only beside an http token URL), anything else ignored', () => {
    const us = 'https://us.api.concursolutions.com/oauth2/v0/token';
    expect(geolocationOrigin('https://emea.api.concursolutions.com', us)).toBe('https://emea.api.concursolutions.com');
    expect(geolocationOrigin('https://emea.api.concursolutions.com/', us)).toBe('https://emea.api.concursolutions.com');
    expect(geolocationOrigin('ftp://emea.api.concursolutions.com', us)).toBeUndefined();
    expect(geolocationOrigin('emea', us)).toBeUndefined();
    expect(geolocationOrigin(42, us)).toBeUndefined();
    // Never from https to http: the refresh carries the client secret and the refresh token.
    expect(geolocationOrigin('http://emea.api.concursolutions.com', us)).toBeUndefined();
    expect(geolocationOrigin('http://127.0.0.1:9090', 'http://127.0.0.1:8080/oauth2/v0/token')).toBe('http://127.0.0.1:9090');
  });
});

describe('Concur token refresh', () => {
  // The database thread runs built code: these run the built CLI, as systemd would.
  it('a stop while a refresh is in flight lets it finish and stores the rotated token: the next run polls', { timeout: 60_000 }, async () => {
    const h = await harness();
    h.sim.createReport();
    // Concur rotates the refresh token, then answers late.
    h.sim.faults.tokenDelayMs = 1500;
    const p = startCli(['run', '-c', h.configFile, '--since', new Date(Date.now() - 60_000).toISOString()], SIM_ENV);
    await waitFor('the refresh in flight', () => h.sim.tokenRequestCount === 1);
    p.child.kill('SIGTERM');
    expect((await p.exited).code).toBe(0);
    expect(storedRefreshToken(h.dir)).toBe(h.sim.issuedTokens[1]);

    h.sim.faults.tokenDelayMs = 0;
    const once = await runCli(['run', '--once', '-c', h.configFile], SIM_ENV);
    expect(once.logs.filter((l) => l.message === POLL_FAILED)).toEqual([]);
    expect(once.code).toBe(0);
    expect(h.events()).toHaveLength(1);
  });

  it('a reload while a refresh is in flight keeps the rotated token: polling goes on without invalid_grant', { timeout: 60_000 }, async () => {
    const h = await harness();
    h.sim.faults.tokenDelayMs = 1500;
    const p = startCli(['run', '-c', h.configFile], SIM_ENV);
    try {
      await waitFor('the refresh in flight', () => h.sim.tokenRequestCount === 1);
      p.child.kill('SIGHUP');
      await p.waitForLog('config reloaded');
      h.sim.faults.tokenDelayMs = 0;
      const report = h.sim.createReport();
      await waitFor('the report announced after the reload', () => h.events().some((e) => e.objectId === report.ID));
      expect(p.logs().filter((l) => l.message === POLL_FAILED)).toEqual([]);
      expect(h.sim.tokenRequestCount).toBe(1);
    } finally {
      p.child.kill('SIGTERM');
      expect((await p.exited).code).toBe(0);
    }
  });

  it('a 503, a 429 and a dropped connection at the token endpoint are retried within the poll', async () => {
    const h = await harness();
    h.sim.createReport();
    h.sim.faults.tokenFailures.push({ status: 503, retryAfter: '1' }, { status: 429 }, { status: 0, reset: true });
    const { daemon, logs } = h.daemon({ since: since() });
    expect(await daemon.runOnce()).toMatchObject({ failedPolls: 0 });
    expect(h.sim.tokenRequestCount).toBe(4);
    expect(logs.messages(POLL_FAILED)).toEqual([]);
    expect(h.events()).toHaveLength(1);
  });

  it('a token endpoint still failing after the retries fails the poll with its last answer', async () => {
    const h = await harness();
    h.sim.faults.tokenFailures.push(...Array.from({ length: 4 }, () => ({ status: 503 })));
    const { daemon, logs } = h.daemon();
    expect(await daemon.runOnce()).toMatchObject({ failedPolls: 1 });
    expect(h.sim.tokenRequestCount).toBe(4);
    expect(logs.messages(POLL_FAILED)[0]!.error).toBe(`token endpoint ${h.simUrl}/oauth2/v0/token answered 503`);
  });

  it('an OAuth error (invalid_grant) is final: one token request, the poll fails', async () => {
    const h = await harness();
    h.sim.faults.tokenError = { status: 400, error: 'invalid_grant' };
    const { daemon, logs } = h.daemon();
    expect(await daemon.runOnce()).toMatchObject({ failedPolls: 1 });
    expect(h.sim.tokenRequestCount).toBe(1);
    expect(logs.messages(POLL_FAILED)[0]!.error).toMatch(/HTTP 400, invalid_grant/);
  });

  it('a token living 20 s is refreshed once for a poll of many pages, not before each page', async () => {
    const h = await harness({}, { tokenLifetimeSec: 20 });
    for (let i = 0; i < 12; i++) h.sim.createReport();
    const { daemon } = h.daemon({ since: since() });
    expect(await daemon.runOnce()).toMatchObject({ failedPolls: 0 });
    expect(h.events()).toHaveLength(12);
    expect(h.sim.listQueries.length).toBeGreaterThanOrEqual(4);
    expect(h.sim.tokenRequestCount).toBe(1);
  });

  it('an EMEA tenant configured with the US token URL refreshes at its geolocation after the first refresh', async () => {
    const h = await harness({}, { separateGeolocation: true });
    h.sim.createReport();
    const first = h.daemon({ since: since() });
    expect(await first.daemon.runOnce()).toMatchObject({ failedPolls: 0 });
    expect(h.sim.tokenRequestBases).toEqual([h.simUrl]);

    // The stored access token is refused: the next daemon refreshes with the stored refresh token.
    h.sim.revokeAccessTokens();
    h.sim.createReport();
    const second = h.daemon();
    expect(await second.daemon.runOnce()).toMatchObject({ failedPolls: 0 });
    expect(h.sim.tokenRequestBases).toEqual([h.simUrl, h.sim.geolocationUrl]);
    expect(second.logs.messages(POLL_FAILED)).toEqual([]);
    expect(h.events()).toHaveLength(2);
  });

  it('a rotated refresh token that cannot be saved is kept in memory, reported (log, /healthz, status), and saved once the database takes writes', { timeout: 120_000 }, async () => {
    const port = await freePort();
    const h = await harness({}, {}, (c) => ({ ...c, http: { listen: `127.0.0.1:${port}` } }));
    const p = startCli(['run', '-c', h.configFile], SIM_ENV);
    try {
      const url = (await p.waitForLog('health and metrics listening')).url as string;
      const healthz = async () => {
        const res = await fetch(`${url}/healthz`);
        return { status: res.status, reasons: ((await res.json()) as { reasons: string[] }).reasons };
      };
      await waitFor('the first refresh token stored', () => h.sim.tokenRequestCount === 1 && storedRefreshToken(h.dir) === h.sim.issuedTokens[1]);

      // As a sqlite3 shell left in an open write transaction would.
      const holder = new Database(join(h.dir, 'state/pollbridge.db'));
      holder.prepare('BEGIN IMMEDIATE').run();
      try {
        h.sim.revokeAccessTokens();
        const error = await waitFor('the error line', () => p.logs().find((l) => UNSAVED.test(String(l.message))), 60_000);
        expect(error).toMatchObject({ level: 'error', instance: 'ConcurTest', error: 'database is locked', attempts: 3 });
        expect(error.message).toContain('put a new refresh token in the config and reload');
        expect(h.sim.tokenRequestCount).toBe(2);

        // Polling goes on with the token only in memory: the provider accepts its requests.
        const served = h.sim.listQueries.length;
        await waitFor('a page read with the new access token', () => h.sim.listQueries.length > served, 30_000);

        const health = await healthz();
        expect(health.status).toBe(503);
        const reason = /^ConcurTest: the rotated refresh token could not be saved since \S+ \(database is locked\); it is only in memory, and saving is retried: if pollbridge stops before it is saved, put a new refresh token in the config and reload$/;
        expect(health.reasons).toContainEqual(expect.stringMatching(reason));

        const status = await runCli(['status', '-c', h.configFile], SIM_ENV);
        expect(status.code).toBe(0);
        expect(status.stdout).toContain(`daemon (http://127.0.0.1:${port}/healthz): unhealthy`);
        expect(status.stdout).toMatch(/^ {2}ConcurTest: the rotated refresh token could not be saved since /m);
        expect(storedRefreshToken(h.dir)).toBe(h.sim.issuedTokens[1]);
      } finally {
        holder.prepare('ROLLBACK').run();
        holder.close();
      }

      await p.waitForLog('the rotated refresh token is saved now', 1, 30_000);
      expect(storedRefreshToken(h.dir)).toBe(h.sim.issuedTokens[3]);
      await waitFor('healthy again', async () => (await healthz()).status === 200, 30_000);
      const status = await runCli(['status', '-c', h.configFile, '--json'], SIM_ENV);
      expect(JSON.parse(status.stdout)).toMatchObject({ daemon: { status: 'ok', reasons: [] } });
    } finally {
      p.child.kill('SIGTERM');
      expect((await p.exited).code).toBe(0);
    }
  });
});
