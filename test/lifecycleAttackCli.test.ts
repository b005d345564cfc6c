import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { type CliProcess, runCli, startCli } from './helpers/cli.js';
import { harness } from './helpers/harness.js';
import { SIM_ENV } from './helpers/simConfig.js';
import { waitFor } from './helpers/tmp.js';

const HOLD_LOADING = fileURLToPath(new URL('./fixtures/holdLoading.mjs', import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The process's end, or 'still running' after `ms` (then killed, so the test fails on the value). */
async function exitedWithin(p: CliProcess, ms: number) {
  const result = await Promise.race([p.exited, sleep(ms).then(() => 'still running' as const)]);
  if (result === 'still running') p.child.kill('SIGKILL');
  return result;
}

/** The CLI started with its program module held while loading; `release()` lets it go on. */
async function whileLoading(args: string[], dir: string) {
  const marker = join(dir, `loading-${Math.random()}`);
  const releaseFile = join(dir, `release-${Math.random()}`);
  const p = startCli(args, { ...SIM_ENV, HOLD_MARKER: marker, HOLD_RELEASE: releaseFile }, undefined, ['--import', HOLD_LOADING]);
  await waitFor('the program module is loading', () => existsSync(marker));
  return { p, release: () => writeFileSync(releaseFile, '') };
}

/** The harness's database with its stream rows made, and the config renamed so that a start must write a new one. */
async function needsAWriteToStart(h: Awaited<ReturnType<typeof harness>>) {
  expect((await runCli(['run', '--once', '-c', h.configFile], SIM_ENV)).code).toBe(0);
  const json = JSON.parse(readFileSync(h.configFile, 'utf8')) as { instances: { name: string }[] };
  json.instances[0]!.name = 'ConcurRenamed';
  writeFileSync(h.configFile, JSON.stringify(json));
  return loadConfig(h.configFile, { env: SIM_ENV }).database;
}

describe('a start that fails after the database is open', () => {
  for (const once of [false, true]) {
    it(`run${once ? ' --once' : ''}: another process holds the write lock past the busy timeout: the error is said and the process exits non-zero`, { timeout: 60_000 }, async () => {
      const h = await harness();
      const database = await needsAWriteToStart(h);
      const other = new Database(database);
      other.exec('BEGIN IMMEDIATE');
      try {
        const p = startCli(['run', ...(once ? ['--once'] : []), '-c', h.configFile], SIM_ENV);
        // The store waits 5 s for the lock; then the start fails and nothing may keep the process up.
        const exited = await exitedWithin(p, 20_000);
        expect(exited, p.stderr.join('\n')).not.toBe('still running');
        expect(exited).toMatchObject({ signal: null });
        expect((exited as { code: number }).code).not.toBe(0);
        expect(p.stderr.join('\n')).toMatch(/database is locked/);
      } finally {
        other.exec('ROLLBACK');
        other.close();
      }
    });
  }
});

describe('signals while the modules load', () => {
  it('run: SIGTERM then SIGHUP while loading: starts, stops cleanly, exit 0, the reload not applied after the stop', { timeout: 60_000 }, async () => {
    const h = await harness();
    const { p, release } = await whileLoading(['run', '-c', h.configFile], h.dir);
    p.child.kill('SIGTERM');
    await sleep(20);
    p.child.kill('SIGHUP');
    await sleep(50);
    release();
    const exited = await exitedWithin(p, 20_000);
    expect(exited, p.stderr.join('\n')).toEqual({ code: 0, signal: null });
    const messages = p.logs().map((l) => l.message);
    expect(messages.filter((m) => m === 'pollbridge stopped')).toHaveLength(1);
    expect(messages).not.toContain('config reloaded');
  });

  it('run: SIGHUP then SIGTERM while loading: the reload is applied, then the stop, exit 0', { timeout: 60_000 }, async () => {
    const h = await harness();
    const { p, release } = await whileLoading(['run', '-c', h.configFile], h.dir);
    p.child.kill('SIGHUP');
    await sleep(20);
    p.child.kill('SIGTERM');
    await sleep(50);
    release();
    const exited = await exitedWithin(p, 20_000);
    expect(exited, p.stderr.join('\n')).toEqual({ code: 0, signal: null });
    const messages = p.logs().map((l) => l.message);
    expect(messages.indexOf('config reloaded')).toBeGreaterThan(messages.indexOf('pollbridge started'));
    expect(messages.indexOf('config reloaded')).toBeLessThan(messages.indexOf('pollbridge stopped'));
  });

  it('run: SIGHUP while loading, then a start refused at http.listen: the error is said and the process exits 1', { timeout: 60_000 }, async () => {
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    try {
      const port = (busy.address() as AddressInfo).port;
      const h = await harness({}, {}, (c) => ({ ...c, http: { listen: `127.0.0.1:${port}` } }));
      const { p, release } = await whileLoading(['run', '-c', h.configFile], h.dir);
      p.child.kill('SIGHUP');
      await sleep(50);
      release();
      const exited = await exitedWithin(p, 20_000);
      expect(exited, p.stderr.join('\n')).toEqual({ code: 1, signal: null });
      expect(p.stderr.join('\n')).toContain(`cannot listen on 127.0.0.1:${port} (http.listen): EADDRINUSE`);
      expect(p.logs().map((l) => l.message)).not.toContain('config reloaded');
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }
  });

  it('run --once: SIGTERM while loading: the run is cut short, exit 0, the database closed', { timeout: 60_000 }, async () => {
    const h = await harness();
    const { p, release } = await whileLoading(['run', '--once', '-c', h.configFile], h.dir);
    p.child.kill('SIGTERM');
    await sleep(50);
    release();
    const exited = await exitedWithin(p, 20_000);
    expect(exited, p.stderr.join('\n')).toEqual({ code: 0, signal: null });
    expect(p.logs().filter((l) => l.message === 'pollbridge stopped')).toHaveLength(1);
    // Nothing left holding it: a daemon starts on the same database at once.
    const again = await runCli(['run', '--once', '-c', h.configFile], SIM_ENV);
    expect(again.code, again.stderr).toBe(0);
  });

  it('run: two SIGTERMs while loading exit at once, non-zero', { timeout: 60_000 }, async () => {
    const h = await harness();
    const { p, release } = await whileLoading(['run', '-c', h.configFile], h.dir);
    p.child.kill('SIGTERM');
    await sleep(20);
    p.child.kill('SIGTERM');
    await sleep(50);
    release();
    const exited = await exitedWithin(p, 20_000);
    expect(exited).toEqual({ code: 1, signal: null });
    expect(p.stderr.join('\n')).toContain('second SIGTERM: exiting now');
    expect(p.logs().map((l) => l.message)).not.toContain('pollbridge started');
  });

  for (const [args, signal] of [
    [['status'], 'SIGTERM'], [['validate'], 'SIGINT'], [['events', 'list'], 'SIGHUP'], [['status', '--json'], 'SIGINT'],
  ] as const) {
    it(`${args.join(' ')}: ${signal} while loading still kills it (the default action)`, { timeout: 60_000 }, async () => {
      const h = await harness();
      const { p, release } = await whileLoading([...args, '-c', h.configFile], h.dir);
      p.child.kill(signal);
      await sleep(50);
      release();
      const exited = await exitedWithin(p, 20_000);
      expect(exited).toEqual({ code: null, signal });
      expect(p.stdout.join('')).toBe('');
    });
  }

  it('run --once: SIGHUP while loading is ignored with one warning, and the run completes', { timeout: 60_000 }, async () => {
    const h = await harness();
    const { p, release } = await whileLoading(['run', '--once', '-c', h.configFile], h.dir);
    p.child.kill('SIGHUP');
    await sleep(50);
    release();
    const exited = await exitedWithin(p, 20_000);
    expect(exited, p.stderr.join('\n')).toEqual({ code: 0, signal: null });
    expect(p.logs().filter((l) => l.message === 'SIGHUP ignored: run --once reads its config once')).toHaveLength(1);
    expect(p.logs().map((l) => l.message)).toContain('poll finished');
  });

  it('sim: SIGTERM while loading kills it (the default action)', { timeout: 60_000 }, async () => {
    const h = await harness();
    const { p, release } = await whileLoading(['sim', '--port', '0'], h.dir);
    p.child.kill('SIGTERM');
    await sleep(50);
    release();
    expect(await exitedWithin(p, 20_000)).toEqual({ code: null, signal: 'SIGTERM' });
  });

  it('sim: SIGTERM after it started still ends it', { timeout: 60_000 }, async () => {
    const p = startCli(['sim', '--port', '0']);
    await waitFor('the simulator listening', () => p.stdout.length + p.stderr.length > 0);
    p.child.kill('SIGTERM');
    const exited = await exitedWithin(p, 15_000);
    expect(exited).not.toBe('still running');
  });
});

describe('SIGHUP and SIGTERM while a reload waits on the database', () => {
  it('the stop waits for the reload, which is refused; exit 0; the refusal logged before the stop', { timeout: 90_000 }, async () => {
    const h = await harness();
    const p = startCli(['run', '-c', h.configFile], SIM_ENV);
    const database = loadConfig(h.configFile, { env: SIM_ENV }).database;
    let other: Database.Database | undefined;
    try {
      await p.waitForLog('pollbridge started');
      const json = JSON.parse(readFileSync(h.configFile, 'utf8')) as { instances: { name: string }[] };
      json.instances.push({ ...json.instances[0]!, name: 'ConcurTwo' });
      writeFileSync(h.configFile, JSON.stringify(json));
      other = new Database(database);
      other.exec('BEGIN IMMEDIATE');
      p.child.kill('SIGHUP');
      await sleep(200);
      p.child.kill('SIGHUP');
      p.child.kill('SIGHUP');
      await sleep(200);
      p.child.kill('SIGTERM');
      await p.waitForLog('config reload refused: the running config stays', 1, 20_000);
      other.exec('ROLLBACK');
      other.close();
      other = undefined;
      const exited = await exitedWithin(p, 20_000);
      expect(exited).toEqual({ code: 0, signal: null });
      const messages = p.logs().map((l) => l.message);
      expect(messages.indexOf('config reload refused: the running config stays')).toBeLessThan(messages.indexOf('pollbridge stopped'));
      expect(messages.filter((m) => m === 'config reload refused: the running config stays')).toHaveLength(1);
      // The queued SIGHUPs were not applied after the stop.
      expect(messages).not.toContain('config reloaded');
      expect(messages.filter((m) => m === 'pollbridge stopped')).toHaveLength(1);
    } finally {
      if (other) {
        other.exec('ROLLBACK');
        other.close();
      }
      if (p.child.exitCode === null) p.child.kill('SIGKILL');
    }
  });
});

describe('SIGTERM at observable moments of run --once', () => {
  for (const moment of ['a list request in flight', 'a delivery in flight'] as const) {
    it(`with ${moment}: exit 0, stopped once, and the database free after`, { timeout: 60_000 }, async () => {
      const h = await harness({}, {}, undefined, moment === 'a delivery in flight' ? (n) => (n === 1 ? 'hang' : 200) : undefined);
      h.sim.createReport();
      if (moment === 'a list request in flight') h.sim.faults.listDelayMs = 2000;
      const p = startCli(['run', '--once', '-c', h.configFile, '--grace-ms', '500', '--since', new Date(Date.now() - 60_000).toISOString()], SIM_ENV);
      if (moment === 'a list request in flight') await waitFor(moment, () => h.sim.listQueries.length > 0);
      else await waitFor(moment, () => h.receiver.requests > 0);
      p.child.kill('SIGTERM');
      const exited = await exitedWithin(p, 20_000);
      expect(exited, p.stderr.join('\n')).toEqual({ code: 0, signal: null });
      expect(p.logs().filter((l) => l.message === 'pollbridge stopped')).toHaveLength(1);
      h.sim.faults.listDelayMs = 0;
      const again = await runCli(['run', '--once', '-c', h.configFile], SIM_ENV);
      expect(again.stderr).not.toMatch(/in use by another/);
    });
  }
});

describe('a burst of SIGHUPs during a reload that waits on the database', () => {
  it('reads the file once more, not once each: one refusal, then one reload applied', { timeout: 90_000 }, async () => {
    const h = await harness();
    const p = startCli(['run', '-c', h.configFile], SIM_ENV);
    const database = loadConfig(h.configFile, { env: SIM_ENV }).database;
    await p.waitForLog('pollbridge started');
    const other = new Database(database);
    try {
      const json = JSON.parse(readFileSync(h.configFile, 'utf8')) as { instances: { name: string }[] };
      json.instances.push({ ...json.instances[0]!, name: 'ConcurTwo' });
      writeFileSync(h.configFile, JSON.stringify(json));
      other.exec('BEGIN IMMEDIATE');
      p.child.kill('SIGHUP');
      await sleep(300);
      for (let i = 0; i < 5; i++) {
        p.child.kill('SIGHUP');
        await sleep(20);
      }
      await p.waitForLog('config reload refused: the running config stays', 1, 20_000);
      other.exec('ROLLBACK');
      await p.waitForLog('config reloaded', 1, 20_000);
      await sleep(1500);
      const messages = p.logs().map((l) => l.message);
      expect(messages.filter((m) => m === 'config reload refused: the running config stays')).toHaveLength(1);
      expect(messages.filter((m) => m === 'config reloaded')).toHaveLength(1);
    } finally {
      if (other.inTransaction) other.exec('ROLLBACK');
      other.close();
      p.child.kill('SIGTERM');
      expect(await exitedWithin(p, 20_000)).toEqual({ code: 0, signal: null });
    }
  });
});

