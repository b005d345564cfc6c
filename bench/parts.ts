/**
 * What the bench's scenarios share: the daemon as the real CLI in a child process, its config,
 * the helper processes spoken to over IPC, and the rows of the table.
 */
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_SIM_CREDENTIALS } from '../dist/sim/concurSim.js';

export const ROOT = fileURLToPath(new URL('../', import.meta.url));
export const CLI = join(ROOT, 'dist/cli.js');
export const INSTANCE = 'Bench';
export const RESOURCE = 'reports';

/** `part` names the scenario that measured it: `--only` reruns one and keeps the others' rows. */
export type Row = { metric: string; value: number; unit: string; baseline?: number; ratio?: number; target: string; ok: boolean; part?: string };

export const log = (line: string): void => void process.stderr.write(`${line}\n`);

/** `database`: a SQLite file beside the config by default, or a postgres:// URL. */
export function writeConfig(dir: string, simUrl: string, callback: string, cron: string, pageSize: number, database = './pollbridge.db'): string {
  const c = DEFAULT_SIM_CREDENTIALS;
  const config = {
    database,
    instances: [{
      name: INSTANCE,
      element: { key: 'concur' },
      provider: { baseUrl: simUrl, auth: { type: 'oauth2_refresh_token', tokenUrl: `${simUrl}/oauth2/v0/token`, clientId: c.clientId, clientSecret: c.clientSecret, refreshToken: c.refreshToken } },
      configuration: {
        'event.notification.enabled': 'true',
        'event.vendor.type': 'polling',
        'event.notification.callback.url': callback,
        'event.notification.signature.key': 'whsec_' + randomBytes(24).toString('base64'),
        'pollbridge.poller.cron': cron,
        'event.poller.configuration': {
          [RESOURCE]: {
            url: "/hubs/expense/reports?where=modifiedDateAfter='${date:yyyy-MM-dd'T'HH:mm:ss.SSS}'",
            idField: 'ID',
            pageSize,
            datesConfiguration: {
              updatedDateField: 'LastModifiedDate', updatedDateFormat: "yyyy-MM-dd'T'HH:mm:ss.SSS",
              createdDateField: 'CreateDate', createdDateFormat: "yyyy-MM-dd'T'HH:mm:ss.SSS",
            },
          },
        },
      },
    }],
  };
  const file = join(dir, 'poller.config.json');
  writeFileSync(file, JSON.stringify(config));
  return file;
}

/** The node flags of deploy/pollbridge.service: the daemon is measured the way it is shipped. */
function serviceNodeFlags(): string[] {
  const execStart = /^ExecStart=\S+ (.*?) \S+cli\.js/m.exec(readFileSync(join(ROOT, 'deploy/pollbridge.service'), 'utf8'));
  return execStart ? execStart[1]!.split(' ').filter((f) => f.startsWith('--')) : [];
}

/** The node flags of package.json's `start` script, the way an operator starts it by hand. */
export function startScriptNodeFlags(): string[] {
  const start = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
  const words = start.split(/\s+/);
  return words.slice(1, words.indexOf('dist/cli.js')).filter((w) => w.startsWith('--'));
}

/** CPU time (ms) of the daemon, all its threads, and of this process (the simulator), at one moment. */
type CpuMark = { daemonMs: number; simMs: number; records: number };

export type Daemon = {
  child: ChildProcess; logs: Record<string, unknown>[]; peakRssMb: () => number; exited: Promise<number | null>;
  /** Taken at the first progress line of a poll and when it finishes: start-up is left out. */
  cpuMarks: CpuMark[];
};

/** utime + stime of a process, all threads, from /proc (in clock ticks: 10 ms on Linux). */
export function processCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/**
 * The CLI as a child; its peak RSS is read from /proc (VmHWM) every 50 ms and at the end.
 * `BENCH_DAEMON_FLAGS` adds node flags (`--cpu-prof --cpu-prof-dir=/tmp/prof` to profile it).
 */
export function startDaemon(args: string[]): Daemon {
  const extra = process.env.BENCH_DAEMON_FLAGS?.split(' ').filter((f) => f !== '') ?? [];
  const child = spawn(process.execPath, [...serviceNodeFlags(), ...extra, CLI, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const logs: Record<string, unknown>[] = [];
  const cpuMarks: CpuMark[] = [];
  const markCpu = (records: number): void => {
    const own = process.cpuUsage();
    try {
      cpuMarks.push({ daemonMs: processCpuMs(child.pid!), simMs: (own.user + own.system) / 1000, records });
    } catch {
      // Killed (the steady scenario's SIGKILLs) before its last lines were read: no mark.
    }
  };
  let partial = '';
  child.stdout!.on('data', (c: Buffer) => {
    const lines = (partial + c.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) {
      if (!l.startsWith('{')) continue;
      const entry = JSON.parse(l) as Record<string, unknown>;
      logs.push(entry);
      if (entry.message === 'poll progress' && cpuMarks.length === 0) markCpu(entry.records as number);
      if (entry.message === 'poll finished' && cpuMarks.length === 1) markCpu(entry.records as number);
    }
  });
  let peakKb = 0;
  const sample = (): void => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      if (m) peakKb = Math.max(peakKb, Number(m[1]));
    } catch {
      // The process has gone: the last sample stands.
    }
  };
  const timer = setInterval(sample, 50);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => { clearInterval(timer); resolve(code); }));
  return { child, logs, peakRssMb: () => { sample(); return peakKb / 1024; }, exited, cpuMarks };
}

export const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
};

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

export type Peer<Reply extends { type: string }> = {
  /** Sends `request` (if any) and waits for the first reply of `type`, for at most `timeoutMs`. */
  ask<T extends Reply['type']>(request: object | undefined, type: T, timeoutMs: number): Promise<Extract<Reply, { type: T }>>;
  close(): Promise<void>;
};

/** One of this folder's modules (built, beside this one) as a child process spoken to over IPC. */
export function startPeer<Reply extends { type: string }>(module: string, args: string[]): Peer<Reply> {
  const child: ChildProcess = fork(fileURLToPath(new URL(module, import.meta.url)), args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    ask: (request, type, timeoutMs) => new Promise((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
      };
      const onMessage = (m: Reply): void => {
        if (m.type !== type) return;
        done();
        resolve(m as Extract<Reply, { type: typeof type }>);
      };
      const onExit = (code: number | null): void => {
        done();
        reject(new Error(`${module} exited (${code}) before its "${type}" reply`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${module} sent no "${type}" reply within ${timeoutMs} ms`));
      }, timeoutMs);
      child.on('message', onMessage);
      child.once('exit', onExit);
      if (request) child.send(request);
    }),
    close: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill();
      await exited;
    },
  };
}

/** The moment the daemon logs `message`; fails when it exits first or `timeoutMs` passes. */
export async function waitForLog(daemon: Daemon, message: string, timeoutMs: number): Promise<void> {
  let exited = false;
  void daemon.exited.then(() => { exited = true; });
  const deadline = Date.now() + timeoutMs;
  while (!daemon.logs.some((l) => l.message === message)) {
    if (exited) throw new Error(`the daemon exited before it logged "${message}"`);
    if (Date.now() > deadline) throw new Error(`the daemon did not log "${message}" within ${timeoutMs} ms`);
    await sleep(25);
  }
}

/** SIGTERM, and SIGKILL if it has not exited after its grace period and a margin. */
export async function stopDaemon(daemon: Daemon): Promise<void> {
  if (daemon.child.exitCode !== null || daemon.child.signalCode !== null) return;
  daemon.child.kill('SIGTERM');
  const timer = setTimeout(() => daemon.child.kill('SIGKILL'), 20_000);
  await daemon.exited;
  clearTimeout(timer);
}
