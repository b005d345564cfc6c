import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { isoOrNull, relativeTime } from '../src/cli/format.js';
import { describePoll, nextPollAt } from '../src/cli/statusCommand.js';
import { runCli, startCli } from './helpers/cli.js';
import { harness } from './helpers/harness.js';
import { SIM_ENV } from './helpers/simConfig.js';
import { waitFor } from './helpers/tmp.js';

const ISO_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('status times, as read', () => {
  const now = Date.parse('2026-11-26T12:00:00Z');

  it('says how long ago and how soon, in the unit a person reads', () => {
    expect(relativeTime(now - 12_000, now)).toBe('12 s ago');
    expect(relativeTime(now + 40_000, now)).toBe('in 40 s');
    expect(relativeTime(now - 5 * 60_000, now)).toBe('5 min ago');
    expect(relativeTime(now + 15 * 60_000, now)).toBe('in 15 min');
    expect(relativeTime(now - 3 * 3_600_000, now)).toBe('3 h ago');
    expect(relativeTime(now - 4 * 86_400_000, now)).toBe('4 d ago');
    expect(relativeTime(now + 300, now)).toBe('now');
    expect(isoOrNull(now)).toBe('2026-11-26T12:00:00.000Z');
    expect(isoOrNull(undefined)).toBeNull();
  });

  it('finds the next poll from the schedule: an interval stream at its grid point (at once when overdue), a cron at its next match', () => {
    const interval = { kind: 'interval', intervalMs: 60_000 } as const;
    // now is 12:00:00; the stream's place is 25 s into each minute.
    expect(nextPollAt(interval, 25_000, now - 20_000, now)).toBe(now + 25_000);
    expect(nextPollAt(interval, 25_000, now - 90_000, now)).toBe(now);
    expect(nextPollAt(interval, 25_000, undefined, now)).toBe(now + 25_000);
    const cron = { kind: 'cron', expression: '*/10 * * * * *' } as const;
    const before = Date.now();
    const next = nextPollAt(cron, 0, before - 1000, before);
    expect(next).toBeGreaterThan(before);
    expect(next - before).toBeLessThanOrEqual(10_000);
    expect(new Date(next).getUTCSeconds() % 10).toBe(0);
  });

  it('describes a poll in progress: since when, which page, which retry', () => {
    const since = '2026-11-26T11:59:20.000Z';
    expect(describePoll({ since, page: 3, retry: 2 }, now)).toBe(`started 40 s ago (${since}), page 3, retry 2`);
    expect(describePoll({ since, page: 1, retry: 0 }, now)).toBe(`started 40 s ago (${since}), page 1`);
    expect(describePoll({ since, page: 0, retry: 0 }, now)).toBe(`started 40 s ago (${since}), getting a token`);
  });
});

describe('pollbridge status', () => {
  it('shows the last poll as a time ago, the next by the schedule, and gives every time as ISO-8601 UTC in --json', { timeout: 60_000 }, async () => {
    const port = await freePort();
    // A 15-minute interval: after the first poll (at once, a backfill), the next is at the stream's
    // grid point, anywhere within the quarter of an hour.
    const h = await harness({ 'pollbridge.poller.cron': undefined, 'event.poller.refresh_interval': '15' }, {}, (c) => ({ ...c, http: { listen: `127.0.0.1:${port}` } }));
    h.sim.createReport();
    const daemon = startCli(['run', '-c', h.configFile, '--since', new Date(Date.now() - 60_000).toISOString()], SIM_ENV);
    try {
      await daemon.waitForLog('poll finished');
      const text = await runCli(['status', '-c', h.configFile], SIM_ENV);
      expect(text.stderr).toBe('');
      expect(text.stdout).toMatch(/INSTANCE +RESOURCE +CURSOR +LAST POLL +RESULT +NEXT POLL +PENDING/);
      // The next poll is at the stream's place in its 15-minute interval.
      expect(text.stdout).toMatch(/\nConcurTest +reports +\S+ +(?:now|\d+ s ago) +ok +(?:in (?:\d+ min|\d+ s)|now) +\d+ +0 +0/);
      expect(text.stdout).toContain('\ndaemon: running on this database\n');

      const json = JSON.parse((await runCli(['status', '-c', h.configFile, '--json'], SIM_ENV)).stdout) as {
        now: string; daemonRunning: boolean; streams: Record<string, unknown>[]; daemon: { polls: unknown[] };
      };
      expect(json.now).toMatch(ISO_UTC);
      expect(json.daemonRunning).toBe(true);
      const [stream] = json.streams;
      for (const field of ['cursor', 'lastPollAt', 'lastSuccessAt', 'nextPollAt']) expect(stream![field], field).toMatch(ISO_UTC);
      expect(Date.parse(stream!.nextPollAt as string) - Date.parse(stream!.lastPollAt as string)).toBeLessThanOrEqual(15 * 60_000);
      expect(Date.parse(stream!.nextPollAt as string)).toBeGreaterThan(Date.parse(json.now));
      expect(stream!.polling).toBeNull();
      expect(json.daemon.polls).toEqual([]);
    } finally {
      daemon.child.kill('SIGTERM');
      expect((await daemon.exited).code).toBe(0);
    }

    const stopped = await runCli(['status', '-c', h.configFile], SIM_ENV);
    expect(stopped.stdout).toMatch(/\nConcurTest +reports +\S+ +(?:now|\d+ s ago) +ok +- +\d+/);
    expect(stopped.stdout).toContain('\ndaemon: not running on this database (nothing is polled or sent until `pollbridge run`)\n');
    const stoppedJson = JSON.parse((await runCli(['status', '-c', h.configFile, '--json'], SIM_ENV)).stdout) as { daemonRunning: boolean; streams: { nextPollAt: unknown }[] };
    expect(stoppedJson.daemonRunning).toBe(false);
    expect(stoppedJson.streams[0]!.nextPollAt).toBeNull();
  });

  it('a running daemon without an address to ask: says why, not to set an http.listen the config has (port 0)', { timeout: 60_000 }, async () => {
    for (const [listen, hint] of [
      [undefined, '  (set http.listen in the config for its polls in progress and health here)'],
      ['127.0.0.1:0', '  (http.listen has port 0: the daemon\'s address is in its log ("health and metrics listening"), not known here)'],
    ] as const) {
      const h = await harness({}, {}, (c) => (listen ? { ...c, http: { listen } } : c));
      const daemon = startCli(['run', '-c', h.configFile], SIM_ENV);
      try {
        await daemon.waitForLog('poll finished');
        const text = await runCli(['status', '-c', h.configFile], SIM_ENV);
        expect(text.stdout).toContain(`\ndaemon: running on this database\n${hint}`);
      } finally {
        daemon.child.kill('SIGTERM');
        await daemon.exited;
      }
    }
  });

  it('shows a poll in progress: since when, which page, which retry', { timeout: 60_000 }, async () => {
    const port = await freePort();
    const h = await harness({}, {}, (c) => ({ ...c, http: { listen: `127.0.0.1:${port}` } }));
    // The first page's first try is told to come back in a second, its second in a minute: the poll waits on its first retry.
    h.sim.faults.listFailures.push({ status: 503, retryAfter: '1' }, { status: 503, retryAfter: '60' });
    const daemon = startCli(['run', '-c', h.configFile], SIM_ENV);
    try {
      await waitFor('the retry answered', () => h.sim.listQueries.length >= 2);
      const text = await runCli(['status', '-c', h.configFile], SIM_ENV);
      expect(text.stdout, text.stdout).toMatch(/\nConcurTest +reports +\S+ +- +- +polling now +0/);
      expect(text.stdout, text.stdout).toMatch(/\n {2}polling ConcurTest\/reports: started \d+ s ago \(\d{4}-\d\d-\d\dT[\d:.]+Z\), page 1, retry 1$/m);

      const json = JSON.parse((await runCli(['status', '-c', h.configFile, '--json'], SIM_ENV)).stdout) as { streams: { polling: { since: string; page: number; retry: number } }[] };
      expect(json.streams[0]!.polling).toEqual({ since: expect.stringMatching(ISO_UTC), page: 1, retry: 1 });
    } finally {
      daemon.child.kill('SIGTERM');
      expect((await daemon.exited).code).toBe(0);
    }
  });
});
