import { afterEach, expect, it } from 'vitest';
import { type Authenticator, type AuthStateStore, createAuthenticator } from '../src/poll/auth.js';
import { createHttpClient } from '../src/poll/httpClient.js';
import { ConcurSim, DEFAULT_SIM_CREDENTIALS } from '../src/sim/concurSim.js';
import { PgStore } from '../src/store/pg/pgStore.js';
import { captureLogger, FAST_FETCH } from './helpers/harness.js';
import { describePg, freshPgDatabase } from './helpers/pg.js';
import { rng } from './helpers/rng.js';

const INSTANCE = 'acme';
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function startSim(tokenLifetimeSec: number): Promise<ConcurSim> {
  const sim = new ConcurSim({ tokenLifetimeSec });
  await sim.start();
  cleanup.push(() => sim.stop());
  return sim;
}

/** `count` replicas of one instance's authenticator, each on a store of its own over one database. */
async function replicas(sim: ConcurSim, url: string, count: number, shared = true): Promise<{ auth: Authenticator; store: PgStore; errors: () => string[] }[]> {
  const http = createHttpClient({ timeoutMs: 5000 });
  return Promise.all(Array.from({ length: count }, async (_, i) => {
    const store = await PgStore.open(url, { replicaName: `r${i}` });
    const { log, lines } = captureLogger();
    // Without `cluster`, each replica refreshes on its own, as on SQLite: the control.
    const authStore: AuthStateStore = shared ? store : { loadAuthState: (n) => store.loadAuthState(n), saveAuthState: (n, s) => store.saveAuthState(n, s) };
    const auth = createAuthenticator(
      { type: 'oauth2_refresh_token', tokenUrl: `${sim.baseUrl}/oauth2/v0/token`, ...DEFAULT_SIM_CREDENTIALS },
      { http, store: authStore, instance: INSTANCE, log, policy: FAST_FETCH, onSecret: () => {} },
    );
    cleanup.push(async () => {
      await auth.close();
      await store.close();
    });
    return { auth, store, errors: () => lines.filter((l) => l.level === 'error').map((l) => String(l.message)) };
  }));
}

/** A page request as a poll makes it: a 401 refuses the token (invalidate), and the poll asks again, a few times. */
async function poll(sim: ConcurSim, auth: Authenticator): Promise<number> {
  let status = 0;
  for (let i = 0; i < 4; i++) {
    const headers = await auth.headers();
    status = (await fetch(`${sim.baseUrl}/api/v3.0/expense/reports?limit=1`, { headers })).status;
    if (status !== 401) return status;
    auth.invalidate();
  }
  return status;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Every token request the simulator answered was a good one: none carried a spent refresh token. */
function everyRefreshGood(sim: ConcurSim): void {
  expect(sim.tokenRequestCount, 'token requests beyond the rotations: a spent refresh token was sent (invalid_grant)').toBe(sim.issuedTokens.length / 2);
}

describePg('one token per instance across replicas', () => {
  it('a replica whose token was refused adopts the one another replica stored, without a refresh', async () => {
    const sim = await startSim(3600);
    const [a, b] = await replicas(sim, await freshPgDatabase('auth'), 2);
    expect(await poll(sim, a!.auth)).toBe(200);
    expect(await poll(sim, b!.auth)).toBe(200);
    expect(sim.tokenRequestCount).toBe(1);
    // Concur revokes the access tokens: both are refused; one refresh serves both.
    sim.revokeAccessTokens();
    expect(await poll(sim, a!.auth)).toBe(200);
    expect(await poll(sim, b!.auth)).toBe(200);
    expect(sim.tokenRequestCount).toBe(2);
    everyRefreshGood(sim);
  });

  it('a replica whose token ran out refreshes with the refresh token another replica rotated and stored', async () => {
    const sim = await startSim(3600);
    const [a, b] = await replicas(sim, await freshPgDatabase('auth'), 2);
    expect(await poll(sim, a!.auth)).toBe(200);
    expect(await poll(sim, b!.auth)).toBe(200);
    // a's token is refused alone (the one stored): a refreshes, and b's refresh token in memory is spent.
    a!.auth.invalidate();
    expect(await poll(sim, a!.auth)).toBe(200);
    const stored = (await a!.store.loadAuthState(INSTANCE))!;
    expect(stored.refreshToken).toBe(sim.issuedTokens.at(-1));
    // The stored access token runs out before b next asks.
    await a!.store.saveAuthState(INSTANCE, { ...stored, accessExpiresAt: Date.now() - 1 });
    b!.auth.invalidate();
    expect(await poll(sim, b!.auth)).toBe(200);
    expect(sim.tokenRequestCount).toBe(3);
    everyRefreshGood(sim);
    expect((await b!.store.loadAuthState(INSTANCE))!.refreshToken).toBe(sim.issuedTokens.at(-1));
  });

  it('without the lock (each replica on its own, as on SQLite) the same steps strand a replica: the control', async () => {
    const sim = await startSim(3600);
    const [a, b] = await replicas(sim, await freshPgDatabase('auth'), 2, false);
    expect(await poll(sim, a!.auth)).toBe(200);
    expect(await poll(sim, b!.auth)).toBe(200);
    a!.auth.invalidate();
    expect(await poll(sim, a!.auth)).toBe(200);
    b!.auth.invalidate();
    await expect(poll(sim, b!.auth)).rejects.toThrow(/invalid_grant/);
  });

  for (const count of [2, 3]) {
    it(`${count} replicas refreshing at once, over and over (expiries, revocations, tokens refused): never invalid_grant, each rotation used once`, { timeout: 120_000 }, async () => {
      for (let seed = 1; seed <= 4; seed++) {
        // A token lives a second: each replica's runs out several times a seed.
        const sim = await startSim(1);
        const url = await freshPgDatabase('auth');
        const group = await replicas(sim, url, count);
        const failures: string[] = [];
        const statuses: number[] = [];
        await Promise.all(group.map(async ({ auth }, i) => {
          const random = rng(seed * 31 + i);
          for (let step = 0; step < 40; step++) {
            const roll = random();
            if (roll < 0.08) sim.revokeAccessTokens();
            else if (roll < 0.16) auth.invalidate();
            else if (roll < 0.3) await sleep(Math.floor(random() * 120));
            // Idle past its token's life while the others rotate: it must start from the stored refresh token.
            else if (roll < 0.34) await sleep(1000 + Math.floor(random() * 500));
            else {
              try {
                statuses.push(await poll(sim, auth));
              } catch (err) {
                failures.push((err as Error).message);
              }
            }
          }
        }));
        const detail = `seed ${seed}, ${count} replicas, ${sim.tokenRequestCount} token requests`;
        expect(failures, detail).toEqual([]);
        expect(group.flatMap((g) => g.errors()), detail).toEqual([]);
        expect(statuses.filter((s) => s !== 200), detail).toEqual([]);
        expect(sim.tokenRequestCount, `${detail}: too few refreshes to prove anything`).toBeGreaterThanOrEqual(5);
        expect(sim.tokenRequestCount, detail).toBe(sim.issuedTokens.length / 2);
        expect((await group[0]!.store.loadAuthState(INSTANCE))!.refreshToken, detail).toBe(sim.issuedTokens.at(-1));
        for (const c of cleanup.splice(0).reverse()) await c();
      }
    });
  }
});
