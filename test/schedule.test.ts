import { afterEach, describe, expect, it, vi } from 'vitest';
import { createScheduler, nextIntervalRun } from '../src/daemon/schedule.js';

const T0 = Date.parse('2026-11-22T07:00:00Z');

describe('interval schedule', () => {
  it('runs at once the first time, then interval apart from the last start', () => {
    expect(nextIntervalRun(undefined, T0, 60_000)).toBe(T0);
    expect(nextIntervalRun(T0, T0 + 10_000, 60_000)).toBe(T0 + 60_000);
  });

  it('after an overrun, runs once at once instead of a burst of missed runs', () => {
    expect(nextIntervalRun(T0, T0 + 5 * 60_000, 60_000)).toBe(T0 + 5 * 60_000);
  });

  it('when the clock goes backwards, waits one interval from now, not the gap', () => {
    expect(nextIntervalRun(T0, T0 - 3_600_000, 60_000)).toBe(T0 - 3_600_000 + 60_000);
  });
});

describe('cron schedule', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('waits until the next match of the expression, seconds field included', () => {
    vi.useFakeTimers({ now: T0 + 1_500 });
    const s = createScheduler({ kind: 'cron', expression: '*/10 * * * * *' });
    try {
      expect(s.msUntilNext(undefined, Date.now())).toBe(0);
      expect(s.msUntilNext(T0, Date.now())).toBe(8_500);
      vi.setSystemTime(T0 + 59_000);
      expect(s.msUntilNext(T0, Date.now())).toBe(1_000);
    } finally {
      s.dispose();
    }
  });

  it('interval schedules convert decimal minutes', () => {
    const s = createScheduler({ kind: 'interval', intervalMs: 0.5 * 60_000 });
    expect(s.msUntilNext(T0, T0 + 10_000)).toBe(20_000);
  });
});
