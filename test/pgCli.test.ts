import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import { expect, it } from 'vitest';
import { PgStore } from '../src/store/pg/pgStore.js';
import { SqliteStore } from '../src/store/sqliteStore.js';
import type { PageCommit, Store } from '../src/store/types.js';
import { runCli } from './helpers/cli.js';
import { describePg, freshPgDatabase } from './helpers/pg.js';
import { SIM_ENV, simConfig } from './helpers/simConfig.js';
import { tempDir, writeJson } from './helpers/tmp.js';

// `status`, `events` and `replay` against a PostgreSQL URL, through the built CLI: what they
// print is what they print for SQLite, and a database out of reach is one line, no password.

const DAY = 86_400_000;

const page = (objectIds: string[], ids: string[]): PageCommit => ({
  changes: objectIds.map((objectId) => ({ objectId, updated: 1_700_000_000_000_000, event: `{"objectId":"${objectId}"}`, record: `{"ID":"${objectId}"}` })),
  notifications: { instanceName: 'Docs', elementKey: 'concur', objectType: 'reports', maxEvents: 2, ids },
  rejected: [{ position: 'page 1 item 9', reason: 'no usable id', record: '{}' }],
});

/** The same history in any store: two streams, one failing, three notifications, a rejected record. */
async function fill(store: Store, at: number): Promise<void> {
  const [reports, trips] = await store.openStreams([
    { instance: 'Docs', resource: 'reports', initialCursor: 1_600_000_000_000_000 }, { instance: 'Acme', resource: 'trips', initialCursor: 1_650_000_000_000_000 },
  ]);
  await store.commitPage(reports!.id, page(['A', 'B', 'C'], ['N1', 'N2']));
  await store.completePoll(reports!.id, { cursor: 1_700_000_000_000_000 }, at);
  await store.commitPage(trips!.id, page(['T'], ['N3']));
  await store.failPoll(trips!.id, 'HTTP 503 from the provider', at + 1000);
  await store.close();
}

/** The same output, whatever moment each store was filled at. */
const steady = (text: string): string => text.replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g, '<time>')
  .replace(/"(createdAt|nextAttemptAt)": \d+/g, '"$1": <ms>');

/** A PostgreSQL database and a SQLite file with the same history: their URL and path. */
async function filledBoth(): Promise<[string, string]> {
  const at = Date.now() - 3 * DAY;
  const url = await freshPgDatabase('cli');
  const file = join(tempDir(), 'p.db');
  await fill(await PgStore.open(url), at);
  await fill(new SqliteStore(file), at);
  return [url, file];
}

/** Each command prints on PostgreSQL what it prints on SQLite, but for who sends. */
async function expectSameOutput(url: string, file: string, commands: string[][]): Promise<void> {
  for (const args of commands) {
    const [onPg, onSqlite] = await Promise.all([runCli([...args, '--db', url]), runCli([...args, '--db', file])]);
    expect(onPg.stderr, args.join(' ')).toBe('');
    expect(onPg.code, args.join(' ')).toBe(0);
    const expected = steady(onSqlite.stdout)
      .replace('daemon: not running on this database', 'replicas: none running on this database')
      .replace('"daemonRunning": false,', '"daemonRunning": false,\n  "replicas": [],');
    expect(steady(onPg.stdout), args.join(' ')).toBe(expected);
  }
}

/** Two live replicas and one whose time ran out, as the cluster would have registered them. */
async function withReplicas(url: string, run: () => Promise<void>): Promise<void> {
  const sql = new pg.Client({ connectionString: url });
  await sql.connect();
  try {
    await sql.query(`INSERT INTO replicas VALUES ('r1', 'host-b', 'host-b', 1, 0, now() + interval '1 minute'),
      ('r2', 'host-a', 'host-a', 2, 0, now() + interval '1 minute'), ('r3', 'host-gone', 'host-gone', 3, 0, now() - interval '1 second')`);
    await run();
  } finally {
    await sql.query('DELETE FROM replicas');
    await sql.end();
  }
}

/** A fresh database's URL with a password, the same on a closed port, and one naming a database that does not exist. */
async function databasesOutOfReach(): Promise<{ url: URL; closedPort: URL; missing: URL }> {
  const url = new URL(await freshPgDatabase('cli'));
  url.username = 'postgres';
  url.password = 'S3cret-pw';
  const closedPort = new URL(url);
  closedPort.port = '1';
  const missing = new URL(url);
  missing.pathname = '/no_such_database';
  return { url, closedPort, missing };
}

describePg('the CLI on a PostgreSQL URL', () => {
  it('events list prints what it prints for SQLite; events show; replay names the replicas that send', async () => {
    const [url, file] = await filledBoth();
    await expectSameOutput(url, file, [['events', 'list'], ['events', 'list', '--json'], ['events', 'list', '--status', 'pending', '--limit', '1']]);
    expect((await runCli(['replay', 'N1', '--db', url])).stdout).toBe(
      '1 notification(s) queued for delivery again; no replica is running on this database: they are sent when `pollbridge run` starts on it');
    await withReplicas(url, async () => {
      const replay = await runCli(['replay', 'n1', 'N3', '--db', url]);
      expect(replay.stdout).toBe('2 notification(s) queued for delivery again; the replicas running on this database (host-a, host-b) send them within seconds');
    });
    expect((await runCli(['events', 'show', 'N3', '--db', url])).stdout).toContain('N3  Acme/trips  pending  1 event(s)');
  });

  it('takes the database from the config, its URL and password from the environment', async () => {
    const [url] = await filledBoth();
    const withPassword = new URL(url);
    withPassword.password = 'S3cret-pw';
    const config = writeJson(tempDir(), 'c.json', { ...simConfig('http://127.0.0.1:2', 'http://127.0.0.1:2/hook', 'k'), database: '${env:PB_DATABASE}' });
    const env = { ...SIM_ENV, PB_DATABASE: withPassword.toString() };
    const listed = await runCli(['events', 'list', '-c', config, '--json'], env);
    expect(listed.stderr).toBe('');
    expect((JSON.parse(listed.stdout) as { id: string }[]).map((n) => n.id)).toEqual(['N3', 'N2', 'N1']);
    const closed = new URL(withPassword);
    closed.port = '1';
    const refused = await runCli(['replay', 'N1', '-c', config], { ...env, PB_DATABASE: closed.toString() });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^pollbridge: cannot open the database postgres:\/\/\S*127\.0\.0\.1:1\/\S+: .*ECONNREFUSED[^\n]*$/);
    expect(refused.stderr).not.toContain('S3cret-pw');
  });

  // Reads calloutCounts, the delivering side's (pgOutbox.ts).
  it('status prints what it prints for SQLite, and the live replicas', async () => {
    const [url, file] = await filledBoth();
    await expectSameOutput(url, file, [['status'], ['status', '--json']]);
    const status = await runCli(['status', '--db', url]);
    expect(status.stdout).toMatch(/Acme +trips +\S+ +3 d ago +failed +1 +0 +1 +HTTP 503 from the provider/);
    expect(status.stdout).toContain('notifications: 3 pending, 0 delivered, 0 dead');
    await withReplicas(url, async () => {
      expect((await runCli(['status', '--db', url])).stdout).toContain('replicas: 2 running on this database (host-a, host-b)');
    });
  });

  it('a database out of reach, or missing, or not migrated: one line naming it, exit 1, no password', async () => {
    const { url, closedPort, missing } = await databasesOutOfReach();
    // replay writes, and migrates an empty database as the daemon would: only the readers refuse one.
    const cases: [URL, RegExp, string[][]][] = [
      [closedPort, /^pollbridge: cannot open the database postgres:\/\/postgres@127\.0\.0\.1:1\/\S+: .*ECONNREFUSED/, [['status'], ['events', 'list'], ['replay', 'N1']]],
      [missing, /^pollbridge: cannot open the database postgres:\/\/postgres@[\d.]+:\d+\/no_such_database: database "no_such_database" does not exist$/, [['status'], ['events', 'list'], ['replay', 'N1']]],
      [url, /^pollbridge: postgres:\/\/postgres@[\d.]+:\d+\/\S+: database lacks migration 0001_initial\.sql/, [['status'], ['events', 'list']]],
    ];
    for (const [target, expected, commands] of cases) {
      for (const args of commands) {
        const result = await runCli([...args, '--db', target.toString()]);
        expect(result.code, `${args.join(' ')} ${target.port}${target.pathname}`).toBe(1);
        expect(result.stderr.split('\n'), `${args.join(' ')} ${target.port}${target.pathname}`).toEqual([expect.stringMatching(expected)]);
        expect(result.stderr + result.stdout).not.toContain('S3cret-pw');
      }
    }
  });

  // The daemon's start said it with a stack and exit 70 ("a bug"): it is the operator's to fix,
  // and systemd restarts on exit 1.
  it('run on a database out of reach or missing: one line naming it, exit 1, no password, no stack', async () => {
    const { url, closedPort, missing } = await databasesOutOfReach();
    const config = writeJson(tempDir(), 'c.json', simConfig('http://127.0.0.1:9', 'http://127.0.0.1:9/hook', 'whsec_' + randomBytes(24).toString('base64')));
    for (const [target, expected] of [[closedPort, /ECONNREFUSED/], [missing, /database "no_such_database" does not exist$/]] as const) {
      for (const args of [['run', '--once'], ['run']]) {
        const result = await runCli([...args, '-c', config, '--db', target.toString()], SIM_ENV);
        expect(result.code, args.join(' ')).toBe(1);
        const lines = result.stderr.split('\n').filter((l) => l !== '');
        expect(lines, args.join(' ')).toEqual([expect.stringMatching(new RegExp(`^pollbridge: cannot open the database postgres://postgres@[\\d.]+:\\d+/\\S+: .*${expected.source}`))]);
        expect(result.stderr + result.stdout).not.toContain('S3cret-pw');
      }
    }
  });
});
