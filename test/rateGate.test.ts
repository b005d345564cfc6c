import { describe, expect, it } from 'vitest';
import { RateGate } from '../src/poll/rateGate.js';
import { refreshAtMs, refreshMarginMs } from '../src/poll/auth.js';
import { stableFraction } from '../src/util/stableFraction.js';

const T0 = Date.parse('2026-11-22T07:00:00Z');
const HOUR = 3_600_000;

describe("a company's pause after a 429", () => {
  it("follows the answer's Retry-After", () => {
    const gate = new RateGate();
    gate.answered(429, 30, T0);
    expect(gate.pausedUntil).toBe(T0 + 30_000);
  });

  it('without Retry-After, backs off 1 s, 2 s, 4 s … for 429s in a row, and a success ends the streak', () => {
    const gate = new RateGate();
    gate.answered(429, undefined, T0);
    expect(gate.pausedUntil).toBe(T0 + 1000);
    gate.answered(429, undefined, T0 + 1000);
    expect(gate.pausedUntil).toBe(T0 + 3000);
    gate.answered(429, undefined, T0 + 3000);
    expect(gate.pausedUntil).toBe(T0 + 7000);
    gate.answered(200, undefined, T0 + 7000);
    gate.answered(429, undefined, T0 + 8000);
    expect(gate.pausedUntil).toBe(T0 + 9000);
  });

  it('believes no Retry-After longer than 5 minutes, and never shortens a pause already set', () => {
    const gate = new RateGate();
    gate.answered(429, 86_400, T0);
    expect(gate.pausedUntil).toBe(T0 + 300_000);
    gate.answered(429, 1, T0);
    expect(gate.pausedUntil).toBe(T0 + 300_000);
  });

  it('lets requests through at once when not paused, and a stop ends a wait', async () => {
    const gate = new RateGate();
    await gate.wait(undefined);
    gate.answered(429, 3600, Date.now());
    const stop = new AbortController();
    const waiting = gate.wait(stop.signal);
    stop.abort();
    await waiting;
    expect(gate.pausedUntil).toBeGreaterThan(Date.now());
  });
});

describe('token refreshes spread over the hour', () => {
  const period = HOUR - refreshMarginMs(HOUR);

  it('comes at the instance\'s place in the period, never after the margin before expiry, never within the margin of the last', () => {
    for (let i = 0; i < 500; i++) {
      const phase = stableFraction(`token:company-${i}`);
      const issued = T0 + i * 977;
      const at = refreshAtMs(issued, HOUR, phase);
      expect(at - issued).toBeGreaterThanOrEqual(refreshMarginMs(HOUR));
      expect(at).toBeLessThan(issued + HOUR);
      const place = ((at - phase * period) % period + period) % period;
      expect(Math.min(place, period - place)).toBeLessThan(1);
    }
  });

  it('2,000 instances that all got their first token in the same minute refresh at most twice their share of any minute afterwards', () => {
    const perMinute = new Map<number, number>();
    for (let i = 0; i < 2000; i++) {
      const phase = stableFraction(`token:company-${i}`);
      // First token at start, then each refresh lands when due (polled every minute: up to a minute late).
      let issued = T0 + (i % 60) * 1000;
      for (let round = 0; round < 3; round++) {
        const at = refreshAtMs(issued, HOUR, phase);
        const lands = at + ((i * 7919) % 60_000);
        if (round > 0) perMinute.set(Math.floor(lands / 60_000), (perMinute.get(Math.floor(lands / 60_000)) ?? 0) + 1);
        issued = lands;
      }
    }
    const share = 2000 / 59;
    expect(Math.max(...perMinute.values())).toBeLessThanOrEqual(2 * share);
  });

  it('a short-lived token is refreshed at its margin, as before', () => {
    expect(refreshAtMs(T0, 61_000, 0.5)).toBe(T0 + 61_000 - 6_100);
  });
});
