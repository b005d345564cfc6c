import { afterEach, expect, it } from 'vitest';
import { PgStore } from '../src/store/pg/pgStore.js';
import { describePg, freshPgDatabase } from './helpers/pg.js';
import { PgRows } from './helpers/pgRows.js';

// An ordered instance sends one notification at a time, oldest first. A replay makes an older
// notification pending again while a newer one may be in flight on another replica: it goes
// next, not beside it.

const opened: { close(): Promise<void> }[] = [];
afterEach(async () => { await Promise.all(opened.splice(0).map((s) => s.close())); });

const delivered = (id: string) => ({
  attempt: { notificationId: id, attempt: 1, startedAt: Date.now(), durationMs: 1, statusCode: 200, error: undefined, responseExcerpt: undefined },
  outcome: { status: 'delivered' as const, at: Date.now() },
});

describePg('an ordered instance replayed across replicas', () => {
  it('a notification replayed while a newer one is in flight on another replica is not offered until that one ends', async () => {
    const url = await freshPgDatabase('ordreplay');
    const [a, b] = await Promise.all([PgStore.open(url, { claimMs: 60_000 }), PgStore.open(url, { claimMs: 60_000 })]);
    const db = new PgRows(url);
    opened.push(a, b, db);
    await db.notifications([{ id: 'H1', instance: 'Ledger' }, { id: 'H2', instance: 'Ledger' }]);
    expect((await a.dueHeads(Date.now(), ['Ledger'])).map((e) => e.id)).toEqual(['H1']);
    await a.recordAttempts([delivered('H1')]);
    // a sends H2 now; the operator replays H1 meanwhile.
    expect((await a.dueHeads(Date.now(), ['Ledger'])).map((e) => e.id)).toEqual(['H2']);
    expect(await b.replay(['H1'], Date.now())).toEqual(['H1']);
    expect((await b.dueHeads(Date.now(), ['Ledger'])).map((e) => e.id), 'offered beside H2, in flight on a').toEqual([]);
    // H2 answered: H1 goes next, to whoever asks.
    await a.recordAttempts([delivered('H2')]);
    expect((await b.dueHeads(Date.now(), ['Ledger'])).map((e) => e.id)).toEqual(['H1']);
  });
});
