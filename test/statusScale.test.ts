import { beforeEach, describe, expect, it } from 'vitest';
import { instanceMatcher, lagOf, periodOf } from '../src/cli/statusView.js';
import type { StreamStatus } from '../src/store/types.js';
import { instantFromMs } from '../src/time/instant.js';
import { runCli } from './helpers/cli.js';
import { instance } from './helpers/configs.js';
import { enqueue, openOutboxStore } from './helpers/outbox.js';
import { tempDir, writeJson } from './helpers/tmp.js';

describe('status filters, as pure rules', () => {
  it('matches instance names by pattern: `*` any run, everything else itself', () => {
    const match = instanceMatcher(['acme-*', 'globex.eu']);
    expect(['acme-1', 'acme-', 'globex.eu'].filter(match)).toEqual(['acme-1', 'acme-', 'globex.eu']);
    expect(['acme', 'xacme-1', 'globexXeu', 'globex.eu2'].filter(match)).toEqual([]);
    expect(instanceMatcher([])('anything')).toBe(true);
    expect(instanceMatcher(['*'])('')).toBe(true);
  });

  it('lags after more than two periods without a completed poll; a never-completed stream counts from its window', () => {
    const now = Date.parse('2026-11-26T12:00:00Z');
    const stream = (lastSuccessAt: number | undefined, cursorMs = now): StreamStatus => ({
      instance: 'a', resource: 'reports', cursor: instantFromMs(cursorMs), lastPollAt: undefined, lastPollOk: undefined, lastPollError: undefined,
      lastSuccessAt, pending: 0, dead: 0, rejected: 0, lastDeliveryError: undefined,
    });
    expect(lagOf(stream(now - 120_000), 60_000, now)).toEqual({ lagMs: 120_000, lagging: false });
    expect(lagOf(stream(now - 120_001), 60_000, now)).toEqual({ lagMs: 120_001, lagging: true });
    expect(lagOf(stream(undefined, now - 600_000), 60_000, now)).toEqual({ lagMs: 600_000, lagging: true });
    // Not polled by the config: a lag, but no verdict.
    expect(lagOf(stream(now - 600_000), undefined, now)).toEqual({ lagMs: 600_000 });
    expect(periodOf({ kind: 'interval', intervalMs: 900_000 })).toBe(900_000);
    expect(periodOf({ kind: 'cron', expression: '*/10 * * * * *' })).toBe(10_000);
  });
});

const INSTANCES = 150;
const RESOURCES = ['reports', 'requests'] as const;
const name = (i: number): string => `${i < 100 ? 'acme' : 'globex'}-${String(i).padStart(3, '0')}`;
/** Instance i's `reports` failed its last poll when i % 10 is 3; both its streams lag when i % 10 is 5. */
const failing = (i: number, resource: string): boolean => i % 10 === 3 && resource === 'reports';
const lagging = (i: number): boolean => i % 10 === 5;
const expected = (pred: (i: number, resource: string) => boolean): string[] =>
  Array.from({ length: INSTANCES }, (_, i) => RESOURCES.filter((r) => pred(i, r)).map((r) => `${name(i)} ${r}`)).flat().sort();

/** The INSTANCE and RESOURCE of each row of the table printed. */
function tableRows(stdout: string): string[] {
  const lines = stdout.split('\n');
  const header = lines.findIndex((l) => l.startsWith('INSTANCE '));
  expect(header, stdout).toBeGreaterThanOrEqual(0);
  const end = lines.findIndex((l, n) => n > header && l.startsWith('notifications:'));
  return lines.slice(header + 1, end).map((l) => l.split(/ +/).slice(0, 2).join(' ')).sort();
}

describe('pollbridge status with 300 streams', () => {
  let configFile = '';
  let db = '';

  // Afresh for each test: the temporary directory goes with each test.
  beforeEach(async () => {
    const dir = tempDir();
    const store = await openOutboxStore(dir);
    db = store.path;
    const now = Date.now();
    try {
      for (let i = 0; i < INSTANCES; i++) {
        for (const resource of RESOURCES) {
          const stream = await store.openStream(name(i), resource, instantFromMs(now - 3_600_000));
          if (lagging(i)) await store.completePoll(stream.id, {}, now - 10 * 60_000);
          else await store.completePoll(stream.id, {}, now - 10_000);
          if (failing(i, resource)) await store.failPoll(stream.id, `HTTP 401 from ${name(i)}`, now - 5_000);
        }
      }
      // An instance no longer configured, its outbox kept.
      await enqueue(store, 'gone-corp', 3);
    } finally {
      await store.close();
    }
    const reports = (instance().configuration['event.poller.configuration'] as Record<string, unknown>).reports;
    configFile = writeJson(dir, 'poller.config.json', {
      database: db,
      instances: Array.from({ length: INSTANCES }, (_, i) => instance(
        { 'event.poller.refresh_interval': '1', 'event.poller.configuration': { reports, requests: reports } },
        { name: name(i) },
      )),
    });
  }, 60_000);

  it('prints a one-screen summary: totals, the worst lagging and the failing streams, and how to see the rest', async () => {
    const { code, stdout, stderr } = await runCli(['status', '-c', configFile]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout.split('\n').length, stdout).toBeLessThanOrEqual(40);
    expect(stdout).toContain(`streams: 301 of 151 instances (config: ${INSTANCES} instances, ${INSTANCES} enabled)\n`);
    expect(stdout).toContain('last poll: 285 ok, 15 failed, 1 not yet polled\n');
    expect(stdout).toContain('polled: 270 of 300 scheduled streams within their interval, 30 lagging (more than 2 intervals)\n');
    expect(stdout).toContain('notifications: 3 pending, 0 delivered, 0 dead\n');
    expect(stdout).toContain('  … and 20 more: use --lagging\n');
    expect(stdout).toContain('  … and 5 more: use --failing\n');
    expect(stdout).toContain('  gone-corp: 3 pending\n');
    expect(stdout).toMatch(/\n {2}acme-003 +reports +\d+ s ago +\d+ s ago +failed +HTTP 401 from acme-003\n/);
    expect(stdout).toMatch(/\n {2}acme-005 +reports +10 min ago/);
    expect(stdout).not.toContain('CURSOR');
  });

  it('--failing, --lagging and --instance show the full table of exactly the matching streams; filters combine', async () => {
    const run = async (...args: string[]) => {
      const r = await runCli(['status', '-c', configFile, ...args]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toContain('CURSOR');
      return tableRows(r.stdout);
    };
    expect(await run('--failing')).toEqual(expected(failing));
    expect(await run('--lagging')).toEqual(expected(lagging));
    expect(await run('--instance', 'globex-*', '--failing')).toEqual(expected((i, r) => i >= 100 && failing(i, r)));
    expect(await run('--instance', 'acme-001', '--instance', 'globex-149')).toEqual(['acme-001 reports', 'acme-001 requests', 'globex-149 reports', 'globex-149 requests']);
    expect(await run('--instance', 'gone-*')).toEqual(['gone-corp reports']);
    expect(await run('--all')).toHaveLength(301);
    const none = await runCli(['status', '-c', configFile, '--instance', 'nobody']);
    expect(none.stdout).toContain('no stream matches (301 streams in all)\n');
  });

  it('--json applies the filters and says which streams lag', async () => {
    const { stdout } = await runCli(['status', '-c', configFile, '--json', '--lagging', '--instance', 'acme-*']);
    const json = JSON.parse(stdout) as { streams: { instance: string; resource: string; lagging: boolean }[]; unconfigured: unknown[] };
    expect(json.streams.map((s) => `${s.instance} ${s.resource}`).sort()).toEqual(expected((i) => i < 100 && lagging(i)));
    expect(json.streams.every((s) => s.lagging)).toBe(true);
    expect(json.unconfigured).toEqual([]);
    const all = JSON.parse((await runCli(['status', '-c', configFile, '--json'])).stdout) as { streams: { lagging: boolean }[]; unconfigured: unknown[] };
    expect(all.streams).toHaveLength(301);
    expect(all.streams.filter((s) => s.lagging)).toHaveLength(30);
    expect(all.unconfigured).toEqual([{ instance: 'gone-corp', pending: 3 }]);
  });

  it('without the config there is no schedule: --lagging is refused in one line, the summary has no lag verdicts', async () => {
    const refused = await runCli(['status', '--db', db, '--lagging']);
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toContain('--lagging needs the config');
    const summary = await runCli(['status', '--db', db]);
    expect(summary.stdout).toContain('streams: 301 of 151 instances\n');
    expect(summary.stdout).not.toContain('lagging');
    // Its cursor is at the epoch: never polled since the config dropped it.
    expect(summary.stdout).toMatch(/\nworst lag: gone-corp\/reports, no completed poll, its window from \d+ d ago\n/);
  });
});
