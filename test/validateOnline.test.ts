import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SIM_CREDENTIALS } from '../src/sim/concurSim.js';
import { acquireDaemonLock } from '../src/store/lock.js';
import { PgStore } from '../src/store/pg/pgStore.js';
import { SqliteStore } from '../src/store/sqliteStore.js';
import { runCli } from './helpers/cli.js';
import { harness } from './helpers/harness.js';
import { describePg, freshPgDatabase } from './helpers/pg.js';
import { asGenericApi, SIM_ENV } from './helpers/simConfig.js';
import { waitFor } from './helpers/tmp.js';

type Harness = Awaited<ReturnType<typeof harness>>;

const online = (h: Harness) => runCli(['validate', '--online', '-c', h.configFile], SIM_ENV);

/** The lines of the check itself, after validate's one-line summary. */
const steps = (stdout: string): string[] => stdout.split('\n').slice(1);

/** Rows of the tables that hold the daemon's progress and its outbox. */
function progressRows(h: Harness): Record<string, number> {
  const db = new Database(join(h.dir, 'state', 'pollbridge.db'), { readonly: true });
  try {
    const count = (table: string): number => (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    return { streams: count('streams'), notifications: count('notifications'), seen: count('seen') };
  } finally {
    db.close();
  }
}

function neverShowsASecret(h: Harness, output: string): void {
  expect(h.sim.issuedTokens.length).toBeGreaterThan(0);
  for (const secret of [...h.sim.issuedTokens, DEFAULT_SIM_CREDENTIALS.clientSecret, DEFAULT_SIM_CREDENTIALS.refreshToken, h.key]) expect(output).not.toContain(secret);
}

describe('pollbridge validate --online', () => {
  it('gets a token, reads the first page, posts a signed test notification, and touches no progress', async () => {
    const h = await harness();
    for (let i = 0; i < 4; i++) h.sim.createReport();
    const r = await online(h);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = steps(r.stdout);
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^ConcurTest token: ok: a new access token from the token endpoint; a rotated refresh token is saved in .*pollbridge\.db, as the daemon saves it$/);
    expect(lines[1]).toMatch(/^ConcurTest reports first page: ok: 3 record\(s\) changed in the last hour, more pages follow \(GET http:\/\/127\.0\.0\.1:\d+\/api\/v3\.0\/expense\/reports\?/);
    expect(lines[2]).toMatch(/^ConcurTest callback: ok: HTTP 200 in \d+ ms \(POST http:\/\/127\.0\.0\.1:\d+\/hook, test notification \w+\)$/);
    neverShowsASecret(h, r.stdout + r.stderr);

    // The receiver verified both signatures (it refuses anything else) of a notification marked as a test twice.
    expect(h.receiver.failures).toEqual([]);
    expect(h.receiver.accepted).toHaveLength(1);
    const test = h.receiver.accepted[0]!;
    expect(test.headers['pollbridge-test']).toBe('1');
    expect(JSON.parse(test.body)).toEqual({
      message: { eventId: test.id, instanceName: 'ConcurTest', elementKey: 'concur', test: true, events: [], raw: { objectType: 'pollbridge.test' } },
    });
    expect(lines[2]).toContain(test.id);

    // Nothing of the daemon's progress: no stream, no change seen, nothing in the outbox.
    expect(progressRows(h)).toEqual({ streams: 0, notifications: 0, seen: 0 });
    // The simulator rotated the refresh token: the daemon starts with the one the check saved,
    // and with its access token (no second token request).
    expect(h.sim.tokenRequestCount).toBe(1);
    const run = await runCli(['run', '--once', '-c', h.configFile], SIM_ENV);
    expect(run.code).toBe(0);
    expect(h.sim.tokenRequestCount).toBe(1);
    expect(run.logs.find((l) => l.message === 'poll finished')).toMatchObject({ settled: true });
  });

  it('checks a generic API with a bearer token without opening the database, and says which instances it skipped', async () => {
    const h = await harness({}, {}, (base) => {
      const generic = asGenericApi(base, '/generic/v1/reports?updated_since=${date:yyyy-MM-dd\'T\'HH:mm:ss.SSSXXX}&per_page=2');
      const off = { ...base.instances[0]!, name: 'Off', configuration: { ...base.instances[0]!.configuration, 'event.notification.enabled': 'false' } };
      return { ...generic, instances: [...generic.instances, off] };
    });
    for (let i = 0; i < 3; i++) h.sim.createReport();
    const r = await online(h);
    expect(r.code).toBe(0);
    expect(steps(r.stdout)).toEqual([
      'ConcurTest token: ok: no token to get (auth bearer): the first page proves the credentials',
      expect.stringMatching(/^ConcurTest reports first page: ok: 2 record\(s\) changed in the last hour, more pages follow \(GET http:\/\/127\.0\.0\.1:\d+\/generic\/v1\/reports\?updated_since=/),
      expect.stringMatching(/^ConcurTest callback: ok: HTTP 200/),
      'Off: disabled, not checked',
    ]);
    expect(existsSync(join(h.dir, 'state'))).toBe(false);
    expect(h.receiver.accepted.map((n) => JSON.parse(n.body).message.elementKey)).toEqual(['tickets-api']);
  });

  it('uses a stored access token without a refresh', async () => {
    const h = await harness();
    expect((await online(h)).code).toBe(0);
    const again = await online(h);
    expect(again.code).toBe(0);
    expect(steps(again.stdout)[0]).toMatch(/^ConcurTest token: ok: the stored access token \(valid until \d{4}-\d\d-\d\dT/);
    expect(h.sim.tokenRequestCount).toBe(1);
    expect(h.receiver.accepted).toHaveLength(2);
  });

  it('reports a failing page read, and still checks the callback (exit 1)', async () => {
    const h = await harness();
    h.sim.faults.listFailures.push({ status: 403, body: '{"Message":"user=ALL needs the Web Services Admin role"}' });
    const r = await online(h);
    expect(r.code).toBe(1);
    const lines = steps(r.stdout);
    expect(lines[0]).toMatch(/^ConcurTest token: ok: /);
    expect(lines[1]).toMatch(/^ConcurTest reports first page: FAILED: GET http:\/\/127\.0\.0\.1:\d+\/api\/v3\.0\/expense\/reports\?.* answered 403: \{"Message":"user=ALL needs the Web Services Admin role"\}$/);
    expect(lines[2]).toMatch(/^ConcurTest callback: ok: HTTP 200/);
    neverShowsASecret(h, r.stdout + r.stderr);
  });

  it('reports a refused token, and reads no page without one (exit 1)', async () => {
    const h = await harness();
    h.sim.faults.tokenError = { status: 400, error: 'invalid_grant' };
    const r = await online(h);
    expect(r.code).toBe(1);
    expect(steps(r.stdout)).toEqual([
      expect.stringMatching(/^ConcurTest token: FAILED: token refresh refused by http:\/\/127\.0\.0\.1:\d+\/oauth2\/v0\/token: HTTP 400, invalid_grant \(simulated failure\)$/),
      'ConcurTest reports first page: FAILED: not read: no token',
      expect.stringMatching(/^ConcurTest callback: ok: /),
    ]);
    expect(h.sim.listQueries).toHaveLength(0);
  });

  it('reports a receiver that answers 500, with what it said (exit 1)', async () => {
    const h = await harness({}, {}, undefined, () => ({ status: 500, body: 'database\n  is down' }));
    const r = await online(h);
    expect(r.code).toBe(1);
    const lines = steps(r.stdout);
    expect(lines[1]).toMatch(/^ConcurTest reports first page: ok: 0 record\(s\)/);
    expect(lines[2]).toMatch(/^ConcurTest callback: FAILED: HTTP 500: "database is down" \(POST http:\/\/127\.0\.0\.1:\d+\/hook, test notification \w+\)$/);
    expect(progressRows(h)).toEqual({ streams: 0, notifications: 0, seen: 0 });
  });

  it('with the daemon running: uses the access token it stored, never rotates its refresh token', async () => {
    const h = await harness({ 'event.poller.refresh_interval': '0.02' });
    const { daemon, logs } = h.daemon();
    await daemon.start();
    await waitFor('a first poll', () => logs.messages('poll finished').length > 0);
    const tokensBefore = h.sim.tokenRequestCount;
    const r = await online(h);
    expect(r.code).toBe(0);
    expect(steps(r.stdout)[0]).toMatch(/^ConcurTest token: ok: the access token the running daemon stored \(valid until .*\); not refreshed while the daemon runs$/);
    expect(h.sim.tokenRequestCount).toBe(tokensBefore);
    // The daemon goes on polling with its own tokens.
    const polls = logs.messages('poll finished').length;
    h.sim.revokeAccessTokens();
    await waitFor('two more polls', () => logs.messages('poll finished').length >= polls + 2);
    expect(logs.messages('poll failed; the next poll goes on from its last committed part')).toEqual([]);
  });

  it('with the database held by a daemon that stored no valid access token: refuses to refresh (exit 1)', async () => {
    const h = await harness();
    const database = join(h.dir, 'state', 'pollbridge.db');
    // As a daemon holds it while its first token request is still failing.
    const lock = acquireDaemonLock(database);
    await new SqliteStore(database).close();
    try {
      const r = await online(h);
      expect(r.code).toBe(1);
      expect(steps(r.stdout)).toEqual([
        expect.stringMatching(/^ConcurTest token: FAILED: not checked: a daemon is running on .*pollbridge\.db and has stored no valid access token for this configuration; a refresh here would rotate the refresh token that daemon holds/),
        'ConcurTest reports first page: FAILED: not read: no token',
        expect.stringMatching(/^ConcurTest callback: ok: /),
      ]);
      expect(h.sim.tokenRequestCount).toBe(0);
    } finally {
      lock.release();
    }
  });
});

describePg('pollbridge validate --online on PostgreSQL', () => {
  it('refreshes under the token lock and saves the rotated refresh token in the database, as a replica would; no file is made of the URL', async () => {
    const url = await freshPgDatabase('online');
    const h = await harness({}, {}, (c) => ({ ...c, database: url }));
    const r = await runCli(['validate', '--online', '-c', h.configFile], SIM_ENV);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(steps(r.stdout)[0]).toMatch(/^ConcurTest token: ok: a new access token from the token endpoint; a rotated refresh token is saved in postgres:\/\/postgres@127\.0\.0\.1:\d+\/online_\w+, as the daemon saves it$/);
    const store = await PgStore.open(url, { readonly: true });
    try {
      const saved = await store.loadAuthState('ConcurTest');
      expect(saved?.refreshToken).toEqual(expect.any(String));
      expect(saved?.refreshToken).not.toBe(DEFAULT_SIM_CREDENTIALS.refreshToken);
    } finally {
      await store.close();
    }
    // The stored one is the one Concur now takes: a second check (its stored access token cleared) refreshes with it.
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    await db.query('UPDATE auth_state SET access_token = NULL, access_expires_at = NULL');
    await db.end();
    const again = await runCli(['validate', '--online', '-c', h.configFile], SIM_ENV);
    expect(again.code).toBe(0);
    expect(steps(again.stdout)[0]).toMatch(/^ConcurTest token: ok: a new access token/);
    // The URL was never taken for a SQLite path (a folder "postgres:" beside the config or here).
    expect([...readdirSync(h.dir), ...readdirSync(process.cwd())].filter((f) => f.startsWith('postgres'))).toEqual([]);
    neverShowsASecret(h, r.stdout + r.stderr);
  });
});
