import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import type { PollbridgeConfig } from '../src/config/types.js';
import { freePort } from './helpers/configFile.js';
import { harness } from './helpers/harness.js';
import { occupiedPort } from './helpers/ports.js';
import { rng } from './helpers/rng.js';
import { SIM_ENV } from './helpers/simConfig.js';
import { waitFor, writeJson } from './helpers/tmp.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type ConfigJson = { database: string; http?: { listen: string }; instances: { name: string; configuration: Record<string, unknown> }[] };

/** Does anything answer /healthz there? */
async function answers(url: string): Promise<boolean> {
  try {
    const r = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(3000) });
    await r.text();
    return true;
  } catch {
    return false;
  }
}

const POLL_ENDS = ['poll finished', 'poll interrupted; the next goes on from its last committed part', 'poll failed; the next poll goes on from its last committed part'];
const pollLines = (lines: Record<string, unknown>[]) => lines.filter((l) => POLL_ENDS.includes(String(l.message)));

type PollLine = { instance: string; resource: string; start: number; end: number };

/** Polls of one stream that ran at the same time: two loops on one stream. */
function overlaps(lines: Record<string, unknown>[]): string[] {
  const polls: PollLine[] = pollLines(lines).map((l) => {
      const end = Date.parse(String(l.timestamp));
      return { instance: String(l.instance), resource: String(l.resource), start: end - Number(l.durationMs), end };
    });
  const found: string[] = [];
  for (const [i, a] of polls.entries()) {
    for (const b of polls.slice(i + 1)) {
      // 1 ms of slack: the log's timestamp and durationMs are read at different moments.
      if (a.instance === b.instance && a.resource === b.resource && a.start + 1 < b.end && b.start + 1 < a.end) {
        found.push(`${a.instance}/${a.resource}: [${a.start}, ${a.end}] and [${b.start}, ${b.end}]`);
      }
    }
  }
  return found;
}

const SEEDS = Number(process.env.POLLBRIDGE_LIFE_SEEDS ?? 3);
const FIRST_SEED = Number(process.env.POLLBRIDGE_LIFE_FIRST_SEED ?? 1);

describe('seeded random sequences of start, reload and stop', () => {
  for (let seed = FIRST_SEED; seed < FIRST_SEED + SEEDS; seed++) {
    it(`seed ${seed}: one loop per stream, the last applied config runs whole, nothing after stop`, { timeout: 120_000 }, async () => {
      const random = rng(seed);
      const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)]!;
      const firstPort = await freePort();
      const h = await harness({}, {}, (c) => ({ ...c, http: { listen: `127.0.0.1:${firstPort}` } }));
      const base = JSON.parse(readFileSync(h.configFile, 'utf8')) as ConfigJson;
      let files = 0;
      const variant = (edit: (c: ConfigJson) => void): PollbridgeConfig => {
        const json = structuredClone(base);
        edit(json);
        return loadConfig(writeJson(h.dir, `variant-${files++}.json`, json), { env: SIM_ENV });
      };
      const busy = await occupiedPort();

      const { daemon, logs, config: first } = h.daemon();
      const usedUrls = new Set<string>([`http://127.0.0.1:${firstPort}`]);
      const history: string[] = [];
      type Asked = { kind: 'good' | 'bad'; config?: PollbridgeConfig; result: Promise<boolean | Error>; stopAsked: boolean };
      const asked: Asked[] = [];
      let stopAsked = false;
      let stopping: Promise<void> | undefined;
      const started = daemon.start();
      if (random() < 0.5) await started;

      const steps = 8 + Math.floor(random() * 10);
      for (let i = 0; i < steps; i++) {
        const r = random();
        if (r < 0.5) {
          const kind = pick(['same', 'second instance', 'new port', 'no http', 'first port'] as const);
          let config: PollbridgeConfig;
          if (kind === 'same') config = first;
          else if (kind === 'second instance') config = variant((c) => c.instances.push({ ...c.instances[0]!, name: 'ConcurTwo' }));
          else if (kind === 'new port') {
            const port = await freePort();
            usedUrls.add(`http://127.0.0.1:${port}`);
            config = variant((c) => { c.http = { listen: `127.0.0.1:${port}` }; });
          } else if (kind === 'no http') config = variant((c) => { delete c.http; });
          else config = variant(() => {});
          history.push(`reload ${kind}`);
          asked.push({ kind: 'good', config, stopAsked, result: daemon.reload(() => config).catch((err: Error) => err) });
        } else if (r < 0.8) {
          const kind = pick(['database', 'listen taken', 'reader throws', 'invalid'] as const);
          history.push(`reload failing: ${kind}`);
          const reader = kind === 'database' ? () => variant((c) => { c.database = './elsewhere.db'; })
            : kind === 'listen taken' ? () => variant((c) => { c.http = { listen: `127.0.0.1:${busy}` }; c.instances.push({ ...c.instances[0]!, name: 'ConcurThree' });
              // Were it half applied, deliveries would go nowhere.
              c.instances[0]!.configuration['event.notification.callback.url'] = 'http://127.0.0.1:9/nowhere';
            })
            : kind === 'reader throws' ? () => { throw new Error('the reader failed'); }
            : () => undefined;
          asked.push({ kind: 'bad', stopAsked, result: daemon.reload(reader).catch((err: Error) => err) });
        } else if (r < 0.9) {
          history.push('start again');
          void daemon.start().catch(() => undefined);
        } else if (!stopAsked) {
          history.push('stop');
          stopAsked = true;
          stopping = daemon.stop();
        }
        if (random() < 0.6) await sleep(Math.floor(random() * 250));
        if (random() < 0.2) await asked.at(-1)?.result;
      }
      const results = await Promise.all(asked.map((a) => a.result));
      await started;
      const context = `seed ${seed}: ${history.join(', ')}; results ${results.map((r) => (r instanceof Error ? r.message : String(r))).join(', ')}`;

      // A failing reload is never applied; a good one is, unless a stop came first.
      let expected = first;
      for (const [i, a] of asked.entries()) {
        const result = results[i]!;
        if (a.kind === 'bad') expect(result, context).not.toBe(true);
        else if (result !== true) expect(stopAsked, context).toBe(true);
        if (result === true) expected = a.config!;
      }
      expect(daemon.config, context).toBe(expected);

      if (!stopAsked) {
        const expectedUrl = expected.http ? `http://${expected.http.host}:${expected.http.port}` : undefined;
        expect(daemon.httpUrl, context).toBe(expectedUrl);
        for (const url of usedUrls) expect(await answers(url), `${context}: ${url}`).toBe(url === expectedUrl);
        // Every stream of the running config polls and delivers.
        const mark = logs.lines.length;
        const report = h.sim.createReport();
        await waitFor(`${context}: the report delivered`, () => h.events().some((e) => e.objectId === report.ID), 20_000);
        // ConcurTwo shares ConcurTest's refresh token, which the simulator rotates: its polls may
        // fail. What matters here is that its loop runs.
        for (const { name } of expected.instances) {
          await waitFor(`${context}: ${name} polls`, () => pollLines(logs.lines.slice(mark)).some((l) => l.instance === name), 10_000);
        }
        stopping = daemon.stop();
      }
      await stopping;
      expect(overlaps(logs.lines), context).toEqual([]);
      const after = h.sim.listQueries.length;
      await sleep(2500);
      expect(h.sim.listQueries.length, context).toBe(after);
      for (const url of usedUrls) expect(await answers(url), `${context}: ${url} after stop`).toBe(false);
      // Everything closed: another daemon can take the database at once.
      const next = h.daemon().daemon;
      await next.start();
      await next.stop();
      expect(await daemon.reload(() => first), context).toBe(false);
    });
  }
});
