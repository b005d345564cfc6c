import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach } from 'vitest';

/** One request that reached the proxy: when it came, when and how it ended. */
export type ProxiedRequest = {
  method: string;
  path: string;
  query: URLSearchParams;
  startMs: number;
  /** When the answer was sent or the client went away; undefined while in flight. */
  endMs: number | undefined;
  status: number | undefined;
  /** The client closed the connection before its answer was sent (a poll cut short). */
  aborted: boolean;
};

/** A scripted answer for a request, instead of the API's: the API's own per-company rate limiter, say. */
export type ProxyAnswer = { status: number; headers?: Record<string, string>; body?: string };

const proxies: http.Server[] = [];
afterEach(async () => {
  for (const s of proxies.splice(0)) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

/**
 * A pass-through proxy in front of the simulator that records every request with its timing, so
 * a test can tell which instance asked what (by query), what was in flight at a given moment,
 * and which requests a daemon abandoned. `answer` may answer a request itself; the simulator
 * never sees those.
 */
export async function startApiProxy(target: string, answer: (req: ProxiedRequest) => ProxyAnswer | undefined = () => undefined) {
  const upstream = new URL(target);
  const requests: ProxiedRequest[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', target);
    const record: ProxiedRequest = {
      method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, startMs: Date.now(), endMs: undefined, status: undefined, aborted: false,
    };
    requests.push(record);
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    let ended = false;
    const end = (aborted: boolean): void => {
      if (ended) return;
      ended = true;
      inFlight--;
      record.endMs = Date.now();
      record.aborted = aborted;
    };
    // An answer ends its request where the proxy ends it, in the same tick: 'finish' comes later,
    // after the client (another process) may already have read it and sent its next request,
    // which then counted as a second one in flight.
    res.on('close', () => end(!res.writableFinished));
    const scripted = answer(record);
    if (scripted) {
      record.status = scripted.status;
      res.writeHead(scripted.status, { 'content-type': 'application/json', ...scripted.headers });
      res.end(scripted.body ?? JSON.stringify({ Message: `proxy answered ${scripted.status}` }));
      end(false);
      return;
    }
    const forward = http.request({
      host: upstream.hostname, port: upstream.port, method: req.method, path: req.url,
      headers: { ...req.headers, host: upstream.host },
    }, (up) => {
      record.status = up.statusCode;
      res.writeHead(up.statusCode ?? 502, up.headers);
      // Before the pipe's own 'end' listener writes the end: nothing is read by then.
      up.once('end', () => end(false));
      up.pipe(res);
    });
    forward.on('error', () => res.destroy());
    // A client gone before the answer: the simulator's request is dropped too.
    res.on('close', () => { if (!res.writableFinished) forward.destroy(); });
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxies.push(server);
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    /** Most requests in flight at once so far. */
    get maxInFlight() {
      return maxInFlight;
    },
    /** The requests whose query has `key=value`. */
    withQuery: (key: string, value: string) => requests.filter((r) => r.query.get(key) === value),
  };
}
