import http from 'node:http';
import https from 'node:https';
import got, { type Got } from 'got';

export type HttpClientOptions = { timeoutMs: number; userAgent?: string };

/**
 * One got instance per daemon: keep-alive agents (a poll or a delivery burst reuses
 * connections), a hard timeout, no redirects (a 3xx is an answer, never a reason to send our
 * credentials or events elsewhere), no got-level retries (callers own retry policy) and no
 * throwing on HTTP status (callers classify it).
 */
export function createHttpClient(options: HttpClientOptions): Got {
  return got.extend({
    agent: {
      http: new http.Agent({ keepAlive: true, maxSockets: 64 }),
      https: new https.Agent({ keepAlive: true, maxSockets: 64 }),
    },
    timeout: { request: options.timeoutMs },
    followRedirect: false,
    throwHttpErrors: false,
    retry: { limit: 0 },
    headers: { 'user-agent': options.userAgent ?? 'pollbridge' },
  });
}

/** A got or network error as one line that names no header or credential: only what went wrong. */
export function describeNetworkError(err: unknown): string {
  const e = err as { code?: string; name?: string; message?: string };
  if (e.name === 'TimeoutError') return `timed out (${e.code ?? 'ETIMEDOUT'})`;
  return e.code ? `${e.code}${e.message ? `: ${e.message.split('\n')[0]}` : ''}` : String(e.message ?? err);
}
