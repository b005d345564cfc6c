import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Deliverer, type DeliveryTarget } from '../src/deliver/deliverer.js';
import { sendNotification } from '../src/deliver/sendNotification.js';
import { createHttpClient } from '../src/poll/httpClient.js';
import { captureLogger } from './helpers/harness.js';
import { enqueue, openOutboxStore } from './helpers/outbox.js';
import { startReceiver } from './helpers/receiver.js';
import { waitFor } from './helpers/tmp.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A receiver on 127.0.0.1 that answers every POST with `answer`, once the request body is in. */
async function rawReceiver(answer: (res: http.ServerResponse) => void): Promise<string> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => answer(res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
}

const send = (url: string, timeoutMs = 300) =>
  sendNotification(createHttpClient({ timeoutMs }), { url, keys: { current: 'k', previous: [] }, timeoutMs }, { id: 'n1', body: '{}' });

describe('a receiver whose answer breaks off after its status line', () => {
  // The status is the answer; the body is read only for the attempt log. A 200 whose body never
  // comes was accepted by the receiver: recording it as a network error would send it again.
  it('that stalls the body: the attempt keeps the status it answered', async () => {
    const url = await rawReceiver((res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write('accepted, and then');
    });
    const result = await send(url);
    expect(result.statusCode).toBe(200);
    expect(result.error).toBeUndefined();
    expect(result.responseExcerpt).toBe('accepted, and then');
  });

  it('that closes the connection mid-body: the status and its Retry-After are kept', async () => {
    const url = await rawReceiver((res) => {
      res.writeHead(503, { 'content-length': '1000', 'retry-after': '120' });
      res.write('down for maintenance');
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const result = await send(url, 5000);
    expect(result.statusCode).toBe(503);
    expect(result.retryAfterSec).toBe(120);
    expect(result.responseExcerpt).toBe('down for maintenance');
  });

  it('that sends a broken gzip body: the status is kept', async () => {
    const url = await rawReceiver((res) => {
      res.writeHead(200, { 'content-encoding': 'gzip' });
      res.end('not gzip at all');
    });
    const result = await send(url);
    expect(result.statusCode).toBe(200);
  });

  it('that never answers: a network error, no status', async () => {
    const url = await rawReceiver(() => undefined);
    const result = await send(url, 100);
    expect(result.statusCode).toBeUndefined();
    expect(result.error).toMatch(/timed out/);
  });
});

describe('many requests in flight at once', () => {
  // Every request listens on the deliverer's one abort signal; 16 at once is a concurrency the
  // config allows, not a leak, and must not print "Possible EventTarget memory leak detected".
  it('print no MaxListenersExceededWarning', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    cleanups.push(() => void process.off('warning', onWarning));
    const key = 'whsec_' + randomBytes(24).toString('base64');
    let release!: () => void;
    const held = new Promise<void>((resolve) => { release = resolve; });
    const receiver = await startReceiver(key, async () => { await held; return 200; });
    cleanups.push(() => receiver.close());
    const store = await openOutboxStore();
    cleanups.push(() => store.close());
    const target: DeliveryTarget = {
      url: receiver.url, keys: { current: key, previous: [] }, timeoutMs: 5000, concurrency: 16, ordered: false,
      policy: { scheduleSec: [1], maxRetryAfterSec: 5, jitter: 0 },
    };
    const deliverer = new Deliverer({ store, http: createHttpClient({ timeoutMs: 5000 }), log: captureLogger().log, targets: () => new Map([['Docs', target]]), idleCheckMs: 50 });
    cleanups.push(() => deliverer.stop(500));
    await enqueue(store, 'Docs', 16);
    void deliverer.start();
    await waitFor('16 requests in flight', () => receiver.maxInFlight === 16);
    release();
    await waitFor('all delivered', async () => (await store.notificationCounts()).delivered === 16);
    // A warning is emitted on the next turn after the listener that crossed the limit.
    await new Promise((resolve) => setImmediate(resolve));
    expect(warnings).toEqual([]);
  });
});
