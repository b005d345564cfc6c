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

  it('lets a Retry-After on 429 and 503 lengthen a wait up to the cap, and ignores it elsewhere', () => {
    expect(decide(answer(429, 30), 1, policy, mid)).toEqual({ status: 'retry', delayMs: 30_000 });
    expect(decide(answer(503, 86_400), 1, policy, mid)).toEqual({ status: 'retry', delayMs: 3_600_000 });
    expect(decide(answer(500, 30), 1, policy, mid)).toEqual({ status: 'retry', delayMs: 4000 });
  });

  it('never lets a Retry-After shorten the schedule: "0" through a maintenance still takes about three days', () => {
    expect(decide(answer(503, 0), 1, policy, mid)).toEqual({ status: 'retry', delayMs: 4000 });
    expect(decide(answer(429, 10), 3, policy, mid)).toEqual({ status: 'retry', delayMs: 64_000 });
    // The ninth retry still waits the schedule's 262144 s, however short the receiver asks.
    expect(decide(answer(503, 0), 9, policy, mid)).toEqual({ status: 'retry', delayMs: 262_144_000 });
    const total = DEFAULT_RETRY_SCHEDULE_SEC.reduce((sum, _, i) => {
      const d = decide(answer(503, 0), i + 1, policy, () => 0);
      return sum + (d.status === 'retry' ? d.delayMs : 0);
    }, 0);
    expect(total / 3_600_000).toBeGreaterThan(72);
  });

  it('reads Retry-After as delay-seconds or an HTTP-date, and nothing else (RFC 9110)', () => {
    const now = Date.parse('2026-11-22T07:00:00Z');
    expect(parseRetryAfter('120', now)).toBe(120);
    expect(parseRetryAfter('0', now)).toBe(0);
    expect(parseRetryAfter('Sun, 22 Nov 2026 07:01:00 GMT', now)).toBe(60);
    // The two obsolete forms a recipient must still accept.
    expect(parseRetryAfter('Sunday, 22-Nov-26 07:01:00 GMT', now)).toBe(60);
    expect(parseRetryAfter('Sun Nov 22 07:01:00 2026', now)).toBe(60);
    expect(parseRetryAfter('Sun Nov  1 07:00:00 2026', now)).toBe(0);
    // A date in the past asks for no wait.
    expect(parseRetryAfter('Sun, 22 Nov 2026 06:00:00 GMT', now)).toBe(0);
    for (const bad of ['-1', '1.5', '+5', '1e3', '0x10', '', 'soon', '120, 60', 'Sun, 22 Nov 2026 07:01:00', '2026-11-22T07:01:00Z',
      'Sun, 31 Nov 2026 07:01:00 GMT', 'Sun, 22 Nov 2026 24:00:00 GMT', 'Sun, 22 Foo 2026 07:01:00 GMT', '22 Nov 2026 07:01:00 GMT']) {
      expect(parseRetryAfter(bad, now), JSON.stringify(bad)).toBeUndefined();
    }
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });

  it('reads a two-digit year as the most recent one with those digits, no more than 50 years ahead', () => {
    const now = Date.parse('2026-11-22T07:00:00Z');
    expect(parseRetryAfter('Monday, 22-Nov-77 07:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('Sunday, 22-Nov-76 07:00:00 GMT', now)).toBe((Date.UTC(2076, 10, 22, 7) - now) / 1000);
  });
});
