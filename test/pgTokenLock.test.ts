import pg from 'pg';
import { afterEach, expect, it } from 'vitest';
import { PgStore } from '../src/store/pg/pgStore.js';
import type { AuthState } from '../src/store/types.js';
import { describePg, freshPgDatabase, pgAdminUrl } from './helpers/pg.js';
import { rng } from './helpers/rng.js';

const closing: { close?(): Promise<void>; end?(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(closing.splice(0).map((c) => (c.close ? c.close() : c.end!())));
});

async function stores(url: string, count: number): Promise<PgStore[]> {
  const opened = await Promise.all(Array.from({ length: count }, (_, i) => PgStore.open(url, { replicaName: `r${i}` })));
  closing.push(...opened);
  return opened;
}

function pool(url: string): pg.Pool {
  const p = new pg.Pool({ connectionString: url, max: 4 });
  closing.push(p);
  return p;
}

/** What a refresh stores, written through a pool of its own (as saveAuthState writes through the store's pool, not the lock's connection). */
async function save(p: pg.Pool, instance: string, s: AuthState): Promise<void> {
  await p.query(`INSERT INTO auth_state (instance, seed_hash, refresh_token, geolocation, access_token, access_expires_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, 0) ON CONFLICT (instance) DO UPDATE SET seed_hash = excluded.seed_hash, refresh_token = excluded.refresh_token,
    geolocation = excluded.geolocation, access_token = excluded.access_token, access_expires_at = excluded.access_expires_at`,
  [instance, s.seedHash, s.refreshToken, s.geolocation ?? null, s.accessToken ?? null, s.accessExpiresAt ?? null]);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The backend holding an advisory lock on the database of `url`, if any. */
async function lockHolderPid(admin: pg.Pool, url: string): Promise<number | undefined> {
  const db = new URL(url).pathname.slice(1);
  const { rows } = await admin.query<{ pid: number }>(`SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database
    WHERE l.locktype = 'advisory' AND l.granted AND d.datname = $1`, [db]);
  return rows[0]?.pid;
}

describePg('the token lock', () => {
  it('one holder at a time per instance across replicas, each seeing what the one before saved', { timeout: 60_000 }, async () => {
    for (const seed of [1, 2, 3]) {
      const url = await freshPgDatabase('lock');
      const replicas = await stores(url, 3);
      const writer = pool(url);
      const random = rng(seed);
      let inside = 0;
      let most = 0;
      const seen: string[] = [];
      // Each holding rotates the stored token as a refresh would: read n, store n + 1. A second
      // holder at once, or one reading before the last save committed, repeats a number.
      const rounds = Array.from({ length: 40 }, (_, i) => {
        const replica = replicas[Math.floor(random() * replicas.length)]!;
        const holdMs = Math.floor(random() * 8);
        return replica.cluster.withTokenLock('acme', async (stored) => {
          inside++;
          most = Math.max(most, inside);
          const n = stored ? Number(stored.refreshToken) : 0;
          seen.push(String(n));
          await sleep(holdMs);
          await save(writer, 'acme', { seedHash: 's', refreshToken: String(n + 1), geolocation: undefined, accessToken: `a${i}`, accessExpiresAt: i });
          inside--;
          return n;
        });
      });
      const got = await Promise.all(rounds);
      expect(most, `seed ${seed}`).toBe(1);
      expect([...got].sort((a, b) => a - b), `seed ${seed}`).toEqual(Array.from({ length: 40 }, (_, i) => i));
      expect(new Set(seen).size, `seed ${seed}`).toBe(40);
      await Promise.all(closing.splice(0).map((c) => (c.close ? c.close() : c.end!())));
    }
  });

  it('hands the stored state as saved, and another instance\'s lock is another lock', async () => {
    const url = await freshPgDatabase('lock');
    const [a, b] = await stores(url, 2);
    const writer = pool(url);
    const state: AuthState = { seedHash: 'h', refreshToken: 'r1', geolocation: 'https://emea.example', accessToken: 'a1', accessExpiresAt: 1234 };
    await save(writer, 'acme', state);
    await save(writer, 'globex', { ...state, geolocation: undefined, accessToken: undefined, accessExpiresAt: undefined });
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    let acmeStored: AuthState | undefined;
    const acme = a!.cluster.withTokenLock('acme', async (stored) => {
      acmeStored = stored;
      await held;
    });
    // Held by a for acme: b takes globex's meanwhile, and reads it as stored.
    const globex = await b!.cluster.withTokenLock('globex', async (stored) => stored);
    expect(globex).toEqual({ seedHash: 'h', refreshToken: 'r1', geolocation: undefined, accessToken: undefined, accessExpiresAt: undefined });
    expect(await b!.cluster.withTokenLock('nobody', async (stored) => stored)).toBeUndefined();
    release();
    await acme;
    expect(acmeStored).toEqual(state);
  });

  it('a refresh that throws lets the lock go, and what it threw reaches the caller', async () => {
    const url = await freshPgDatabase('lock');
    const [a, b] = await stores(url, 2);
    await expect(a!.cluster.withTokenLock('acme', async () => {
      throw new Error('invalid_grant');
    })).rejects.toThrow('invalid_grant');
    await expect(b!.cluster.withTokenLock('acme', async () => 'next')).resolves.toBe('next');
  });

  it('a connection that dies while the lock is held fails the call, not the process; the server let the lock go', { timeout: 30_000 }, async () => {
    const url = await freshPgDatabase('lock');
    const [a, b] = await stores(url, 2);
    const admin = pool(pgAdminUrl());
    const outcome = a!.cluster.withTokenLock('acme', async () => {
      const pid = await lockHolderPid(admin, url);
      expect(pid).toBeDefined();
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      // The other replica gets the lock once the server has dropped the killed session; the
      // killed connection hears of it while no query of its own runs (its 'error' event).
      await b!.cluster.withTokenLock('acme', async () => {});
      await sleep(200);
      return 'refreshed';
    });
    await expect(outcome).rejects.toThrow(/lost with its connection|terminat/i);
    // The store goes on: a new connection from the pool takes the lock.
    await expect(a!.cluster.withTokenLock('acme', async () => 'again')).resolves.toBe('again');
  });

  // A refresh talks to Concur while its lock's transaction sits idle; the store's other
  // connections are ended by the server after 5 s idle in a transaction. The lock's must not be:
  // a second replica would refresh with the token the first is spending (invalid_grant).
  it('a refresh slower than the 5 s idle limit of the other connections keeps its lock to its end', async () => {
    const url = await freshPgDatabase('tokenlock');
    const [a, b] = await stores(url, 2);
    const order: string[] = [];
    const first = a!.cluster.withTokenLock('Slow', async () => {
      order.push('a in');
      await sleep(6500);
      order.push('a out');
      return 'a';
    });
    await sleep(300);
    const second = b!.cluster.withTokenLock('Slow', async () => {
      order.push('b in');
      return 'b';
    });
    expect(await first).toBe('a');
    expect(await second).toBe('b');
    expect(order).toEqual(['a in', 'a out', 'b in']);
  }, 30_000);
});
