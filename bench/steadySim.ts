/**
 * The steady scenario's simulator, in a process of its own so that its work (the changes, the
 * pages) is not counted against the daemon. steady.ts and callouts.ts drive it over IPC: `changes` starts the
 * stream of changes and answers when it has stopped, `versions` sends every version made since.
 */
import { ConcurSim } from '../dist/sim/concurSim.js';

export type SimSetup = {
  /** Reports changed an hour ago, before the daemon's first start: history that updates revisit. */
  history: number;
  listDelayMs: number;
  /** About one list request in this many fails, alternately 503 (Retry-After 1) and 429; 0: none. */
  faultEvery: number;
  seed: number;
};
export type SimRequest = { type: 'changes'; perSecond: number; seconds: number } | { type: 'versions' };
export type SimReply =
  /** `ids`: the history's reports (the callout scenario's notifications name them). */
  | { type: 'ready'; url: string; ids: string[] }
  | { type: 'changes'; startedMs: number; stoppedMs: number }
  | { type: 'versions'; versions: ConcurSim['changes']; listRequests: number; faults: number };

/** A small seeded generator: the same run makes the same choices of what to change and when to fail. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TICK_MS = 100;
/** Share of ticks whose changes all get one LastModifiedDate (so ties meet page boundaries). */
const SHARED_TICKS = 0.25;
const CREATES = 0.4;

const send = (reply: SimReply): void => void process.send!(reply);

async function main(): Promise<void> {
  const setup = JSON.parse(process.argv[2]!) as SimSetup;
  const sim = new ConcurSim();
  const url = await sim.start();
  const ids: string[] = [];
  const hourAgo = Date.now() - 3_600_000;
  for (let i = 0; i < setup.history; i++) ids.push(sim.createReport({}, { modifiedMs: hourAgo + i }).ID);
  const firstVersion = sim.changes.length;

  sim.faults.listDelayMs = setup.listDelayMs;
  const failRandom = random(setup.seed + 1);
  let faults = 0;
  let listRequests = 0;
  // Runs once per list page served; the failure it queues answers the next list request.
  sim.faults.beforePage = () => {
    listRequests++;
    if (setup.faultEvery === 0 || failRandom() >= 1 / setup.faultEvery) return;
    sim.faults.listFailures.push(faults++ % 2 === 0 ? { status: 503, retryAfter: '1' } : { status: 429 });
  };

  const changeRandom = random(setup.seed);
  /** The changes of one tick, each of a different report. */
  const tick = (count: number): void => {
    const modifiedMs = changeRandom() < SHARED_TICKS ? Date.now() : undefined;
    const touched = new Set<string>();
    for (let i = 0; i < count; i++) {
      const options = modifiedMs === undefined ? {} : { modifiedMs };
      const id = ids[Math.floor(changeRandom() * ids.length)]!;
      // A report already changed in this tick is created instead: at a shared date, a second
      // change of it would be the same (ID, LastModifiedDate), not a new version.
      if (changeRandom() < CREATES || touched.has(id)) {
        const created = sim.createReport({}, options).ID;
        ids.push(created);
        touched.add(created);
        continue;
      }
      touched.add(id);
      sim.updateReport(id, options);
    }
  };

  process.on('message', (request: SimRequest) => {
    if (request.type === 'versions') {
      send({ type: 'versions', versions: sim.changes.slice(firstVersion), listRequests, faults });
      return;
    }
    const startedMs = Date.now();
    const total = Math.round(request.perSecond * request.seconds);
    let made = 0;
    // Catches up on the changes due by now, so a late timer does not lower the rate.
    const next = (): void => {
      const due = Math.min(total, Math.floor(((Date.now() - startedMs) * request.perSecond) / 1000));
      if (due > made) tick(due - made);
      made = Math.max(made, due);
      if (made < total) setTimeout(next, TICK_MS);
      else send({ type: 'changes', startedMs, stoppedMs: Date.now() });
    };
    setTimeout(next, TICK_MS);
  });
  send({ type: 'ready', url, ids: ids.slice(0, setup.history) });
}

await main();
