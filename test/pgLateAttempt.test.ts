import { afterEach, expect, it } from 'vitest';
import { PgStore } from '../src/store/pg/pgStore.js';
import type { AttemptOutcome } from '../src/store/types.js';
import { describePg, freshPgDatabase } from './helpers/pg.js';
import { PgRows } from './helpers/pgRows.js';

// A replica paused in its request past its claim (a frozen VM): another replica claims the
// notification and sends it again, and the receiver accepts it. The paused one's attempt, failed
// or its last, lands after: the notification the receiver accepted stays delivered.

const opened: { close(): Promise<void> }[] = [];
afterEach(async () => { await Promise.all(opened.splice(0).map((s) => s.close())); });

const attempt = (id: string, n: number, statusCode: number, outcome: AttemptOutcome) => ({
  attempt: { notificationId: id, attempt: n, startedAt: Date.now(), durationMs: 1, statusCode, error: statusCode === 200 ? undefined : `HTTP ${statusCode}`, responseExcerpt: undefined },
  outcome,
});

async function claimedAway(): Promise<{ a: PgStore; b: PgStore; db: PgRows }> {
  const url = await freshPgDatabase('late');
  const [a, b] = await Promise.all([PgStore.open(url, { claimMs: 150 }), PgStore.open(url, { claimMs: 60_000 })]);
  const db = new PgRows(url);
  opened.push(a, b, db);
  await db.notifications([{ id: 'N1', instance: 'X' }]);
  expect((await a.dueNotifications(Date.now(), 1, new Set(), ['X'])).map((e) => e.id)).toEqual(['N1']);
  for (let i = 0; i < 100; i++) {
    if ((await b.dueNotifications(Date.now(), 1, new Set(), ['X'])).length > 0) return { a, b, db };
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('the claim never ran out');
}

describePg('an attempt recorded after its claim ran out', () => {
  it('a last attempt failing late does not dead-letter what the new holder delivered', async () => {
    const { a, b } = await claimedAway();
    await b.recordAttempts([attempt('N1', 1, 200, { status: 'delivered', at: Date.now() })]);
    await a.recordAttempts([attempt('N1', 1, 503, { status: 'dead' })]);
    expect((await a.getNotification('N1'))!.status).toBe('delivered');
    expect(await b.listNotifications({ status: 'dead', limit: 10 })).toEqual([]);
    // The attempt log keeps the answer the receiver accepted under that number.
    expect((await a.getNotification('N1'))!.attemptLog.map((x) => x.statusCode)).toEqual([200]);
  });

  it('a failed attempt landing late leaves what the new holder delivered delivered, not due again', async () => {
    const { a, b } = await claimedAway();
    await b.recordAttempts([attempt('N1', 1, 200, { status: 'delivered', at: Date.now() })]);
    await a.recordAttempts([attempt('N1', 1, 500, { status: 'pending', nextAttemptAt: Date.now() })]);
    const n = (await a.getNotification('N1'))!;
    expect([n.status, n.lastError]).toEqual(['delivered', undefined]);
    expect(await b.dueNotifications(Date.now() + 60_000, 5, new Set(), ['X'])).toEqual([]);
  });
});
