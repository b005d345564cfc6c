import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { EXCERPT_BYTES } from '../src/deliver/sendNotification.js';
import { SqliteStore } from '../src/store/sqliteStore.js';
import { enqueue, openOutboxStore } from './helpers/outbox.js';
import { tempDir } from './helpers/tmp.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const DELIVER_ONCE = fileURLToPath(new URL('./helpers/deliverOnce.mjs', import.meta.url));
const HUGE = 200 * 1024 * 1024;
/** The heap the delivering process gets: a quarter of the answer. */
const HEAP_MB = 48;

/**
 * A receiver that answers 500 with a body of `size` bytes, written as fast as the client reads
 * it (never buffered here either), and counts what it managed to write before the client hung up.
 */
async function floodingReceiver(size: number) {
  const sent = { bytes: 0, requests: 0 };
  const chunk = Buffer.alloc(64 * 1024, 'x');
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      sent.requests++;
      res.writeHead(500, { 'content-type': 'text/plain', 'content-length': String(size) });
      let closed = false;
      res.on('close', () => { closed = true; });
      const pump = (): void => {
        while (!closed && sent.bytes < size * sent.requests) {
          sent.bytes += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        if (!closed) res.end();
      };
      pump();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  cleanups.push(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, sent };
}

describe('a receiver answering a huge body', () => {
  it(`costs one recorded attempt, read ${EXCERPT_BYTES} bytes deep, in a process with a ${HEAP_MB} MB heap`, async () => {
    const receiver = await floodingReceiver(HUGE);
    const dir = tempDir();
    const store = await openOutboxStore(dir);
    const [id] = await enqueue(store, 'Docs', 1);
    await store.close();

    const key = 'whsec_' + randomBytes(24).toString('base64');
    const child = spawn(process.execPath, [`--max-old-space-size=${HEAP_MB}`, DELIVER_ONCE, join(dir, 'p.db'), receiver.url, key], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => { output += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { output += c.toString(); });
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    expect(code, output.slice(-2000)).toBe(0);

    const check = new SqliteStore(join(dir, 'p.db'), { readonly: true });
    cleanups.push(() => check.close());
    const n = (await check.getNotification(id!))!;
    expect(n).toMatchObject({ status: 'pending', attempts: 1, lastStatus: 500 });
    expect(n.attemptLog[0]!.responseExcerpt).toBe('x'.repeat(EXCERPT_BYTES));
    expect(receiver.sent.requests).toBe(1);
    // The client hung up after the excerpt: what it took is socket buffers, not the answer.
    expect(receiver.sent.bytes).toBeLessThan(HUGE / 10);
  }, 60_000);
});
