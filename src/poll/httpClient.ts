import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import zlib from 'node:zlib';
import got, { type Got } from 'got';
import { userAgent } from '../version.js';

/** `userAgent` defaults to pollbridge's own, with its version and node's. */
export type HttpClientOptions = { timeoutMs: number; userAgent?: string };

const keepAliveAgents = (maxSockets = 64) => ({
  'http:': new http.Agent({ keepAlive: true, maxSockets }),
  'https:': new https.Agent({ keepAlive: true, maxSockets }),
});

/**
 * Page reads are bounded per origin by the daemon (`polling.maxConcurrentPerOrigin`), which can
 * be set up to this: an agent limit below it would queue requests where no limit counts them
 * (at 64, 4,000 streams a minute, two requests a poll, queued without end).
 */
const PAGE_SOCKETS_PER_ORIGIN = 1000;

/**
 * One got instance per daemon: keep-alive agents (a poll or a delivery burst reuses
 * connections), a hard timeout, no redirects (a 3xx is an answer, never a reason to send our
 * credentials or events elsewhere), no got-level retries (callers own retry policy) and no
 * throwing on HTTP status (callers classify it).
 */
export function createHttpClient(options: HttpClientOptions): Got {
  const agents = keepAliveAgents();
  return got.extend({
    agent: { http: agents['http:'], https: agents['https:'] },
    timeout: { request: options.timeoutMs },
    followRedirect: false,
    throwHttpErrors: false,
    retry: { limit: 0 },
    headers: { 'user-agent': options.userAgent ?? userAgent() },
  });
}

export type TextResponse = { statusCode: number; headers: IncomingHttpHeaders; body: string };
export type GetText = (url: string, headers: Record<string, string>, signal?: AbortSignal) => Promise<TextResponse>;

/**
 * GET with node's own client, for reading pages. got stays for deliveries and tokens, but a page
 * read is the backfill's hot loop, and there got's per-request work (merging options, hooks,
 * its promise and stream layers) cost about 0.5 ms of CPU a page: a fifth of all the work on a
 * page, measured by `npm run bench` (ingest 37k → 47k records/s with node:http). Same rules as
 * the got client: keep-alive, one timeout for the whole exchange, no redirects, any status
 * returned to the caller, gzip and deflate answers decoded.
 */
export function createGetText(options: HttpClientOptions): GetText {
  const agents = keepAliveAgents(PAGE_SOCKETS_PER_ORIGIN);
  const agentName = options.userAgent ?? userAgent();
  return (url, headers, signal) => new Promise((resolve, reject) => {
    const target = new URL(url);
    const client = target.protocol === 'https:' ? https : http;
    const agent = agents[target.protocol as keyof typeof agents];
    if (!agent) {
      reject(new Error(`unsupported protocol ${target.protocol}`));
      return;
    }
    const req = client.get(target, { agent, headers: { 'user-agent': agentName, 'accept-encoding': 'gzip, deflate', ...headers }, signal }, (res) => {
      const encoding = res.headers['content-encoding'];
      const decoded = encoding === 'gzip' ? res.pipe(zlib.createGunzip()) : encoding === 'deflate' ? res.pipe(zlib.createInflate()) : res;
      decoded.setEncoding('utf8');
      let body = '';
      decoded.on('data', (chunk: string) => { body += chunk; });
      decoded.on('end', () => {
        clearTimeout(timer);
        resolve({ statusCode: res.statusCode ?? 0, headers: res.headers, body });
      });
      res.on('error', fail);
      if (decoded !== res) decoded.on('error', (err) => fail(Object.assign(new Error(`cannot decode the ${encoding} answer: ${err.message}`), { code: 'EDECODE' })));
    });
    const timer = setTimeout(() => {
      req.destroy(Object.assign(new Error(`no complete answer within ${options.timeoutMs} ms`), { name: 'TimeoutError', code: 'ETIMEDOUT' }));
    }, options.timeoutMs);
    req.on('error', fail);
    function fail(err: Error): void {
      clearTimeout(timer);
      reject(err);
    }
  });
}

/** A got or network error as one line that names no header or credential: only what went wrong. */
export function describeNetworkError(err: unknown): string {
  const e = err as { code?: string; name?: string; message?: string };
  if (e.name === 'TimeoutError') return `timed out (${e.code ?? 'ETIMEDOUT'})`;
  return e.code ? `${e.code}${e.message ? `: ${e.message.split('\n')[0]}` : ''}` : String(e.message ?? err);
}
