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
  /** Longest `Retry-After` honoured, seconds. */
  maxRetryAfterSec: number;
  /** Spread of each delay, as a fraction (0.2 = ±20 %), so that a fleet of retries does not stampede. */
  jitter: number;
};

export const DEFAULT_MAX_RETRY_AFTER_SEC = 3600;

/**
 * `retriesDone` counts the failed attempts of this round, this one included. 2xx delivers; 410
 * Gone dead-letters at once (the receiver says it will never want this); anything else retries
 * on the schedule, `Retry-After` winning on 429 and 503, until the schedule is used up.
 */
export function decide(result: AttemptResult, retriesDone: number, policy: RetryPolicy, random: () => number = Math.random): Decision {
  const code = result.statusCode;
  if (code !== undefined && code >= 200 && code < 300) return { status: 'delivered' };
  if (code === 410) return { status: 'dead', reason: 'receiver answered 410 Gone' };
  const next = policy.scheduleSec[retriesDone - 1];
  if (next === undefined) return { status: 'dead', reason: `no retries left after ${retriesDone} attempt(s)` };
  const jittered = next * (1 + policy.jitter * (2 * random() - 1));
  const honoured = (code === 429 || code === 503) && result.retryAfterSec !== undefined
    ? Math.min(result.retryAfterSec, policy.maxRetryAfterSec)
    : undefined;
  return { status: 'retry', delayMs: Math.round((honoured ?? jittered) * 1000) };
}
