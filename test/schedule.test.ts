import { afterEach, describe, expect, it, vi } from 'vitest';
import { createScheduler } from '../src/daemon/schedule.js';

const T0 = Date.parse('2026-11-22T07:00:00Z');

describe('interval schedule', () => {
  it('polls on the stream\'s grid: its first poll at its place, the next an interval on', () => {
    const s = createScheduler({ kind: 'interval', intervalMs: 0.5 * 60_000 }, 7_000);
    expect(s.first(T0, { cursorMs: T0, settleMs: 0, backfill: false })).toBe(T0 + 7_000);
    expect(s.next(T0 + 7_000, T0 + 8_000)).toBe(T0 + 37_000);
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
      expect(s.first(Date.now(), { cursorMs: T0, settleMs: 0, backfill: false })).toBe(Date.now());
      expect(s.next(T0, Date.now())).toBe(T0 + 10_000);
      vi.setSystemTime(T0 + 59_000);
      expect(s.next(T0, Date.now())).toBe(T0 + 60_000);
    } finally {
      s.dispose();
    }
  });

});
