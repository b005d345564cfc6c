import pRetry from 'p-retry';
import { abortableSleep } from '../util/abortableSleep.js';
import { parseRetryAfter } from '../util/retryAfter.js';

export type FetchPolicy = {
  /** Retries of one request within a poll (5xx, 429, network); the poll fails after them. */
  retries: number;
  minTimeoutMs: number;
  /** Longest `Retry-After` waited for inside a poll, seconds. */
  maxRetryAfterSec: number;
  /**
   * Runs each wait between attempts: the daemon gives up the poll's slot meanwhile, so a company
   * waiting out a 429 holds no place another company's poll could use.
   */
  whileWaiting?: <T>(wait: () => Promise<T>) => Promise<T>;
};

export const DEFAULT_FETCH_POLICY: FetchPolicy = { retries: 3, minTimeoutMs: 1000, maxRetryAfterSec: 120 };

/**
 * A failure worth another attempt. `reason` says what went wrong without the URL (a query can
 * carry an API key): a status, or a network error. `retryAfterSec` is the provider's
 * `Retry-After`, when it sent one.
 */
export type Transient = Error & { reason?: string; retryAfterSec?: number };

/** An answer worth another attempt: rate limited, or the provider failing. */
export function isTransientStatus(status: number): boolean {
  return status === 429 || status >= 500;
}

/** `error`, marked with its `reason` and the answer's `Retry-After` for `retryTransient` to wait out. */
export function transient(error: Error, reason: string, retryAfter?: string | string[]): Transient {
  const marked: Transient = error;
  marked.reason = reason;
  marked.retryAfterSec = parseRetryAfter(typeof retryAfter === 'string' ? retryAfter : undefined, Date.now());
  return marked;
}

/** One failed attempt that is tried again: `attempt` of `attempts`, `waitMs` before the next. */
export type RetryNotice = { attempt: number; attempts: number; waitMs: number; reason: string };

/**
 * The wait after the `retriesConsumed`+1-th failure: exponential backoff from `minTimeoutMs`
 * with jitter (×1 to ×2, `random` in [0, 1)), after the provider's `Retry-After` up to
 * `maxRetryAfterSec`.
 */
export function retryWaitMs(retriesConsumed: number, policy: FetchPolicy, retryAfterSec: number | undefined, random: number): number {
  const backoff = Math.round((random + 1) * policy.minTimeoutMs * 2 ** retriesConsumed);
  return (retryAfterSec ? Math.min(retryAfterSec, policy.maxRetryAfterSec) * 1000 : 0) + backoff;
}

/**
 * Runs `attempt` until it succeeds, throws p-retry's `AbortError`, or the policy's retries are
 * spent, waiting `retryWaitMs` between attempts. The one rule for every request a poll makes
 * (pages and token refreshes). `onRetry` hears of each wait before it begins, so a slow or
 * failing provider is visible while the poll goes on. `signal` ends the waits.
 */
export function retryTransient<T>(attempt: () => Promise<T>, policy: FetchPolicy, signal?: AbortSignal, onRetry?: (notice: RetryNotice) => void): Promise<T> {
  return pRetry(attempt, {
    retries: policy.retries,
    // The waits are made here, in onFailedAttempt, so that their length is known and reported.
    minTimeout: 0,
    signal,
    onFailedAttempt: async ({ error, attemptNumber, retriesConsumed, retriesLeft }) => {
      // No more attempts, or a TypeError (a bug, not the provider): p-retry throws, nothing to wait for.
      if (retriesLeft === 0 || error instanceof TypeError) return;
      const { reason, retryAfterSec } = error as Transient;
      const waitMs = retryWaitMs(retriesConsumed, policy, retryAfterSec, Math.random());
      onRetry?.({ attempt: attemptNumber, attempts: policy.retries + 1, waitMs, reason: reason ?? error.name });
      // The listener goes with the wait: the poll loop's signal lives as long as the daemon.
      const wait = () => abortableSleep(waitMs, signal ?? new AbortController().signal);
      await (policy.whileWaiting ? policy.whileWaiting(wait) : wait());
    },
  });
}
