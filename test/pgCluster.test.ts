import pg from 'pg';
import { afterEach, expect, it } from 'vitest';
import { PgStore } from '../src/store/pg/pgStore.js';
import type { Lease } from '../src/store/types.js';
import { describePg, freshPgDatabase } from './helpers/pg.js';
import { rng } from './helpers/rng.js';

const opened: { close(): Promise<void> }[] = [];
afterEach(async () => { await Promise.all(opened.splice(0).map((s) => s.close().catch(() => {}))); });

async function replica(url: string, name: string): Promise<PgStore> {
  const store = await PgStore.open(url, { replicaName: name, max: 4 });
  opened.push(store);
  return store;
}

/** Stream rows as the polling side makes them (inserted here: the leases are what is under test). */
async function addStreams(url: string, n: number, prefix = 'company-'): Promise<number[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ id: string }>(
      `INSERT INTO streams (instance, resource, cursor_us, origin_us) SELECT $2 || i, 'reports', 0, 0 FROM generate_series(1, $1) i RETURNING id`, [n, prefix]);
    return rows.map((r) => Number(r.id));
  } finally {
    await client.end();
  }
}

async function sql<T extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

/** Moves every lease and heartbeat `ms` into the past: the database's clock seen to run on, without a wait. */
const age = (url: string, ms: number): Promise<unknown> => Promise.all([
  sql(url, `UPDATE stream_leases SET expires_at = expires_at - $1 * interval '1 millisecond' WHERE expires_at IS NOT NULL`, [ms]),
  sql(url, `UPDATE replicas SET expires_at = expires_at - $1 * interval '1 millisecond'`, [ms]),
]);

const TTL = 60_000;
const fences = (held: Lease[]): Record<number, number> => Object.fromEntries(held.map((l) => [l.streamId, l.fence]));

describePg('stream leases on PostgreSQL', () => {
  it('heartbeats list the live replicas by id; one that stopped renewing drops out', async () => {
    const url = await freshPgDatabase();
    const [a, b] = [await replica(url, 'vm-a'), await replica(url, 'vm-b')];
    await a.cluster.heartbeat(TTL);
    const live = await b.cluster.heartbeat(TTL);
    expect(live.map((r) => r.name).sort()).toEqual(['vm-a', 'vm-b']);
    expect(live.map((r) => r.id)).toEqual([a.cluster.replica.id, b.cluster.replica.id].sort());
    expect(live.find((r) => r.name === 'vm-a')).toMatchObject({ pid: process.pid });
    await age(url, TTL + 1);
    expect((await b.cluster.heartbeat(TTL)).map((r) => r.name)).toEqual(['vm-b']);
  });

  it('takes a held stream only once its lease has run out, with a higher fence; the stale holder cannot renew it', async () => {
    const url = await freshPgDatabase();
    const [a, b] = [await replica(url, 'vm-a'), await replica(url, 'vm-b')];
    const [s1, s2] = await addStreams(url, 2);
    await a.cluster.heartbeat(TTL);
    await b.cluster.heartbeat(TTL);
    const first = await a.cluster.syncLeases({ keep: [], take: [s1!, s2!], release: [] }, TTL);
    expect(fences(first.held)).toEqual({ [s1!]: 1, [s2!]: 1 });
    // Held and running: B gets nothing, and A keeps both with the same fences.
    expect((await b.cluster.syncLeases({ keep: [], take: [s1!, s2!], release: [] }, TTL)).held).toEqual([]);
    expect(fences((await a.cluster.syncLeases({ keep: [s1!, s2!], take: [], release: [] }, TTL)).held)).toEqual({ [s1!]: 1, [s2!]: 1 });
    // A stops renewing; B's heartbeat goes on. A second short of the expiry, nothing moves.
    await age(url, TTL - 1000);
    await b.cluster.heartbeat(TTL);
    expect((await b.cluster.syncLeases({ keep: [], take: [s1!], release: [] }, TTL)).held).toEqual([]);
    await age(url, 1000);
    await b.cluster.heartbeat(TTL);
    expect(fences((await b.cluster.syncLeases({ keep: [], take: [s1!], release: [] }, TTL)).held)).toEqual({ [s1!]: 2 });
    // A comes back: its renewal of s1 fails (B's now) and of s2 too (ran out: B might have polled it).
    await a.cluster.heartbeat(TTL);
    expect((await a.cluster.syncLeases({ keep: [s1!, s2!], take: [], release: [] }, TTL)).held).toEqual([]);
    const again = await a.cluster.syncLeases({ keep: [], take: [s1!, s2!], release: [] }, TTL);
    expect(fences(again.held)).toEqual({ [s2!]: 2 });
    const holders = await a.cluster.leaseHolders();
    expect(holders.map((h) => [h.streamId, h.replica, h.fence])).toEqual([[s1, 'vm-b', 2], [s2, 'vm-a', 2]]);
    expect(holders.every((h) => h.expiresAt! > again.dbNow)).toBe(true);
  });

  it('takes at once the leases of a replica whose heartbeat lapsed, and a take answered late keeps its fence', async () => {
    const url = await freshPgDatabase();
    const [a, b] = [await replica(url, 'vm-a'), await replica(url, 'vm-b')];
    const [s1] = await addStreams(url, 1);
    await a.cluster.heartbeat(TTL);
    await a.cluster.syncLeases({ keep: [], take: [s1!], release: [] }, TTL);
    // A's own repeated take (its last answer lost) renews, no new fence.
    expect(fences((await a.cluster.syncLeases({ keep: [], take: [s1!], release: [] }, TTL)).held)).toEqual({ [s1!]: 1 });
    await sql(url, `UPDATE replicas SET expires_at = now() - interval '1 second' WHERE id = $1`, [a.cluster.replica.id]);
    await b.cluster.heartbeat(TTL);
    expect(fences((await b.cluster.syncLeases({ keep: [], take: [s1!], release: [] }, TTL)).held)).toEqual({ [s1!]: 2 });
  });

  it('release and leave free streams at once; leave also drops its claims and its replica row', async () => {
    const url = await freshPgDatabase();
    const [a, b] = [await replica(url, 'vm-a'), await replica(url, 'vm-b')];
    const [s1, s2, s3] = await addStreams(url, 3);
    await a.cluster.heartbeat(TTL);
    await b.cluster.heartbeat(TTL);
    await a.cluster.syncLeases({ keep: [], take: [s1!, s2!, s3!], release: [] }, TTL);
    expect(fences((await a.cluster.syncLeases({ keep: [s2!, s3!], take: [], release: [s1!] }, TTL)).held)).toEqual({ [s2!]: 1, [s3!]: 1 });
    expect(fences((await b.cluster.syncLeases({ keep: [], take: [s1!], release: [] }, TTL)).held)).toEqual({ [s1!]: 2 });
    const mine = a.cluster.replica.id;
    await sql(url, `INSERT INTO notifications (id, stream_id, instance, body, event_count, next_attempt_at, created_at, claimed_by, claim_until)
      VALUES ('n1', $1, 'company-1', '{}', 1, 0, 0, $2, now() + interval '1 minute'), ('n2', $1, 'company-1', '{}', 1, 0, 0, $3, now() + interval '1 minute')`, [s1, mine, b.cluster.replica.id]);
    await sql(url, `INSERT INTO callouts (instance, source, body, event_type, object_type, object_uri, event_date_time, context, received_at, claimed_by, claim_until)
      VALUES ('company-1', 'push', '', 'x', 'EXPRPT', 'u', 't', '', 0, $1, now() + interval '1 minute')`, [mine]);
    await a.cluster.leave();
    expect(fences((await b.cluster.syncLeases({ keep: [s1!], take: [s2!, s3!], release: [] }, TTL)).held)).toEqual({ [s1!]: 2, [s2!]: 2, [s3!]: 2 });
    expect(await sql(url, 'SELECT id, claimed_by FROM notifications ORDER BY id')).toEqual([{ id: 'n1', claimed_by: null }, { id: 'n2', claimed_by: b.cluster.replica.id }]);
    expect(await sql(url, 'SELECT claimed_by, claim_until FROM callouts')).toEqual([{ claimed_by: null, claim_until: null }]);
    expect((await b.cluster.heartbeat(TTL)).map((r) => r.name)).toEqual(['vm-b']);
  });

  it('leaseHolders lists unheld streams and lapsed holders as nobody\'s', async () => {
    const url = await freshPgDatabase();
    const a = await replica(url, 'vm-a');
    const [s1, s2] = await addStreams(url, 2);
    await a.cluster.heartbeat(TTL);
    await a.cluster.syncLeases({ keep: [], take: [s1!], release: [] }, TTL);
    expect((await a.cluster.leaseHolders()).map((h) => [h.streamId, h.replica])).toEqual([[s1, 'vm-a'], [s2, undefined]]);
    await age(url, TTL);
    expect((await a.cluster.leaseHolders()).map((h) => [h.streamId, h.replica, h.expiresAt])).toEqual([[s1, undefined, undefined], [s2, undefined, undefined]]);
  });

  it('never lets two replicas hold one stream at once, over seeded random rounds with pauses past the lease', async () => {
    const url = await freshPgDatabase();
    const ttl = 400;
    for (let seed = 1; seed <= 4; seed++) {
      const replicas = await Promise.all(['vm-a', 'vm-b', 'vm-c'].map((n) => replica(url, `${n}-${seed}`)));
      const streams = await addStreams(url, 8, `seed-${seed}-`);
      // Every holding the database granted: a stream, a replica, a fence, and from when until when
      // by the database's clock (renewals extend it). A holding let go of (`released`) ends when
      // its release commits: a take waiting on the row lock meanwhile started earlier, by its now().
      type Holding = { stream: number; replica: string; fence: number; from: number; end: number; released: boolean };
      const holdings: Holding[] = [];
      const run = async (store: PgStore, index: number): Promise<void> => {
        const random = rng(seed * 100 + index);
        const mine = new Map<number, Holding>();
        for (let round = 0; round < 25; round++) {
          const want = new Set(streams.filter(() => random() < 0.5));
          const heldIds = [...mine.keys()];
          const me = (await store.cluster.heartbeat(ttl)).find((r) => r.id === store.cluster.replica.id)!;
          const result = await store.cluster.syncLeases({
            keep: heldIds.filter((id) => want.has(id)), take: [...want].filter((id) => !mine.has(id)), release: heldIds.filter((id) => !want.has(id)),
          }, ttl);
          // Held until the lease or the heartbeat runs out, whichever is first.
          const until = Math.min(me.expiresAt, result.dbNow + ttl);
          const now = new Map(result.held.map((l) => [l.streamId, l.fence]));
          for (const [stream, h] of mine) {
            if (now.get(stream) === h.fence) continue;
            h.released = !want.has(stream);
            mine.delete(stream);
          }
          for (const [stream, fence] of now) {
            const h = mine.get(stream);
            if (h) h.end = until;
            else {
              const fresh = { stream, replica: store.cluster.replica.name, fence, from: result.dbNow, end: until, released: false };
              holdings.push(fresh);
              mine.set(stream, fresh);
            }
          }
          // Now and then a pause past the lease (a GC, a frozen VM); else a short one.
          const pause = random() < 0.15 ? ttl * (1 + random()) : random() * ttl / 4;
          await new Promise((resolve) => setTimeout(resolve, pause));
        }
      };
      await Promise.all(replicas.map((r, i) => run(r, i)));
      for (const stream of streams) {
        const list = holdings.filter((h) => h.stream === stream).sort((x, y) => x.fence - y.fence);
        for (let i = 1; i < list.length; i++) {
          const [before, after] = [list[i - 1]!, list[i]!];
          if (after.fence === before.fence) expect.fail(`seed ${seed}: stream ${stream} fence ${after.fence} granted to ${before.replica} and ${after.replica}`);
          if (!before.released && after.from < before.end) {
            expect.fail(`seed ${seed}: stream ${stream} given to ${after.replica} (fence ${after.fence}) at ${after.from}, ${before.end - after.from} ms before ${before.replica}'s holding (fence ${before.fence}) ended`);
          }
        }
      }
      // The run tried something: streams changed hands, some after a holder's pause.
      expect(streams.some((stream) => new Set(holdings.filter((h) => h.stream === stream).map((h) => h.replica)).size > 1), `seed ${seed}`).toBe(true);
      await Promise.all(replicas.map((r) => r.cluster.leave()));
    }
  }, 120_000);
});
