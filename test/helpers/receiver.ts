import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { ConcurSim } from '../../src/sim/concurSim.js';

export type Received = {
  id: string;
  body: string;
  headers: http.IncomingHttpHeaders;
  events: { eventType: string; objectId: string; objectType: string; date: string }[];
  raw: Record<string, unknown>;
};

/**
 * A receiver written the way a customer would, independently of pollbridge's code: the
 * `standardwebhooks` library for `webhook-signature`, and a by-hand HMAC for AMPLIFY's header.
 * `respond` picks the answer for each request (default 200); rejected requests get 401.
 */
export type Respond = (n: number, body: string) => | number
  | Promise<number>
  | { status: number; body: string; headers?: Record<string, string>; afterWrite?: () => void }
  | Promise<{ status: number; body: string; afterWrite?: () => void }>
  | 'hang';

export async function startReceiver(key: string, respond: Respond = () => 200) {
  const accepted: Received[] = [];
  const failures: string[] = [];
  const seenIds: string[] = [];
  let requests = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const wh = key.startsWith('whsec_') ? new Webhook(key) : new Webhook(key, { format: 'raw' });
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => void handle());
    const handle = async (): Promise<void> => {
      const n = ++requests;
      const body = Buffer.concat(chunks).toString('utf8');
      try {
        wh.verify(body, req.headers as Record<string, string>);
        const expected = 'sha256=' + createHmac('sha256', key).update(body).digest('base64');
        const got = String(req.headers['elements-webhook-signature'] ?? '');
        if (got.length !== expected.length || !timingSafeEqual(Buffer.from(got), Buffer.from(expected))) throw new Error('Elements-Webhook-Signature mismatch');
        if (req.headers['elements-webhook-id'] !== req.headers['webhook-id']) throw new Error('ids differ');
      } catch (err) {
        failures.push((err as Error).message);
        res.writeHead(401).end();
        return;
      }
      seenIds.push(String(req.headers['webhook-id']));
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      const answer = await respond(n, body);
      inFlight--;
      if (answer === 'hang') return;
      const { status, body: responseBody, headers = {}, afterWrite } = typeof answer === 'number'
        ? { status: answer, body: answer >= 300 ? 'receiver says no' : 'ok', headers: {}, afterWrite: undefined }
        : { headers: {}, ...answer };
      if (status >= 200 && status < 300) {
        const { message } = JSON.parse(body) as { message: Omit<Received, 'id' | 'body' | 'headers'> };
        accepted.push({ id: String(req.headers['webhook-id']), body, headers: req.headers, events: message.events, raw: message.raw });
      }
      res.writeHead(status, { 'content-type': 'text/plain', ...headers }).end(responseBody);
      afterWrite?.();
    };
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    accepted,
    failures,
    /** The webhook-id of every verified request, answered or not, in arrival order. */
    seenIds,
    get maxInFlight() {
      return maxInFlight;
    },
    get requests() {
      return requests;
    },
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A simulator and a verifying receiver with a fresh signature key, both stopped by `cleanups`
 * (the test file's afterEach list): what most end-to-end tests start with.
 */
export async function startSimAndReceiver(cleanups: (() => Promise<unknown> | unknown)[]) {
  const key = 'whsec_' + randomBytes(24).toString('base64');
  const sim = new ConcurSim();
  const simUrl = await sim.start();
  cleanups.push(() => sim.stop());
  const receiver = await startReceiver(key);
  cleanups.push(() => receiver.close());
  return { key, sim, simUrl, receiver };
}
