/**
 * Thousands of Concur companies in one daemon (issue 15): the built CLI, with the node flags of
 * package.json's `start`, polls 2,000 companies × 2 resources at a 1-minute schedule against
 * the fleet simulator (its own process) answering every request 500 ms late, each company with
 * its own client and rotating refresh token. The daemon logs JSON to a file; its lines give each
 * poll's due time and lag, /proc its CPU (all threads) and memory. Baseline: a bare node:http
 * loop (fleetBare.ts, its own process, its own simulator) making the same requests at the same
 * concurrency, measured the same way. Then one instance's pageSize changes and SIGHUP: how soon
 * that company's requests show it, and how the others keep their schedule meanwhile.
 *
 * BENCH_FLEET_COMPANIES (default 2,000) and BENCH_FLEET_MINUTES (steady minutes, default 3;
 * fractions allowed) shorten a development run.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { DEFAULT_POLLING_LIMITS } from '../dist/config/load.js';
import { fleetConfigFor, fleetInstanceName } from '../dist/sim/fleetSim.js';
import type { BareReply, BareSetup } from './fleetBare.js';
import { type LogLine, type Poll, pollsOf, scheduledAllMs, splitFirstRound, startedStreams, timestampMs } from './fleetLogs.js';
import type { FleetSimReply, FleetSimSetup } from './fleetSimPeer.js';
import { CLI, log, type Peer, percentile, processCpuMs, type Row, sleep, startPeer, startScriptNodeFlags } from './parts.js';

export const INTERVAL_MS = 60_000;
export const RESOURCES = 2;
const LATENCY_MS = 500;
/** Far above the 2 requests a minute each company's streams make: a 429 means polls bunched up. */
const RATE_LIMIT_PER_SEC = 10;
export const TARGET = { lagP95s: 1, cpuRatio: 3, rssMb: 250, startS: 10, reloadS: 1 };
/** The pageSize the reload gives one instance: its requests ask `limit=` this from then on. */
const RELOADED_PAGE_SIZE = 37;
/** How long after the SIGHUP the others' polls are watched for lag and interruptions. */
const RELOAD_WATCH_MS = 30_000;

/** The daemon's JSON log file, read as it grows. */
class LogTail {
  readonly lines: LogLine[] = [];
  private offset = 0;
  private partial = '';
  private readonly buffer = Buffer.alloc(1 << 20);

  constructor(private readonly fd: number) {}

  read(): LogLine[] {
    for (;;) {
      const n = readSync(this.fd, this.buffer, 0, this.buffer.length, this.offset);
      if (n === 0) return this.lines;
      this.offset += n;
      const parts = (this.partial + this.buffer.toString('utf8', 0, n)).split('\n');
      this.partial = parts.pop() ?? '';
      for (const l of parts) if (l.startsWith('{')) this.lines.push(JSON.parse(l) as LogLine);
    }
  }
}

function statusKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** A reading of a process that may have died meanwhile (its rows then say NaN, the others stand). */
function ifAlive(read: () => number): number {
  try {
    return read();
  } catch {
    return NaN;
  }
}

export const lagS = (polls: Poll[], p: number): number => (polls.length === 0 ? NaN : percentile(polls.map((x) => x.lagMs), p) / 1000);

type Layout = { file: string; instanceFile: (company: number) => { path: string; inline: boolean }; layout: string };

/**
 * One file per instance in `instances.d/` where the built daemon reads `instancesDir` (its
 * `validate` accepts the file), else every instance inline in `instances`. `database`: a SQLite
 * file beside the config by default, or a postgres:// URL.
 */
export function writeConfig(dir: string, companies: number, simUrl: string, database = './pollbridge.db'): Layout {
  const instances = fleetConfigFor(companies, simUrl, 'http://127.0.0.1:9/hook', { signatureKey: 'whsec_' + randomBytes(24).toString('base64') });
  const file = join(dir, 'poller.config.json');
  mkdirSync(join(dir, 'instances.d'));
  instances.forEach((instance) => writeFileSync(join(dir, 'instances.d', `${instance.name}.json`), JSON.stringify(instance, null, 2)));
  writeFileSync(file, JSON.stringify({ database, instancesDir: 'instances.d' }));
  if (spawnSync(process.execPath, [CLI, 'validate', '-c', file], { stdio: 'ignore' }).status === 0) {
    return { file, instanceFile: (c) => ({ path: join(dir, 'instances.d', `${fleetInstanceName(c)}.json`), inline: false }), layout: 'instances.d/, one file each' };
  }
  writeFileSync(file, JSON.stringify({ database, instances }));
  return { file, instanceFile: () => ({ path: file, inline: true }), layout: 'inline `instances` (this daemon has no instancesDir)' };
}

/** Sets both resources' pageSize of one company's instance, in its own file or in the main one. */
function changePageSize(layout: Layout, company: number, pageSize: number): void {
  const { path, inline } = layout.instanceFile(company);
  type Instance = { name: string; configuration: { 'event.poller.configuration': Record<string, { pageSize?: number }> } };
  const json = JSON.parse(readFileSync(path, 'utf8')) as Instance | { instances: Instance[] };
  const instance = inline ? (json as { instances: Instance[] }).instances.find((i) => i.name === fleetInstanceName(company))! : (json as Instance);
  for (const resource of Object.values(instance.configuration['event.poller.configuration'])) resource.pageSize = pageSize;
  writeFileSync(path, JSON.stringify(json, null, 2));
}

type Bare = { cpuPerPollMs: number; lagP95s: number; rssMb: number; startMs: number; tokensMs: number; failed: number };

async function bareLoop(url: string, companies: number, minutes: number): Promise<Bare> {
  const setup: BareSetup = { url, companies, intervalMs: INTERVAL_MS, maxSockets: DEFAULT_POLLING_LIMITS.maxConcurrentPerOrigin };
  const spawned = Date.now();
  const bare = startPeer<BareReply>('./fleetBare.js', [JSON.stringify(setup)]);
  try {
    const { pid } = await bare.ask(undefined, 'ready', 30_000);
    const startMs = Date.now() - spawned;
    log(`fleet: bare loop, ${companies} tokens, then ${companies * RESOURCES} GETs a minute for ${minutes} min…`);
    const tokens = await bare.ask({ type: 'start' }, 'tokens', 300_000);
    const cpu0 = processCpuMs(pid);
    const count0 = await bare.ask({ type: 'count' }, 'count', 10_000);
    await sleep(minutes * INTERVAL_MS);
    const cpu1 = processCpuMs(pid);
    const count1 = await bare.ask({ type: 'count' }, 'count', 10_000);
    const rssMb = statusKb(pid, 'VmRSS') / 1024;
    const done = count1.completed - count0.completed;
    return {
      cpuPerPollMs: (cpu1 - cpu0) / done, lagP95s: percentile(count1.lagsMs, 95) / 1000, rssMb, startMs, tokensMs: tokens.ms,
      failed: tokens.failed + count1.failed,
    };
  } finally {
    await bare.close();
  }
}

export type Daemon = { child: ChildProcess; tail: LogTail; spawnedMs: number; exited: Promise<number | null>; close(): void };

/** The daemon, logging JSON to `daemon.log` in `dir`; with `replica`, as that replica, to `daemon-<replica>.log`. */
export function startDaemon(dir: string, file: string, replica?: string): Daemon {
  const path = join(dir, replica === undefined ? 'daemon.log' : `daemon-${replica}.log`);
  const out = openSync(path, 'w');
  const spawnedMs = Date.now();
  // As in parts.ts: `BENCH_DAEMON_FLAGS="--cpu-prof --cpu-prof-dir=DIR"` profiles the daemon.
  const extra = process.env.BENCH_DAEMON_FLAGS?.split(' ').filter((f) => f !== '') ?? [];
  const args = ['run', '-c', file, '--log-format', 'json', ...(replica === undefined ? [] : ['--replica', replica])];
  const child = spawn(process.execPath, [...startScriptNodeFlags(), ...extra, CLI, ...args], { cwd: dir, stdio: ['ignore', out, 'inherit'] });
  closeSync(out);
  const fd = openSync(path, 'r');
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, tail: new LogTail(fd), spawnedMs, exited, close: () => closeSync(fd) };
}

export const hasExited = (d: Daemon): boolean => d.child.exitCode !== null || d.child.signalCode !== null;

/**
 * Reads the logs every 250 ms until `done` holds for their lines (every daemon's, one after the
 * other); false when `timeoutMs` passed first or a daemon exited.
 */
export async function waitLog(daemons: Daemon[], done: (lines: LogLine[]) => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (daemons.some(hasExited)) return false;
    if (done(daemons.flatMap((d) => d.tail.read()))) return true;
    if (Date.now() > deadline) return false;
    await sleep(250);
  }
}

/** The fleet's size: `BENCH_FLEET_COMPANIES` (default 2,000) and `BENCH_FLEET_MINUTES` steady minutes (default 3). */
export function fleetSize(): { companies: number; minutes: number; streams: number } {
  const companies = Number(process.env.BENCH_FLEET_COMPANIES ?? 2_000);
  const minutes = Number(process.env.BENCH_FLEET_MINUTES ?? 3);
  if (!Number.isInteger(companies) || companies < 2) throw new Error(`BENCH_FLEET_COMPANIES must be a whole number ≥ 2, got "${process.env.BENCH_FLEET_COMPANIES}"`);
  if (!(minutes > 0)) throw new Error(`BENCH_FLEET_MINUTES must be a number of minutes > 0, got "${process.env.BENCH_FLEET_MINUTES}"`);
  return { companies, minutes, streams: companies * RESOURCES };
}

/** The fleet simulators of `companies` (one for the daemon, one for the bare loop), in a process of their own. */
export function startFleetSim(companies: number): Peer<FleetSimReply> {
  const setup: FleetSimSetup = { companies, latencyMs: LATENCY_MS, rateLimitPerSec: RATE_LIMIT_PER_SEC };
  return startPeer<FleetSimReply>('./fleetSimPeer.js', [JSON.stringify(setup)]);
}

const isStarted = (l: LogLine): boolean => l.message === 'pollbridge started';
const polledStreams = (lines: LogLine[]): number => new Set(lines.filter((l) => l.message === 'poll finished').map((l) => `${String(l.instance)}/${String(l.resource)}`)).size;

/**
 * Waits for every daemon's `pollbridge started` line, then for the first round: each of the
 * `streams` polled once, by any of them. Returns each daemon's `pollbridge started` line.
 */
export async function awaitFirstRound(daemons: Daemon[], streams: number): Promise<LogLine[]> {
  if (!(await waitLog(daemons, (lines) => lines.filter(isStarted).length >= daemons.length, 120_000))) {
    const dead = daemons.find(hasExited);
    throw new Error(`a daemon did not log "pollbridge started" within 120 s${dead ? ` (one exited: ${dead.child.exitCode ?? dead.child.signalCode})` : ''}`);
  }
  const started = daemons.map((d) => d.tail.lines.find(isStarted)!);
  const startups = daemons.map((d, i) => `${((timestampMs(started[i]!) - d.spawnedMs) / 1000).toFixed(2)} s (${startedStreams(started[i]!) ?? '?'} streams)`);
  log(`fleet: started in ${startups.join(', ')}; first round…`);
  await waitLog(daemons, (lines) => polledStreams(lines) >= streams, 2 * INTERVAL_MS + 30_000);
  log(`fleet: first round ${polledStreams(daemons.flatMap((d) => d.tail.lines))} of ${streams} streams`);
  return started;
}

/** SIGTERM, SIGKILL after 30 s, and its log closed. */
export async function stopFleetDaemon(daemon: Daemon): Promise<void> {
  if (!hasExited(daemon)) {
    daemon.child.kill('SIGTERM');
    const timer = setTimeout(() => daemon.child.kill('SIGKILL'), 30_000);
    await daemon.exited;
    clearTimeout(timer);
  }
  daemon.close();
}

export async function fleet(): Promise<Row[]> {
  const { companies, minutes, streams } = fleetSize();
  const name = `fleet ${streams.toLocaleString('en-US')} streams`;
  const dir = mkdtempSync(join(os.tmpdir(), 'pollbridge-bench-'));
  const sim = startFleetSim(companies);
  let daemon: Daemon | undefined;
  try {
    const { bareUrl, daemonUrl } = await sim.ask(undefined, 'ready', 30_000);
    // The baseline first, while the daemon is not yet running to share the cores with it.
    const bare = await bareLoop(bareUrl, companies, Math.min(1, minutes));

    const layout = writeConfig(dir, companies, daemonUrl);
    log(`fleet: the daemon, ${companies} companies (${layout.layout}), ${LATENCY_MS} ms answers, a 1-minute schedule…`);
    daemon = startDaemon(dir, layout.file);
    const d = daemon;
    const [startedLine] = await awaitFirstRound([d], streams);
    const startedMs = timestampMs(startedLine!);
    const startupS = (startedMs - d.spawnedMs) / 1000;

    const steadyFrom = Date.now();
    const cpu0 = ifAlive(() => processCpuMs(d.child.pid!));
    const rss: number[] = [];
    log(`fleet: ${minutes} steady min…`);
    const steadyUntil = steadyFrom + minutes * INTERVAL_MS;
    await waitLog([d], () => {
      rss.push(ifAlive(() => statusKb(d.child.pid!, 'VmRSS')) / 1024);
      return Date.now() >= steadyUntil;
    }, minutes * INTERVAL_MS + 10_000);
    const cpu1 = ifAlive(() => processCpuMs(d.child.pid!));
    const steadyTo = Date.now();
    const hwmMb = ifAlive(() => statusKb(d.child.pid!, 'VmHWM')) / 1024;

    // Reload: one company's pageSize changes; its requests ask for that many records from then on.
    const changed = Math.floor(companies / 2);
    const hupMs = Date.now();
    let seenAt = NaN;
    if (!hasExited(d)) {
      const seen = sim.ask({ type: 'watch', company: changed, limit: RELOADED_PAGE_SIZE }, 'seen', INTERVAL_MS + RELOAD_WATCH_MS);
      changePageSize(layout, changed, RELOADED_PAGE_SIZE);
      d.child.kill('SIGHUP');
      log(`fleet: SIGHUP with ${fleetInstanceName(changed)} changed; watching ${RELOAD_WATCH_MS / 1000} s…`);
      seenAt = await seen.then((s) => s.atMs, () => NaN);
      await sleep(hupMs + RELOAD_WATCH_MS - Date.now());
      // Polls due in the watched span may finish a little after it.
      await sleep(5_000);
    }
    const lines = d.tail.read();
    const died = d.child.exitCode ?? d.child.signalCode;
    if (died !== null) log(`fleet: the daemon DIED during the run (${died}); the rows after its death are missing`);
    const stats = await sim.ask({ type: 'stats' }, 'stats', 10_000);

    const polls = pollsOf(lines, startedMs, INTERVAL_MS);
    const { first, later } = splitFirstRound(polls);
    const steady = later.filter((p) => p.dueMs >= steadyFrom && p.dueMs < steadyTo);
    const steadyFinished = polls.filter((p) => p.finishedMs >= steadyFrom && p.finishedMs < steadyTo).length;
    const cpuPerPollMs = (cpu1 - cpu0) / steadyFinished;
    const others = polls.filter((p) => p.dueMs >= hupMs && p.dueMs < hupMs + RELOAD_WATCH_MS && !p.stream.startsWith(`${fleetInstanceName(changed)}/`));
    // The changed company's poll is cut short by design; the others' never should be.
    const interrupted = lines.filter((l) => l.message === 'poll interrupted; the next goes on from its last committed part' && timestampMs(l) >= hupMs
      && l.instance !== fleetInstanceName(changed)).length;
    const scheduledMs = scheduledAllMs(lines, first, streams);
    const reloadS = (seenAt - hupMs) / 1000;
    const rssMax = Math.max(...rss.filter((r) => !Number.isNaN(r)));
    const expected = Math.round((streams * (steadyTo - steadyFrom)) / INTERVAL_MS);
    log(`fleet: ${polls.length} polls; first round ${first.length}/${streams}; steady ${steady.length} due, ${steadyFinished} finished (about ${expected} due); `
      + `sim: ${stats.daemon.tokens} token requests, ${stats.daemon.invalidGrant} invalid_grant, ${stats.daemon.rateLimited} 429s (${stats.companiesRateLimited} companies), ${stats.daemon.unauthorized} 401s; `
      + `bare: tokens in ${(bare.tokensMs / 1000).toFixed(1)} s, ${bare.failed} failed; reload seen ${Number.isNaN(seenAt) ? 'never' : `${reloadS.toFixed(2)} s`} after SIGHUP, ${interrupted} polls interrupted`);

    return [
      { metric: `${name}: start-up, spawn → "pollbridge started" (baseline: the bare loop's spawn → ready)`, value: startupS, unit: 's', baseline: bare.startMs / 1000, target: `≤ ${TARGET.startS} s`, ok: startupS <= TARGET.startS },
      { metric: `${name}: start-up, spawn → every stream scheduled`, value: scheduledMs === undefined ? NaN : (scheduledMs - d.spawnedMs) / 1000, unit: 's', target: '—', ok: true },
      { metric: `${name}: first round, lag p50 (${first.length} of ${streams} streams polled)`, value: lagS(first, 50), unit: 's', target: '—', ok: first.length === streams },
      { metric: `${name}: first round, lag p95`, value: lagS(first, 95), unit: 's', target: '—', ok: true },
      { metric: `${name}: first round, lag max`, value: lagS(first, 100), unit: 's', target: '—', ok: true },
      { metric: `${name}: steady ${minutes} min, lag p50 (${steady.length} polls due, about ${expected} expected)`, value: lagS(steady, 50), unit: 's', target: '—', ok: steady.length >= expected * 0.99 },
      { metric: `${name}: steady, lag p95 (baseline: the bare loop's)`, value: lagS(steady, 95), unit: 's', baseline: bare.lagP95s, target: `≤ ${TARGET.lagP95s} s`, ok: lagS(steady, 95) <= TARGET.lagP95s },
      { metric: `${name}: steady, lag max`, value: lagS(steady, 100), unit: 's', target: '—', ok: true },
      { metric: `${name}: CPU per empty poll, all threads (baseline: bare node:http loop)`, value: cpuPerPollMs, unit: 'ms', baseline: bare.cpuPerPollMs, ratio: cpuPerPollMs / bare.cpuPerPollMs, target: `≤ ${TARGET.cpuRatio}× bare`, ok: cpuPerPollMs / bare.cpuPerPollMs <= TARGET.cpuRatio },
      { metric: `${name}: RSS idle between polls, max VmRSS (baseline: the bare loop's)`, value: rssMax, unit: 'MB', baseline: bare.rssMb, target: `≤ ${TARGET.rssMb} MB`, ok: rssMax <= TARGET.rssMb },
      { metric: `${name}: peak RSS (VmHWM), start-up included`, value: hwmMb, unit: 'MB', target: '—', ok: true },
      { metric: `${name}: reload of one changed instance file, SIGHUP → its next request shows the change`, value: reloadS, unit: 's', target: `≤ ${TARGET.reloadS} s`, ok: reloadS <= TARGET.reloadS },
      { metric: `${name}: reload, lag p95 of the others' polls due within ${RELOAD_WATCH_MS / 1000} s (${others.length})`, value: lagS(others, 95), unit: 's', target: `≤ ${TARGET.lagP95s} s`, ok: lagS(others, 95) <= TARGET.lagP95s },
      { metric: `${name}: reload, other companies' polls interrupted`, value: interrupted, unit: 'polls', target: '0', ok: interrupted === 0 },
      { metric: `${name}: the daemon exited during the run${died === null ? '' : ` (${died})`}`, value: died === null ? 0 : 1, unit: 'exits', target: '0', ok: died === null },
      { metric: `${name}: invalid_grant answers (refresh tokens rotate on every refresh)`, value: stats.daemon.invalidGrant, unit: 'answers', target: '0', ok: stats.daemon.invalidGrant === 0 },
      { metric: `${name}: 429s at ${RATE_LIMIT_PER_SEC} requests/s per company`, value: stats.daemon.rateLimited, unit: 'answers', target: '—', ok: true },
    ];
  } finally {
    if (daemon) await stopFleetDaemon(daemon);
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
