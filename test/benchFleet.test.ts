import { describe, expect, it } from 'vitest';
import { type LogLine, pollsOf, scheduledAllMs, splitFirstRound, spreadOf, startedStreams } from '../bench/fleetLogs.js';

/** The fleet bench's reading of the daemon's log lines (bench/fleetLogs.ts). */

const T0 = Date.UTC(2026, 10, 26, 8, 0, 0);
const iso = (ms: number) => new Date(ms).toISOString();
const finished = (instance: string, resource: string, atMs: number, fields: Record<string, unknown>): LogLine =>
  ({ message: 'poll finished', instance, resource, timestamp: iso(atMs), ...fields });

describe('fleet bench: due times and lags from the poll lines', () => {
  it('takes dueAt and lagMs as the line states them', () => {
    const polls = pollsOf([
      { message: 'pollbridge started', timestamp: iso(T0) },
      finished('A', 'reports', T0 + 1_700, { dueAt: iso(T0 + 1_000), lagMs: 200, durationMs: 500 }),
    ], T0, 60_000);
    expect(polls).toEqual([{ stream: 'A/reports', dueMs: T0 + 1_000, lagMs: 200, finishedMs: T0 + 1_700 }]);
  });

  it('works them out as the interval loop schedules when the lines lack them: first at the start, then an interval on, or at the end of an overrun', () => {
    const polls = pollsOf([
      // Waited 3 s for a slot, then took 0.5 s.
      finished('A', 'reports', T0 + 3_500, { durationMs: 500 }),
      finished('A', 'reports', T0 + 60_600, { durationMs: 600 }),
      // Overran its interval: the next is due at once when it ends.
      finished('A', 'reports', T0 + 185_000, { durationMs: 65_000 }),
      finished('A', 'reports', T0 + 185_900, { durationMs: 400 }),
      finished('B', 'entries', T0 + 800, { durationMs: 800 }),
    ], T0, 60_000);
    expect(polls.map((p) => [p.stream, p.dueMs - T0, p.lagMs])).toEqual([
      ['A/reports', 0, 3_000],
      ['A/reports', 60_000, 0],
      ['A/reports', 120_000, 0],
      ['A/reports', 185_000, 500],
      ['B/entries', 0, 0],
    ]);
  });

  it('splits each stream first poll (the start-up round) from the later ones, and finds when every stream was scheduled', () => {
    const lines = [
      finished('A', 'reports', T0 + 2_000, { dueAt: iso(T0 + 1_000), lagMs: 500, durationMs: 500 }),
      finished('B', 'reports', T0 + 9_000, { dueAt: iso(T0 + 7_000), lagMs: 1_000, durationMs: 1_000 }),
      finished('A', 'reports', T0 + 62_000, { dueAt: iso(T0 + 61_000), lagMs: 500, durationMs: 500 }),
    ];
    const { first, later } = splitFirstRound(pollsOf(lines, T0, 60_000));
    expect(first.map((p) => p.stream)).toEqual(['A/reports', 'B/reports']);
    expect(later.map((p) => p.dueMs - T0)).toEqual([61_000]);
    const started = { message: 'pollbridge started', timestamp: iso(T0 - 100) };
    expect(scheduledAllMs([started, ...lines], first, 3)).toBe(T0 - 100);
    expect(scheduledAllMs([started, ...lines, { message: 'streams scheduled', timestamp: iso(T0 + 50) }], first, 3)).toBe(T0 + 50);
  });

  it('takes the last first poll as the moment every stream was scheduled for a daemon with a loop per stream', () => {
    const lines = [
      { message: 'pollbridge started', timestamp: iso(T0) },
      finished('A', 'reports', T0 + 2_000, { durationMs: 500 }),
      finished('B', 'reports', T0 + 9_000, { durationMs: 1_000 }),
    ];
    const { first } = splitFirstRound(pollsOf(lines, T0, 60_000));
    expect(scheduledAllMs(lines, first, 2)).toBe(T0 + 8_000);
    expect(scheduledAllMs(lines, first, 3)).toBeUndefined();
  });

  it('reads the stream count of the started line, as a number or as the list of names', () => {
    expect(startedStreams({ streams: 4000 })).toBe(4000);
    expect(startedStreams({ streams: ['A/reports', 'A/entries'] })).toBe(2);
    expect(startedStreams({})).toBeUndefined();
  });
});

describe('fleet bench on replicas: how the streams spread', () => {
  const poll = (stream: string, replica: string, finishedMs: number) => ({ stream, replica, dueMs: finishedMs - 600, lagMs: 0, finishedMs });

  it('counts each stream for the replica of its last poll in the span, and the streams handed over in it', () => {
    const { held, moved } = spreadOf([
      poll('A/reports', 'r1', T0 + 1_000),
      poll('A/reports', 'r2', T0 + 61_000),
      poll('B/reports', 'r2', T0 + 2_000),
      poll('B/reports', 'r2', T0 + 62_000),
      poll('C/reports', 'r1', T0 + 3_000),
      // Outside the span: neither counted nor a hand-over.
      poll('C/reports', 'r3', T0 + 200_000),
      poll('D/reports', 'r3', T0 - 1),
    ], ['r1', 'r2', 'r3'], T0, T0 + 120_000);
    expect(Object.fromEntries(held)).toEqual({ r1: 1, r2: 2, r3: 0 });
    expect(moved).toBe(1);
  });

  it('takes the last poll by its finish, whatever the order of the lines (one log per replica)', () => {
    const { held, moved } = spreadOf([
      poll('A/reports', 'r2', T0 + 61_000),
      poll('A/reports', 'r1', T0 + 1_000),
    ], ['r1', 'r2'], T0, T0 + 120_000);
    expect(Object.fromEntries(held)).toEqual({ r1: 0, r2: 1 });
    expect(moved).toBe(1);
  });
});
