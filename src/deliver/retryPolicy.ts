/** What one attempt's answer means for its notification. Pure, so the policy is tested directly. */
export type AttemptResult = {
  statusCode: number | undefined;
  /** Network failure, timeout or reset; undefined when an HTTP answer arrived. */
  error: string | undefined;
  retryAfterSec: number | undefined;
};

export type Decision = { status: 'delivered' } | { status: 'retry'; delayMs: number } | { status: 'dead'; reason: string };

export type RetryPolicy = {
  /** Delay before each retry, seconds; its length is the number of retries. */
  scheduleSec: readonly number[];
  /** Longest `Retry-After` honoured, seconds (a longer one waits this long). */
  maxRetryAfterSec: number;
  /** Spread of each delay, as a fraction (0.2 = ±20 %), so that a fleet of retries does not stampede. */
  jitter: number;
};

export const DEFAULT_MAX_RETRY_AFTER_SEC = 3600;

/**
 * `retriesDone` counts the failed attempts of this round, this one included. 2xx delivers; 410
 * Gone dead-letters at once (the receiver says it will never want this); anything else retries
 * on the schedule until it is used up. A `Retry-After` on 429 and 503 may lengthen a wait, never
 * shorten it: every attempt counts against the schedule, so a receiver answering "0" through a
 * maintenance would otherwise have its notifications dead-lettered in seconds instead of days.
 */
export function decide(result: AttemptResult, retriesDone: number, policy: RetryPolicy, random: () => number = Math.random): Decision {
  const code = result.statusCode;
  if (code !== undefined && code >= 200 && code < 300) return { status: 'delivered' };
  if (code === 410) return { status: 'dead', reason: 'receiver answered 410 Gone' };
  const next = policy.scheduleSec[retriesDone - 1];
  if (next === undefined) return { status: 'dead', reason: `no retries left after ${retriesDone} attempt(s)` };
  const scheduled = next * (1 + policy.jitter * (2 * random() - 1));
  const asked = (code === 429 || code === 503) && result.retryAfterSec !== undefined
    ? Math.min(result.retryAfterSec, policy.maxRetryAfterSec)
    : 0;
  return { status: 'retry', delayMs: Math.round(Math.max(scheduled, asked) * 1000) };
}
