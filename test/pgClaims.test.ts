import { afterEach, beforeAll, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { calloutsToIngest, dueHeads, dueNotifications, LIVE_CLAIMS_SQL, releaseClaims } from '../src/store/pg/pgOutbox.js';
import { createPool } from '../src/store/pg/pool.js';
import { PgStore } from '../src/store/pg/pgStore.js';
import type { AttemptOutcome, CalloutReceipt, DeliveryGroup, OutboxEntry } from '../src/store/types.js';
import { describePg, freshPgDatabase } from './helpers/pg.js';
import { PgRows } from './helpers/pgRows.js';
import { rng } from './helpers/rng.js';

// Replicas sharing one outbox: each PgStore.open is a replica of its own (a new id). Every test
// here tries to make two replicas hold one notification, a callback URL exceed its concurrency,
// or an ordered instance send out of order.

const opened: { close(): Promise<void> }[] = [];
afterEach(async () => { await Promise.all(opened.splice(0).map((s) => s.close())); });

async function replicas(url: string, count: number, claimMs = 60_000): Promise<PgStore[]> {
  const stores = await Promise.all(Array.from({ length: count }, () => PgStore.open(url, { claimMs, max: 4 })));
  opened.push(...stores);
  return stores;
}

async function rowsOf(url: string): Promise<PgRows> {
  const rows = new PgRows(url);
  opened.push(rows);
  return rows;
}

const attempt = (id: string, n: number, outcome: AttemptOutcome) => ({
  attempt: { notificationId: id, attempt: n, startedAt: Date.now(), durationMs: 1, statusCode: outcome.status === 'delivered' ? 200 : 500, error: undefined, responseExcerpt: undefined },
  outcome,
});

/** Polls `fn` until it returns something non-empty, at most `ms`. */
async function eventually<T extends unknown[]>(fn: () => Promise<T>, ms = 5000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const got = await fn();
    if (got.length > 0 || Date.now() > until) return got;
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function seeds(count: number, run: (seed: number) => Promise<void>): Promise<void> {
  for (let seed = 1; seed <= count; seed++) {
    try {
      await run(seed);
    } catch (err) {
      throw new Error(`seed ${seed}: ${(err as Error).message}`, { cause: err });
    }
  }
}

const push = (instance: string, n: number): CalloutReceipt => ({
  instance, source: 'push', notificationUri: undefined, receivedAt: n, body: `<n>${n}</n>`,
  notification: { eventType: 'SUBMIT', objectType: 'EXPRPT', objectUri: `https://x/R${n}`, eventDateTime: '', context: '' },
});
const ids = (entries: OutboxEntry[]): string[] => entries.map((e) => e.id);

let url: string;
beforeAll(async () => { url = await freshPgDatabase('claims'); });

describePg('claims on a shared outbox', () => {
  it('unordered, with callback groups: no notification held twice, no group past its max, every one delivered once, over 12 seeds', async () => {
    const stores = await replicas(url, 3);
    const db = await rowsOf(url);
    const instances = ['I0', 'I1', 'I2', 'I3', 'I4', 'I5'];
    await seeds(12, async (seed) => {
      await db.query('TRUNCATE notifications, attempts');
      const random = rng(seed);
      const groups: DeliveryGroup[] = [
        { key: `https://a.example/${seed}`, instances: ['I0', 'I1', 'I2'], max: 1 + Math.floor(random() * 3) },
        { key: `https://b.example/${seed}`, instances: ['I3', 'I4'], max: 1 + Math.floor(random() * 2) },
      ];
      const groupOf = new Map(groups.flatMap((g) => g.instances.map((i) => [i, g] as const)));
      const total = 40;
      await db.notifications(Array.from({ length: total }, (_, n) => ({ id: `s${seed}-n${n}`, instance: instances[Math.floor(random() * instances.length)]! })));

      // Held: given to a replica and not yet let go. A replica lets go before it writes the
      // attempt, so that a row seen held here is certainly still claimed in the database.
      const held = stores.map(() => new Map<string, OutboxEntry>());
      const finished = new Set<string>();
      const attemptsOf = new Map<string, number>();
      const violations: string[] = [];

      const worker = async (r: number): Promise<void> => {
        const store = stores[r]!;
        const random = rng(seed * 7919 + r);
        for (let step = 0; step < 400 && finished.size < total; step++) {
          if (random() < 0.6) {
            const asked = instances.filter(() => random() < 0.8);
            const got = await store.dueNotifications(Date.now(), 1 + Math.floor(random() * 5), new Set(held[r]!.keys()), asked, groups);
            for (const e of got) {
              if (!asked.includes(e.instance)) violations.push(`${e.id} of ${e.instance} not asked for`);
              if (finished.has(e.id)) violations.push(`${e.id} offered after its end`);
              held.forEach((h, other) => { if (h.has(e.id)) violations.push(`${e.id} offered to ${r} while held by ${other}`); });
              if (!(e.claimDeadline! > Date.now())) violations.push(`${e.id} offered with its deadline passed`);
              held[r]!.set(e.id, e);
            }
            for (const g of groups) {
              const inFlight = held.reduce((n, h) => n + [...h.values()].filter((e) => groupOf.get(e.instance) === g).length, 0);
              if (inFlight > g.max) violations.push(`group ${g.key}: ${inFlight} held, max ${g.max}`);
            }
          } else if (held[r]!.size > 0) {
            const letGo = [...held[r]!.values()].filter(() => random() < 0.7);
            for (const e of letGo) held[r]!.delete(e.id);
            await store.recordAttempts(letGo.map((e) => {
              const n = (attemptsOf.get(e.id) ?? 0) + 1;
              attemptsOf.set(e.id, n);
              const roll = random();
              // Failed ones are due again at once: the next claim races this one's release.
              if (roll < 0.3) return attempt(e.id, n, { status: 'pending', nextAttemptAt: 0 });
              finished.add(e.id);
              return attempt(e.id, n, roll < 0.9 ? { status: 'delivered', at: Date.now() } : { status: 'dead' });
            }));
          } else {
            await new Promise((resolve) => setTimeout(resolve, random() * 3));
          }
        }
      };
      // The database's own view, sampled meanwhile: live claims per group never past max.
      let sampling = true;
      const sampler = async (): Promise<void> => {
        for (let i = 0; i < 400 && sampling; i++) {
          for (const g of groups) {
            const [row] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM notifications WHERE status = 'pending'
              AND claimed_by IS NOT NULL AND claim_until >= now() AND instance = ANY($1)`, [g.instances]);
            if (row!.n > g.max) violations.push(`database: group ${g.key} has ${row!.n} live claims, max ${g.max}`);
          }
        }
      };
      const sampled = sampler();
      await Promise.all(stores.map((_, r) => worker(r)));
      sampling = false;
      await sampled;
      expect(violations).toEqual([]);
      expect(finished.size).toBe(total);
      const rows = await db.outbox();
      expect(rows.filter((row) => row.status === 'pending')).toEqual([]);
      // A finished row keeps no claim: recordAttempts let go of it.
      expect(rows.filter((row) => row.claimed_by !== null)).toEqual([]);
      const [{ n }] = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM attempts') as [{ n: number }];
      expect(n).toBe([...attemptsOf.values()].reduce((a, b) => a + b, 0));
    });
  }, 120_000);

  it('ordered: a head goes to one replica, the one behind it never while it is pending, over 12 seeds', async () => {
    const stores = await replicas(url, 3);
    const db = await rowsOf(url);
    const instances = ['O0', 'O1', 'O2', 'O3'];
    await seeds(12, async (seed) => {
      await db.query('TRUNCATE notifications, attempts');
      const random = rng(seed);
      const queue = new Map(instances.map((i) => [i, [] as string[]]));
      const drafts = Array.from({ length: 32 }, (_, n) => {
        const instance = instances[Math.floor(random() * instances.length)]!;
        queue.get(instance)!.push(`s${seed}-n${n}`);
        return { id: `s${seed}-n${n}`, instance };
      });
      await db.notifications(drafts);
      const held = stores.map(() => new Map<string, OutboxEntry>());
      const finished = new Set<string>();
      const attemptsOf = new Map<string, number>();
      const violations: string[] = [];
      const worker = async (r: number): Promise<void> => {
        const store = stores[r]!;
        const random = rng(seed * 7919 + r);
        for (let step = 0; step < 400 && finished.size < drafts.length; step++) {
          if (random() < 0.6) {
            // As the deliverer: an ordered instance with a request in flight here is not asked.
            const busy = new Set([...held[r]!.values()].map((e) => e.instance));
            const asked = instances.filter((i) => !busy.has(i) && random() < 0.8);
            for (const e of await store.dueHeads(Date.now(), asked)) {
              const head = queue.get(e.instance)!.find((id) => !finished.has(id));
              if (e.id !== head) violations.push(`${e.id} offered to ${r} while ${head} of ${e.instance} is pending`);
              held.forEach((h, other) => {
                for (const mine of h.values()) if (mine.instance === e.instance) violations.push(`${e.id} offered to ${r} while ${mine.id} held by ${other}`);
              });
              held[r]!.set(e.id, e);
            }
          } else if (held[r]!.size > 0) {
            const letGo = [...held[r]!.values()].filter(() => random() < 0.7);
            for (const e of letGo) held[r]!.delete(e.id);
            await store.recordAttempts(letGo.map((e) => {
              const n = (attemptsOf.get(e.id) ?? 0) + 1;
              attemptsOf.set(e.id, n);
              const roll = random();
              if (roll < 0.25) return attempt(e.id, n, { status: 'pending', nextAttemptAt: 0 });
              // Backing off: the instance waits behind it, nobody gets the one after.
              if (roll < 0.35) return attempt(e.id, n, { status: 'pending', nextAttemptAt: Date.now() + 20 });
              finished.add(e.id);
              return attempt(e.id, n, roll < 0.9 ? { status: 'delivered', at: Date.now() } : { status: 'dead' });
            }));
          } else {
            await new Promise((resolve) => setTimeout(resolve, random() * 3));
          }
        }
      };
      await Promise.all(stores.map((_, r) => worker(r)));
      expect(violations).toEqual([]);
      expect(finished.size).toBe(drafts.length);
      expect((await db.outbox()).filter((row) => row.claimed_by !== null)).toEqual([]);
    });
  }, 120_000);

  it('a claim that ran out is offered again, only once the first holder\'s deadline has passed; its late attempt leaves the new claim alone', async () => {
    const [a, b, c] = await replicas(url, 3, 200);
    const db = await rowsOf(url);
    await db.query('TRUNCATE notifications, attempts');
    await db.notifications([{ id: 'E1', instance: 'X' }, { id: 'H1', instance: 'Y' }, { id: 'H2', instance: 'Y' }]);
    const [first] = await a!.dueNotifications(Date.now(), 10, new Set(), ['X']);
    const [head] = await a!.dueHeads(Date.now(), ['Y']);
    expect([first?.id, head?.id]).toEqual(['E1', 'H1']);
    expect(await b!.dueNotifications(Date.now(), 10, new Set(), ['X'])).toEqual([]);
    expect(await b!.dueHeads(Date.now(), ['Y'])).toEqual([]);

    const taken = await eventually(() => b!.dueNotifications(Date.now(), 10, new Set(), ['X']));
    expect(taken.map((e) => e.id)).toEqual(['E1']);
    // The first holder was told to stop before the database let the second in.
    expect(Date.now()).toBeGreaterThanOrEqual(first!.claimDeadline!);
    const heads = await eventually(() => b!.dueHeads(Date.now(), ['Y']));
    expect(heads.map((e) => e.id)).toEqual(['H1']);
    expect(Date.now()).toBeGreaterThanOrEqual(head!.claimDeadline!);

    // A's attempt lands late: written, but B's claim stays B's, and C gets nothing of it.
    await a!.recordAttempts([attempt('E1', 1, { status: 'pending', nextAttemptAt: 0 }), attempt('H1', 1, { status: 'pending', nextAttemptAt: 0 })]);
    const rows = await db.query<{ id: string; claimed_by: string; attempts: number }>(`SELECT id, claimed_by, attempts FROM notifications WHERE id IN ('E1', 'H1') ORDER BY id`);
    expect(rows).toEqual([{ id: 'E1', claimed_by: b!.cluster.replica.id, attempts: 1 }, { id: 'H1', claimed_by: b!.cluster.replica.id, attempts: 1 }]);
    expect(await c!.dueNotifications(Date.now(), 10, new Set(), ['X'])).toEqual([]);
    expect(await c!.dueHeads(Date.now(), ['Y'])).toEqual([]);
  });

  it('recordAttempts frees the claim at once; a replica\'s own claim is offered to it again (not to others), renewed', async () => {
    const [a, b] = await replicas(url, 2);
    const db = await rowsOf(url);
    await db.query('TRUNCATE notifications, attempts');
    await db.notifications([{ id: 'E1', instance: 'X' }, { id: 'E2', instance: 'X' }]);
    expect((await a!.dueNotifications(Date.now(), 1, new Set(), ['X'])).map((e) => e.id)).toEqual(['E1']);
    // A's own, not excluded: offered again; excluded: the next one.
    expect((await a!.dueNotifications(Date.now(), 1, new Set(), ['X'])).map((e) => e.id)).toEqual(['E1']);
    expect((await a!.dueNotifications(Date.now(), 1, new Set(['E1']), ['X'])).map((e) => e.id)).toEqual(['E2']);
    expect(await b!.dueNotifications(Date.now(), 10, new Set(), ['X'])).toEqual([]);
    await a!.recordAttempts([attempt('E1', 1, { status: 'pending', nextAttemptAt: 0 })]);
    expect((await b!.dueNotifications(Date.now(), 10, new Set(), ['X'])).map((e) => e.id)).toEqual(['E1']);
    await a!.recordAttempts([attempt('E2', 1, { status: 'delivered', at: 5 })]);
    expect(await db.outbox()).toEqual([
      { id: 'E1', instance: 'X', status: 'pending', claimed_by: b!.cluster.replica.id, live: true },
      { id: 'E2', instance: 'X', status: 'delivered', claimed_by: null, live: false },
    ]);
  });

  it('two replicas writing overlapping batches of attempts in opposite orders never deadlock, over 30 rounds', async () => {
    const [a, b] = await replicas(url, 2);
    const db = await rowsOf(url);
    await db.query('TRUNCATE notifications, attempts');
    const names = Array.from({ length: 12 }, (_, i) => `R${String(i).padStart(2, '0')}`);
    await db.notifications(names.map((id) => ({ id, instance: 'X' })));
    for (let round = 1; round <= 30; round++) {
      const batch = names.map((id) => attempt(id, round, { status: 'pending', nextAttemptAt: 0 }));
      await Promise.all([a!.recordAttempts(batch), b!.recordAttempts([...batch].reverse()), a!.recordAttempts(batch.slice(3).reverse())]);
    }
    const [{ n }] = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM attempts') as [{ n: number }];
    expect(n).toBe(12 * 30);
  }, 60_000);

  it('releaseClaims (a clean stop) frees every notification, head and receipt the replica held, and no other replica\'s', async () => {
    const [b, c] = await replicas(url, 2);
    const db = await rowsOf(url);
    await db.query('TRUNCATE notifications, attempts, callouts');
    await db.notifications([{ id: 'E1', instance: 'X' }, { id: 'E2', instance: 'X' }, { id: 'H1', instance: 'Y' }, { id: 'C1', instance: 'Z' }]);
    const pool = createPool(url);
    opened.push({ close: () => pool.end() });
    const leaving = { pool, replica: { id: randomUUID(), name: 'leaving' }, claimMs: 60_000, chains: new Map() };
    expect(ids(await dueNotifications(leaving, Date.now(), 10, new Set(), ['X']))).toEqual(['E1', 'E2']);
    expect(ids(await dueHeads(leaving, Date.now(), ['Y']))).toEqual(['H1']);
    await c!.recordCallouts([push('X', 1)]);
    expect(await calloutsToIngest(leaving, ['X'], 10, new Set())).toHaveLength(1);
    expect(ids(await c!.dueNotifications(Date.now(), 10, new Set(), ['Z']))).toEqual(['C1']);
    expect(await b!.dueNotifications(Date.now(), 10, new Set(), ['X', 'Z'])).toEqual([]);
    await releaseClaims(leaving);
    expect(ids(await b!.dueNotifications(Date.now(), 10, new Set(), ['X', 'Z']))).toEqual(['E1', 'E2']);
    expect(ids(await b!.dueHeads(Date.now(), ['Y']))).toEqual(['H1']);
    expect(await b!.calloutsToIngest(['X'], 10, new Set())).toHaveLength(1);
  });

  it('a group full with claims of other replicas gives nothing; its own claims are not counted twice', async () => {
    const [a, b] = await replicas(url, 2);
    const db = await rowsOf(url);
    await db.query('TRUNCATE notifications, attempts');
    // Thousands of instances in one group: the claim counts through the partial index.
    const many = Array.from({ length: 3000 }, (_, i) => `M${i}`);
    await db.query(`INSERT INTO streams (instance, resource, cursor_us, origin_us) SELECT i, 'reports', 0, 0 FROM unnest($1::text[]) AS i
      ON CONFLICT DO NOTHING`, [many]);
    await db.query(`INSERT INTO notifications (id, stream_id, instance, body, event_count, next_attempt_at, created_at)
      SELECT 'N' || s.id, s.id, s.instance, '{}', 1, 0, 0 FROM streams s WHERE s.instance = ANY($1::text[]) ORDER BY s.id`, [many]);
    const group = { key: 'https://one.example', instances: many, max: 3 };
    expect(await a!.dueNotifications(Date.now(), 2, new Set(), many, [group])).toHaveLength(2);
    const bGot = await b!.dueNotifications(Date.now(), 10, new Set(), many, [group]);
    expect(bGot).toHaveLength(1);
    expect(await b!.dueNotifications(Date.now(), 10, new Set(bGot.map((e) => e.id)), many, [group])).toEqual([]);
    // A asking again without excluding its own: those two again, and nothing more.
    expect(await a!.dueNotifications(Date.now(), 10, new Set(), many, [group])).toHaveLength(2);
    // A group key is per URL: another group over the same instances has its own max.
    expect(await a!.dueNotifications(Date.now(), 10, new Set(), many, [{ ...group, key: 'https://two.example', max: 6 }])).toHaveLength(5);

    await db.query('ANALYZE notifications');
    const plan = (await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${LIVE_CLAIMS_SQL}`, [many])).map((r) => r['QUERY PLAN']).join('\n');
    expect(plan).toMatch(/notifications_claimed/);
    expect(plan).not.toMatch(/Seq Scan on notifications/);
  }, 60_000);

  it('nextDueAt: a row another replica holds counts from the end of its claim, not as due now', async () => {
    const [a, b] = await replicas(url, 2);
    const db = await rowsOf(url);
    await db.query('TRUNCATE notifications, attempts');
    await db.notifications([{ id: 'E1', instance: 'X' }, { id: 'H1', instance: 'Y' }, { id: 'F1', instance: 'Z', nextAttemptAt: Date.now() + 600_000 }]);
    await b!.dueNotifications(Date.now(), 10, new Set(), ['X']);
    await b!.dueHeads(Date.now(), ['Y']);
    const before = Date.now();
    const next = await a!.nextDueAt(['X'], ['Y']);
    expect(next).toBeGreaterThan(before + 30_000);
    expect(next).toBeLessThanOrEqual(Date.now() + 60_000);
    // A later row free to take comes first; B sees its own as due.
    expect(await a!.nextDueAt(['X', 'Z'], ['Y'])).toBeLessThan(before + 100_000);
    expect(await b!.nextDueAt(['X'], [])).toBe(0);
    expect(await b!.nextDueAt([], ['Y'])).toBe(0);
    expect(await a!.nextDueAt(['Z'], [])).toBeGreaterThan(before + 500_000);
    expect(await a!.nextDueAt(['W'], ['V'])).toBeUndefined();
  });
});

describePg('callout receipts across replicas', () => {

  it('two replicas completing one receipt at once queue one notification, over 25 rounds; so do two receipts of one event', async () => {
    const [a, b] = await replicas(url, 2);
    const db = await rowsOf(url);
    const stream = await db.stream('A', '(callout)');
    for (let round = 0; round < 25; round++) {
      const [r1, r2, r3] = (await a!.recordCallouts([push('A', round), push('A', round), push('A', round)])).map((r) => r.id);
      const same = await Promise.all([
        a!.completeCallout(r1!, stream, `one-${round}`, { id: `a${round}`, body: '{}', eventCount: 1 }),
        b!.completeCallout(r1!, stream, `two-${round}`, { id: `b${round}`, body: '{}', eventCount: 1 }),
      ]);
      expect(same.filter((r) => r.queued), `round ${round}`).toHaveLength(1);
      const key = await Promise.all([
        a!.completeCallout(r2!, stream, `k-${round}`, { id: `c${round}`, body: '{}', eventCount: 1 }),
        b!.completeCallout(r3!, stream, `k-${round}`, { id: `d${round}`, body: '{}', eventCount: 1 }),
      ]);
      expect(key.filter((r) => r.queued), `round ${round}`).toHaveLength(1);
    }
    const [{ n }] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM notifications WHERE stream_id = $1`, [stream]) as [{ n: number }];
    expect(n).toBe(50);
    expect(await a!.calloutsToIngest(['A'], 100, new Set())).toEqual([]);
  }, 60_000);

  it('calloutsToIngest: replicas asking at once get disjoint receipts; a claim that ran out goes to another; completion ends it', async () => {
    const [a, b, c] = await replicas(url, 3, 1000);
    const db = await rowsOf(url);
    await db.query('TRUNCATE callouts');
    await a!.recordCallouts(Array.from({ length: 30 }, (_, n) => push(n % 2 ? 'A' : 'B', n)));
    const got = await Promise.all([a!, b!, c!].map((s) => s.calloutsToIngest(['A', 'B'], 12, new Set())));
    const all = got.flat().map((r) => r.id);
    expect(new Set(all).size).toBe(all.length);
    expect(all).toHaveLength(30);
    for (const rows of got) expect(rows.map((r) => r.id)).toEqual([...rows.map((r) => r.id)].sort((x, y) => x - y));
    expect(await a!.calloutsToIngest(['A', 'B'], 100, new Set(got[0]!.map((r) => r.id)))).toEqual([]);

    const stream = await db.stream('A', '(callout)');
    const mine = got[0]![0]!;
    const later = await eventually(() => b!.calloutsToIngest(['A', 'B'], 100, new Set(got[1]!.map((r) => r.id))));
    expect(later.map((r) => r.id)).toContain(mine.id);
    // B holds it now; A completes it anyway (its fetch ended late): done once, the claim gone.
    expect(await a!.completeCallout(mine.id, stream, 'late', { id: 'L1', body: '{}', eventCount: 1 })).toEqual({ queued: true });
    expect(await b!.completeCallout(mine.id, stream, 'late2', { id: 'L2', body: '{}', eventCount: 1 })).toEqual({ queued: false });
    expect(await db.query(`SELECT claimed_by FROM callouts WHERE id = $1`, [mine.id])).toEqual([{ claimed_by: null }]);
  });

  it('a database error reaches the caller as an Error naming the call, and the store keeps working', async () => {
    const [a] = await replicas(url, 1);
    const db = await rowsOf(url);
    const stream = await db.stream('E', '(callout)');
    const [r1] = (await a!.recordCallouts([push('E', 1)])).map((r) => r.id);
    await expect(a!.completeCallout(r1!, 999_999, 'k', { id: 'X1', body: '{}', eventCount: 1 })).rejects.toThrow(/^completeCallout failed: .*foreign key.*SQLSTATE 23503/);
    // Every connection of the pool cut by the server: one failed call at most, then it reconnects.
    await db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pollbridge'`);
    const failures: string[] = [];
    for (let i = 0; i < 6; i++) {
      const outcome = await a!.calloutCounts().then(() => undefined, (err: Error) => err.message);
      if (outcome === undefined) break;
      failures.push(outcome);
    }
    expect(failures.length).toBeLessThan(6);
    for (const f of failures) expect(f).toMatch(/^calloutCounts failed: /);
    expect(await a!.completeCallout(r1!, stream, 'k', { id: 'X1', body: '{}', eventCount: 1 })).toEqual({ queued: true });
  });
});
