import Database from 'better-sqlite3';
import { join } from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import type { InstanceConfig } from '../src/config/types.js';
import { pollStream, type Skew } from '../src/daemon/pollStream.js';
import { createAuthenticator } from '../src/poll/auth.js';
import { createGetText, createHttpClient } from '../src/poll/httpClient.js';
import { ConcurSim, DEFAULT_SIM_CREDENTIALS } from '../src/sim/concurSim.js';
import type { PageCommit, Store } from '../src/store/types.js';
import { instantFromMs } from '../src/time/instant.js';
import { newNotificationId } from '../src/util/ids.js';
import { PgStore } from '../src/store/pg/pgStore.js';
import { ThreadedStore } from '../dist/store/threadedStore.js';
import { captureLogger, FAST_FETCH } from './helpers/harness.js';
import { freshPgDatabase, skipPg } from './helpers/pg.js';
import { SIM_ENV, simConfig } from './helpers/simConfig.js';
import { tempDir, waitFor, writeJson } from './helpers/tmp.js';

/**
 * A store, and a second connection to its database that can hold the lock the store's commits
 * need until they fail: the database busy for a while (a backup, the CLI), then free again.
 */
type Backend = {
  store: Store;
  lock(): Promise<void>;
  unlock(): Promise<void>;
  locked(): boolean;
  recheck(): Promise<number>;
  bodies(): Promise<string[]>;
  close(): Promise<void>;
};

/** SQLite: another connection holds the write lock past the store thread's busy timeout. */
async function sqliteBackend(dir: string): Promise<Backend> {
  const path = join(dir, 'poll.db');
  const store = await ThreadedStore.open(path);
  const locker = new Database(path);
  return {
    store,
    lock: async () => { locker.exec('BEGIN IMMEDIATE'); },
    unlock: async () => { locker.exec('COMMIT'); },
    locked: () => locker.inTransaction,
    recheck: async () => (locker.prepare('SELECT recheck_us AS recheck FROM streams').get() as { recheck: number }).recheck,
    bodies: async () => locker.prepare('SELECT body FROM notifications').pluck().all() as string[],
    close: async () => { locker.close(); await store.close(); },
  };
}

/** PostgreSQL: another connection holds the seen table past the database's lock timeout. */
async function pgBackend(): Promise<Backend> {
  const url = await freshPgDatabase('chain');
  const locker = new pg.Client({ connectionString: url });
  await locker.connect();
  await locker.query(`DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET lock_timeout = ''1s''', current_database()); END $$`);
  await locker.query('SET lock_timeout = 0');
  const store = await PgStore.open(url);
  let locked = false;
  return {
    store,
    lock: async () => { locked = true; await locker.query('BEGIN'); await locker.query('LOCK TABLE seen IN EXCLUSIVE MODE'); },
    unlock: async () => { await locker.query('COMMIT'); locked = false; },
    locked: () => locked,
    recheck: async () => ((await locker.query<{ recheck: number }>('SELECT recheck_us AS recheck FROM streams')).rows[0]!.recheck),
    bodies: async () => (await locker.query<{ body: string }>('SELECT body FROM notifications')).rows.map((r) => r.body),
    close: async () => { await locker.end(); await store.close(); },
  };
}

/**
 * The first poll must end while the late change is still within the overlap of its end, or the
 * recheck never reads it (by design): room enough for a poll of a dozen commits on either store.
 */
const OVERLAP_SEC = 6;

type MakeBackend = (dir: string) => Promise<Backend>;
const backends: [string, MakeBackend][] = [['ThreadedStore', sqliteBackend], ...(skipPg ? [] : [['PgStore', pgBackend] as [string, MakeBackend]])];

/**
 * Review: a part's progress rides in its own commit, and up to four commits are in flight. When
 * one fails (the database busy past its timeout: another process holds the write lock) and the
 * ones after it succeed, their progress moves the stream past the part whose records were lost.
 */
describe.each(backends)('%s: a failed commit followed by ones that succeed', (_name, makeBackend) => {
  it('a change that became visible late, in a recheck part whose commit failed, is still announced', async () => {
    const dir = tempDir();
    const sim = new ConcurSim();
    const simUrl = await sim.start();
    const config = loadConfig(writeJson(dir, 'c.json', simConfig(simUrl, 'http://127.0.0.1:2/hook', 'k')), { env: SIM_ENV });
    const backend = await makeBackend(dir);
    const store = backend.store;
    try {
      const instance: InstanceConfig = { ...config.instances[0]!, overlapSec: OVERLAP_SEC };
      const resource = instance.resources[0]!;
      const t0 = sim.now();
      // 24 recent changes, 150 ms apart: the recheck reads them in a dozen parts.
      for (let i = 0; i < 24; i++) sim.createReport({}, { modifiedMs: t0 - 3500 + i * 150 });
      const stream = await store.openStream(instance.name, resource.name, instantFromMs(t0 - 60_000));

      let lockFor: string | undefined;
      let lockTaken = false;
      let locking = Promise.resolve();
      let pendingMine = 0;
      const failed: string[] = [];
      // The real store; this only holds the lock from another connection from the first commit
      // that holds `lockFor` until every commit holding it has failed.
      const observed = new Proxy(store, {
        get(target, key) {
          if (key !== 'commitPage') return Reflect.get(target, key);
          return (id: number, page: PageCommit) => {
            const mine = lockFor !== undefined && page.changes.some((c) => c.objectId === lockFor);
            if (mine && !lockTaken) {
              lockTaken = true;
              locking = backend.lock();
            }
            // Every commit behind the lock's taking, in the order made: none overtakes another.
            const result = locking.then(() => target.commitPage(id, page));
            if (mine) {
              pendingMine++;
              result.then(
                () => { pendingMine--; },
                (err: Error) => {
                  failed.push(err.message);
                  if (--pendingMine === 0 && backend.locked()) void backend.unlock();
                },
              );
            }
            return result;
          };
        },
      }) as Store;

      const { log } = captureLogger();
      const http = createHttpClient({ timeoutMs: 5000 });
      const auth = createAuthenticator(
        { type: 'oauth2_refresh_token', tokenUrl: `${simUrl}/oauth2/v0/token`, ...DEFAULT_SIM_CREDENTIALS },
        { http, store, instance: instance.name, log, policy: FAST_FETCH, onSecret: () => {} },
      );
      const deps = {
        store: observed, getText: createGetText({ timeoutMs: 5000 }), auth, log, fetchPolicy: FAST_FETCH, newId: newNotificationId,
        onQueued: () => {}, maxPages: 1000, maxResweeps: 3, skew: { ms: undefined } as Skew,
      };
      await pollStream(instance, resource, stream, deps);

      // Visible only now, stamped among the others, older than any fresh window reaches.
      const late = sim.createReport({}, { modifiedMs: t0 - 3200 + 1 });
      lockFor = late.ID;
      // Every stamp older than the overlap: the next poll's recheck reads them all.
      await waitFor('the recheck to come due', () => sim.now() > t0 + OVERLAP_SEC * 1000 + 1500, 10_000);
      const pollError = await pollStream(instance, resource, stream, deps).then(() => 'none', (err: Error) => err.message);
      // A poll ends at its first failed commit; those still in flight settle after it.
      await waitFor('the commits of the late change to end', () => lockTaken && pendingMine === 0 && !backend.locked(), 10_000);
      const after = { recheck: await backend.recheck() };
      expect(failed.length, 'the commit of the late change failed').toBeGreaterThan(0);
      expect(backend.locked()).toBe(false);
      for (let i = 0; i < 2; i++) await pollStream(instance, resource, stream, deps);

      const bodies = await backend.bodies();
      const announced = bodies.flatMap((b) => (JSON.parse(b) as { message: { events: { objectId: string }[] } }).message.events.map((e) => e.objectId));
      const detail = `poll error "${pollError}"; after it the recheck stood at ${new Date(after.recheck / 1000).toISOString()}, the late change is stamped ${late.LastModifiedDate}`;
      expect(announced, detail).toContain(late.ID);
    } finally {
      await backend.close();
      await sim.stop();
    }
  }, 60_000);
});
