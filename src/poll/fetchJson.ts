import pRetry, { AbortError } from 'p-retry';
import { parseRetryAfter } from '../deliver/retryPolicy.js';
import { AuthError, type Authenticator } from './auth.js';
import { describeNetworkError, type GetText, type TextResponse } from './httpClient.js';

export class UpstreamError extends Error {
  constructor(message: string, readonly statusCode?: number, options?: ErrorOptions) {
    super(message, options);
    this.name = 'UpstreamError';
  }
}

export type FetchPolicy = {
  /** Retries of one request within a poll (5xx, 429, network); the poll fails after them. */
  retries: number;
  minTimeoutMs: number;
  /** Longest `Retry-After` waited for inside a poll, seconds. */
  maxRetryAfterSec: number;
};

export const DEFAULT_FETCH_POLICY: FetchPolicy = { retries: 3, minTimeoutMs: 1000, maxRetryAfterSec: 120 };

export type FetchResult = { body: unknown; serverDate: string | undefined };

const excerpt = (text: string): string => text.replace(/\s+/g, ' ').trim().slice(0, 120);

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });

/**
 * GET one JSON document. Transient failures (network, 5xx, 429) are retried with exponential
 * backoff and jitter, waiting out `Retry-After` on 429/503; a 401 refreshes the token once;
 * anything else fails at once with the status and a short excerpt of what came back.
 */
export async function fetchJson(
  getText: GetText,
  auth: Authenticator,
  url: string,
  policy: FetchPolicy,
  signal?: AbortSignal,
  onStatus?: (statusCode: number) => void,
): Promise<FetchResult> {
  let reauthenticated = false;
  const attempt = async (): Promise<FetchResult> => {
    let response: TextResponse;
    for (;;) {
      let authHeaders: Record<string, string>;
      try {
        authHeaders = await auth.headers(signal);
      } catch (err) {
        // A refused refresh does not heal in seconds: fail this poll at once, try again next poll.
        if (err instanceof AuthError) throw new AbortError(err);
        throw err;
      }
      const headers = { accept: 'application/json', ...authHeaders };
      try {
        response = await getText(url, headers, signal);
      } catch (err) {
        if (signal?.aborted) throw new AbortError(new UpstreamError(`GET ${url} aborted`));
        throw new UpstreamError(`GET ${url} failed: ${describeNetworkError(err)}`, undefined, { cause: err });
      }
      if (response.statusCode !== 401 || reauthenticated) break;
      reauthenticated = true;
      auth.invalidate();
    }
    const status = response.statusCode;
    onStatus?.(status);
    if (status === 429 || status === 503 || status >= 500) {
      const error = new UpstreamError(`GET ${url} answered ${status}: ${excerpt(response.body)}`, status);
      (error as UpstreamError & { retryAfterSec?: number }).retryAfterSec = parseRetryAfter(response.headers['retry-after'], Date.now());
      throw error;
    }
    if (status < 200 || status >= 300) {
      throw new AbortError(new UpstreamError(`GET ${url} answered ${status}: ${excerpt(response.body)}`, status));
    }
    try {
      return { body: JSON.parse(response.body), serverDate: response.headers.date };
    } catch {
      const type = response.headers['content-type'] ?? 'no content type';
      throw new AbortError(new UpstreamError(`GET ${url} answered ${status} with invalid JSON (${type}): ${excerpt(response.body)}`, status));
    }
  };
  return pRetry(attempt, {
    retries: policy.retries,
    minTimeout: policy.minTimeoutMs,
    factor: 2,
    randomize: true,
    signal,
    onFailedAttempt: async ({ error }) => {
      const retryAfterSec = (error as { retryAfterSec?: number }).retryAfterSec;
      if (retryAfterSec) await sleep(Math.min(retryAfterSec, policy.maxRetryAfterSec) * 1000, signal);
    },
  });
}
