import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { migrate, MigrationError, readMigrations } from '../src/store/migrate.js';
import { SqliteStore } from '../src/store/sqliteStore.js';
import { CALLOUT_RESOURCE } from '../src/store/types.js';
import type { CalloutReceipt, CalloutRow, Store } from '../src/store/types.js';
import { PgStore } from '../src/store/pg/pgStore.js';
import { ThreadedStore } from '../dist/store/threadedStore.js';
import { freshPgDatabase, skipPg } from './helpers/pg.js';
import { PgRows } from './helpers/pgRows.js';
import { startCli } from './helpers/cli.js';
import { rng } from './helpers/rng.js';
import { tempDir } from './helpers/tmp.js';

// The callout side of the store, on the paths production runs: the built ThreadedStore on a
// SQLite file, and the PostgreSQL store. Each test tries to break one promise the callout server and ingester rely on.

const FIXTURE = new URL('./fixtures/recordCallouts.mjs', import.meta.url).pathname;

const openStore = (dir: string): Promise<Store> => ThreadedStore.open(join(dir, 'p.db'));

/** A pushed notification about report `n`, its XML as the body. */
function push(instance: string, n: number | string, body?: string, receivedAt = 1000): CalloutReceipt {
  const objectUri = `https://www.concursolutions.com/api/expense/expensereport/v2.0/report/R${n}`;
  return {
    instance, source: 'push', notificationUri: undefined, receivedAt,
    body: body ?? `<Notification><EventType>SUBMIT</EventType><ObjectType>EXPRPT</ObjectType><ObjectURI>${objectUri}</ObjectURI></Notification>`,
    notification: { eventType: 'SUBMIT', objectType: 'EXPRPT', objectUri, eventDateTime: '2026-11-26', context: '' },
  };
}

/** A failed-queue item whose URI at Concur ends in `uri`. */
function failed(instance: string, uri: string, receivedAt = 1000, body?: string): CalloutReceipt {
  return {
    ...push(instance, uri, undefined, receivedAt), source: 'failed-queue',
    body: body ?? JSON.stringify({ NotificationURI: `https://www.concursolutions.com/api/platform/notifications/v1.0/notification/${uri}` }),
    notificationUri: `https://www.concursolutions.com/api/platform/notifications/v1.0/notification/${uri}`,
  };
}

const draft = (id: string, body = `{"id":"${id}"}`) => ({ id, body, eventCount: 1 });

const everyInstance = ['A', 'B', 'C', 'Docs'];
const toIngest = (store: Store, instances = everyInstance): Promise<CalloutRow[]> => store.calloutsToIngest(instances, 10_000, new Set());
const ids = (rows: { id: number }[]): number[] => rows.map((r) => r.id);

/**
 * Where a test's store lives, and what it needs beside the store: streams to queue on, and a look
 * at the outbox and the receipts that is not the method under test.
 */
type Place = {
  /** A store on this place; again after close(), the same data (on PostgreSQL, a new replica). */
  open(): Promise<Store>;
  /** The stream of (instance, resource), the callout stream by default; its id. */
  stream(store: Store, instance: string, resource?: string): Promise<number>;
  outboxSize(store: Store): Promise<number>;
  /** Every notification's id, sorted. */
  notificationIds(store: Store): Promise<string[]>;
  deletedAt(receiptId: number): Promise<number | null>;
};
type Kit = { name: string; place(options?: { serial?: boolean }): Promise<Place> };

const sqliteKit: Kit = {
  name: 'SQLite',
  async place() {
    const dir = tempDir();
    return {
      open: () => openStore(dir),
      stream: async (store, instance, resource = CALLOUT_RESOURCE) => (await store.openStream(instance, resource, 0)).id,
      outboxSize: async (store) => Object.values(await store.notificationCounts()).reduce((a, b) => a + b, 0),
      notificationIds: async (store) => (await store.listNotifications({ limit: 10_000 })).map((n) => n.id).sort(),
      deletedAt: async (id) => {
        const db = new Database(join(dir, 'p.db'), { readonly: true });
        try {
          return db.prepare('SELECT deleted_at FROM callouts WHERE id = ?').pluck().get(id) as number | null;
        } finally {
          db.close();
        }
      },
    };
  },
};

const pgRows: PgRows[] = [];
afterAll(async () => { await Promise.all(pgRows.splice(0).map((r) => r.close())); });

// Streams and the look at the outbox go through SQL: they are the polling side's (pgStreams).
const pgKit: Kit = {
  name: 'PostgreSQL',
  async place({ serial = false } = {}) {
    const url = await freshPgDatabase('callouts');
    const rows = new PgRows(url);
    pgRows.push(rows);
    return {
      // Serial: one connection, which the pool hands out in call order. Claims last 1 ms: a
      // reopen is a new replica, and its predecessor's claims (pgClaims.test.ts) would hide receipts.
      open: () => PgStore.open(url, serial ? { max: 1, claimMs: 1 } : {}),
      stream: (_store, instance, resource = CALLOUT_RESOURCE) => rows.stream(instance, resource),
      outboxSize: async () => (await rows.query<{ n: number }>('SELECT count(*)::int AS n FROM notifications'))[0]!.n,
      notificationIds: async () => (await rows.query<{ id: string }>('SELECT id FROM notifications ORDER BY id COLLATE "C"')).map((r) => r.id),
      deletedAt: async (id) => (await rows.query<{ deleted_at: number | null }>('SELECT deleted_at FROM callouts WHERE id = $1', [id]))[0]!.deleted_at,
    };
  },
};

const KITS = skipPg ? [sqliteKit] : [sqliteKit, pgKit];

/** Runs the fixture on `calls`, SIGKILLs it right after its `killAfter`-th "committed" line, returns those lines. */
async function recordThenKill(dir: string, calls: CalloutReceipt[][], killAfter: number): Promise<Map<number, { id: number; duplicate: boolean }[]>> {
  const callsPath = join(dir, 'calls.json');
  writeFileSync(callsPath, JSON.stringify(calls));
  const child = spawn(process.execPath, [FIXTURE, join(dir, 'p.db'), callsPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  const announced = new Map<number, { id: number; duplicate: boolean }[]>();
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on('exit', (code, signal) => resolve(signal ?? code)));
  let buffered = '';
  let killed = false;
  child.stdout.on('data', (d: Buffer) => {
    buffered += d.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      const m = /^committed (\d+) (.*)$/.exec(line);
      // Lines after the kill was sent are not counted: the test may only rely on what it saw first.
      if (!m || killed) continue;
      announced.set(Number(m[1]), JSON.parse(m[2]!) as { id: number; duplicate: boolean }[]);
      if (announced.size === killAfter) {
        killed = true;
        child.kill('SIGKILL');
      }
    }
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const end = await exited;
  clearTimeout(timer);
  expect(end, `the fixture ended on its own: ${stderr}`).toBe('SIGKILL');
  expect(announced.size, stderr).toBe(killAfter);
  return announced;
}

describe('recordCallouts through a SIGKILL of the process that made them', () => {
  // Bodies that break a naive encoding: multi-byte, astral, combining, and one of 64 KiB.
  const awkward = [
    '<Notification><Context>Prüfung für Ærø — 経費精算 😀👍🏽 e\u0301</Context></Notification>',
    `<Notification><Context>${'Ω😀x'.repeat(9363)}</Context></Notification>`,
    '',
    '<Notification>\r\n\t<Context>  leading and trailing space  </Context>\r\n</Notification>\n',
  ];
  const calls = (): CalloutReceipt[][] => Array.from({ length: 12 }, (_, c) => Array.from({ length: 1 + (c % 4) }, (_, k) => {
    const tag = `call${c}-item${k}`;
    const body = `${awkward[(c + k) % awkward.length]}<!--${tag}-->`;
    return k % 2 === 0 ? push('A', tag, body, 1000 + c) : failed(c % 3 === 0 ? 'B' : 'A', tag, 1000 + c, body);
  }));

  it.each([1, 4, 9])('keeps every receipt of the %i calls announced, byte for byte, and each later call whole or not at all', async (killAfter) => {
    const dir = tempDir();
    const sent = calls();
    expect(Buffer.byteLength(sent[1]![0]!.body)).toBeGreaterThan(64 * 1024);
    const announced = await recordThenKill(dir, sent, killAfter);

    const store = await openStore(dir);
    const rows = await toIngest(store);
    await store.close();
    const byId = new Map(rows.map((r) => [r.id, r]));
    const byBody = new Map(rows.map((r) => [r.body, r]));
    for (const [call, result] of announced) {
      expect(result.map((r) => r.duplicate)).toEqual(sent[call]!.map(() => false));
      sent[call]!.forEach((receipt, k) => {
        expect(byId.get(result[k]!.id), `call ${call} item ${k}`).toEqual({ ...receipt, id: result[k]!.id });
      });
    }
    // A call not announced before the kill is one transaction: all of it landed, or none of it.
    let landed = 0;
    sent.forEach((receipts, call) => {
      const present = receipts.filter((r) => byBody.has(r.body)).length;
      expect([0, receipts.length], `call ${call}`).toContain(present);
      landed += present;
    });
    expect(rows).toHaveLength(landed);

    // The bytes on disk are the UTF-8 of what was sent: nothing replaced, nothing cut.
    const db = new Database(join(dir, 'p.db'), { readonly: true });
    const raw = db.prepare('SELECT id, CAST(body AS BLOB) AS bytes FROM callouts').all() as { id: number; bytes: Buffer }[];
    db.close();
    for (const { id, bytes } of raw) expect(bytes.equals(Buffer.from(byId.get(id)!.body, 'utf8')), `receipt ${id}`).toBe(true);
  });
});

describe.each(KITS)('the callout side of the $name store', (kit) => {
  describe('failed-queue receipts are one per (instance, notificationUri)', () => {
    it('twice in one call, across calls and across a reopen; per instance; pushes never; answers in input order', async () => {
      const place = await kit.place();
      let store = await place.open();
      const first = await store.recordCallouts([
        failed('A', 'u1'), push('A', 1), failed('A', 'u1'), failed('B', 'u1'), push('A', 1), failed('A', 'u2'), failed('B', 'u1'),
      ]);
      const [a1, p1, , b1, p2, a2] = ids(first);
      expect(first).toEqual([
        { id: a1, duplicate: false }, { id: p1, duplicate: false }, { id: a1, duplicate: true }, { id: b1, duplicate: false },
        { id: p2, duplicate: false }, { id: a2, duplicate: false }, { id: b1, duplicate: true },
      ]);
      expect(new Set([a1, p1, b1, p2, a2]).size).toBe(5);

      const second = await store.recordCallouts([failed('B', 'u1'), push('A', 1), failed('A', 'u2'), failed('A', 'u3')]);
      expect(second.map((r) => r.duplicate)).toEqual([true, false, true, false]);
      expect([second[0]!.id, second[2]!.id]).toEqual([b1, a2]);
      await store.close();

      store = await place.open();
      // The first copy is kept as it was: a duplicate's body does not overwrite it.
      const third = await store.recordCallouts([failed('A', 'u1', 5000, 'other body'), failed('A', 'u3'), failed('C', 'u3')]);
      expect(third).toEqual([{ id: a1, duplicate: true }, { id: second[3]!.id, duplicate: true }, { id: expect.any(Number), duplicate: false }]);
      const rows = await toIngest(store);
      expect(rows.filter((r) => r.source === 'push')).toHaveLength(3);
      expect(rows.find((r) => r.id === a1)).toMatchObject({ body: failed('A', 'u1').body, receivedAt: 1000 });
      const failedKeys = rows.filter((r) => r.source === 'failed-queue').map((r) => `${r.instance} ${r.notificationUri!.split('/').pop()!}`);
      expect(failedKeys.sort()).toEqual(['A u1', 'A u2', 'A u3', 'B u1', 'C u3']);
      await store.close();
    });

    it('stays one receipt once done and deleted at Concur: read again, it is a duplicate and not ingested again', async () => {
      const place = await kit.place();
      const store = await place.open();
      const stream = { id: await place.stream(store, 'A') };
      const id = (await store.recordCallouts([failed('A', 'u1')]))[0]!.id;
      await store.completeCallout(id, stream.id, 'k', draft('N1'));
      await store.markCalloutDeleted(id, 2000);
      expect(await store.recordCallouts([failed('A', 'u1')])).toEqual([{ id, duplicate: true }]);
      expect(await toIngest(store)).toEqual([]);
      expect(await store.calloutsToDelete('A')).toEqual([]);
      await store.close();
    });

    it('commits none of a call that fails part way (a receipt the database refuses)', async () => {
      const place = await kit.place();
      const store = await place.open();
      const bad = { ...push('A', 2), source: 'neither' } as unknown as CalloutReceipt;
      await expect(store.recordCallouts([push('A', 1), failed('A', 'u1'), bad])).rejects.toThrow(/CHECK|check constraint/);
      expect(await toIngest(store)).toEqual([]);
      // The URI was not taken by the rolled-back call.
      expect((await store.recordCallouts([failed('A', 'u1')]))[0]!.duplicate).toBe(false);
      await store.close();
    });
  });

  describe('completeCallout', () => {
    it('queues a normal outbox notification once; a second completion of the same receipt queues nothing', async () => {
      const place = await kit.place();
      const store = await place.open();
      const stream = { id: await place.stream(store, 'Docs') };
      await place.stream(store, 'Docs', 'reports');
      const id = (await store.recordCallouts([push('Docs', 1)]))[0]!.id;
      expect(await store.completeCallout(id, stream.id, 'k1', draft('N1', '{"événement":"😀"}'))).toEqual({ queued: true });
      expect(await store.completeCallout(id, stream.id, 'k2', draft('N2'))).toEqual({ queued: false });
      expect(await toIngest(store)).toEqual([]);

      const due = await store.dueNotifications(Date.now() + 1, 10, new Set(), ['Docs']);
      expect(due.map((n) => [n.id, n.instance, n.streamId, n.body])).toEqual([['N1', 'Docs', stream.id, '{"événement":"😀"}']]);
      expect(await store.dueNotifications(Date.now() + 1, 10, new Set(), ['Other'])).toEqual([]);
      expect(await store.getNotification('N1')).toMatchObject({ body: '{"événement":"😀"}', resource: CALLOUT_RESOURCE, instance: 'Docs', status: 'pending' });
      expect(await store.getNotification('N2')).toBeUndefined();
      expect((await store.listNotifications({ limit: 10 })).map((n) => [n.id, n.resource])).toEqual([['N1', '(callout)']]);
      expect((await store.streams()).find((s) => s.resource === CALLOUT_RESOURCE)).toMatchObject({ instance: 'Docs', pending: 1 });
      await store.close();
    });

    it('two receipts with one (stream, eventKey), completed at once: one notification, both receipts done', async () => {
      const place = await kit.place();
      const store = await place.open();
      const stream = { id: await place.stream(store, 'A') };
      const other = { id: await place.stream(store, 'B') };
      const receipts = ids(await store.recordCallouts([push('A', 1), push('A', 1), failed('A', 'u1'), push('B', 1)]));
      const results = await Promise.all([
        store.completeCallout(receipts[0]!, stream.id, 'same', draft('N1')),
        store.completeCallout(receipts[1]!, stream.id, 'same', draft('N2')),
        store.completeCallout(receipts[2]!, stream.id, 'same', draft('N3')),
        store.completeCallout(receipts[3]!, other.id, 'same', draft('N4')),
      ]);
      // One of the three (on PostgreSQL they run on connections of their own, in no set order), and B's.
      expect(results.map((r) => r.queued).slice(0, 3).sort()).toEqual([false, false, true]);
      expect(results[3]!.queued).toBe(true);
      const queued = `N${results.findIndex((r) => r.queued) + 1}`;
      expect(await toIngest(store)).toEqual([]);
      expect(await place.notificationIds(store)).toEqual([queued, 'N4']);
      // Still one after a reopen: the key is kept, not only remembered by this connection.
      await store.close();
      const again = await place.open();
      const id = (await again.recordCallouts([push('A', 1)]))[0]!.id;
      expect(await again.completeCallout(id, stream.id, 'same', draft('N5'))).toEqual({ queued: false });
      expect(await again.completeCallout(ids(await again.recordCallouts([push('A', 1)]))[0]!, stream.id, 'new', draft('N6'))).toEqual({ queued: true });
      expect(await place.outboxSize(again)).toBe(3);
      await again.close();
    });

    it('is one transaction: a notification that cannot be queued leaves the receipt to ingest and its key free', async () => {
      const place = await kit.place();
      const store = await place.open();
      const stream = { id: await place.stream(store, 'A') };
      const [r1, r2] = ids(await store.recordCallouts([push('A', 1), push('A', 2)]));
      await store.completeCallout(r1!, stream.id, 'k1', draft('N1'));
      // N1 is taken: the insert fails, and with it the receipt's completion and the key.
      await expect(store.completeCallout(r2!, stream.id, 'k2', draft('N1'))).rejects.toThrow(/UNIQUE|unique constraint/);
      expect(ids(await toIngest(store))).toEqual([r2]);
      expect(await store.completeCallout(r2!, stream.id, 'k2', draft('N2'))).toEqual({ queued: true });
      // A stream that does not exist is refused the same way.
      const [r3] = ids(await store.recordCallouts([push('A', 3)]));
      await expect(store.completeCallout(r3!, 9999, 'k3', draft('N3'))).rejects.toThrow(/FOREIGN KEY|foreign key constraint/);
      expect(ids(await toIngest(store))).toEqual([r3]);
      expect(await store.completeCallout(12345, stream.id, 'k4', draft('N4'))).toEqual({ queued: false });
      expect(await place.outboxSize(store)).toBe(2);
      await store.close();
    });
  });

  describe('reading receipts back', () => {
    it('calloutsToIngest: oldest first, limited, skipping the excluded, of the instances asked', async () => {
      const place = await kit.place();
      const store = await place.open();
      const stream = { id: await place.stream(store, 'A') };
      // receivedAt going backwards: the order is the order of commit.
      const all = ids(await store.recordCallouts([push('A', 1, undefined, 9), push('B', 2, undefined, 8), failed('A', 'u', 7), push('A', 4, undefined, 6)]));
      const more = ids(await store.recordCallouts([push('A', 5, undefined, 5), push('C', 6, undefined, 4)]));
      const [a1, b2, a3, a4] = all as [number, number, number, number];
      const [a5, c6] = more as [number, number];
      expect(ids(await toIngest(store))).toEqual([a1, b2, a3, a4, a5, c6]);
      expect(ids(await store.calloutsToIngest(['A'], 10, new Set()))).toEqual([a1, a3, a4, a5]);
      expect(ids(await store.calloutsToIngest(['A', 'C'], 2, new Set()))).toEqual([a1, a3]);
      expect(ids(await store.calloutsToIngest(['A'], 2, new Set([a1, a3])))).toEqual([a4, a5]);
      // Excluded ids of other instances do not shorten the answer.
      expect(ids(await store.calloutsToIngest(['A'], 2, new Set([b2, c6, a1])))).toEqual([a3, a4]);
      expect(ids(await store.calloutsToIngest(['A'], 0, new Set()))).toEqual([]);
      expect(ids(await store.calloutsToIngest([], 10, new Set()))).toEqual([]);
      expect(ids(await store.calloutsToIngest(['Z'], 10, new Set()))).toEqual([]);
      await store.completeCallout(a3, stream.id, 'k', draft('N1'));
      expect(ids(await store.calloutsToIngest(['A'], 2, new Set()))).toEqual([a1, a4]);
      await store.close();
    });

    it('calloutsToDelete and markCalloutDeleted: failed-queue receipts of one instance, oldest first, marked once', async () => {
      const place = await kit.place();
      const store = await place.open();
      const stream = { id: await place.stream(store, 'A') };
      const [f1, , f2, g1, f3] = ids(await store.recordCallouts([failed('A', 'u1'), push('A', 1), failed('A', 'u2'), failed('B', 'u1'), failed('A', 'u3')]));
      const uri = (u: string) => failed('A', u).notificationUri;
      expect(await store.calloutsToDelete('A')).toEqual([{ id: f1, notificationUri: uri('u1') }, { id: f2, notificationUri: uri('u2') }, { id: f3, notificationUri: uri('u3') }]);
      expect(await store.calloutsToDelete('B')).toEqual([{ id: g1, notificationUri: uri('u1') }]);
      expect(await store.calloutsToDelete('C')).toEqual([]);
      // Deleted before its event is made (the ingester runs on its own): both are tracked apart.
      await store.markCalloutDeleted(f2!, 2000);
      await store.markCalloutDeleted(f2!, 3000);
      await store.markCalloutDeleted(99_999, 3000);
      expect(ids(await store.calloutsToDelete('A'))).toEqual([f1, f3]);
      expect(ids(await store.calloutsToIngest(['A'], 10, new Set()))).toContain(f2);
      await store.completeCallout(f1!, stream.id, 'k', draft('N1'));
      expect(ids(await store.calloutsToDelete('A'))).toEqual([f1, f3]);
      await store.close();
      expect(await place.deletedAt(f2!)).toBe(2000);
    });

    it('pruneCallouts: forgets done receipts and event keys older than the horizon, never one waiting for its event or its DELETE', async () => {
      const place = await kit.place();
      const store = await place.open();
      const a = { id: await place.stream(store, 'A') };
      const b = { id: await place.stream(store, 'B') };
      // The one left waiting was received after the keys below were made: it cannot be a re-send of them.
      const [done, waiting, failedDone, failedUndeleted, other] = ids(await store.recordCallouts([
        push('A', 1), push('A', 2, undefined, Date.now() + 60_000), failed('A', 'u1'), failed('A', 'u2'), push('B', 1),
      ]));
      await store.completeCallout(done!, a.id, 'k-done', draft('N1'));
      await store.completeCallout(failedDone!, a.id, 'k-failed', draft('N2'));
      await store.completeCallout(failedUndeleted!, a.id, 'k-undeleted', draft('N3'));
      await store.completeCallout(other!, b.id, 'k-done', draft('N4'));
      await store.markCalloutDeleted(failedDone!, Date.now());
      // Before every completion: nothing goes.
      expect(await store.pruneCallouts('A', a.id, Date.now(), 60_000)).toBe(0);
      expect(await store.pruneCallouts('A', a.id, Date.now() + 1, 0)).toBe(2);
      expect(ids(await toIngest(store))).toEqual([waiting]);
      expect(ids(await store.calloutsToDelete('A'))).toEqual([failedUndeleted]);
      expect((await store.calloutCounts()).map((c) => [c.instance, c.received])).toEqual([['A', 2], ['B', 1]]);
      // The key is free again: the same notification that late makes an event; B's is kept.
      const again = (await store.recordCallouts([push('A', 1)]))[0]!.id;
      expect(await store.completeCallout(again, a.id, 'k-done', draft('N5'))).toEqual({ queued: true });
      const late = (await store.recordCallouts([push('B', 1)]))[0]!.id;
      expect(await store.completeCallout(late, b.id, 'k-done', draft('N6'))).toEqual({ queued: false });
      // The outbox is not the receipts': every notification is still there.
      expect(await place.outboxSize(store)).toBe(5);
      await store.close();
    });

    it('calloutCounts: per instance with receipts, received, awaiting their event and their DELETE, the last receipt; instancesWithWaitingCallouts', async () => {
      const place = await kit.place();
      const store = await place.open();
      expect(await store.calloutCounts()).toEqual([]);
      const stream = { id: await place.stream(store, 'B') };
      const [b1, b2, b3] = ids(await store.recordCallouts([failed('B', 'u1', 50), push('B', 1, undefined, 70), failed('B', 'u2', 60), push('A', 1, undefined, 10)]));
      await store.recordCallouts([failed('B', 'u1', 999)]);
      await store.completeCallout(b1!, stream.id, 'k', draft('N1'));
      await store.completeCallout(b2!, stream.id, 'k', draft('N2'));
      await store.markCalloutDeleted(b3!, 100);
      expect(await store.calloutCounts()).toEqual([
        { instance: 'A', received: 1, awaitingEvent: 1, awaitingDelete: 0, lastReceivedAt: 10 },
        { instance: 'B', received: 3, awaitingEvent: 1, awaitingDelete: 1, lastReceivedAt: 70 },
      ]);
      expect((await store.instancesWithWaitingCallouts()).sort()).toEqual(['A', 'B']);
      await store.completeCallout(b3!, stream.id, 'k3', draft('N3'));
      expect(await store.instancesWithWaitingCallouts()).toEqual(['A']);
      await store.close();
    });
  });
});

describe('migration 0005 on a database of the pollbridge before it', () => {
  it('opens, migrates, keeps every row, and takes callouts on the streams it had', async () => {
    const dir = tempDir();
    const path = join(dir, 'p.db');
    const old = new Database(path);
    old.pragma('journal_mode = WAL');
    expect(migrate(old, readMigrations().filter((m) => m.id <= 4))).toEqual([1, 2, 3, 4]);
    old.exec(`
      INSERT INTO streams (id, instance, resource, cursor_us, origin_us, last_poll_at, last_poll_ok, recheck_us, skew_ms)
        VALUES (7, 'Docs', 'reports', 5000, 1000, 4000, 1, 4500, -250);
      INSERT INTO seen (stream_id, updated_us, object_id) VALUES (7, 4200, 'R1');
      INSERT INTO notifications (id, stream_id, instance, body, event_count, status, attempts, next_attempt_at, created_at, delivered_at, last_status)
        VALUES ('OLD1', 7, 'Docs', '{"old":"ü"}', 1, 'delivered', 1, 10, 10, 20, 200),
               ('OLD2', 7, 'Docs', '{"old":2}', 1, 'pending', 0, 10, 11, NULL, NULL);
      INSERT INTO attempts (notification_id, attempt, started_at, duration_ms, status_code) VALUES ('OLD1', 1, 15, 5, 200);
      INSERT INTO auth_state (instance, seed_hash, refresh_token, geolocation, access_token, access_expires_at, updated_at)
        VALUES ('Docs', 'h', 'rt', 'https://us.api.concursolutions.com', 'at', 99, 1);`);
    old.close();

    const store = await ThreadedStore.open(path);
    expect(await store.openStream('Docs', 'reports', 0)).toEqual({ id: 7, instance: 'Docs', resource: 'reports', cursor: 5000, recheck: 4500, origin: 1000, forgotten: undefined, skewMs: -250 });
    expect(await store.getNotification('OLD1')).toMatchObject({ body: '{"old":"ü"}', status: 'delivered', attemptLog: [{ attempt: 1, statusCode: 200 }] });
    expect((await store.dueNotifications(100, 10, new Set(), ['Docs'])).map((n) => n.id)).toEqual(['OLD2']);
    expect(await store.loadAuthState('Docs')).toEqual({ seedHash: 'h', refreshToken: 'rt', geolocation: 'https://us.api.concursolutions.com', accessToken: 'at', accessExpiresAt: 99 });
    const callout = await store.openStream('Docs', CALLOUT_RESOURCE, 0);
    const id = (await store.recordCallouts([push('Docs', 1)]))[0]!.id;
    expect(await store.completeCallout(id, callout.id, 'k', draft('N1'))).toEqual({ queued: true });
    // Queued after the old ones, on its own stream: the outbox order is kept.
    expect((await store.dueNotifications(Date.now() + 1, 10, new Set(), ['Docs'])).map((n) => [n.id, n.streamId])).toEqual([['OLD2', 7], ['N1', callout.id]]);
    await store.close();

    const db = new Database(path, { readonly: true });
    expect(db.prepare('SELECT id FROM pollbridge_migrations ORDER BY id').pluck().all()).toEqual(readMigrations().map((m) => m.id));
    expect(db.prepare('SELECT count(*) FROM seen').pluck().get()).toBe(1);
    db.close();
  });

  // `status` and `events` open the database read-only, so they cannot migrate it: run by the new
  // version while the old daemon still runs, they met the new tables missing and died with a stack.
  it('a read-only open of it, before the daemon migrated it, is refused by name in one line', async () => {
    const path = join(tempDir(), 'p.db');
    const old = new Database(path);
    old.pragma('journal_mode = WAL');
    migrate(old, readMigrations().filter((m) => m.id <= 4));
    old.close();
    expect(() => new SqliteStore(path, { readonly: true })).toThrow(MigrationError);
    expect(() => new SqliteStore(path, { readonly: true })).toThrow(/0005_callouts\.sql.*older pollbridge/);
    const cli = startCli(['events', 'list', '--db', path]);
    expect((await cli.exited).code).toBe(1);
    expect(cli.stderr).toEqual([expect.stringMatching(/^pollbridge: .*0005_callouts\.sql.*older pollbridge/)]);
    // Once migrated, the same read-only open works.
    await (await ThreadedStore.open(path)).close();
    const store = new SqliteStore(path, { readonly: true });
    expect(await store.calloutCounts()).toEqual([]);
    await store.close();
  });
});

describe.each(KITS)('callout receipts and events under random interleavings, $name store', (kit) => {
  type Model = {
    receipts: Map<number, { instance: string; source: CalloutReceipt['source']; uri: string | undefined; done: boolean; deleted: boolean }>;
    failedIds: Map<string, number>;
    events: Set<string>;
  };
  const instances = ['A', 'B'];

  /** Every receipt ingested or waiting; one notification per (stream, key); failed URIs once; the DELETEs owed. */
  async function checkInvariants(place: Place, store: Store, model: Model): Promise<void> {
    const waiting = [...model.receipts].filter(([, r]) => !r.done).map(([id]) => id).sort((a, b) => a - b);
    expect(ids(await store.calloutsToIngest(instances, 10_000, new Set()))).toEqual(waiting);
    expect(await place.outboxSize(store)).toBe(model.events.size);
    for (const instance of instances) {
      const owed = [...model.receipts].filter(([, r]) => r.instance === instance && r.uri !== undefined && !r.deleted);
      expect(await store.calloutsToDelete(instance)).toEqual(owed.map(([id, r]) => ({ id, notificationUri: r.uri })));
    }
    const counts = await store.calloutCounts();
    for (const c of counts) {
      const mine = [...model.receipts.values()].filter((r) => r.instance === c.instance);
      expect(c.received).toBe(mine.length);
      expect(new Set(mine.filter((r) => r.uri !== undefined).map((r) => r.uri)).size).toBe(mine.filter((r) => r.uri !== undefined).length);
    }
  }

  async function run(seed: number): Promise<void> {
    const random = rng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
    // In call order, one at a time (as on SQLite's thread), so that the model can tell each answer.
    const place = await kit.place({ serial: true });
    let store = await place.open();
    const streams = new Map<string, number>();
    for (const i of instances) streams.set(i, await place.stream(store, i));
    const model: Model = { receipts: new Map(), failedIds: new Map(), events: new Set() };
    let nextDraft = 0;
    for (let step = 0; step < 30; step++) {
      const roll = random();
      if (roll < 0.08) {
        await store.close();
        store = await place.open();
        await checkInvariants(place, store, model);
        continue;
      }
      // A burst of calls made without waiting: they run in order on the database thread.
      const burst = Array.from({ length: 1 + Math.floor(random() * 4) }, () => {
        const kind = random();
        if (kind < 0.4 || model.receipts.size === 0) {
          const receipts = Array.from({ length: 1 + Math.floor(random() * 4) }, () => {
            const instance = pick(instances);
            return random() < 0.5 ? push(instance, step) : failed(instance, `u${Math.floor(random() * 5)}`, step);
          });
          return { call: () => store.recordCallouts(receipts), expect: (result: unknown) => {
            const got = result as { id: number; duplicate: boolean }[];
            expect(got).toHaveLength(receipts.length);
            receipts.forEach((r, k) => {
              const key = `${r.instance} ${r.notificationUri}`;
              const known = r.notificationUri === undefined ? undefined : model.failedIds.get(key);
              expect(got[k]!.duplicate).toBe(known !== undefined);
              if (known !== undefined) {
                expect(got[k]!.id).toBe(known);
                return;
              }
              expect(model.receipts.has(got[k]!.id)).toBe(false);
              model.receipts.set(got[k]!.id, { instance: r.instance, source: r.source, uri: r.notificationUri, done: false, deleted: false });
              if (r.notificationUri !== undefined) model.failedIds.set(key, got[k]!.id);
            });
          } };
        }
        const id = pick([...model.receipts.keys()]);
        if (kind < 0.85) {
          const instance = model.receipts.get(id)!.instance;
          const key = `k${Math.floor(random() * 3)}`;
          const draftId = `N${nextDraft++}`;
          return { call: () => store.completeCallout(id, streams.get(instance)!, key, draft(draftId)), expect: (result: unknown) => {
            const receipt = model.receipts.get(id)!;
            const fresh = !receipt.done && !model.events.has(`${instance} ${key}`);
            expect(result).toEqual({ queued: fresh });
            receipt.done = true;
            if (fresh) model.events.add(`${instance} ${key}`);
          } };
        }
        return { call: () => store.markCalloutDeleted(id, step), expect: () => {
          const receipt = model.receipts.get(id)!;
          if (receipt.uri !== undefined) receipt.deleted = true;
        } };
      });
      const calls = burst.map((b) => b.call());
      const results = await Promise.all(calls);
      burst.forEach((b, k) => b.expect(results[k]));
      await checkInvariants(place, store, model);
    }
    await store.close();
  }

  it('keep their invariants over 40 seeds', async () => {
    for (let seed = 1; seed <= 40; seed++) {
      try {
        await run(seed);
      } catch (err) {
        throw new Error(`seed ${seed}: ${(err as Error).message}`, { cause: err });
      }
    }
  }, 120_000);
});
