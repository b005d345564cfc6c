import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { Deliverer } from '../src/deliver/deliverer.js';
import { createHttpClient } from '../src/poll/httpClient.js';
import { PgStore } from '../src/store/pg/pgStore.js';
import { captureLogger } from './helpers/harness.js';
import { enqueue } from './helpers/outbox.js';
import { describePg, freshPgDatabase } from './helpers/pg.js';
import { waitFor } from './helpers/tmp.js';

// Retry times are computed (a jittered schedule, a Retry-After date): PostgreSQL's BIGINT refuses
// a fraction that SQLite would keep. A real retry, through the deliverer, on the PostgreSQL store.

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

describePg('a delivery retried on PostgreSQL', () => {
  it('a 503 with a Retry-After date, a jittered schedule of fractions of a second: recorded, retried, delivered', { timeout: 30_000 }, async () => {
    const store = await PgStore.open(await freshPgDatabase('retry'));
    cleanup.push(() => store.close());
    const tries = new Map<string, number>();
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const id = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { message: { eventId: string } }).message.eventId;
        const n = (tries.get(id) ?? 0) + 1;
        tries.set(id, n);
        if (n === 1) res.writeHead(503, { 'retry-after': new Date(Date.now() + 1500).toUTCString() }).end('busy');
        else if (n === 2) res.writeHead(500).end('no');
        else res.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    cleanup.push(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }));
    const ids = await enqueue(store, 'Docs', 4);
    const { log, lines } = captureLogger();
    const target = {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, keys: { current: 'whsec_' + randomBytes(24).toString('base64'), previous: [] },
      timeoutMs: 2000, concurrency: 4, ordered: false, policy: { scheduleSec: [0.0137, 0.0291, 0.0333], maxRetryAfterSec: 2, jitter: 0.37 },
    };
    const deliverer = new Deliverer({ store, http: createHttpClient({ timeoutMs: 2000 }), log, targets: () => new Map([['Docs', target]]), idleCheckMs: 50 });
    void deliverer.start();
    cleanup.push(() => deliverer.stop(1000));
    await waitFor('every notification delivered', async () => (await store.notificationCounts()).delivered === ids.length, 20_000);
    expect(lines.filter((l) => l.level === 'error').map((l) => String(l.message))).toEqual([]);
    for (const id of ids) expect((await store.getNotification(id))!.attemptLog.map((a) => a.statusCode)).toEqual([503, 500, 200]);
  });
});
