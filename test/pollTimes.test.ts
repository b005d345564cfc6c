import { describe, expect, it } from 'vitest';
import { firstDue, gridOffsetMs, nextDue, nextGridPoint } from '../src/daemon/pollTimes.js';
import { stableFraction } from '../src/util/stableFraction.js';
import { rng } from './helpers/rng.js';

const MIN = 60_000;
const T0 = Date.parse('2026-11-22T07:00:00Z');

describe('a stream\'s grid', () => {
  it('is offset + k·interval, strictly after the given moment', () => {
    expect(nextGridPoint(T0, MIN, 17_000)).toBe(T0 + 17_000);
    expect(nextGridPoint(T0 + 17_000, MIN, 17_000)).toBe(T0 + 77_000);
    expect(nextGridPoint(T0 + 16_999, MIN, 17_000)).toBe(T0 + 17_000);
  });

  it('spreads 4,000 streams evenly over a minute: no second holds more than twice its share', () => {
    const perSecond = new Array<number>(60).fill(0);
    for (let i = 0; i < 2000; i++) {
      for (const resource of ['reports', 'requests']) {
        const offset = gridOffsetMs(`company-${i}`, resource, MIN);
        perSecond[Math.floor(nextGridPoint(T0, MIN, offset) % MIN / 1000)]!++;
      }
    }
    expect(Math.max(...perSecond)).toBeLessThanOrEqual(2 * 4000 / 60);
    expect(Math.min(...perSecond)).toBeGreaterThan(0);
  });

  it('places a stream at the same offset on every start (the name decides, nothing else)', () => {
    expect(gridOffsetMs('Acme', 'reports', MIN)).toBe(gridOffsetMs('Acme', 'reports', MIN));
    expect(gridOffsetMs('Acme', 'reports', MIN)).not.toBe(gridOffsetMs('Acme', 'requests', MIN));
    // Fixed: a version that moved every stream would make a fleet's upgrade a burst.
    expect(Math.round(gridOffsetMs('Acme', 'reports', MIN))).toBe(Math.round(stableFraction('poll:Acme/reports') * MIN));
  });
});

describe('the next poll', () => {
  const offset = 5_000;

  it('on time: the next grid point', () => {
    expect(nextDue(T0 + offset, T0 + offset + 700, MIN, offset)).toBe(T0 + MIN + offset);
  });

  it('after an overrun of several grid points: one poll at once (due at the last one missed), not a burst', () => {
    const due = nextDue(T0 + offset, T0 + 4 * MIN + 30_000, MIN, offset);
    expect(due).toBe(T0 + 4 * MIN + offset);
    // Then the grid again.
    expect(nextDue(due, due + 1000, MIN, offset)).toBe(T0 + 5 * MIN + offset);
  });

  it('after the clock stepped back by an hour: the grid point after now, not an hour\'s wait', () => {
    const now = T0 - 3_600_000;
    expect(nextDue(T0 + offset, now, MIN, offset)).toBe(nextGridPoint(now, MIN, offset));
  });

  it('never schedules in the past twice or skips ahead of the grid (seeded)', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const random = rng(seed);
      const interval = Math.round(1000 + random() * 900_000);
      const off = Math.floor(random() * interval);
      let due = nextGridPoint(T0, interval, off);
      for (let step = 0; step < 50; step++) {
        const now = due + Math.floor(random() * interval * (random() < 0.1 ? 5 : 1));
        const next = nextDue(due, now, interval, off);
        const where = `seed ${seed} step ${step}`;
        expect(((next - off) % interval + interval) % interval, where).toBe(0);
        expect(next, where).toBeGreaterThan(due);
        expect(next, where).toBeGreaterThan(now - interval);
        expect(next, where).toBeLessThanOrEqual(now + interval);
        due = next;
      }
    }
  });
});

describe('the first poll', () => {
  const offset = 42_000;

  it('of a new stream (cursor now): at its grid point, so a fleet\'s first round is spread', () => {
    expect(firstDue(T0, T0, 0, MIN, offset, false)).toBe(T0 + offset);
  });

  it('after a downtime that missed a grid point: at once', () => {
    expect(firstDue(T0, T0 - MIN - 1, 0, MIN, offset, false)).toBe(T0);
  });

  it('after a short restart that missed nothing: at its grid point', () => {
    expect(firstDue(T0, T0 - 20_000, 0, MIN, offset, false)).toBe(T0 + offset);
  });

  it('with a settle time, the cursor is that much behind by design: not a reason to poll at once', () => {
    expect(firstDue(T0, T0 - MIN - 10_000, 30_000, MIN, offset, false)).toBe(T0 + offset);
  });

  it('of a backfill (--since, backfillFrom): at once', () => {
    expect(firstDue(T0, T0 - 60_000, 0, 15 * MIN, offset, true)).toBe(T0);
  });
});
