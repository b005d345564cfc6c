import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ulid } from 'ulid';
import { afterEach, expect, it } from 'vitest';
import { parseNotification } from '../src/callout/notificationXml.js';
import { pageCommit } from '../src/deliver/notification.js';
import { Deliverer } from '../src/deliver/deliverer.js';
import { createHttpClient } from '../src/poll/httpClient.js';
import { PgStore } from '../src/store/pg/pgStore.js';
import type { CalloutReceipt, Store } from '../src/store/types.js';
import { captureLogger } from './helpers/harness.js';
import { enqueue, openOutboxStore } from './helpers/outbox.js';
import { describePg, freshPgDatabase } from './helpers/pg.js';
import { waitFor } from './helpers/tmp.js';

// Text from outside (a receiver's answer, a callout's fields) may hold U+0000, which SQLite keeps
// and PostgreSQL's text refuses outright. A refused write is not a bad row here: it is a delivery
// that cannot be recorded (sent again and again), or a callout that can never be committed.

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const stores: [string, () => Promise<Store>][] = [
  ['SQLite', () => openOutboxStore()],
  ['PostgreSQL', async () => PgStore.open(await freshPgDatabase('text'))],
];

/** A receiver answering 200 with a UTF-16 body (NUL bytes in it, as any UTF-16 ASCII text has); counts requests per id. */
async function utf16Receiver() {
  const requests = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const id = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { message: { eventId: string } }).message.eventId;
      requests.set(id, (requests.get(id) ?? 0) + 1);
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-16le' }).end(Buffer.from('accepted', 'utf16le'));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  cleanup.push(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, requests };
}

describePg('text with NUL characters', () => {
  for (const [name, open] of stores) {
    it(`${name}: a receiver answering in UTF-16 gets each notification once, recorded delivered`, { timeout: 30_000 }, async () => {
      const store = await open();
      cleanup.push(() => store.close());
      const receiver = await utf16Receiver();
      const ids = await enqueue(store, 'Docs', 3);
      const logs = captureLogger();
      const target = {
        url: receiver.url, keys: { current: 'whsec_' + randomBytes(24).toString('base64'), previous: [] }, timeoutMs: 2000, concurrency: 2, ordered: false,
        policy: { scheduleSec: [1], maxRetryAfterSec: 1, jitter: 0 },
      };
      const deliverer = new Deliverer({ store, http: createHttpClient({ timeoutMs: 2000 }), log: logs.log, targets: () => new Map([['Docs', target]]), idleCheckMs: 50 });
      void deliverer.start();
      cleanup.push(() => deliverer.stop(1000));
      await waitFor('every notification recorded delivered, or one sent a third time', async () =>
        (await store.notificationCounts()).delivered === ids.length || [...receiver.requests.values()].some((n) => n >= 3), 15_000);
      expect(Object.fromEntries(receiver.requests)).toEqual(Object.fromEntries(ids.map((id) => [id, 1])));
      expect(await store.notificationCounts()).toEqual({ pending: 0, delivered: 3, dead: 0 });
      const detail = await store.getNotification(ids[0]!);
      expect(detail!.attemptLog).toHaveLength(1);
      expect(detail!.attemptLog[0]!.responseExcerpt).toMatch(/a.c.c.e.p.t.e.d/);
    });

    it(`${name}: a callout whose fields hold NUL is committed, and does not take the receipts committed with it down`, async () => {
      const store = await open();
      cleanup.push(() => store.close());
      // The XML parser takes a raw NUL in text (XML forbids it, but it is let through), as Concur's body would bring it.
      const receipt = (n: number, context: string): CalloutReceipt => {
        const body = `<Notification><EventType>SUBMIT</EventType><ObjectType>EXPRPT</ObjectType><ObjectURI>https://x/R${n}</ObjectURI>`
          + `<EventDateTime>2026-01-01T00:00:00Z</EventDateTime><Context>${context}</Context></Notification>`;
        return { instance: 'Docs', source: 'push', notificationUri: undefined, receivedAt: 1000 + n, body, notification: parseNotification(body) };
      };
      // The daemon commits the receipts that arrive together in one call.
      const recorded = await store.recordCallouts([receipt(1, 'fine'), receipt(2, 'a\u0000b'), receipt(3, 'fine too')]);
      expect(recorded.map((r) => r.duplicate)).toEqual([false, false, false]);
      const rows = await store.calloutsToIngest(['Docs'], 10, new Set());
      expect(rows.map((r) => r.notification.objectUri)).toEqual(['https://x/R1', 'https://x/R2', 'https://x/R3']);
    });

    it(`${name}: a record whose id holds NUL is announced once, and a failed poll's error holding one is recorded`, async () => {
      const store = await open();
      cleanup.push(() => store.close());
      const stream = await store.openStream('Docs', 'reports', 0);
      const page = () => pageCommit([{ objectId: 'R\u00001', updated: 5000, eventType: 'UPDATED', record: { ID: 'R\u00001' } }], [], {
        instanceName: 'Docs', elementKey: 'concur', objectType: 'reports', maxEvents: 1, newId: ulid,
      });
      expect((await store.commitPage(stream.id, page())).fresh).toBe(1);
      expect((await store.commitPage(stream.id, page())).fresh).toBe(0);
      // As JSON.parse words a provider's body with a NUL byte in it.
      await store.failPoll(stream.id, 'Unexpected token \'\u0000\', "\u0000" is not valid JSON', 6000);
      const [status] = await store.streams();
      expect(status!.lastPollOk).toBe(false);
      expect(status!.lastPollError).toMatch(/^Unexpected token/);
    });
  }
});
