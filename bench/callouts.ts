/**
 * Concur's callout under load, with polling running: the daemon (the built CLI) answers the
 * callout on 127.0.0.1 and polls, every second, a simulator (in a process of its own) that makes
 * a few changes a second. A load generator (a process of its own) POSTs Concur's `<Notification>`
 * with Basic credentials, each naming an existing report by its v1.1 URL on the simulator, so
 * the ingester's fetches and event commits run during the measurement. Throughput: a closed loop
 * of CONNECTIONS keep-alive connections, against the same load on a bare node:http server that
 * reads the body and answers 200. Latency: an open loop at OPEN_RATE a second, from each
 * request's due moment to its 200, against the same pace of receipts committed straight into the
 * store (the floor the disk sets). Afterwards every 200 must be a row in the database: the
 * figure measures commits, not answers.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { GroupCommit } from '../dist/callout/groupCommit.js';
import type { CalloutReceipt } from '../dist/store/types.js';
import { ThreadedStore } from '../dist/store/threadedStore.js';
import type { BareReply } from './calloutsBare.js';
import type { Load, LoadReply, LoadShape } from './calloutsLoad.js';
import { type Daemon, log, percentile, type Peer, type Row, sleep, startDaemon, startPeer, stopDaemon, waitForLog, writeConfig } from './parts.js';
import type { ReceiverReply } from './steadyReceiver.js';
import type { SimReply, SimRequest, SimSetup } from './steadySim.js';

const CONNECTIONS = 32;
const OPEN_RATE = 200;
const WARMUP_MS = 2_000;
const MEASURE_MS = 10_000;
const CHANGES_PER_SECOND = 5;
/** The reports the notifications name, in turn; each fetch finds one. */
const HISTORY = 2_000;
/** How long the ingester gets, after the load, to turn the backlog of receipts into events. */
const DRAIN_MS = 120_000;
const SIM_SETUP: SimSetup = { history: HISTORY, listDelayMs: 0, faultEvery: 0, seed: 20261126 };
const CONNECTOR = { username: 'concur-connector', password: 'bench-connector-password' };
const NOTIFY_PATH = '/concur/v1.0/notify';

const notificationXml = (objectUri: string): string =>
  `<Notification><EventType>Report Entered Expense Report Workflow Step - SUBMIT</EventType><ObjectType>EXPRPT</ObjectType><ObjectURI>${objectUri}</ObjectURI><EventDateTime>${new Date().toISOString().slice(0, 10)}</EventDateTime><Context/></Notification>`;

/** The polling config of the other scenarios, with the callout answered for its instance. */
function withCallout(file: string): void {
  const config = JSON.parse(readFileSync(file, 'utf8')) as { callout?: unknown; instances: { configuration: Record<string, unknown> }[] };
  config.callout = { listen: '127.0.0.1:0' };
  Object.assign(config.instances[0]!.configuration, {
    'pollbridge.callout.enabled': 'true',
    'pollbridge.callout.path': NOTIFY_PATH,
    'pollbridge.callout.username': CONNECTOR.username,
    'pollbridge.callout.password': CONNECTOR.password,
    // No failed queue: the simulator queues no notification of its own here.
    'pollbridge.callout.failedQueueMinutes': 0,
  });
  writeFileSync(file, JSON.stringify(config));
}

type Done = Extract<LoadReply, { type: 'done' }>;

/**
 * The latency baseline: receipts of the same bodies at the same pace, group-committed straight
 * into a ThreadedStore on this machine's disk, with no HTTP, no polling and no ingester. Its p99
 * is the part of the daemon's that the disk and the machine's other load account for.
 */
async function storeAlone(dir: string, bodies: string[]): Promise<number[]> {
  const store = await ThreadedStore.open(join(dir, 'baseline.db'));
  const group = new GroupCommit((receipts: CalloutReceipt[]) => store.recordCallouts(receipts));
  const notification = { eventType: 'SUBMIT', objectType: 'EXPRPT' as const, objectUri: 'https://example.invalid/report', eventDateTime: '2026-11-26', context: '' };
  const interval = 1000 / OPEN_RATE;
  const started = performance.now();
  const from = started + WARMUP_MS;
  const until = from + MEASURE_MS;
  const latencies: number[] = [];
  const commits: Promise<void>[] = [];
  for (let sent = 0; started + sent * interval < until;) {
    while (started + sent * interval <= performance.now()) {
      const due = started + sent * interval;
      const body = bodies[sent++ % bodies.length]!;
      commits.push(group.add({ instance: 'Bench', source: 'push', body, notification, notificationUri: undefined, receivedAt: Date.now() }).then(() => {
        if (due >= from) latencies.push(performance.now() - due);
      }));
    }
    await sleep(1);
  }
  await Promise.all(commits);
  await store.close();
  return latencies;
}

async function runLoad(loader: Peer<LoadReply>, load: Pick<Load, 'url' | 'authorization' | 'bodies'> & LoadShape): Promise<Done> {
  const request: Load = { type: 'load', warmupMs: WARMUP_MS, measureMs: MEASURE_MS, ...load };
  return loader.ask(request, 'done', WARMUP_MS + MEASURE_MS + 60_000);
}

const othersText = (others: Record<string, number>): string =>
  Object.keys(others).length === 0 ? 'none' : Object.entries(others).map(([s, n]) => `${n} × ${s}`).join(', ');

export async function callouts(): Promise<Row[]> {
  const dir = mkdtempSync(join(os.tmpdir(), 'pollbridge-bench-'));
  const sim = startPeer<SimReply>('./steadySim.js', [JSON.stringify(SIM_SETUP)]);
  const receiver = startPeer<ReceiverReply>('./steadyReceiver.js', []);
  const loader = startPeer<LoadReply>('./calloutsLoad.js', []);
  const bare = startPeer<BareReply>('./calloutsBare.js', []);
  let daemon: Daemon | undefined;
  try {
    const { url: simUrl, ids } = await sim.ask(undefined, 'ready', 30_000);
    const { url: receiverUrl } = await receiver.ask(undefined, 'ready', 10_000);
    await loader.ask(undefined, 'ready', 10_000);
    const { url: bareUrl } = await bare.ask(undefined, 'ready', 10_000);
    const bodies = ids.map((id) => notificationXml(`${simUrl}/api/expense/expensereport/v1.1/report/${id}`));
    const authorization = `Basic ${Buffer.from(`${CONNECTOR.username}:${CONNECTOR.password}`).toString('base64')}`;
    const changes: SimRequest = { type: 'changes', perSecond: CHANGES_PER_SECOND, seconds: 3_600 };
    // Answered only when the simulator is closed at the end: its rejection then is expected.
    sim.ask(changes, 'changes', 3_700_000).catch(() => {});

    // The baseline first, while the daemon is not yet running to share the cores with it.
    log(`callouts: bare node:http server, ${CONNECTIONS} connections, ${MEASURE_MS / 1000} s…`);
    const baseline = await runLoad(loader, { mode: 'closed', connections: CONNECTIONS, url: bareUrl, authorization, bodies });
    await bare.close();
    const baselineRate = baseline.ok / baseline.seconds;
    log(`callouts: receipts straight into the store at ${OPEN_RATE}/s, ${MEASURE_MS / 1000} s…`);
    const alone = await storeAlone(dir, bodies);

    const config = writeConfig(dir, simUrl, receiverUrl, '* * * * * *', 100);
    withCallout(config);
    daemon = startDaemon(['run', '-c', config]);
    await waitForLog(daemon, 'pollbridge started', 15_000);
    await waitForLog(daemon, 'poll finished', 15_000);
    const calloutUrl = `${daemon.logs.find((l) => l.message === "Concur's callout answered")!.url as string}${NOTIFY_PATH}`;

    log(`callouts: the daemon, open loop at ${OPEN_RATE}/s, ${MEASURE_MS / 1000} s…`);
    const open = await runLoad(loader, { mode: 'open', perSecond: OPEN_RATE, url: calloutUrl, authorization, bodies });
    log(`callouts: the daemon, ${CONNECTIONS} connections, ${MEASURE_MS / 1000} s…`);
    const closed = await runLoad(loader, { mode: 'closed', connections: CONNECTIONS, url: calloutUrl, authorization, bodies });
    const loadEnded = Date.now();

    // The ingester goes on with the receipts the load left: how fast they become events.
    const dbPath = join(dir, 'pollbridge.db');
    const db = new Database(dbPath, { readonly: true });
    const waiting = db.prepare("SELECT count(*) FROM callouts WHERE source = 'push' AND done_at IS NULL").pluck();
    const backlog = waiting.get() as number;
    let left = backlog;
    while (left > 0 && Date.now() - loadEnded < DRAIN_MS) {
      await sleep(200);
      left = waiting.get() as number;
    }
    const drainSeconds = (Date.now() - loadEnded) / 1000;
    db.close();
    await stopDaemon(daemon);

    const check = new Database(dbPath, { readonly: true });
    const committed = check.prepare("SELECT count(*) FROM callouts WHERE source = 'push'").pluck().get() as number;
    const events = check.prepare('SELECT count(*) FROM callout_events').pluck().get() as number;
    check.close();
    const answered = open.okTotal + closed.okTotal;
    const polls = daemon.logs.filter((l) => l.message === 'poll finished').length;
    log(`callouts: baseline ${baselineRate.toFixed(0)}/s (others: ${othersText(baseline.others)}); daemon closed loop ${(closed.ok / closed.seconds).toFixed(0)}/s `
      + `(others: ${othersText(closed.others)}); open loop ${open.ok} in the window (others: ${othersText(open.others)}); ${answered} 200s, ${committed} rows, `
      + `${events} events; backlog ${backlog} after the load, ${left} left after ${drainSeconds.toFixed(1)} s; ${polls} polls finished`);

    const rate = closed.ok / closed.seconds;
    const errors = Object.values(closed.others).reduce((a, b) => a + b, 0) + Object.values(open.others).reduce((a, b) => a + b, 0);
    const p50 = open.latenciesMs.length > 0 ? percentile(open.latenciesMs, 50) : NaN;
    const p99 = open.latenciesMs.length > 0 ? percentile(open.latenciesMs, 99) : NaN;
    const openRate = open.ok / open.seconds;
    return [
      { metric: `callouts accepted (200 after commit), ${CONNECTIONS} connections, polling running`, value: rate, unit: 'callouts/s', baseline: baselineRate, ratio: rate / baselineRate, target: '≥ 0.3× bare node:http', ok: rate / baselineRate >= 0.3 },
      { metric: `callout time to the 200 p50, open loop at ${OPEN_RATE}/s (${openRate.toFixed(0)}/s answered)`, value: p50, unit: 'ms', baseline: percentile(alone, 50), ratio: p50 / percentile(alone, 50), target: '—', ok: true },
      { metric: `callout time to the 200 p99, open loop at ${OPEN_RATE}/s (baseline: receipts straight into the store)`, value: p99, unit: 'ms', baseline: percentile(alone, 99), ratio: p99 / percentile(alone, 99), target: '≤ 50 ms', ok: p99 <= 50 && openRate >= OPEN_RATE * 0.98 },
      { metric: 'callouts answered other than 200 (both loads)', value: errors, unit: 'requests', target: '0', ok: errors === 0 },
      { metric: `callout rows committed, of ${answered} answered 200`, value: committed, unit: 'rows', target: `= ${answered}`, ok: committed === answered },
      {
        metric: `callouts turned into events after the load (fetch + commit), backlog of ${backlog}${left > 0 ? `, ${left} left after ${DRAIN_MS / 1000} s` : ''}`,
        value: (backlog - left) / drainSeconds, unit: 'callouts/s', target: '—', ok: true,
      },
    ];
  } finally {
    if (daemon) await stopDaemon(daemon);
    await Promise.all([loader.close(), bare.close(), receiver.close(), sim.close()]);
    rmSync(dir, { recursive: true, force: true });
  }
}
