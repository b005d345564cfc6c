import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { ConcurSim, type SimReport } from '../src/sim/concurSim.js';
import { type CliProcess, startCli } from './helpers/cli.js';
import { type Received, type Respond, startReceiver } from './helpers/receiver.js';
import { SIM_ENV, simConfig } from './helpers/simConfig.js';
import { tempDir, waitFor, writeJson } from './helpers/tmp.js';

/**
 * Crash safety, with the real CLI killed by SIGKILL. After every scenario: every change is
 * delivered, and no change is ever announced under two different notification ids (the same id
 * twice is the documented at-least-once redelivery).
 */

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function setup(respond: Respond, pageSize = 100) {
  const key = 'whsec_' + randomBytes(24).toString('base64');
  const sim = new ConcurSim();
  const simUrl = await sim.start();
  cleanups.push(() => sim.stop());
  const receiver = await startReceiver(key, respond);
  cleanups.push(() => receiver.close());
  const dir = tempDir();
  const config = writeJson(dir, 'poller.config.json', simConfig(simUrl, receiver.url, key, {
    'pollbridge.delivery.retrySchedule': Array.from({ length: 60 }, () => 0.2),
    'event.poller.configuration': {
      reports: {
        url: "/hubs/expense/reports?where=modifiedDateAfter='${date:yyyy-MM-dd'T'HH:mm:ss.SSS}'",
        pageSize,
        datesConfiguration: {
          updatedDateField: 'LastModifiedDate', updatedDateFormat: "yyyy-MM-dd'T'HH:mm:ss.SSS",
          createdDateField: 'CreateDate', createdDateFormat: "yyyy-MM-dd'T'HH:mm:ss.SSS",
        },
      },
    },
  }));
  const since = new Date(Date.now() - 3_600_000).toISOString();
  const start = (): CliProcess => startCli(['run', '-c', config, '--since', since, '--log-level', 'info'], SIM_ENV);
  /**
   * Until the first access token is stored. Restarts poll with it, without a refresh; a kill
   * inside a refresh, after the simulator rotated the refresh token and before the daemon
   * stored the new one, strands the instance (README, Concur OAuth2), so the kills come after.
   */
  const tokenStored = () => waitFor('the first access token stored', () => {
    try {
      const db = new Database(join(dir, 'state/pollbridge.db'), { readonly: true, fileMustExist: true });
      try {
        return db.prepare('SELECT access_token FROM auth_state').pluck().get() != null;
      } finally {
        db.close();
      }
    } catch {
      return false;
    }
  });
  /** The stream's cursor as committed (µs), or -Infinity before there is one. */
  const cursor = (): number => {
    try {
      const db = new Database(join(dir, 'state/pollbridge.db'), { readonly: true, fileMustExist: true });
      try {
        return (db.prepare('SELECT cursor_us FROM streams').pluck().get() as number | undefined) ?? -Infinity;
      } finally {
        db.close();
      }
    } catch {
      return -Infinity;
    }
  };
  return { sim, receiver, start, tokenStored, cursor };
}

async function kill(p: CliProcess): Promise<void> {
  p.child.kill('SIGKILL');
  await p.exited;
}

/** Each pair (objectId, date) under one notification id only; every id always with the same body. */
function expectNoChangeUnderTwoIds(accepted: Received[]): void {
  const idOf = new Map<string, string>();
  const bodyOf = new Map<string, string>();
  for (const r of accepted) {
    if (bodyOf.has(r.id)) expect(r.body).toBe(bodyOf.get(r.id));
    bodyOf.set(r.id, r.body);
    for (const e of r.events) {
      const key = `${e.objectId}@${e.date}`;
      const previous = idOf.get(key);
      if (previous !== undefined) expect(r.id, `${key} announced under two ids`).toBe(previous);
      idOf.set(key, r.id);
    }
  }
}

function deliveredKeys(accepted: Received[]): Set<string> {
  return new Set(accepted.flatMap((r) => r.events.map((e) => `${e.objectId}@${e.date}`)));
}

/** The latest state of every report, as the receiver should have seen it. */
function finalKeys(reports: SimReport[]): string[] {
  return reports.map((r) => `${r.ID}@${new Date(`${r.LastModifiedDate}Z`).toISOString()}`);
}

async function runUntilDelivered(start: () => CliProcess, receiver: { accepted: Received[] }, expected: string[]): Promise<void> {
  const daemon = start();
  try {
    // Before Node has loaded our code a SIGTERM still kills it outright; wait until it runs.
    await daemon.waitForLog('pollbridge started');
    await waitFor(`all ${expected.length} changes delivered`, () => {
      if (daemon.child.exitCode !== null) throw new Error(`the daemon exited (${daemon.child.exitCode}): ${daemon.stderr.join('\n')}`);
      const got = deliveredKeys(receiver.accepted);
      return expected.every((k) => got.has(k));
    }, 90_000);
  } catch (err) {
    const got = deliveredKeys(receiver.accepted);
    const missing = expected.filter((k) => !got.has(k));
    throw new Error(`${(err as Error).message}; missing ${missing.length}, e.g. ${missing.slice(0, 3).join(', ')}; daemon's last lines:\n${daemon.stdout.slice(-15).join('\n')}`);
  } finally {
    daemon.child.kill('SIGTERM');
    expect((await daemon.exited).code).toBe(0);
  }
}

describe('crash safety (SIGKILL)', () => {
  it('kills during a long backfill, page commits included, lose nothing and announce nothing twice', async () => {
    const { sim, receiver, start, tokenStored } = await setup(() => 200, 50);
    const base = Date.now() - 600_000;
    for (let i = 0; i < 1500; i++) sim.createReport({}, { modifiedMs: base + i * 7 });
    for (let i = 0; i < 5; i++) {
      const p = start();
      if (i === 0) await tokenStored();
      await sleep(250 + Math.random() * 500);
      await kill(p);
    }
    await runUntilDelivered(start, receiver, finalKeys(sim.allReports()));
    expectNoChangeUnderTwoIds(receiver.accepted);
  }, 180_000);

  it('a kill in the middle of a window, once parts of it are committed: the restart goes on from the last of them', async () => {
    const { sim, receiver, start, tokenStored, cursor } = await setup(() => 200, 50);
    const base = Date.now() - 600_000;
    for (let i = 0; i < 600; i++) sim.createReport({}, { modifiedMs: base + i * 1000 });
    // Slow pages: the window takes seconds, so the kill lands inside it.
    sim.faults.listDelayMs = 20;
    const first = start();
    await tokenStored();
    const initial = cursor();
    // The named moment: the cursor has moved past the window's start, and the poll is not over.
    const reached = await waitFor('a committed part of the window', () => (cursor() > initial + 60_000_000 ? cursor() : false), 30_000);
    expect(first.logs().some((l) => l.message === 'poll finished')).toBe(false);
    await kill(first);
    const asked = sim.listQueries.length;
    await runUntilDelivered(start, receiver, finalKeys(sim.allReports()));
    const resumedAt = Date.parse(`${sim.listQueries[asked]!.get('modifiedDateAfter')}Z`) * 1000;
    // From the last committed part (less the fresh window's second), not from the window's start.
    expect(resumedAt).toBeGreaterThanOrEqual(reached - 2_000_000);
    expectNoChangeUnderTwoIds(receiver.accepted);
  }, 120_000);

  it('a kill while a delivery is in flight: the notification is sent again under the same id', async () => {
    let daemon: CliProcess | undefined;
    let first = true;
    const { sim, receiver, start } = await setup(() => {
      if (!first) return 200;
      first = false;
      daemon!.child.kill('SIGKILL');
      return 'hang';
    });
    const report = sim.createReport();
    daemon = start();
    await daemon.exited;
    await runUntilDelivered(start, receiver, finalKeys([report]));
    expect(receiver.seenIds).toHaveLength(2);
    expect(receiver.seenIds[0]).toBe(receiver.seenIds[1]);
    expectNoChangeUnderTwoIds(receiver.accepted);
  });

  it('a kill after the receiver answered 200 but before it was recorded: redelivered with the same id (at-least-once)', async () => {
    let daemon: CliProcess | undefined;
    let first = true;
    const { sim, receiver, start } = await setup(() => {
      if (!first) return 200;
      first = false;
      return { status: 200, body: 'ok', afterWrite: () => daemon!.child.kill('SIGKILL') };
    });
    const report = sim.createReport();
    daemon = start();
    await daemon.exited;
    await runUntilDelivered(start, receiver, finalKeys([report]));
    // The kill follows the response in the same tick, long before the daemon can commit the answer.
    const ids = receiver.accepted.map((r) => r.id);
    expect(ids).toHaveLength(2);
    expect(new Set(ids).size).toBe(1);
    expectNoChangeUnderTwoIds(receiver.accepted);
  });

  it('20 random kills while records keep changing and the receiver fails some requests', async () => {
    let failing = true;
    const { sim, receiver, start, tokenStored } = await setup(() => (failing && Math.random() < 0.25 ? 500 : 200), 5);
    for (let i = 0; i < 10; i++) sim.createReport();
    const changes = setInterval(() => sim.randomChange(), 40);
    try {
      for (let i = 0; i < 20; i++) {
        const p = start();
        if (i === 0) await tokenStored();
        await sleep(300 + Math.random() * 1200);
        await kill(p);
      }
    } finally {
      clearInterval(changes);
    }
    failing = false;
    await runUntilDelivered(start, receiver, finalKeys(sim.allReports()));
    expectNoChangeUnderTwoIds(receiver.accepted);
    // Every announced change is one the simulator really made.
    const made = new Set(sim.changes.map((c) => `${c.id}@${new Date(`${c.lastModified}Z`).toISOString()}`));
    for (const key of deliveredKeys(receiver.accepted)) expect(made.has(key), key).toBe(true);
  }, 180_000);
});
