import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConcurSim, type SimReport } from '../src/sim/concurSim.js';
import { type CliProcess, startCli } from './helpers/cli.js';
import { readDb } from './helpers/readDb.js';
import { type Received, type Respond, startReceiver } from './helpers/receiver.js';
import { SIM_ENV, simConfig } from './helpers/simConfig.js';
import { tempDir, waitFor, writeJson } from './helpers/tmp.js';

/**
 * Crash safety, with the real CLI killed by SIGKILL. No kill is timed by a sleep: each waits for
 * a moment it names, seen in the database or at the receiver, and what the database holds after
 * the kill proves the kill landed there. After every scenario: every change is delivered, and no
 * change is ever announced under two different notification ids (the same id twice is the
 * documented at-least-once redelivery).
 */

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type Outbox = { id: string; status: string; createdAt: number }[];


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
  const database = join(dir, 'state/pollbridge.db');
  /**
   * Until the first access token is stored. Restarts poll with it, without a refresh; a kill
   * inside a refresh, after the simulator rotated the refresh token and before the daemon
   * stored the new one, strands the instance (README, Concur OAuth2), so the kills come after.
   */
  const tokenStored = () => waitFor('the first access token stored', () =>
    readDb(database, (db) => db.prepare('SELECT access_token FROM auth_state').pluck().get() != null) ?? false);
  /** The stream's cursor as committed (µs), or -Infinity before there is one. */
  const cursor = (): number => readDb(database, (db) => db.prepare('SELECT cursor_us FROM streams').pluck().get() as number | undefined) ?? -Infinity;
  /** Every notification in the outbox, oldest first. */
  const outbox = (): Outbox => readDb(database, (db) => db.prepare('SELECT id, status, created_at AS createdAt FROM notifications ORDER BY seq').all() as Outbox) ?? [];
  /** Pending notifications with an attempt that started at or after `sinceMs` and was answered `status`. */
  const failedSince = (sinceMs: number, status: number): string[] => readDb(database, (db) => db.prepare(`SELECT DISTINCT n.id FROM notifications n
    JOIN attempts a ON a.notification_id = n.id WHERE n.status = 'pending' AND a.started_at >= ? AND a.status_code = ?`).pluck().all(sinceMs, status) as string[]) ?? [];
  return { sim, receiver, start, tokenStored, cursor, outbox, failedSince };
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

/** Runs the daemon until every change in `expected` is delivered, and `until` holds, then stops it. */
async function runUntilDelivered(start: () => CliProcess, receiver: { accepted: Received[] }, expected: string[], until = () => true): Promise<void> {
  const daemon = start();
  try {
    // Before Node has loaded our code a SIGTERM still kills it outright; wait until it runs.
    await daemon.waitForLog('pollbridge started');
    await waitFor(`all ${expected.length} changes delivered`, () => {
      if (daemon.child.exitCode !== null) throw new Error(`the daemon exited (${daemon.child.exitCode}): ${daemon.stderr.join('\n')}`);
      const got = deliveredKeys(receiver.accepted);
      return expected.every((k) => got.has(k)) && until();
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
  it('five kills at set points of a long backfill, each after parts were committed and before their notifications were delivered: nothing lost, nothing announced twice', async () => {
    let receiving = false;
    // Until the last run, deliveries hang: what a run commits is still undelivered when it dies.
    const { sim, receiver, start, tokenStored, cursor, outbox } = await setup(() => (receiving ? 200 : 'hang'), 50);
    const base = Date.now() - 600_000;
    const count = 1500;
    for (let i = 0; i < count; i++) sim.createReport({}, { modifiedMs: base + i * 7 });
    const lastStampUs = (base + (count - 1) * 7) * 1000;
    // Slow pages: the rest of the backfill takes far longer than the look at the cursor and the kill.
    sim.faults.listDelayMs = 20;
    for (let k = 1; k <= 5; k++) {
      const before = cursor();
      const p = start();
      if (k === 1) await tokenStored();
      // The named moment: the backfill's k-th sixth committed, in this run.
      const target = (base + Math.floor((count * k) / 6) * 7) * 1000;
      await waitFor(`the cursor past report ${Math.floor((count * k) / 6)}`, () => cursor() >= target, 30_000);
      await kill(p);
      const after = cursor();
      expect(after).toBeGreaterThan(before);
      expect(after).toBeGreaterThanOrEqual(target);
      expect(after, 'the backfill is not done').toBeLessThan(lastStampUs);
      expect(p.logs().filter((l) => l.message === 'poll finished')).toEqual([]);
      const notifications = outbox();
      expect(notifications.length).toBeGreaterThan(0);
      expect(notifications.filter((n) => n.status !== 'pending')).toEqual([]);
    }
    const committed = outbox().map((n) => n.id);
    receiving = true;
    await runUntilDelivered(start, receiver, finalKeys(sim.allReports()));
    expectNoChangeUnderTwoIds(receiver.accepted);
    // What was committed before the kills went out under its own ids: nothing was queued again.
    const accepted = new Set(receiver.accepted.map((r) => r.id));
    for (const id of committed) expect(accepted.has(id), id).toBe(true);
    expect(accepted.size).toBe(outbox().length);
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
    await waitFor('a committed part of the window', () => cursor() > initial + 60_000_000, 30_000);
    await kill(first);
    const reached = cursor();
    expect(reached).toBeGreaterThan(initial + 60_000_000);
    expect(reached, 'the window is not done').toBeLessThan((base + 599 * 1000) * 1000);
    expect(first.logs().filter((l) => l.message === 'poll finished')).toEqual([]);
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

  it('20 kills at five named moments while records keep changing: nothing lost, nothing recorded as delivered sent again', async () => {
    type Moment = 'committed, not delivered' | 'delivery in flight' | 'answered, not recorded' | 'failed attempt recorded' | 'deliveries recorded';
    const moments: Moment[] = ['committed, not delivered', 'delivery in flight', 'answered, not recorded', 'failed attempt recorded', 'deliveries recorded'];
    let moment: Moment | 'final' = 'committed, not delivered';
    let current: CliProcess | undefined;
    /** The notification the receiver killed the daemon on, in this run. */
    let killedOn: string | undefined;
    const killNow = () => current!.child.kill('SIGKILL');
    const { sim, receiver, start, tokenStored, cursor, outbox, failedSince } = await setup((n) => {
      const id = receiver.seenIds.at(-1)!;
      switch (moment) {
        case 'committed, not delivered':
          return 'hang';
        case 'delivery in flight':
          if (killedOn !== undefined) return 'hang';
          killedOn = id;
          killNow();
          return 'hang';
        case 'answered, not recorded':
          if (killedOn !== undefined) return 'hang';
          killedOn = id;
          return { status: 200, body: 'ok', afterWrite: killNow };
        case 'failed attempt recorded':
          return 500;
        case 'deliveries recorded':
          return n % 4 === 0 ? 500 : 200;
        case 'final':
          return 200;
      }
    }, 5);
    for (let i = 0; i < 10; i++) sim.createReport();
    const changes = setInterval(() => sim.randomChange(), 40);
    /** After each kill: the ids recorded as delivered, and how many requests the receiver had seen. */
    const recorded: { ids: string[]; seen: number }[] = [];
    /** Notifications whose request the kill cut short, answered or not: each must go out again. */
    const cutShort: string[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        moment = moments[i % moments.length]!;
        killedOn = undefined;
        const startedAt = Date.now();
        const cursorBefore = cursor();
        const deliveredBefore = outbox().filter((n) => n.status === 'delivered').length;
        current = start();
        const p = current;
        if (i === 0) await tokenStored();
        switch (moment) {
          case 'committed, not delivered': {
            const fresh = () => outbox().filter((n) => n.createdAt >= startedAt && n.status === 'pending');
            await waitFor(moment, () => cursor() > cursorBefore && fresh().length > 0);
            await kill(p);
            expect(cursor()).toBeGreaterThan(cursorBefore);
            expect(fresh().length).toBeGreaterThan(0);
            break;
          }
          case 'delivery in flight':
          case 'answered, not recorded': {
            await waitFor(moment, () => killedOn !== undefined);
            await p.exited;
            expect(p.child.signalCode).toBe('SIGKILL');
            // Sent (and for the second, answered 200), but the daemon died before recording the end.
            expect(outbox().find((n) => n.id === killedOn)?.status, moment).toBe('pending');
            cutShort.push(killedOn!);
            break;
          }
          case 'failed attempt recorded': {
            await waitFor(moment, () => failedSince(startedAt, 500).length > 0);
            await kill(p);
            expect(failedSince(startedAt, 500).length).toBeGreaterThan(0);
            break;
          }
          case 'deliveries recorded': {
            await waitFor(moment, () => outbox().filter((n) => n.status === 'delivered').length >= deliveredBefore + 3);
            await kill(p);
            expect(outbox().filter((n) => n.status === 'delivered').length).toBeGreaterThanOrEqual(deliveredBefore + 3);
            break;
          }
        }
        recorded.push({ ids: outbox().filter((n) => n.status === 'delivered').map((n) => n.id), seen: receiver.seenIds.length });
      }
    } finally {
      clearInterval(changes);
    }
    moment = 'final';
    await runUntilDelivered(start, receiver, finalKeys(sim.allReports()), () => outbox().every((n) => n.status === 'delivered'));
    expectNoChangeUnderTwoIds(receiver.accepted);
    // Every announced change is one the simulator really made.
    const made = new Set(sim.changes.map((c) => `${c.id}@${new Date(`${c.lastModified}Z`).toISOString()}`));
    for (const key of deliveredKeys(receiver.accepted)) expect(made.has(key), key).toBe(true);
    // Cut short: sent again, under the same id, and accepted.
    const accepted = new Set(receiver.accepted.map((r) => r.id));
    expect(cutShort).toHaveLength(8);
    for (const id of cutShort) expect(accepted.has(id), id).toBe(true);
    // Recorded as delivered before a kill: never sent again after it.
    for (const { ids, seen } of recorded) {
      const later = new Set(receiver.seenIds.slice(seen));
      expect(ids.filter((id) => later.has(id))).toEqual([]);
    }
  }, 240_000);
});
