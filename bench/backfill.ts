/**
 * The backfill the ingest rows measure, on either store: a simulator holding many reports changed
 * an hour ago, a receiver in a process of its own, and `run --once --since` over them.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { ConcurSim } from '../dist/sim/concurSim.js';
import { type Daemon, log, startDaemon, writeConfig } from './parts.js';

export const PAGE = 100;

/** The receiver's code: answers 200 at once and keeps the time of each request. */
const RECEIVER = `
const http = require('node:http');
const times = [];
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => { times.push(performance.now()); res.writeHead(200).end(); });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
process.on('message', () => { process.send({ times }); times.length = 0; });
`;

export type Receiver = { url: string; times(): Promise<number[]>; close(): Promise<void> };

/**
 * A receiver in a process of its own. On the simulator's thread, answering tens of thousands
 * of deliveries would slow the simulator's pages, and the ingest figure would measure the
 * harness rather than pollbridge.
 */
async function startReceiver(): Promise<Receiver> {
  const child = spawn(process.execPath, ['-e', RECEIVER], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const { port } = await new Promise<{ port: number }>((resolve) => child.once('message', (m) => resolve(m as { port: number })));
  return {
    url: `http://127.0.0.1:${port}/hook`,
    times: () => new Promise((resolve) => {
      child.once('message', (m) => resolve((m as { times: number[] }).times));
      child.send('times');
    }),
    close: async () => {
      child.kill();
      await new Promise((r) => child.once('exit', r));
    },
  };
}

function seedReports(sim: ConcurSim, count: number, fromMs: number): void {
  for (let i = 0; i < count; i++) sim.createReport({}, { modifiedMs: fromMs + i });
}

export type Backfill = { dir: string; sim: ConcurSim; receiver: Receiver; config: string; from: number; records: number };

/**
 * A simulator holding `records` reports changed an hour ago, a receiver, and a config on
 * `database` (a SQLite file in the run's folder by default, or a postgres:// URL); cleaned up after.
 */
export async function withBackfill<T>(records: number, run: (b: Backfill) => Promise<T>, database?: string): Promise<T> {
  const dir = mkdtempSync(join(os.tmpdir(), 'pollbridge-bench-'));
  const sim = new ConcurSim();
  const simUrl = await sim.start();
  const receiver = await startReceiver();
  try {
    const from = Date.now() - 3_600_000;
    seedReports(sim, records, from);
    return await run({ dir, sim, receiver, config: writeConfig(dir, simUrl, receiver.url, '0 0 1 1 *', PAGE, database), from, records });
  } finally {
    await receiver.close();
    await sim.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What one `run --once` over a backfill achieved: ingest by its poll's duration, delivery by the receiver's clock. */
export type BackfillRun = { daemon: Daemon; ingestRate: number; notifications: number; deliveryRate: number };

export async function runBackfill({ config, receiver, from, records }: Backfill, store: string): Promise<BackfillRun> {
  log(`ingest on ${store}: backfill of ${records} records…`);
  const daemon = startDaemon(['run', '--once', '-c', config, '--since', new Date(from - 1000).toISOString()]);
  const code = await daemon.exited;
  if (code !== 0) throw new Error(`daemon on ${store} exited ${code}`);
  const poll = daemon.logs.find((l) => l.message === 'poll finished');
  if (!poll) throw new Error(`daemon on ${store} logged no "poll finished"`);
  const times = await receiver.times();
  if (times.length < 2) throw new Error(`daemon on ${store}: ${times.length} notifications reached the receiver`);
  return {
    daemon,
    ingestRate: records / ((poll.durationMs as number) / 1000),
    notifications: times.length,
    deliveryRate: times.length / ((times.at(-1)! - times[0]!) / 1000),
  };
}

/**
 * CPU (ms) per page of the daemon (all threads) and of this process (the simulator), from the
 * backfill's first progress line to its end: start-up left out.
 */
export function cpuPerPage(daemon: Daemon): { daemonMs: number; simMs: number } | undefined {
  const [first, last] = daemon.cpuMarks;
  if (!first || !last) return undefined;
  const pages = (last.records - first.records) / PAGE;
  return { daemonMs: (last.daemonMs - first.daemonMs) / pages, simMs: (last.simMs - first.simMs) / pages };
}
