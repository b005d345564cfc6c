/**
 * Steady change under a slow, faulty API, with and without kills: the daemon (the built CLI)
 * against a simulator making 20 changes a second, serving 25 records a page at about 3 pages a
 * second with a rare 503 or 429, on a 2-second schedule. Phase one runs the daemon undisturbed;
 * phase two kills it (SIGKILL) 10 s after each start and restarts it at once on the same
 * database. For every record version made, the receiver's clock says when (if ever) it was
 * announced; a version that stood unchanged 20 s and was never announced is a missed change.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { type Daemon, log, percentile, type Row, sleep, startDaemon, startPeer, stopDaemon, waitForLog, writeConfig } from './parts.js';
import type { ReceiverReply } from './steadyReceiver.js';
import type { SimReply, SimRequest, SimSetup } from './steadySim.js';
import { accountVersions } from './steadyVersions.js';

const CHANGES_PER_SECOND = 20;
const PAGE_SIZE = 25;
/** About 3 pages a second. */
const LIST_DELAY_MS = 330;
const SCHEDULE = '*/2 * * * * *';
const KILL_AFTER_START_MS = 10_000;
/** A version that stood this long was seen by several scheduled polls: never announcing it is a miss. */
const STANDING_MS = 20_000;
/** After the changes stop, the daemon runs this long before the receipts are counted. */
const DRAIN_MS = 15_000;
const SIM_SETUP: SimSetup = { history: 1000, listDelayMs: LIST_DELAY_MS, faultEvery: 50, seed: 20261126 };

type Phase = { name: string; target95s: number; kill: boolean };

async function runPhase(phase: Phase, seconds: number): Promise<Row[]> {
  const dir = mkdtempSync(join(os.tmpdir(), 'pollbridge-bench-'));
  const sim = startPeer<SimReply>('./steadySim.js', [JSON.stringify(SIM_SETUP)]);
  const receiver = startPeer<ReceiverReply>('./steadyReceiver.js', []);
  const daemons: Daemon[] = [];
  try {
    const { url: simUrl } = await sim.ask(undefined, 'ready', 30_000);
    const { url } = await receiver.ask(undefined, 'ready', 10_000);
    const config = writeConfig(dir, simUrl, url, SCHEDULE, PAGE_SIZE);
    /** A daemon on the phase's database, once it has logged its start (its window's origin is set by then). */
    const start = async (): Promise<number> => {
      const daemon = startDaemon(['run', '-c', config]);
      daemons.push(daemon);
      await waitForLog(daemon, 'pollbridge started', 15_000);
      return Date.now();
    };
    let startedAt = await start();
    log(`steady, ${phase.name}: ${CHANGES_PER_SECOND} changes/s for ${seconds} s, then ${DRAIN_MS / 1000} s to drain…`);
    const request: SimRequest = { type: 'changes', perSecond: CHANGES_PER_SECOND, seconds };
    const changes = sim.ask(request, 'changes', seconds * 1000 + 30_000);
    const changesEnd = Date.now() + seconds * 1000;
    let kills = 0;
    // The last daemon started before the changes end runs on through the drain.
    while (phase.kill && startedAt + KILL_AFTER_START_MS < changesEnd) {
      await sleep(startedAt + KILL_AFTER_START_MS - Date.now());
      const daemon = daemons.at(-1)!;
      daemon.child.kill('SIGKILL');
      await daemon.exited;
      kills++;
      startedAt = await start();
    }
    await changes;
    await sleep(DRAIN_MS);
    const { receipts, atMs } = await receiver.ask({ type: 'receipts' }, 'receipts', 10_000);
    const { versions, listRequests, faults } = await sim.ask({ type: 'versions' }, 'versions', 10_000);
    const account = accountVersions(versions, receipts, atMs, STANDING_MS);

    const logs = daemons.flatMap((d) => d.logs);
    const finished = logs.filter((l) => l.message === 'poll finished');
    const settled = finished.filter((l) => l.settled === true).length;
    const failed = logs.filter((l) => typeof l.message === 'string' && l.message.startsWith('poll failed')).length;
    log(`steady, ${phase.name}: ${account.made} versions made, ${account.announced} announced, ${account.standing} stood ≥ ${STANDING_MS / 1000} s, `
      + `${account.standingNeverAnnounced} of them never announced (${account.missedStillCurrent} still current); ${account.duplicates} under two ids, ${account.redeliveries} redelivered, `
      + `${account.unknown} receipts of no known version; ${finished.length} polls finished (${settled} moved the cursor), ${failed} failed; `
      + `${listRequests} pages served, ${faults} faults; ${kills} kills`);

    const name = `steady ${seconds} s, ${phase.kill ? `SIGKILL every ${KILL_AFTER_START_MS / 1000} s (${kills} kills)` : 'no kills'}`;
    const p50 = account.latenciesMs.length > 0 ? percentile(account.latenciesMs, 50) / 1000 : NaN;
    const p95 = account.latenciesMs.length > 0 ? percentile(account.latenciesMs, 95) / 1000 : NaN;
    return [
      { metric: `${name}: latency p50 (${account.announced} of ${account.made} versions)`, value: p50, unit: 's', target: '—', ok: true },
      { metric: `${name}: latency p95`, value: p95, unit: 's', target: `≤ ${phase.target95s} s`, ok: p95 <= phase.target95s },
      { metric: `${name}: stood ≥ ${STANDING_MS / 1000} s, never announced (of ${account.standing}; ${account.missedStillCurrent} still current)`, value: account.standingNeverAnnounced, unit: 'versions', target: '0', ok: account.standingNeverAnnounced === 0 },
      { metric: `${name}: announced under two ids`, value: account.duplicates, unit: 'versions', target: '—', ok: true },
      { metric: `${name}: polls that moved the cursor (of ${finished.length + failed})`, value: settled, unit: 'polls', target: '—', ok: true },
    ];
  } finally {
    for (const d of daemons) await stopDaemon(d);
    await receiver.close();
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Both phases, each of `seconds` of changes, each on a fresh simulator, receiver and database. */
export async function steady(seconds: number): Promise<Row[]> {
  return [
    ...(await runPhase({ name: 'no kills', target95s: 10, kill: false }, seconds)),
    ...(await runPhase({ name: `a SIGKILL ${KILL_AFTER_START_MS / 1000} s after each start`, target95s: 20, kill: true }, seconds)),
  ];
}
