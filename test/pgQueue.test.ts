import pg from 'pg';
import { afterEach, expect, it } from 'vitest';
import { PgStore } from '../src/store/pg/pgStore.js';
import { queueNotifications } from '../src/store/pg/pgQueue.js';
import type { PageCommit } from '../src/store/types.js';
import { describePg, freshPgDatabase } from './helpers/pg.js';
import { waitFor } from './helpers/tmp.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => { await Promise.all(closers.splice(0).map((c) => c())); });

const page = (objectId: string, id: string): PageCommit => ({
  changes: [{ objectId, updated: 5000, event: '{}', record: '{}' }],
  notifications: { instanceName: 'Docs', elementKey: 'concur', objectType: 'reports', maxEvents: 100, ids: [id] },
  rejected: [],
});

describePg('the outbox order of one instance on PostgreSQL', () => {
  // An ordered instance sends its oldest pending notification first. On PostgreSQL a queue
  // number is taken at insert and seen at commit: two streams of one instance committing
  // together must not show the later number while the earlier one is still invisible.
  it('a commit of another stream of the instance waits for one that queued before it, so numbers appear in order', async () => {
    const url = await freshPgDatabase('queue');
    const store = await PgStore.open(url);
    closers.push(() => store.close());
    const [polled, pushed] = await store.openStreams([
      { instance: 'Docs', resource: 'reports', initialCursor: 1000 }, { instance: 'Docs', resource: '(callout)', initialCursor: 1000 },
    ]);
    const held = new pg.Client({ connectionString: url });
    await held.connect();
    closers.push(() => held.end());
    const watch = new pg.Client({ connectionString: url });
    await watch.connect();
    closers.push(() => watch.end());

    await held.query('BEGIN');
    await queueNotifications(held as unknown as pg.PoolClient, pushed!.id, [{ id: 'FIRST', body: '{}', eventCount: 1 }], Date.now());
    const later = store.commitPage(polled!.id, page('R1', 'SECOND'));
    await waitFor('the second commit to wait on the first', async () => {
      const { rows } = await watch.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'pollbridge' AND wait_event_type = 'Lock'`);
      return rows.length === 1;
    });
    // Neither is visible yet: the head cannot be the later one.
    expect(await store.dueHeads(Date.now() + 1000, ['Docs'])).toEqual([]);
    await held.query('COMMIT');
    await later;
    const heads = await store.dueHeads(Date.now() + 1000, ['Docs']);
    expect(heads.map((h) => h.id)).toEqual(['FIRST']);
    const { rows } = await watch.query<{ id: string }>('SELECT id FROM notifications ORDER BY seq');
    expect(rows.map((r) => r.id)).toEqual(['FIRST', 'SECOND']);
  });
});
