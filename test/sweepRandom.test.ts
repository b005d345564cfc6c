import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import type { InstanceConfig } from '../src/config/types.js';
import { pollStream, type PollSummary, type Skew } from '../src/daemon/pollStream.js';
import { createAuthenticator } from '../src/poll/auth.js';
import { createGetText, createHttpClient } from '../src/poll/httpClient.js';
import { ConcurSim, DEFAULT_SIM_CREDENTIALS } from '../src/sim/concurSim.js';
import type { Store } from '../src/store/types.js';
import { instantFromMs } from '../src/time/instant.js';
import { newNotificationId } from '../src/util/ids.js';
import { ThreadedStore } from '../dist/store/threadedStore.js';
import { captureLogger, FAST_FETCH } from './helpers/harness.js';
import { SIM_ENV, simConfig } from './helpers/simConfig.js';
import { tempDir, writeJson } from './helpers/tmp.js';
import { rng } from './helpers/rng.js';

/**
 * The sweep's promise, attacked at random: between any two list requests the simulator creates,
 * updates and deletes reports (several on one timestamp, more than a page on one), while pages
 * of three are read. After each poll that settled, every record version that stood unchanged
 * from its start to its end must have been announced; after the changes stop and two more polls,
 * every version that is left too; nothing is announced twice, nothing that never was.
 *
 * Two providers: Concur's millisecond dates on our clock (500 seeds), and a harsher one (60):
 * dates in whole seconds (parts of a second, requests a second wider on each side), a clock off
 * by up to a few seconds that steps forward between polls, settleSeconds and pollDelay.
 *
 * POLLBRIDGE_SWEEP_SEEDS=N and POLLBRIDGE_SWEEP_HARSH_SEEDS=N run more seeds of each (from
 * POLLBRIDGE_SWEEP_SEED_FROM, default 1).
 */
const SEEDS = Number(process.env.POLLBRIDGE_SWEEP_SEEDS ?? 500);
const HARSH_SEEDS = Number(process.env.POLLBRIDGE_SWEEP_HARSH_SEEDS ?? 60);
const FROM = Number(process.env.POLLBRIDGE_SWEEP_SEED_FROM ?? 1);
/** Seeds run side by side: each waits on HTTP and fsync most of the time. */
const PARALLEL = 8;
const SEEDS_PER_DATABASE = 50;


type Version = { key: string; stampMs: number; born: number; died: number };

type SeedWorld = {
  sim: ConcurSim;
  versions: Map<string, Version>;
  live: Map<string, string>;
  /** Counts every change: a version stood through a poll when it was born before and died after. */
  clock: number;
};

function keyOf(id: string, modifiedMs: number): string {
  return `${id}@${new Date(modifiedMs).toISOString()}`;
}

function makeWorld(sim: ConcurSim): SeedWorld {
  return { sim, versions: new Map(), live: new Map(), clock: 0 };
}

function born(w: SeedWorld, id: string, lastModified: string): void {
  const stampMs = Date.parse(`${lastModified}Z`);
  const key = keyOf(id, stampMs);
  w.live.set(id, key);
  w.versions.set(key, { key, stampMs, born: w.clock, died: Infinity });
}

function died(w: SeedWorld, id: string): void {
  const key = w.live.get(id)!;
  w.versions.get(key)!.died = w.clock;
  w.live.delete(id);
}

/**
 * Mostly one of the oldest reports: they come first in the order offsets walk, so their leaving
 * moves every later report across a page boundary (a random pick would often be past the offset).
 */
function pick(w: SeedWorld, random: () => number): string {
  const ids = [...w.live.keys()];
  if (random() < 0.3) return ids[Math.floor(random() * ids.length)]!;
  const oldest = ids.sort((a, b) => w.versions.get(w.live.get(a)!)!.stampMs - w.versions.get(w.live.get(b)!)!.stampMs || (a < b ? -1 : 1));
  return oldest[Math.floor(random() * Math.min(3, oldest.length))]!;
}

/** A few random changes; ties: several reports changed on one millisecond, now and then more than a page. */
function mutate(w: SeedWorld, random: () => number, nextId: () => string): void {
  const n = 1 + Math.floor(random() * 4);
  // The provider's clock: a stamp pinned by ours would be a change visible late by the offset.
  const tieMs = random() < 0.3 ? w.sim.now() : undefined;
  for (let i = 0; i < n + (tieMs !== undefined && random() < 0.3 ? 3 : 0); i++) {
    w.clock++;
    const ids = [...w.live.keys()];
    const roll = random();
    if (ids.length === 0 || roll < 0.35) {
      const r = w.sim.createReport({ ID: nextId() }, { modifiedMs: tieMs });
      born(w, r.ID, r.LastModifiedDate);
    } else if (roll < 0.8) {
      const id = pick(w, random);
      // A version is (id, stamp): a tie never gives a report a stamp it already had.
      const stampMs = w.versions.get(w.live.get(id) ?? '')?.stampMs ?? 0;
      died(w, id);
      const r = w.sim.updateReport(id, tieMs === undefined ? {} : { modifiedMs: Math.max(tieMs, stampMs + 1) });
      born(w, r.ID, r.LastModifiedDate);
    } else {
      const id = pick(w, random);
      died(w, id);
      w.sim.deleteReport(id);
    }
  }
}

/**
 * One seed. `harsh`: the template's dates are whole seconds, and the provider's clock is off by up
 * to a few seconds and steps forward between polls, with settleSeconds and pollDelay at random.
 */
async function runSeed(seed: number, harsh: boolean, store: Store, template: InstanceConfig, http: ReturnType<typeof createHttpClient>, getText: ReturnType<typeof createGetText>): Promise<string | undefined> {
  const random = rng(seed);
  let ids = 0;
  const nextId = () => `S${seed}R${++ids}`;
  const sim = new ConcurSim();
  const simUrl = await sim.start();
  try {
    const w = makeWorld(sim);
    const start = Date.now() - 1000;
    const overlapSec = random() < 0.5 ? 0 : 60;
    const settleSec = harsh && random() < 0.5 ? 1 : 0;
    const offsets = [0, -700, 700, -2500, 2500];
    sim.faults.clockOffsetMs = harsh ? offsets[Math.floor(random() * offsets.length)]! : 0;
    const instance: InstanceConfig = { ...template, name: `seed-${seed}`, baseUrl: simUrl, overlapSec, settleSec };
    const resource = { ...template.resources[0]!, pageSize: 3, pollDelaySec: harsh && random() < 0.5 ? 2 : 0 };
    const stream = await store.openStream(instance.name, resource.name, instantFromMs(start));
    const { log } = captureLogger();
    const auth = createAuthenticator(
      { type: 'oauth2_refresh_token', tokenUrl: `${simUrl}/oauth2/v0/token`, ...DEFAULT_SIM_CREDENTIALS },
      { http, store, instance: instance.name, log, policy: FAST_FETCH, onSecret: () => {} },
    );
    const deps = {
      store, getText, auth, log, fetchPolicy: FAST_FETCH, newId: newNotificationId, onQueued: () => {},
      maxPages: 1000, maxResweeps: 3, skew: { ms: undefined } as Skew,
    };
    for (let i = 0; i < 3 + Math.floor(random() * 8); i++) mutate(w, random, nextId);
    const mustAnnounce = new Set<string>();
    // Stamps can run a few ms ahead of the clock (many changes in one ms): a version stamped after
    // a poll began is not in that poll's window.
    const stoodThrough = (from: number, to: number, startedMs: number) => {
      for (const v of w.versions.values()) if (v.born <= from && v.died > to && v.stampMs <= startedMs) mustAnnounce.add(v.key);
    };
    const polls = 3 + Math.floor(random() * 4);
    const summaries: PollSummary[] = [];
    for (let p = 0; p < polls + 2; p++) {
      const mutating = p < polls;
      sim.faults.beforePage = mutating ? () => { if (random() < 0.6) mutate(w, random, nextId); } : undefined;
      const before = w.clock;
      // What a poll's window must reach: the provider's now at its start, less the settle, and
      // with a skewed clock less the second by which a measured skew may fall short.
      const startedMs = sim.now() - settleSec * 1000 - (harsh ? 1000 : 0);
      // A poll reads up to the provider's now as last measured: with a skewed clock, the first poll
      // (skew unknown) and one right after the clock stepped forward may end short of it.
      const stepped = harsh && p > 0 && mutating && random() < 0.3;
      if (stepped) sim.faults.clockOffsetMs += Math.floor(random() * 2000);
      const heldToNow = !harsh || (p > 0 && !stepped);
      const summary = await pollStream(instance, resource, stream, deps);
      summaries.push(summary);
      if (summary.settled && heldToNow) stoodThrough(before, w.clock, startedMs);
      if (!mutating) continue;
      // What stood through this poll now changes, half of it: no later poll can make up for a
      // version this one skipped.
      for (const id of [...w.live.keys()]) {
        if (random() < 0.5) continue;
        w.clock++;
        died(w, id);
        const r = sim.updateReport(id);
        born(w, r.ID, r.LastModifiedDate);
      }
      if (random() < 0.5) mutate(w, random, nextId);
    }
    const finalTwo = summaries.slice(-2);
    if (!finalTwo.every((s) => s.settled)) return `seed ${seed}: a poll after the changes stopped did not settle`;

    const db = new Database((store as unknown as { path: string }).path, { readonly: true });
    const bodies = db.prepare('SELECT body FROM notifications WHERE instance = ?').pluck().all(instance.name) as string[];
    db.close();
    const announced = bodies.flatMap((b) => (JSON.parse(b) as { message: { events: { objectId: string; date: string }[] } }).message.events)
      .map((e) => `${e.objectId}@${e.date}`);
    const twice = announced.filter((k, i) => announced.indexOf(k) !== i);
    if (twice.length > 0) return `seed ${seed}: announced twice: ${twice.join(', ')}`;
    const invented = announced.filter((k) => !w.versions.has(k));
    if (invented.length > 0) return `seed ${seed}: announced but never there: ${invented.join(', ')}`;
    const got = new Set(announced);
    const missed = [...mustAnnounce].filter((k) => !got.has(k));
    if (missed.length > 0) return `seed ${seed}: never announced: ${missed.join(', ')} (${w.versions.size} versions, ${polls} polls, overlap ${overlapSec} s, settle ${settleSec} s, pollDelay ${resource.pollDelaySec} s, clock ${sim.faults.clockOffsetMs} ms)`;
    return undefined;
  } finally {
    await sim.stop();
  }
}


async function runSeeds(harsh: boolean, seeds: number, url: string): Promise<string[]> {
  const dir = tempDir();
  const base = simConfig('http://127.0.0.1:1', 'http://127.0.0.1:2/hook', 'k');
  base.instances[0]!.configuration['event.poller.configuration'].reports.url = url;
  const config = loadConfig(writeJson(dir, 'c.json', base), { env: SIM_ENV });
  const http = createHttpClient({ timeoutMs: 5000 });
  const getText = createGetText({ timeoutMs: 5000 });
  const failures: string[] = [];
  let next = FROM;
  // Each worker has a database of its own, new every SEEDS_PER_DATABASE seeds: the outbox query
  // of a seed stays small however many seeds run.
  const worker = async (w: number) => {
    for (let batch = 0; next < FROM + seeds && failures.length < 5; batch++) {
      const store = await ThreadedStore.open(join(dir, `sweep-${w}-${batch}.db`));
      try {
        for (let i = 0; i < SEEDS_PER_DATABASE && next < FROM + seeds && failures.length < 5; i++) {
          const seed = next++;
          const failure = await runSeed(seed, harsh, store, config.instances[0]!, http, getText);
          if (failure) failures.push(failure);
        }
      } finally {
        await store.close();
      }
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, (_, w) => worker(w)));
  return failures;
}

describe('sweeping a window while records change, seeded', () => {
  const rerun = '(rerun one with POLLBRIDGE_SWEEP_SEED_FROM=N and POLLBRIDGE_SWEEP_SEEDS=1 or POLLBRIDGE_SWEEP_HARSH_SEEDS=1)';

  it(`Concur's millisecond dates: every version that stood through a settled poll is announced, once, for ${SEEDS} seeds`, async () => {
    const failures = await runSeeds(false, SEEDS, "/hubs/expense/reports?where=modifiedDateAfter='${date:yyyy-MM-dd'T'HH:mm:ss.SSS}'");
    expect(failures, `failing seeds ${rerun}:\n${failures.join('\n')}`).toEqual([]);
  }, 1_800_000);

  it(`dates in whole seconds, a skewed clock that steps forward, settle and pollDelay: the same, for ${HARSH_SEEDS} seeds`, async () => {
    const failures = await runSeeds(true, HARSH_SEEDS, "/hubs/expense/reports?where=modifiedDateAfter='${date:yyyy-MM-dd'T'HH:mm:ss}'");
    expect(failures, `failing seeds ${rerun}:\n${failures.join('\n')}`).toEqual([]);
  }, 1_800_000);
});
