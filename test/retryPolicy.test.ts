import { describe, expect, it } from 'vitest';
import { DEFAULT_RETRY_SCHEDULE_SEC } from '../src/config/load.js';
import { decide, type RetryPolicy } from '../src/deliver/retryPolicy.js';
import { parseRetryAfter } from '../src/util/retryAfter.js';

const policy: RetryPolicy = { scheduleSec: DEFAULT_RETRY_SCHEDULE_SEC, maxRetryAfterSec: 3600, jitter: 0.2 };
const mid = () => 0.5;
const answer = (statusCode: number | undefined, retryAfterSec?: number) => ({ statusCode, error: statusCode ? undefined : 'ECONNREFUSED', retryAfterSec });

describe('delivery retry policy', () => {
  it('delivers on any 2xx only', () => {
    expect(decide(answer(200), 1, policy).status).toBe('delivered');
    expect(decide(answer(204), 1, policy).status).toBe('delivered');
    expect(decide(answer(302), 1, policy, mid)).toEqual({ status: 'retry', delayMs: 4000 });
  });

  it("follows AMPLIFY's 4^n schedule: 9 retries from 4 s to about 73 h, then dead", () => {
    const delays = DEFAULT_RETRY_SCHEDULE_SEC.map((_, i) => decide(answer(500), i + 1, policy, mid));
    expect(delays.map((d) => (d.status === 'retry' ? d.delayMs / 1000 : -1))).toEqual([4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144]);
    expect(decide(answer(500), 10, policy, mid).status).toBe('dead');
  });

  it('spreads each delay by the jitter, both ways', () => {
    expect(decide(answer(undefined), 2, policy, () => 0)).toEqual({ status: 'retry', delayMs: 12800 });
    expect(decide(answer(undefined), 2, policy, () => 1)).toEqual({ status: 'retry', delayMs: 19200 });
  });

  it('dead-letters 410 Gone at once', () => {
    expect(decide(answer(410), 1, policy)).toMatchObject({ status: 'dead', reason: expect.stringMatching(/410/) });
  });

  it('honours Retry-After on 429 and 503 up to the cap, and ignores it elsewhere', () => {
    expect(decide(answer(429, 30), 1, policy, mid)).toEqual({ status: 'retry', delayMs: 30_000 });
    expect(decide(answer(503, 86_400), 1, policy, mid)).toEqual({ status: 'retry', delayMs: 3_600_000 });
    expect(decide(answer(500, 30), 1, policy, mid)).toEqual({ status: 'retry', delayMs: 4000 });
  });

  it('reads Retry-After as seconds or an HTTP date', () => {
    const now = Date.parse('2026-11-22T07:00:00Z');
    expect(parseRetryAfter('120', now)).toBe(120);
    expect(parseRetryAfter('Sun, 22 Nov 2026 07:01:00 GMT', now)).toBe(60);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });
});
