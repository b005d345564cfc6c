import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { createAuthenticator } from '../src/poll/auth.js';
import { createHttpClient } from '../src/poll/httpClient.js';
import { PgStore } from '../src/store/pg/pgStore.js';
import { captureLogger, FAST_FETCH } from './helpers/harness.js';
import { describePg, freshPgDatabase } from './helpers/pg.js';
import { waitFor } from './helpers/tmp.js';

// A token lock is held on a connection of the store's while its refresh runs, and the refresh
// saves its rotated token through the store before the lock goes. More refreshes at once than
// the pool has connections (a start, a revocation of every token) must not leave the saves
// without a connection: a rotated refresh token unsaved when its lock goes is a spent one for
// the next replica to refresh with.

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** A token endpoint rotating each client's refresh token on every use, a little slowly; a spent one is refused. */
async function tokenServer() {
  const current = new Map<string, string>();
  const spent: string[] = [];
  let issued = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      const client = form.get('client_id')!;
      const token = form.get('refresh_token')!;
      setTimeout(() => {
        if ((current.get(client) ?? `${client}-seed`) !== token) {
          spent.push(token);
          res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'invalid_grant' }));
          return;
        }
        const next = `${client}-r${++issued}`;
        current.set(client, next);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: `a${issued}`, expires_in: '3600', refresh_token: next }));
      }, 100);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  cleanup.push(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/oauth2/v0/token`, current, spent };
}

describePg('token refreshes beyond the pool\'s connections', () => {
  it('every rotated refresh token is saved before its lock goes, with more refreshes at once than connections', { timeout: 60_000 }, async () => {
    const server = await tokenServer();
    const store = await PgStore.open(await freshPgDatabase('tokpool'), { max: 3, connectTimeoutMs: 1000 });
    cleanup.push(() => store.close());
    const http = createHttpClient({ timeoutMs: 5000 });
    const { log, lines } = captureLogger();
    // More than the pool's connections, and than the token locks' own (TOKEN_LOCK_CONNECTIONS).
    const instances = Array.from({ length: 12 }, (_, i) => `co${i}`);
    const auths = instances.map((instance) => createAuthenticator(
      { type: 'oauth2_refresh_token', tokenUrl: server.url, clientId: instance, clientSecret: 's', refreshToken: `${instance}-seed` },
      { http, store, instance, log, policy: FAST_FETCH, onSecret: () => {} },
    ));
    cleanup.push(() => Promise.all(auths.map((a) => a.close())));
    const outcomes = await Promise.allSettled(auths.map((a) => a.headers()));
    expect(outcomes.map((o) => (o.status === 'rejected' ? String(o.reason) : 'ok'))).toEqual(instances.map(() => 'ok'));
    expect(lines.filter((l) => l.level === 'error').map((l) => String(l.message))).toEqual([]);
    // What the next replica would refresh with is the token the endpoint takes now.
    for (const instance of instances) expect((await store.loadAuthState(instance))?.refreshToken, instance).toBe(server.current.get(instance));
    expect(server.spent).toEqual([]);
  });

  it('refreshes holding or awaiting token locks leave the store\'s connections to polls, deliveries and leases', { timeout: 30_000 }, async () => {
    const store = await PgStore.open(await freshPgDatabase('tokpool'), { max: 2, connectTimeoutMs: 1000 });
    cleanup.push(() => store.close());
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    let holding = 0;
    const refreshes = Array.from({ length: 4 }, (_, i) => store.cluster.withTokenLock(`co${i}`, async () => {
      holding++;
      await held;
    }));
    await waitFor('every lock held', () => holding === 4);
    // A refresh's own save, and the other calls of the replica, while the locks are held.
    await store.saveAuthState('co0', { seedHash: 'h', refreshToken: 'r', geolocation: undefined, accessToken: 'a', accessExpiresAt: Date.now() + 60_000 });
    expect(await store.notificationCounts()).toEqual({ pending: 0, delivered: 0, dead: 0 });
    release();
    await Promise.all(refreshes);
  });
});
