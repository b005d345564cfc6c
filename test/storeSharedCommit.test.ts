import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SqliteStore } from '../src/store/sqliteStore.js';
import { CALLOUT_RESOURCE } from '../src/store/types.js';
import type { CalloutReceipt, Store } from '../src/store/types.js';
import { ThreadedStore } from '../dist/store/threadedStore.js';
import { rng } from './helpers/rng.js';
import { tempDir } from './helpers/tmp.js';

// The database thread runs the short writes that arrive together (callout receipts and
// completions, delivery attempts) in one transaction with one commit. Each must still get the answer it would get alone, in order: a
// call that fails is undone alone, and the other calls see the database as if one ran at a time.

function push(n: number): CalloutReceipt {
  const objectUri = `https://www.concursolutions.com/api/expense/expensereport/v1.1/report/R${n}`;
  return {
    instance: 'A', source: 'push', notificationUri: undefined, receivedAt: 1000 + n, body: `<Notification>${n}</Notification>`,
    notification: { eventType: 'SUBMIT', objectType: 'EXPRPT', objectUri, eventDateTime: '2026-11-26', context: '' },
  };
}

const draft = (id: string) => ({ id, body: `{"id":"${id}"}`, eventCount: 1 });

type Op =
  | { kind: 'record'; reports: number[] }
  | { kind: 'complete'; receipt: number; stream: 'callout' | 'missing'; key: string; notification: string }
  | { kind: 'attempt'; notification: string; delivered: boolean }
  | { kind: 'toIngest' };

/** What a call answered: its value, or the first words of its error (the thread's errors are rebuilt). */
async function outcome(call: Promise<unknown>): Promise<unknown> {
  try {
    return { ok: await call };
  } catch (err) {
    return { failed: /UNIQUE|FOREIGN KEY/.exec((err as Error).message)?.[0] ?? (err as Error).message };
  }
}

/** The rows the calls left, without their clock readings. */
function tables(path: string): unknown {
  const db = new Database(path, { readonly: true });
  const result = {
    callouts: db.prepare('SELECT id, body, done_at IS NOT NULL AS done FROM callouts ORDER BY id').all(),
    events: db.prepare('SELECT stream_id, event_key, notification_id FROM callout_events ORDER BY event_key, stream_id').all(),
    notifications: db.prepare('SELECT id, stream_id, body, status, attempts, next_attempt_at = 9000 AS retried, last_status FROM notifications ORDER BY id').all(),
    attempts: db.prepare('SELECT * FROM attempts ORDER BY notification_id, attempt').all(),
  };
  db.close();
  return result;
}

function run(store: Store, streamId: number, op: Op): Promise<unknown> {
  if (op.kind === 'record') return store.recordCallouts(op.reports.map(push));
  if (op.kind === 'attempt') {
    const attempt = { notificationId: op.notification, attempt: 1, startedAt: 5000, durationMs: 3, statusCode: op.delivered ? 200 : 503, error: undefined, responseExcerpt: undefined };
    return store.recordAttempts([{ attempt, outcome: op.delivered ? { status: 'delivered', at: 5003 } : { status: 'pending', nextAttemptAt: 9000 } }]);
  }
  if (op.kind === 'toIngest') return store.calloutsToIngest(['A'], 1000, new Set()).then((rows) => rows.map((r) => r.id));
  return store.completeCallout(op.receipt, op.stream === 'callout' ? streamId : 9999, op.key, draft(op.notification));
}

function randomOps(seed: number): Op[] {
  const random = rng(seed);
  const pick = (n: number): number => Math.floor(random() * n);
  return Array.from({ length: 20 + pick(40) }, (): Op => {
    const r = random();
    if (r < 0.35) return { kind: 'record', reports: Array.from({ length: 1 + pick(3) }, () => pick(5)) };
    if (r < 0.8) {
      // Receipt ids a few past the ones recorded, keys and notification ids from small sets: some
      // completions find no receipt, repeat a key or take a notification id already taken.
      return { kind: 'complete', receipt: 1 + pick(25), stream: random() < 0.1 ? 'missing' : 'callout', key: `k${pick(6)}`, notification: `N${pick(12)}` };
    }
    // Attempts of notifications that may not exist yet: those are refused (FOREIGN KEY).
    if (r < 0.92) return { kind: 'attempt', notification: `N${pick(12)}`, delivered: random() < 0.5 };
    return { kind: 'toIngest' };
  });
}

describe('the database thread: short writes that arrive together share one commit', () => {
  it('answers each call as if alone: a completion that fails is undone alone, the others commit and last', async () => {
    const dir = tempDir();
    const store = await ThreadedStore.open(join(dir, 'p.db'));
    const stream = await store.openStream('A', CALLOUT_RESOURCE, 0);
    const [r1, r2, r3, r4] = (await store.recordCallouts([push(1), push(2), push(3), push(4)])).map((r) => r.id);
    // Made in one turn: they reach the thread together.
    const results = await Promise.all([
      outcome(store.completeCallout(r1!, stream.id, 'k1', draft('N1'))),
      outcome(store.completeCallout(r2!, stream.id, 'k2', draft('N1'))),
      outcome(store.recordCallouts([push(5)])),
      outcome(store.completeCallout(r3!, 9999, 'k3', draft('N3'))),
      outcome(store.completeCallout(r4!, stream.id, 'k1', draft('N4'))),
      outcome(store.calloutsToIngest(['A'], 100, new Set()).then((rows) => rows.map((r) => r.id))),
    ]);
    expect(results).toEqual([
      { ok: { queued: true } },
      { failed: 'UNIQUE' },
      { ok: [{ id: 5, duplicate: false }] },
      { failed: 'FOREIGN KEY' },
      { ok: { queued: false } },
      // The read after them sees what they committed: r2 and r3 undone, r5 new.
      { ok: [r2, r3, 5] },
    ]);
    await store.close();
    const again = await ThreadedStore.open(join(dir, 'p.db'));
    expect((await again.calloutsToIngest(['A'], 100, new Set())).map((r) => r.id)).toEqual([r2, r3, 5]);
    expect((await again.listNotifications({ limit: 10 })).map((n) => n.id)).toEqual(['N1']);
    await again.close();
  });

  it('gives the answers and leaves the rows of the same calls made one at a time (seeded sequences)', async () => {
    for (let seed = 1; seed <= 25; seed++) {
      const ops = randomOps(seed);
      const dir = tempDir();
      const threaded = await ThreadedStore.open(join(dir, 'together.db'));
      const sequential = new SqliteStore(join(dir, 'alone.db'));
      const tStream = await threaded.openStream('A', CALLOUT_RESOURCE, 0);
      const sStream = await sequential.openStream('A', CALLOUT_RESOURCE, 0);
      const together = await Promise.all(ops.map((op) => outcome(run(threaded, tStream.id, op))));
      const alone: unknown[] = [];
      for (const op of ops) alone.push(await outcome(run(sequential, sStream.id, op)));
      await threaded.close();
      await sequential.close();
      expect(together, `seed ${seed}`).toEqual(alone);
      expect(tables(join(dir, 'together.db')), `seed ${seed}`).toEqual(tables(join(dir, 'alone.db')));
    }
  });
});
