import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import type { PollbridgeConfig } from '../src/config/types.js';
import type { Store } from '../src/store/types.js';
import { ThreadedStore } from '../dist/store/threadedStore.js';
import { harness } from './helpers/harness.js';
import { rng } from './helpers/rng.js';
import { asGenericApi, SIM_ENV } from './helpers/simConfig.js';
import { waitFor, writeJson } from './helpers/tmp.js';

const GENERIC_URL = "/generic/v1/reports?updated_since=${date:yyyy-MM-dd'T'HH:mm:ss.SSSXXX}&per_page=2";
const NAMES = ['Alpha', 'Bravo', 'Charlie', 'Delta'];

const POLL_ENDS = ['poll finished', 'poll interrupted; the next goes on from its last committed part', 'poll failed; the next poll goes on from its last committed part'];

type Poll = { instance: string; resource: string; start: number; end: number; message: string };

/** Every poll, from its end line: when it ended and how long it ran. */
function polls(lines: Record<string, unknown>[]): Poll[] {
  return lines.filter((l) => POLL_ENDS.includes(String(l.message))).map((l) => {
    const end = Date.parse(String(l.timestamp));
    return { instance: String(l.instance), resource: String(l.resource), start: end - Number(l.durationMs), end, message: String(l.message) };
  });
}

/** Polls of one stream that ran at the same time. */
function overlaps(all: Poll[]): string[] {
  const found: string[] = [];
  for (const [i, a] of all.entries()) {
    for (const b of all.slice(i + 1)) {
      // 1 ms of slack: the log's timestamp and durationMs are read at different moments.
      if (a.instance === b.instance && a.resource === b.resource && a.start + 1 < b.end && b.start + 1 < a.end) {
        found.push(`${a.instance}/${a.resource}: [${a.start}, ${a.end}] ${a.message} and [${b.start}, ${b.end}] ${b.message}`);
      }
    }
  }
  return found;
}

type InstanceJson = { name: string; configuration: Record<string, unknown> };

/**
 * Four companies on the simulator's generic route (every second), pages of 2 answered after a
 * delay, so polls are in flight whenever a reload comes. `version` changes an instance (its
 * delivery timeout: nothing a poll sees), `present` says which are in the config.
 */
async function fleet(configuration: Record<string, unknown> = {}) {
  const h = await harness(configuration, {}, (base) => {
    const generic = asGenericApi(base, GENERIC_URL).instances[0]!;
    return { ...base, instances: NAMES.map((name) => ({ ...generic, name })) };
  });
  const base = readFileSync(h.configFile, 'utf8');
  const instances = (JSON.parse(base) as { instances: InstanceJson[] }).instances;
  let files = 0;
  const configOf = (present: Set<string>, version: Map<string, number>): PollbridgeConfig => {
    const json = JSON.parse(base) as { instances: InstanceJson[] };
    json.instances = instances.filter((i) => present.has(i.name)).map((i) => {
      const v = version.get(i.name) ?? 0;
      // Version 0 is the instance as the daemon started with it, byte for byte.
      return v === 0 ? i : { ...i, configuration: { ...i.configuration, 'pollbridge.delivery.timeoutMs': String(15_000 + v) } };
    });
    return loadConfig(writeJson(h.dir, `config-${files++}.json`, json), { env: SIM_ENV });
  };
  return { h, configOf };
}

/** Each instance got every change of the simulator once: one event per (report, update). */
function deliveredOnce(h: Awaited<ReturnType<typeof fleet>>['h'], names: string[]): string | undefined {
  const expected = new Map<string, number>();
  for (const c of h.sim.changes) if (c.kind !== 'deleted') expected.set(c.id, (expected.get(c.id) ?? 0) + 1);
  const got = new Map<string, Map<string, Set<string>>>();
  const dupes: string[] = [];
  for (const r of h.receiver.accepted) {
    const instance = (JSON.parse(r.body) as { message: { instanceName: string } }).message.instanceName;
    const byId = got.get(instance) ?? new Map<string, Set<string>>();
    got.set(instance, byId);
    for (const e of r.events) {
      const dates = byId.get(e.objectId) ?? new Set<string>();
      if (dates.has(e.date)) dupes.push(`${instance} ${e.objectId} ${e.date}`);
      dates.add(e.date);
      byId.set(e.objectId, dates);
    }
  }
  if (dupes.length > 0) return `duplicates: ${dupes.join(', ')}`;
  for (const name of names) {
    for (const [id, n] of expected) {
      const seen = got.get(name)?.get(id)?.size ?? 0;
      if (seen !== n) return `${name}: ${id} delivered ${seen} times of ${n}`;
    }
  }
  return undefined;
}

describe('a reload applies the difference', () => {
  it('an unchanged instance goes on through reloads that change, remove and add others: no poll of it cut short', { timeout: 60_000 }, async () => {
    const { h, configOf } = await fleet();
    h.sim.faults.listDelayMs = 300;

    const all = new Set(NAMES);
    const { daemon, logs } = h.daemon();
    await daemon.start();
    await waitFor('a poll of every instance', () => NAMES.every((n) => polls(logs.lines).some((p) => p.instance === n)));
    const version = new Map<string, number>();
    let since: string | undefined;
    for (let round = 1; round <= 6; round++) {
      // Alpha never changes; the others are changed, removed and put back in turn.
      // A poll of Alpha in progress, each round a new one.
      since = await waitFor('a new poll of Alpha in progress', async () => {
        const poll = ((await daemon.health()).polls ?? []).find((p) => p.instance === 'Alpha' && p.since !== since);
        return poll?.since;
      });
      const present = new Set(all);
      version.set('Bravo', round);
      if (round % 2 === 1) present.delete('Charlie');
      if (round % 3 === 0) version.set('Delta', round);
      expect(await daemon.reload(() => configOf(present, version))).toBe(true);
    }
    expect(await daemon.reload(() => configOf(all, version))).toBe(true);
    h.sim.createReport();
    await waitFor('every change delivered to every instance', () => deliveredOnce(h, NAMES) === undefined, 30_000).catch((err: Error) => { throw new Error(`${err.message}: ${deliveredOnce(h, NAMES)}`); });
    const stopAskedAt = Date.now();
    await daemon.stop();
    // The stop cuts short the poll in progress; none before it.
    const alpha = polls(logs.lines).filter((p) => p.instance === 'Alpha' && p.end < stopAskedAt);
    expect(alpha.length).toBeGreaterThan(6);
    expect(alpha.filter((p) => p.message !== 'poll finished')).toEqual([]);
    expect(overlaps(polls(logs.lines))).toEqual([]);
  });

  it("an unchanged instance's schedule does not move while reloads change another: every poll due on its grid, one interval apart", { timeout: 60_000 }, async () => {
    // Every 3 s on the interval grid (no cron): the due times are the stream's own.
    const { h, configOf } = await fleet({ 'event.poller.refresh_interval': '0.05', 'pollbridge.poller.cron': undefined });
    const both = new Set(['Alpha', 'Bravo']);
    const { daemon, logs } = h.daemon({ config: configOf(both, new Map()) });
    await daemon.start();
    const finished = () => logs.lines.filter((l) => l.instance === 'Alpha' && l.message === 'poll finished');
    await waitFor('a first poll of Alpha', () => finished().length >= 1);
    for (let round = 1; finished().length < 5; round++) {
      expect(round).toBeLessThan(100);
      expect(await daemon.reload(() => configOf(both, new Map([['Bravo', round]])))).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const stopAskedAt = Date.now();
    await daemon.stop();
    const due = finished().map((l) => Date.parse(String(l.dueAt)));
    expect(due.slice(1).map((d, i) => d - due[i]!)).toEqual(due.slice(1).map(() => 3000));
    expect(polls(logs.lines).filter((p) => p.instance === 'Alpha' && p.end < stopAskedAt && p.message !== 'poll finished').map((p) => p.message)).toEqual([]);
  });

  /**
   * Alpha and Bravo, on the real store with one of Alpha's page commits held back (a slow commit,
   * made to last) once `holdAlpha` is set; `release` lets it land.
   */
  async function withHeldCommit() {
    const { h, configOf } = await fleet();
    const streamIds = new Map<number, string>();
    const held = { holdAlpha: false, release: undefined as (() => void) | undefined };
    const wrap = (store: Store): Store => new Proxy(store, {
      get(target, prop) {
        if (prop === 'openStream') {
          return async (...args: Parameters<Store['openStream']>) => {
            const stream = await target.openStream(...args);
            streamIds.set(stream.id, stream.instance);
            return stream;
          };
        }
        if (prop === 'openStreams') {
          return async (...args: Parameters<Store['openStreams']>) => {
            const streams = await target.openStreams(...args);
            for (const stream of streams) streamIds.set(stream.id, stream.instance);
            return streams;
          };
        }
        if (prop === 'commitPage') {
          return async (...args: Parameters<Store['commitPage']>) => {
            if (held.holdAlpha && streamIds.get(args[0]) === 'Alpha') {
              held.holdAlpha = false;
              await new Promise<void>((resolve) => { held.release = resolve; });
            }
            return target.commitPage(...args);
          };
        }
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const both = new Set(['Alpha', 'Bravo']);
    const { daemon, logs } = h.daemon({ config: configOf(both, new Map()), openStore: async (path) => wrap(await ThreadedStore.open(path)) });
    await daemon.start();
    await waitFor('a poll of each', () => ['Alpha', 'Bravo'].every((n) => polls(logs.lines).some((p) => p.instance === n)));
    held.holdAlpha = true;
    h.sim.createReport();
    await waitFor("Alpha's page commit held", () => held.release !== undefined);
    /** After the reloads: Bravo polls every second, so two of its polls give Alpha's new stream (due at once) time to poll; then the commit lands. */
    const finish = async () => {
      const bravoPolls = polls(logs.lines).filter((p) => p.instance === 'Bravo').length;
      await waitFor('two more polls of Bravo', () => polls(logs.lines).filter((p) => p.instance === 'Bravo').length >= bravoPolls + 2);
      held.release!();
      await waitFor('the report delivered to both', () => deliveredOnce(h, ['Alpha', 'Bravo']) === undefined, 20_000);
      await daemon.stop();
      expect(overlaps(polls(logs.lines))).toEqual([]);
      expect(deliveredOnce(h, ['Alpha', 'Bravo'])).toBeUndefined();
    };
    return { daemon, configOf, both, finish };
  }

  it('a removed instance put back while its cut-short poll still commits a page: the new poll waits for it', { timeout: 60_000 }, async () => {
    const { daemon, configOf, both, finish } = await withHeldCommit();
    expect(await daemon.reload(() => configOf(new Set(['Bravo']), new Map()))).toBe(true);
    expect(await daemon.reload(() => configOf(both, new Map()))).toBe(true);
    await finish();
  });

  it('an instance changed twice in a row while its cut-short poll still commits a page: the last runtime waits for it too', { timeout: 60_000 }, async () => {
    const { daemon, configOf, both, finish } = await withHeldCommit();
    // Asked in one tick: the second may replace the first's runtime before the wheel launched it.
    const reloads = [daemon.reload(() => configOf(both, new Map([['Alpha', 1]]))), daemon.reload(() => configOf(both, new Map([['Alpha', 2]])))];
    expect(await Promise.all(reloads)).toEqual([true, true]);
    await finish();
  });

  const SEEDS = Number(process.env.POLLBRIDGE_RELOAD_SEEDS ?? 3);
  const FIRST_SEED = Number(process.env.POLLBRIDGE_RELOAD_FIRST_SEED ?? 1);
  for (let seed = FIRST_SEED; seed < FIRST_SEED + SEEDS; seed++) {
    it(`seed ${seed}: reloads that change, keep, remove and re-add instances mid-poll: never two polls of a stream at once, every change delivered once, nothing after stop`, { timeout: 90_000 }, async () => {
      const random = rng(seed);
      const { h, configOf } = await fleet();
      h.sim.faults.listDelayMs = 40;
      const { daemon, logs } = h.daemon();
      const present = new Set(NAMES);
      const version = new Map<string, number>();
      const history: string[] = [];
      await daemon.start();
      const reloads: Promise<boolean>[] = [];
      const steps = 25 + Math.floor(random() * 15);
      for (let i = 0; i < steps; i++) {
        // New reports only: a report changed twice between two polls is rightly seen once, in its last state.
        if (random() < 0.4) h.sim.createReport();
        const name = NAMES[Math.floor(random() * NAMES.length)]!;
        const r = random();
        if (r < 0.4) version.set(name, (version.get(name) ?? 0) + 1);
        else if (r < 0.6 && present.size > 1) present.delete(name);
        else if (r < 0.8) present.add(name);
        history.push(`${[...present].map((n) => `${n}${version.get(n) ?? 0}`).join('+')}`);
        const config = configOf(new Set(present), new Map(version));
        reloads.push(daemon.reload(() => config));
        // Often none: reloads back to back, before the wheel has launched what the last one started.
        const wait = random();
        if (wait < 0.5) await new Promise((resolve) => setTimeout(resolve, Math.floor(random() * 400)));
        else if (wait < 0.7) await reloads.at(-1);
      }
      const context = `seed ${seed}: ${history.join(' | ')}`;
      expect(await Promise.all(reloads), context).toEqual(reloads.map(() => true));
      for (const n of NAMES) present.add(n);
      expect(await daemon.reload(() => configOf(present, version)), context).toBe(true);
      h.sim.createReport();
      await waitFor(`${context}: every change delivered to every instance`, () => deliveredOnce(h, NAMES) === undefined, 30_000).catch((err: Error) => { throw new Error(`${err.message}: ${deliveredOnce(h, NAMES)}`); });
      await daemon.stop();
      const stoppedAt = Date.now();
      expect(overlaps(polls(logs.lines)), context).toEqual([]);
      const listed = h.sim.listQueries.length;
      // A poll launched after the stop would ask within a second (every instance polls every second).
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(h.sim.listQueries.length, context).toBe(listed);
      expect(polls(logs.lines).filter((p) => p.start > stoppedAt), context).toEqual([]);
      expect(deliveredOnce(h, NAMES), context).toBeUndefined();
    });
  }
});
