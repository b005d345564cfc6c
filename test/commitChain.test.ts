import Database from 'better-sqlite3';
import { join } from 'node:path';
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
import { ThreadedStore } from '../dist/store/threadedStore.js';
import { captureLogger, FAST_FETCH } from './helpers/harness.js';
import { SIM_ENV, simConfig } from './helpers/simConfig.js';
import { tempDir, waitFor, writeJson } from './helpers/tmp.js';

/**
 * Review: a part's progress rides in its own commit, and up to four commits are in flight. When
 * one fails (the database busy past its timeout: another process holds the write lock) and the
 * ones after it succeed, their progress moves the stream past the part whose records were lost.
 */
describe('a failed commit followed by ones that succeed', () => {
  it('a change that became visible late, in a recheck part whose commit failed, is still announced', async () => {
    const dir = tempDir();
    const sim = new ConcurSim();
    const simUrl = await sim.start();
    const config = loadConfig(writeJson(dir, 'c.json', simConfig(simUrl, 'http://127.0.0.1:2/hook', 'k')), { env: SIM_ENV });
    const path = join(dir, 'poll.db');
    const store = await ThreadedStore.open(path);
    const locker = new Database(path);
    try {
      const instance: InstanceConfig = { ...config.instances[0]!, overlapSec: 4 };
      const resource = instance.resources[0]!;
      const t0 = sim.now();
      // 24 recent changes, 150 ms apart: the recheck reads them in a dozen parts.
      for (let i = 0; i < 24; i++) sim.createReport({}, { modifiedMs: t0 - 3500 + i * 150 });
      const stream = await store.openStream(instance.name, resource.name, instantFromMs(t0 - 60_000));

      let lockFor: string | undefined;
      let lockTaken = false;
      let pendingMine = 0;
      const failed: string[] = [];
      // The real store; this only holds SQLite's write lock from another connection from the
      // first commit that holds `lockFor` until every commit holding it has failed: the database
      // busy for a while (a backup, the CLI), then free again.
      const observed = new Proxy(store, {
        get(target, key) {
          if (key !== 'commitPage') return Reflect.get(target, key);
          return (id: number, page: PageCommit) => {
            const mine = lockFor !== undefined && page.changes.some((c) => c.objectId === lockFor);
            if (mine && !lockTaken) {
              lockTaken = true;
              locker.exec('BEGIN IMMEDIATE');
            }
            const result = target.commitPage(id, page);
            if (mine) {
              pendingMine++;
              result.then(
                () => { pendingMine--; },
                (err: Error) => {
                  failed.push(err.message);
                  if (--pendingMine === 0 && locker.inTransaction) locker.exec('COMMIT');
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
      await waitFor('the recheck to come due', () => sim.now() > t0 + 4000 + 1500, 8000);
      const pollError = await pollStream(instance, resource, stream, deps).then(() => 'none', (err: Error) => err.message);
      const after = locker.prepare('SELECT recheck_us AS recheck FROM streams').get() as { recheck: number };
      expect(failed.length, 'the commit of the late change failed').toBeGreaterThan(0);
      expect(locker.inTransaction).toBe(false);
      for (let i = 0; i < 2; i++) await pollStream(instance, resource, stream, deps);

      const bodies = locker.prepare('SELECT body FROM notifications').pluck().all() as string[];
      const announced = bodies.flatMap((b) => (JSON.parse(b) as { message: { events: { objectId: string }[] } }).message.events.map((e) => e.objectId));
      const detail = `poll error "${pollError}"; after it the recheck stood at ${new Date(after.recheck / 1000).toISOString()}, the late change is stamped ${late.LastModifiedDate}`;
      expect(announced, detail).toContain(late.ID);
    } finally {
      locker.close();
      await store.close();
      await sim.stop();
    }
  }, 60_000);
});
