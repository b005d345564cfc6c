import pRetry from 'p-retry';
import { abortableSleep } from '../util/abortableSleep.js';
import { parseRetryAfter } from '../util/retryAfter.js';

export type FetchPolicy = {
  /** Retries of one request within a poll (5xx, 429, network); the poll fails after them. */
  retries: number;
  minTimeoutMs: number;
  /** Longest `Retry-After` waited for inside a poll, seconds. */
  maxRetryAfterSec: number;
};

export const DEFAULT_FETCH_POLICY: FetchPolicy = { retries: 3, minTimeoutMs: 1000, maxRetryAfterSec: 120 };

/** A failure worth another attempt; `retryAfterSec` is the provider's `Retry-After`, when it sent one. */
export type Transient = Error & { retryAfterSec?: number };

/** An answer worth another attempt: rate limited, or the provider failing. */
export function isTransientStatus(status: number): boolean {
  return status === 429 || status >= 500;
}

/** `error`, carrying the answer's `Retry-After` for `retryTransient` to wait out. */
export function transient(error: Error, retryAfter: string | string[] | undefined): Transient {
  const marked: Transient = error;
  marked.retryAfterSec = parseRetryAfter(typeof retryAfter === 'string' ? retryAfter : undefined, Date.now());
  return marked;
}

/**
 * Runs `attempt` until it succeeds, throws p-retry's `AbortError`, or the policy's retries are
 * spent: exponential backoff with jitter, and a `Retry-After` waited out up to
 * `maxRetryAfterSec`. The one rule for every request a poll makes (pages and token refreshes).
 * `signal` ends the waits between attempts.
 */
export function retryTransient<T>(attempt: () => Promise<T>, policy: FetchPolicy, signal?: AbortSignal): Promise<T> {
  return pRetry(attempt, {
    retries: policy.retries,
    minTimeout: policy.minTimeoutMs,
    factor: 2,
    randomize: true,
    signal,
    onFailedAttempt: async ({ error }) => {
      const retryAfterSec = (error as Transient).retryAfterSec;
      // The listener goes with the wait: the poll loop's signal lives as long as the daemon.
      if (retryAfterSec) await abortableSleep(Math.min(retryAfterSec, policy.maxRetryAfterSec) * 1000, signal ?? new AbortController().signal);
    },
  });
}
