import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { instantFromMs } from '../src/time/instant.js';
import { harness } from './helpers/harness.js';
import { asGenericApi, SIM_ENV, type simConfig } from './helpers/simConfig.js';
import { waitFor, writeJson } from './helpers/tmp.js';

type InstanceJson = { name: string; provider: { baseUrl: string }; configuration: Record<string, unknown> };
type ConfigJson = { database: string; instances: InstanceJson[] };

const GENERIC_URL = "/generic/v1/reports?updated_since=${date:yyyy-MM-dd'T'HH:mm:ss.SSSXXX}&per_page=50";

/** An instance of the harness config on the simulator's generic route (a static bearer token: any number may share one simulator). */
function genericInstance(base: ReturnType<typeof simConfig>, name: string): InstanceJson {
  const generic = asGenericApi(base, GENERIC_URL).instances[0]! as unknown as InstanceJson;
  return { ...generic, name };
}

const POLL_ENDS = ['poll finished', 'poll interrupted; the next goes on from its last committed part', 'poll failed; the next poll goes on from its last committed part'];

/** Start and end of every poll (a poll's log line says when it ended and how long it ran). */
function polls(lines: Record<string, unknown>[], instance?: string) {
  return lines.filter((l) => POLL_ENDS.includes(String(l.message)) && (instance === undefined || l.instance === instance)).map((l) => {
    const end = Date.parse(String(l.timestamp));
    return { instance: String(l.instance), resource: String(l.resource), start: end - Number(l.durationMs), end, message: String(l.message) };
  });
}

describe('the timer wheel against stops and fleets', () => {
  /**
   * Two instances polling every second; ConcurTest's token refresh hangs for 5 s and a reload
   * removes ConcurTest, so the reload waits for that refresh before it ends. `busy`: Tickets'
   * polls take a second each (one is in progress when the stop comes), else they are quick.
   */
  async function stopDuringSlowReload(busy: boolean) {
    const h = await harness({}, {}, (base) => ({ ...base, instances: [...base.instances, genericInstance(base, 'Tickets')] }));
    const json = JSON.parse(readFileSync(h.configFile, 'utf8')) as ConfigJson;
    const ticketsOnly = loadConfig(writeJson(h.dir, 'tickets.json', { ...json, instances: json.instances.filter((i) => i.name === 'Tickets') }), { env: SIM_ENV });
    const { daemon, logs } = h.daemon();
    await daemon.start();
    await waitFor('a poll of each instance', () => polls(logs.lines, 'ConcurTest').length > 0 && polls(logs.lines, 'Tickets').length > 0);
    if (busy) h.sim.faults.listDelayMs = 1000;
    h.sim.faults.tokenDelayMs = 5000;
    const tokens = h.sim.tokenRequestCount;
    h.sim.revokeAccessTokens();
    await waitFor("ConcurTest's token refresh in flight", () => h.sim.tokenRequestCount > tokens);
    const reloading = daemon.reload(() => ticketsOnly);
    await waitFor("ConcurTest's poll cut short by the reload", () => polls(logs.lines, 'ConcurTest').some((p) => p.message.startsWith('poll interrupted')));
    await waitFor(busy ? 'a poll of Tickets in progress' : 'Tickets between two polls', async () => ((await daemon.health()).polls ?? []).some((p) => p.instance === 'Tickets') === busy);
    const stopAskedAt = Date.now();
    await Promise.all([reloading, daemon.stop()]);
    return { stopAskedAt, tickets: polls(logs.lines, 'Tickets') };
  }

  it('stop() asked while a reload waits for a token refresh: the poll in progress is cut short then, not seconds later', { timeout: 60_000 }, async () => {
    const { stopAskedAt, tickets } = await stopDuringSlowReload(true);
    const inProgress = tickets.filter((p) => p.start <= stopAskedAt && p.end >= stopAskedAt);
    expect(inProgress.map((p) => p.message)).toEqual(['poll interrupted; the next goes on from its last committed part']);
  });

  it('stop() asked while a reload waits for a token refresh: no poll starts after it', { timeout: 60_000 }, async () => {
    const { stopAskedAt, tickets } = await stopDuringSlowReload(false);
    expect(tickets.filter((p) => p.start > stopAskedAt)).toEqual([]);
  });

  it('stop() with 2,000 streams due at once and queued for 4 slots returns without running the queue, and nothing polls after it', { timeout: 120_000 }, async () => {
    const h = await harness({}, {}, (base) => {
      const generic = genericInstance(base, 'Co');
      return { ...base, instances: Array.from({ length: 2000 }, (_, i) => ({ ...generic, name: `Co${i}` })) };
    });
    h.sim.faults.listDelayMs = 200;
    // Asked to start a minute ago: every stream is due at once.
    const { daemon, logs } = h.daemon({ maxConcurrentPolls: 4, since: instantFromMs(Date.now() - 60_000) });
    await daemon.start();
    await waitFor('the first polls in progress', async () => ((await daemon.health()).polls ?? []).length === 4);
    const stopAskedAt = Date.now();
    await daemon.stop();
    const stoppedAt = Date.now();
    const listed = h.sim.listQueries.length;
    // The queue would take 2,000 × 200 ms / 4 = 100 s to run; a stop that did so would time the test out.
    expect(polls(logs.lines).filter((p) => p.message === 'poll finished' && p.start > stopAskedAt)).toEqual([]);
    expect(polls(logs.lines).filter((p) => p.start > stoppedAt)).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(h.sim.listQueries.length).toBe(listed);
    expect(listed).toBeLessThan(100);
  });

  it('run --once polls each of 300 streams once and returns', { timeout: 120_000 }, async () => {
    const h = await harness({}, {}, (base) => {
      const generic = genericInstance(base, 'Co');
      return { ...base, instances: Array.from({ length: 300 }, (_, i) => ({ ...generic, name: `Co${i}` })) };
    });
    const report = h.sim.createReport();
    const { daemon, logs } = h.daemon({ since: instantFromMs(Date.now() - 60_000) });
    const result = await daemon.runOnce();
    expect(result).toEqual({ failedPolls: 0, pending: 0, interrupted: false });
    const finished = polls(logs.lines).filter((p) => p.message === 'poll finished');
    expect(new Set(finished.map((p) => p.instance)).size).toBe(300);
    expect(finished.length).toBe(300);
    expect(h.events().filter((e) => e.objectId === report.ID).length).toBe(300);
  });

  it("stop() while one company waits out a 5-minute 429 pause returns at once: neither its gate nor its poll's retry wait holds the stop", { timeout: 30_000 }, async () => {
    const h = await harness({}, {}, (base) => ({ ...base, instances: [...base.instances, genericInstance(base, 'Tickets')] }));
    const { daemon, logs } = h.daemon({ fetchPolicy: { retries: 3, minTimeoutMs: 10, maxRetryAfterSec: 300 } });
    await daemon.start();
    await waitFor('a poll of each instance', () => polls(logs.lines, 'ConcurTest').length > 0 && polls(logs.lines, 'Tickets').length > 0);
    h.sim.faults.listFailures = [{ status: 429, retryAfter: '300' }, { status: 429, retryAfter: '300' }];
    await waitFor('both 429s served', () => h.sim.faults.listFailures.length === 0);
    const stopAskedAt = Date.now();
    // A stop that waited out the pause would outlast the test's 30 s.
    await daemon.stop();
    const cut = polls(logs.lines).filter((p) => p.end >= stopAskedAt);
    expect(cut.every((p) => p.message === 'poll interrupted; the next goes on from its last committed part')).toBe(true);
    expect(cut.length).toBeGreaterThan(0);
  });
});
