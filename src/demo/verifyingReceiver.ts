import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyNotification } from '../deliver/sign.js';

/** `via`: pushed by Concur's callout (its notification is in `raw`) or found by polling. */
export type ReceivedEvent = { notificationId: string; via: 'polled' | 'pushed'; eventType: string; objectId: string; objectType: string; date: string };

/**
 * What a receiver does: read the raw body, verify the signatures with the shared key, answer 2xx
 * only for a notification it accepts. Used by `demo`; tests use their own, independent one.
 */
export async function startVerifyingReceiver(
  key: string,
  onEvent: (event: ReceivedEvent) => void,
  onRejected: (reason: string) => void,
): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      try {
        verifyNotification(body, req.headers, key);
      } catch (err) {
        onRejected((err as Error).message);
        res.writeHead(401).end();
        return;
      }
      const id = String(req.headers['webhook-id']);
      const { message } = JSON.parse(body.toString('utf8')) as { message: { events: Omit<ReceivedEvent, 'notificationId' | 'via'>[]; raw?: { notification?: unknown } } };
      const via = message.raw?.notification ? 'pushed' : 'polled';
      for (const e of message.events) onEvent({ notificationId: id, via, ...e });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/concur`,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
