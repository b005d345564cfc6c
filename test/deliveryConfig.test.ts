import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../src/store/sqliteStore.js';
import { runCli } from './helpers/cli.js';
import { instance } from './helpers/configs.js';
import { harness } from './helpers/harness.js';
import { enqueue, openOutboxStore } from './helpers/outbox.js';
import { tempDir, waitFor, writeJson } from './helpers/tmp.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const since = () => (Date.now() - 60_000) * 1000;
const ONE_EVENT_EACH = { 'pollbridge.delivery.maxEventsPerNotification': '1' };

describe('delivery settings in the config file reach the deliverer (through the daemon)', () => {
  it('pollbridge.delivery.timeoutMs: a hung receiver times out after it, not after the default 15 s', async () => {
    const h = await harness({ ...ONE_EVENT_EACH, 'pollbridge.delivery.timeoutMs': '300' }, {}, undefined, () => 'hang');
    h.sim.createReport();
    const { daemon } = h.daemon({ since: since() });
    await daemon.start();
    const store = new SqliteStore(join(h.dir, 'state', 'pollbridge.db'), { readonly: true });
    cleanups.push(() => store.close());
    // Bounded well under the default timeout: only the configured one ends the attempt in time.
    const [n] = await waitFor('a timed-out attempt', async () => {
      const rows = await store.listNotifications({ limit: 1 });
      return rows[0]?.attempts ? rows : undefined;
    }, 10_000);
    expect(n!.lastError).toMatch(/timed out/);
  });

  it('pollbridge.delivery.concurrency: at most that many requests in flight', async () => {
    const h = await harness({ ...ONE_EVENT_EACH, 'pollbridge.delivery.concurrency': '2' }, {}, undefined, async () => {
      await sleep(100);
      return 200;
    });
    for (let i = 0; i < 6; i++) h.sim.createReport();
    const { daemon } = h.daemon({ since: since() });
    await daemon.start();
    await waitFor('six delivered', () => h.receiver.accepted.length === 6);
    expect(h.receiver.maxInFlight).toBe(2);
    expect(new Set(h.receiver.accepted.map((r) => r.id)).size).toBe(6);
  });

  it('pollbridge.delivery.ordered: the others wait behind a failing notification, and arrive in order', async () => {
    const h = await harness({ ...ONE_EVENT_EACH, 'pollbridge.delivery.ordered': 'true', 'pollbridge.delivery.retrySchedule': [0.1, 0.1, 0.1] }, {}, undefined, (n) => (n <= 2 ? 500 : 200));
    const reports = Array.from({ length: 5 }, () => h.sim.createReport());
    const { daemon } = h.daemon({ since: since() });
    await daemon.start();
    await waitFor('five delivered', () => h.receiver.accepted.length === 5);
    const [head] = h.receiver.seenIds;
    expect(h.receiver.seenIds.slice(0, 3)).toEqual([head, head, head]);
    expect(h.events().map((e) => e.objectId)).toEqual(reports.map((r) => r.ID));
  });
});

describe('an instance that left the config', () => {
  it('keeps its pending notifications, and status says they wait for an instance no longer configured', async () => {
    const dir = tempDir();
    const store = await openOutboxStore(dir);
    await enqueue(store, 'Docs', 1);
    await enqueue(store, 'Gone', 2);
    await store.close();
    const config = writeJson(dir, 'poller.config.json', { database: 'p.db', instances: [instance()] });

    const table = await runCli(['status', '-c', config]);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain('notifications: 3 pending, 0 delivered, 0 dead');
    expect(table.stdout).toContain('Gone: 2 pending, waiting for an instance no longer configured (kept; sent if it is configured again)');
    expect(table.stdout).not.toContain('Docs: 1 pending, waiting');

    const json = await runCli(['status', '-c', config, '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ unconfigured: [{ instance: 'Gone', pending: 2 }], notifications: { pending: 3 } });
  });
});
