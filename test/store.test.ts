import { spawn } from 'node:child_process';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { acquireDaemonLock, DatabaseInUseError } from '../src/store/lock.js';
import { MigrationError, readMigrations } from '../src/store/migrate.js';
import { packPage, unpackPage } from '../src/store/pageWire.js';
import { SqliteStore } from '../src/store/sqliteStore.js';
import type { PageCommit } from '../src/store/types.js';
import { ThreadedStore } from '../dist/store/threadedStore.js';
import { type OpenStore, pgStores } from './helpers/stores.js';
import { tempDir, waitFor } from './helpers/tmp.js';

/** A page of `keys` whose fresh changes fit one notification, which takes the first of `ids`. */
const page = (keys: { objectId: string; updated: number }[], ids: string[]): PageCommit => ({
  changes: keys.map((k) => ({ ...k, event: JSON.stringify({ objectId: k.objectId }), record: JSON.stringify({ ID: k.objectId }) })),
  notifications: { instanceName: 'Docs', elementKey: 'concur', objectType: 'reports', maxEvents: 100, ids },
  rejected: [],
});

describe('a page on its way to the database thread', () => {
  it('arrives as it was sent: empty, non-ASCII and astral text, in order', () => {
    const sent: PageCommit = {
      ...page([], ['N1', 'N2']),
      changes: [
        { objectId: 'A', updated: 1, event: '', record: '{}' },
        { objectId: 'Ünïcode-😀', updated: 1_700_000_000_000_123, event: '{"e":"😀"}', record: '' },
        { objectId: '', updated: 0, event: 'x'.repeat(5000), record: '{"ID":"\\u0000"}' },
      ],
      rejected: [{ position: 'page 1 item 0', reason: 'no usable id', record: '{}' }],
    };
    const crossed = structuredClone(packPage(sent));
    expect(unpackPage(crossed)).toEqual(sent);
    expect(unpackPage(structuredClone(packPage(page([], []))))).toEqual(page([], []));
  });
});

describe('migrations', () => {
  it('apply in order, are recorded, and run once', () => {
    const path = join(tempDir(), 'p.db');
    new SqliteStore(path).close();
    const store = new SqliteStore(path);
    void store.close();
    const db = new Database(path, { readonly: true });
    const rows = db.prepare('SELECT id, name FROM pollbridge_migrations ORDER BY id').all();
    expect(rows).toEqual(readMigrations().map((m) => ({ id: m.id, name: m.name })));
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
  });

  it('refuse a database written by a newer pollbridge', () => {
    const path = join(tempDir(), 'p.db');
    void new SqliteStore(path).close();
    const db = new Database(path);
    db.prepare("INSERT INTO pollbridge_migrations VALUES (9999, '9999_future.sql', 0)").run();
    db.close();
    expect(() => new SqliteStore(path)).toThrow(MigrationError);
  });
});

// The same store inline and on its own thread (the daemon's way; the thread runs the built code).
const sqliteStores: [string, OpenStore][] = [
  ['SqliteStore', async (path) => new SqliteStore(path)],
  ['ThreadedStore', (path) => ThreadedStore.open(path)],
];
const stores = [...sqliteStores, ...pgStores];

describe.each(stores)('%s', (_name, open) => {
  it('records a change once: a replayed page, and a key repeated within a page, queue nothing new', async () => {
    const store = await open(join(tempDir(), 'p.db'));
    const stream = await store.openStream('Docs', 'reports', 1000);
    const keys = [{ objectId: 'A', updated: 5 }, { objectId: 'B', updated: 5 }, { objectId: 'A', updated: 5 }];
    const first = await store.commitPage(stream.id, page(keys, ['N1']));
    expect(first).toEqual({ fresh: 2, duplicates: 1, notificationIds: ['N1'] });
    const again = await store.commitPage(stream.id, page(keys, ['N2']));
    expect(again).toEqual({ fresh: 0, duplicates: 3, notificationIds: [] });
    const newer = [{ objectId: 'A', updated: 6 }];
    expect((await store.commitPage(stream.id, page(newer, ['N3']))).notificationIds).toEqual(['N3']);
    expect((await store.listNotifications({ status: 'pending', limit: 10 })).map((n) => [n.id, n.eventCount])).toEqual([['N3', 1], ['N1', 2]]);
    await store.close();
  });

  it('commits nothing of a page whose notifications cannot be built: seen and outbox move together', async () => {
    const store = await open(join(tempDir(), 'p.db'));
    const stream = await store.openStream('Docs', 'reports', 0);
    const keys = [{ objectId: 'A', updated: 1 }];
    await expect(store.commitPage(stream.id, page(keys, []))).rejects.toThrow('notification ids');
    expect((await store.commitPage(stream.id, page(keys, ['N1']))).notificationIds).toEqual(['N1']);
    await store.close();
  });

  it('keeps the progress of a stream across reopen, as last given, and the furthest prune', async () => {
    const path = join(tempDir(), 'p.db');
    const store = await open(path);
    const s = await store.openStream('Docs', 'reports', 1000);
    expect(s).toMatchObject({ cursor: 1000, recheck: 1000, origin: 1000, skewMs: undefined, forgotten: undefined });
    await store.completePoll(s.id, { cursor: 5000, recheck: 3000, skewMs: -120_000 }, Date.now());
    await store.completePoll(s.id, { cursor: 4000, recheck: 2000 }, Date.now());
    await store.pruneSeen(s.id, 1500);
    await store.pruneSeen(s.id, 1200);
    await store.close();
    const reopened = await open(path);
    expect(await reopened.openStream('Docs', 'reports', 9999)).toMatchObject({ cursor: 4000, recheck: 2000, origin: 1000, skewMs: -120_000, forgotten: 1500 });
    await reopened.close();
  });

  it('keeps each rejected record once per stream and reason, and counts it in the stream\'s status', async () => {
    const store = await open(join(tempDir(), 'p.db'));
    const s = await store.openStream('Docs', 'reports', 0);
    const bad = { position: 'page 1 item 0', reason: 'no usable id', record: JSON.stringify({ Name: 'x'.repeat(10_000) }) };
    const withRejected = (position: string): PageCommit => ({ ...page([], []), rejected: [bad, { ...bad, position }] });
    await store.commitPage(s.id, withRejected('page 1 item 1'));
    await store.commitPage(s.id, withRejected('page 2 item 0'));
    await store.commitPage(s.id, { ...withRejected('x'), rejected: [{ ...bad, reason: 'bad date' }] });
    expect((await store.streams()).map((r) => [r.instance, r.resource, r.rejected])).toEqual([['Docs', 'reports', 2]]);
    await store.close();
  });

  it('opens many streams at once in the order asked, new and known alike, and lists them by name', async () => {
    const store = await open(join(tempDir(), 'p.db'));
    const known = await store.openStream('B', 'reports', 7);
    const keys = [{ instance: 'B', resource: 'trips', initialCursor: 1 }, { instance: 'B', resource: 'reports', initialCursor: 2 }, { instance: 'A', resource: 'reports', initialCursor: 3 }];
    const opened = await store.openStreams(keys);
    expect(opened.map((o) => [o.instance, o.resource, o.cursor])).toEqual([['B', 'trips', 1], ['B', 'reports', 7], ['A', 'reports', 3]]);
    expect(opened[1]!.id).toBe(known.id);
    expect(new Set(opened.map((o) => o.id)).size).toBe(3);
    expect(await store.openStreams([])).toEqual([]);
    await store.failPoll(opened[0]!.id, 'HTTP 503', 1234);
    const status = await store.streams();
    expect(status.map((r) => `${r.instance}/${r.resource}`)).toEqual(['A/reports', 'B/reports', 'B/trips']);
    expect(status[2]).toMatchObject({ lastPollAt: 1234, lastPollOk: false, lastPollError: 'HTTP 503', lastSuccessAt: undefined, pending: 0, dead: 0 });
    expect(status[0]).toMatchObject({ lastPollAt: undefined, lastPollOk: undefined });
    await store.close();
  });

  it('replays only the ids that exist, in the order given, and keeps tokens as last saved', async () => {
    const store = await open(join(tempDir(), 'p.db'));
    const s = await store.openStream('Docs', 'reports', 0);
    await store.commitPage(s.id, page([{ objectId: 'A', updated: 1 }], ['N1']));
    await store.commitPage(s.id, page([{ objectId: 'B', updated: 1 }], ['N2']));
    expect(await store.replay(['N2', 'NOPE', 'N1'], 5)).toEqual(['N2', 'N1']);
    expect(await store.getNotification('N2')).toMatchObject({ id: 'N2', nextAttemptAt: 5, status: 'pending', attemptLog: [], eventCount: 1 });
    expect(await store.getNotification('NOPE')).toBeUndefined();
    expect(await store.notificationCounts()).toEqual({ pending: 2, delivered: 0, dead: 0 });
    expect(await store.replayDead(undefined, 5)).toEqual([]);
    expect(await store.loadAuthState('Docs')).toBeUndefined();
    await store.saveAuthState('Docs', { seedHash: 'h', refreshToken: 'r1', geolocation: undefined, accessToken: 'a', accessExpiresAt: 99 });
    await store.saveAuthState('Docs', { seedHash: 'h', refreshToken: 'r2', geolocation: 'https://us.example', accessToken: undefined, accessExpiresAt: undefined });
    expect(await store.loadAuthState('Docs')).toEqual({ seedHash: 'h', refreshToken: 'r2', geolocation: 'https://us.example', accessToken: undefined, accessExpiresAt: undefined });
    await store.checkWritable();
    await store.close();
  });
});

// The outbox (attempts, due notifications) on the SQLite stores; PostgreSQL's is pgOutbox.ts's.
describe.each(sqliteStores)('%s outbox', (_name, open) => {
  it('schedules retries, dead-letters, and replays with a fresh retry budget', async () => {
    const store = await open(join(tempDir(), 'p.db'));
    const s = await store.openStream('Docs', 'reports', 0);
    const keys = [{ objectId: 'A', updated: 1 }];
    await store.commitPage(s.id, page(keys, ['N1']));
    const attempt = (n: number) => ({ notificationId: 'N1', attempt: n, startedAt: Date.now(), durationMs: 3, statusCode: 500, error: 'HTTP 500', responseExcerpt: 'no' });
    await store.recordAttempts([{ attempt: attempt(1), outcome: { status: 'pending', nextAttemptAt: Date.now() + 60_000 } }]);
    expect(await store.dueNotifications(Date.now(), 10, new Set(), ['Docs'])).toEqual([]);
    await store.recordAttempts([{ attempt: attempt(2), outcome: { status: 'dead' } }]);
    expect(await store.replayDead(undefined, Date.now())).toEqual(['N1']);
    const [due] = await store.dueNotifications(Date.now(), 10, new Set(), ['Docs']);
    expect(due).toMatchObject({ id: 'N1', attempts: 2, replayBase: 2 });
    const detail = await store.getNotification('N1');
    expect(detail!.attemptLog.map((a) => [a.attempt, a.statusCode, a.responseExcerpt])).toEqual([[1, 500, 'no'], [2, 500, 'no']]);
    await store.close();
  });
});

describe('ThreadedStore', () => {
  it('refuses a database from a newer pollbridge at open, as the inline store does', async () => {
    const path = join(tempDir(), 'p.db');
    void new SqliteStore(path).close();
    const db = new Database(path);
    db.prepare("INSERT INTO pollbridge_migrations VALUES (9999, '9999_future.sql', 0)").run();
    db.close();
    await expect(ThreadedStore.open(path)).rejects.toThrow(/migration 9999 .* newer version/);
  });

  it('answers calls in the order they were made, survives a failed one, and refuses calls once closed', async () => {
    const store = await ThreadedStore.open(join(tempDir(), 'p.db'));
    const stream = await store.openStream('Docs', 'reports', 0);
    // Made without waiting: each commit must see the one before it, or B would be fresh twice.
    const results = await Promise.allSettled([
      store.commitPage(stream.id, page([{ objectId: 'B', updated: 1 }], ['N1'])),
      store.commitPage(stream.id, page([{ objectId: 'C', updated: 1 }], [])),
      store.commitPage(stream.id, page([{ objectId: 'B', updated: 1 }, { objectId: 'C', updated: 1 }], ['N2'])),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ name: 'StoreError', message: expect.stringContaining('notification ids') });
    expect((results[2] as PromiseFulfilledResult<unknown>).value).toEqual({ fresh: 1, duplicates: 1, notificationIds: ['N2'] });
    await store.close();
    await expect(store.notificationCounts()).rejects.toThrow('closed');
  });
});

describe('daemon lock', () => {
  it('refuses a second holder while the first lives, and frees itself when the holder is killed', async () => {
    const path = join(tempDir(), 'p.db');
    const first = acquireDaemonLock(path);
    expect(() => acquireDaemonLock(path)).toThrow(DatabaseInUseError);
    first.release();
    acquireDaemonLock(path).release();

    const holder = spawn(process.execPath, ['-e', `
      const D = require('better-sqlite3');
      const db = new D(${JSON.stringify(path + '.lock')});
      db.pragma('locking_mode = EXCLUSIVE');
      db.exec('CREATE TABLE IF NOT EXISTS holder (pid INTEGER NOT NULL, started_at INTEGER NOT NULL)');
      db.prepare('INSERT INTO holder VALUES (?, ?)').run(process.pid, Date.now());
      console.log('locked');
      setInterval(() => {}, 1000);
    `], { stdio: ['ignore', 'pipe', 'inherit'], cwd: process.cwd() });
    let out = '';
    holder.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    try {
      await waitFor('the child to take the lock', () => out.includes('locked'));
      expect(() => acquireDaemonLock(path)).toThrow(/in use by another pollbridge daemon/);
    } finally {
      holder.kill('SIGKILL');
      await new Promise((r) => holder.once('exit', r));
    }
    acquireDaemonLock(path).release();
  });
});
