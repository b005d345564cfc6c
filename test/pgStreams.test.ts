import pg from 'pg';
import { afterEach, expect, it } from 'vitest';
import { PgStore } from '../src/store/pg/pgStore.js';
import type { PageCommit } from '../src/store/types.js';
import { describePg, freshPgDatabase } from './helpers/pg.js';
import { rng } from './helpers/rng.js';
import { waitFor } from './helpers/tmp.js';

// What only a store shared by processes, or reached over a pool of connections, can get wrong.

const closers: (() => Promise<void>)[] = [];
afterEach(async () => { await Promise.all(closers.splice(0).map((c) => c())); });

async function open(url: string): Promise<PgStore> {
  const store = await PgStore.open(url);
  closers.push(() => store.close());
  return store;
}

const page = (objectId: string, ids: string[], cursor: number, chain?: PageCommit['chain']): PageCommit => ({
  changes: [{ objectId, updated: 1, event: '{}', record: '{}' }],
  notifications: { instanceName: 'Docs', elementKey: 'concur', objectType: 'reports', maxEvents: 100, ids },
  rejected: [],
  progress: { cursor },
  chain,
});

describePg('the PostgreSQL store, shared and pooled', () => {
  it('replicas opening the same new streams at once, each in its own order, all get the same streams (seeded)', async () => {
    for (let seed = 1; seed <= 4; seed++) {
      const random = rng(seed);
      const url = await freshPgDatabase('open');
      const replicas = await Promise.all([open(url), open(url), open(url)]);
      const keys = Array.from({ length: 300 }, (_, i) => ({ instance: `I${i % 37}`, resource: `r${i}`, initialCursor: i }));
      const orders = replicas.map(() => [...keys].sort(() => random() - 0.5));
      const opened = await Promise.all(replicas.map((r, i) => r.openStreams(orders[i]!)));
      const ids = opened.map((streams) => new Map(streams.map((s) => [`${s.instance}/${s.resource}`, s.id])));
      for (let i = 0; i < 3; i++) {
        expect(opened[i]!.map((s) => s.resource), `seed ${seed}`).toEqual(orders[i]!.map((k) => k.resource));
        expect(ids[i], `seed ${seed}`).toEqual(ids[0]);
      }
      expect(new Set(ids[0]!.values()).size, `seed ${seed}`).toBe(300);
    }
  });

  it('a poll\'s commits made without waiting land in order; after one fails the rest are refused and the cursor stays', async () => {
    const store = await open(await freshPgDatabase('chain'));
    const { id } = await store.openStream('Docs', 'reports', 0);
    const commits = Array.from({ length: 12 }, (_, i) => store.commitPage(id, page(`R${i}`, i === 7 ? [] : [`N${i}`], 100 + i, { id: 'poll-1', seq: i })));
    const settled = await Promise.allSettled(commits);
    expect(settled.map((s) => s.status)).toEqual([...Array<string>(7).fill('fulfilled'), ...Array<string>(5).fill('rejected')]);
    expect((settled[7] as PromiseRejectedResult).reason).toMatchObject({ message: expect.stringMatching(/^commit of a page of stream \d+ failed: .*notification ids/) });
    expect((settled[8] as PromiseRejectedResult).reason).toMatchObject({ message: 'commit 8 of a poll refused: an earlier commit of the same poll did not land' });
    expect((await store.openStream('Docs', 'reports', 0)).cursor).toBe(106);
    expect((await store.listNotifications({ limit: 100 })).map((n) => n.id).reverse()).toEqual(['N0', 'N1', 'N2', 'N3', 'N4', 'N5', 'N6']);
    // The next poll starts a chain of its own.
    expect((await store.commitPage(id, page('R7', ['N7'], 107, { id: 'poll-2', seq: 0 }))).notificationIds).toEqual(['N7']);
  });

  it('two replicas committing the same changes at once, in opposite orders, queue each once and never deadlock', async () => {
    const url = await freshPgDatabase('race');
    const [a, b] = await Promise.all([open(url), open(url)]);
    const [blocker, watch] = [new pg.Client({ connectionString: url }), new pg.Client({ connectionString: url })];
    await Promise.all([blocker.connect(), watch.connect()]);
    closers.push(() => blocker.end(), () => watch.end());
    for (let round = 0; round < 3; round++) {
      const { id } = await a.openStream('Docs', `r${round}`, 0);
      const changes = Array.from({ length: 300 }, (_, i) => ({ objectId: `R${i}`, updated: i % 3, event: '{}', record: '{}' }));
      // A key in the middle held by a third transaction: both commits are stopped half done, each
      // holding what it inserted so far, and go on together once it is let go.
      await blocker.query('BEGIN');
      await blocker.query(`INSERT INTO seen (stream_id, object_id, updated_us) VALUES ($1, 'R150', 0)`, [id]);
      const both = Promise.all([a, b].map((s, n) => s.commitPage(id, {
        ...page('x', [], 0), changes: n === 0 ? changes : [...changes].reverse(),
        notifications: { ...page('x', [], 0).notifications, maxEvents: 1000, ids: [`N${round}-${n}`] },
      })));
      await waitFor('both commits to wait', async () => (await watch.query(`SELECT 1 FROM pg_stat_activity
        WHERE application_name = 'pollbridge' AND wait_event_type = 'Lock' AND starts_with(query, 'INSERT INTO seen')`)).rowCount === 2);
      await blocker.query('ROLLBACK');
      expect((await both).map((r) => r.fresh).sort(), `round ${round}`).toEqual([0, 300]);
    }
    expect((await a.notificationCounts()).pending).toBe(3);
  });

  it('a database error reaches the caller saying what failed; the store keeps working', async () => {
    const url = await freshPgDatabase('err');
    const store = await open(url);
    await expect(store.commitPage(999, page('A', ['N1'], 5))).rejects.toThrow(/^commit of a page of stream 999 failed: .*foreign key/);
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    closers.push(() => admin.end());
    // Every connection of the store cut by the server (a restart, a failover).
    await store.openStream('Docs', 'reports', 0);
    await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pollbridge' AND datname = current_database()`);
    const after = await Promise.allSettled([store.streams(), store.streams()]);
    for (const r of after) if (r.status === 'rejected') expect((r.reason as Error).message).toMatch(/^reading the streams failed: /);
    expect((await store.streams()).map((s) => s.resource)).toEqual(['reports']);
  });
});
