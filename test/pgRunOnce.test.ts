import pg from 'pg';
import { afterEach, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';
import { describePg, freshPgDatabase } from './helpers/pg.js';
import { startSimAndReceiver } from './helpers/receiver.js';
import { SIM_ENV, simConfig } from './helpers/simConfig.js';
import { tempDir, writeJson } from './helpers/tmp.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describePg('run --once on PostgreSQL', () => {
  // The bench found it: a look at the outbox that started nothing (every row it read had its
  // request end during the read) was taken for an empty outbox, and the run ended with most of
  // its notifications pending. Reads on PostgreSQL take long enough for that to be common.
  it('delivers the whole backlog before it exits, not what happened to be sent when a look started nothing', async () => {
    const url = await freshPgDatabase('once');
    const { key, sim, simUrl, receiver } = await startSimAndReceiver(cleanups);
    for (let i = 0; i < 150; i++) sim.createReport({}, { modifiedMs: Date.now() - 600_000 + i });
    const config = writeJson(tempDir(), 'poller.config.json', {
      ...simConfig(simUrl, receiver.url, key, { 'pollbridge.delivery.maxEventsPerNotification': 1, 'pollbridge.delivery.concurrency': 2 }),
      database: url,
    });
    const r = await runCli(['run', '--once', '-c', config, '--since', new Date(Date.now() - 3_600_000).toISOString()], SIM_ENV);
    expect(r.code).toBe(0);
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    cleanups.push(() => db.end());
    const { rows } = await db.query<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM notifications GROUP BY status');
    expect(rows).toEqual([{ status: 'delivered', n: 150 }]);
    expect(new Set(receiver.accepted.map((a) => a.id)).size).toBe(150);
  });
});
