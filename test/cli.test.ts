import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signatureHeaders } from '../src/deliver/sign.js';
import { runCli, startCli } from './helpers/cli.js';
import { harness } from './helpers/harness.js';
import { SIM_ENV } from './helpers/simConfig.js';
import { waitFor } from './helpers/tmp.js';

describe('run --once', () => {
  it('stops on the first SIGTERM, even with deliveries hanging, exits 0, and keeps them for the next run', async () => {
    const h = await harness({}, {}, undefined, () => 'hang');
    h.sim.createReport();
    const since = new Date(Date.now() - 60_000).toISOString();
    const once = startCli(['run', '-c', h.configFile, '--once', '--since', since, '--grace-ms', '200'], SIM_ENV);
    await waitFor('a delivery hanging at the receiver', () => h.receiver.requests > 0);
    once.child.kill('SIGTERM');
    expect(await once.exited).toEqual({ code: 0, signal: null });
    const messages = once.logs().map((l) => l.message);
    expect(messages).toContain('stopping');
    expect(messages).toContain('aborting deliveries still in flight after the grace period');
    const status = await runCli(['status', '-c', h.configFile, '--json'], SIM_ENV);
    expect(JSON.parse(status.stdout)).toMatchObject({ notifications: { pending: 1, delivered: 0 } });
  });
});

describe('run --once with a failing receiver', () => {
  it('stops sending to it after its first failed round, and keeps the rest pending for the next run', async () => {
    let up = false;
    const h = await harness({ 'pollbridge.delivery.maxEventsPerNotification': 1 }, {}, undefined, () => (up ? 200 : 503));
    for (let i = 0; i < 12; i++) h.sim.createReport();
    const first = h.daemon({ since: (Date.now() - 60_000) * 1000 });
    expect(await first.daemon.runOnce()).toMatchObject({ failedPolls: 0, pending: 12 });
    // Only the requests already in flight when the first failure came back (concurrency 4).
    expect(h.receiver.requests).toBeGreaterThan(0);
    expect(h.receiver.requests).toBeLessThanOrEqual(4);
    expect(first.logs.messages('receiver is failing: its other notifications wait for the next run')).toHaveLength(1);

    up = true;
    const second = h.daemon();
    expect(await second.daemon.runOnce()).toMatchObject({ pending: 0 });
    expect(new Set(h.events().map((e) => e.objectId)).size).toBe(12);
  });
});

describe('events, replay and status on the command line', () => {
  it('lists and shows dead letters with their attempts, and replays them so they are delivered', async () => {
    let receiverUp = false;
    const h = await harness({ 'pollbridge.delivery.retrySchedule': '' }, {}, undefined, () => (receiverUp ? 200 : 500));
    const r1 = h.sim.createReport();
    const r2 = h.sim.createReport();
    // The receiver fails and there are no retries: the notification dies on its first attempt.
    const first = h.daemon({ since: (Date.now() - 60_000) * 1000 });
    await first.daemon.runOnce();
    const db = first.config.database;

    const dead = await runCli(['events', 'list', '--db', db, '--status', 'dead', '--json']);
    expect(dead.code).toBe(0);
    const rows = JSON.parse(dead.stdout) as { id: string; status: string; attempts: number; lastError: string }[];
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: 'dead', attempts: 1, lastError: expect.stringMatching(/HTTP 500; no retries left/) });

    const shown = await runCli(['events', 'show', rows[0]!.id, '--db', db]);
    expect(shown.stdout).toContain(`${rows[0]!.id}  ConcurTest/reports  dead  2 event(s)`);
    expect(shown.stdout).toMatch(/ATTEMPT +AT +MS +STATUS +ERROR +RESPONSE\n1 +\S+ +\d+ +500 +HTTP 500.* receiver says no/);
    expect(shown.stdout).toContain(r1.ID);

    const table = await runCli(['status', '--db', db]);
    expect(table.stdout).toMatch(/ConcurTest +reports +\S+ +\d+ s ago +ok +0 +1 +0/);
    expect(table.stdout).toContain('notifications: 0 pending, 0 delivered, 1 dead');

    const missing = await runCli(['replay', 'NOPE', '--db', db]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe('pollbridge: no notification NOPE');

    const replay = await runCli(['replay', '--dead', '--db', db]);
    expect(replay.stdout).toBe('1 notification(s) queued for delivery again; no daemon is running on this database: they are sent when `pollbridge run` (or `run --once`) starts');
    receiverUp = true;
    const once = await runCli(['run', '-c', h.configFile, '--once'], SIM_ENV);
    expect(once.code).toBe(0);
    expect(h.events().map((e) => e.objectId).sort()).toEqual([r1.ID, r2.ID].sort());
    expect(new Set(h.receiver.seenIds).size).toBe(1);
  });

  it('rejects a bad --status with one line', async () => {
    const result = await runCli(['events', 'list', '--db', '/nonexistent/p.db', '--status', 'lost']);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('pollbridge: --status must be one of pending, delivered, dead, got "lost"');
  });

  it('names a missing database instead of creating one', async () => {
    const result = await runCli(['status', '--db', '/nonexistent/p.db']);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('pollbridge: no database at /nonexistent/p.db (has the daemon run? pass --db FILE)');
  });
});

describe('pollbridge verify', () => {
  const key = 'whsec_' + randomBytes(24).toString('base64');
  const body = '{"message":{"eventId":"01J","events":[]}}';
  const headers = signatureHeaders('01J', body, { current: key, previous: [] }, Math.floor(Date.now() / 1000));
  const flags = Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);

  it('says verified for a good body and headers', async () => {
    const result = await runCli(['verify', '--key', key, ...flags], {}, body);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('verified');
  });

  it('fails with the reason for a changed body, and takes the key from the environment', async () => {
    const result = await runCli(['verify', ...flags], { POLLBRIDGE_SIGNATURE_KEY: key }, body.replace('01J', '02J'));
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('pollbridge: NOT verified: no webhook-signature matches the given keys (a wrong key, or a body or webhook headers changed since they were signed)');
  });
});
