import { afterEach, describe, expect, it, vi } from 'vitest';
import { TimerWheel } from '../src/daemon/timerWheel.js';
import { rng } from './helpers/rng.js';

const T0 = Date.parse('2026-11-22T07:00:00Z');

afterEach(() => {
  vi.useRealTimers();
});

describe('the timer wheel', () => {
  it('fires each key at its time, in due order, with one timer for all', () => {
    vi.useFakeTimers({ now: T0 });
    const fired: [string, number][] = [];
    const wheel = new TimerWheel<string>((key, due) => fired.push([key, due]));
    wheel.schedule('c', T0 + 3000);
    wheel.schedule('a', T0 + 1000);
    wheel.schedule('b', T0 + 2000);
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(2500);
    expect(fired).toEqual([['a', T0 + 1000], ['b', T0 + 2000]]);
    vi.advanceTimersByTime(1000);
    expect(fired.map(([k]) => k)).toEqual(['a', 'b', 'c']);
    expect(wheel.size).toBe(0);
    wheel.dispose();
  });

  it('a key scheduled again fires once, at its new time; a cancelled key never', () => {
    vi.useFakeTimers({ now: T0 });
    const fired: string[] = [];
    const wheel = new TimerWheel<string>((key) => fired.push(key));
    wheel.schedule('a', T0 + 1000);
    wheel.schedule('a', T0 + 5000);
    wheel.schedule('b', T0 + 2000);
    wheel.cancel('b');
    vi.advanceTimersByTime(4000);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1000);
    expect(fired).toEqual(['a']);
    wheel.dispose();
  });

  it('notices a wall clock stepped forward within its longest wait', () => {
    vi.useFakeTimers({ now: T0 });
    const fired: string[] = [];
    const wheel = new TimerWheel<string>((key) => fired.push(key));
    wheel.schedule('hourly', T0 + 3_600_000);
    vi.setSystemTime(T0 + 3_600_000);
    vi.advanceTimersByTime(10_000);
    expect(fired).toEqual(['hourly']);
    wheel.dispose();
  });

  it('matches a reference model under random schedules, reschedules and cancels (seeded)', () => {
    for (let seed = 1; seed <= 60; seed++) {
      vi.useFakeTimers({ now: T0 });
      const random = rng(seed);
      const fired: [number, number][] = [];
      const wheel = new TimerWheel<number>((key, due) => fired.push([key, due]));
      const model = new Map<number, number>();
      const expected: [number, number][] = [];
      for (let step = 0; step < 300; step++) {
        const key = Math.floor(random() * 40);
        const op = random();
        if (op < 0.6) {
          const due = Date.now() + Math.floor(random() * 20_000);
          wheel.schedule(key, due);
          model.set(key, due);
        } else if (op < 0.75) {
          wheel.cancel(key);
          model.delete(key);
        } else {
          const to = Date.now() + Math.floor(random() * 5000);
          // What the model says fires by `to`: each live key whose due time has come, in order.
          const due = [...model].filter(([, d]) => d <= to).sort((a, b) => a[1] - b[1]);
          for (const [k] of due) model.delete(k);
          expected.push(...due);
          vi.advanceTimersByTime(to - Date.now());
        }
      }
      const firedKeys = fired.map(([k, d]) => `${k}@${d}`).sort();
      const expectedKeys = expected.map(([k, d]) => `${k}@${d}`).sort();
      expect(firedKeys, `seed ${seed}`).toEqual(expectedKeys);
      // Due order throughout: a key scheduled after a firing is due no earlier than the time of that firing.
      for (let i = 1; i < fired.length; i++) expect(fired[i]![1], `seed ${seed}, firing ${i}`).toBeGreaterThanOrEqual(fired[i - 1]![1]);
      wheel.dispose();
      vi.useRealTimers();
    }
  });
});
