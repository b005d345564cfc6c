import { join } from 'node:path';
import { ulid } from 'ulid';
import { ThreadedStore } from '../../dist/store/threadedStore.js';
import { pageCommit } from '../../src/deliver/notification.js';
import type { Store } from '../../src/store/types.js';
import { tempDir } from './tmp.js';

/**
 * The store the daemon uses: SQLite on a thread of its own (built code, as in production). Its
 * answers arrive a turn of the event loop later, so a deliverer that acts on a stale read shows
 * it here; the inline SqliteStore answers before anything else can happen.
 */
export async function openOutboxStore(dir = tempDir()): Promise<Store & { path: string }> {
  return ThreadedStore.open(join(dir, 'p.db'));
}

/**
 * Queues `count` notifications of one event each for `instance` (its stream `reports`), as a poll
 * would, and returns their ids in queue order. Each body names its record `${instance}-${n}`.
 */
export async function enqueue(store: Store, instance: string, count: number, from = 0): Promise<string[]> {
  const stream = await store.openStream(instance, 'reports', 0);
  const changes = Array.from({ length: count }, (_, i) => ({
    objectId: `${instance}-${from + i}`, updated: 1000 + from + i, eventType: 'UPDATED' as const, record: { ID: `${instance}-${from + i}` },
  }));
  const result = await store.commitPage(stream.id, pageCommit(changes, [], {
    instanceName: instance, elementKey: 'concur', objectType: 'reports', maxEvents: 1, newId: ulid,
  }));
  return result.notificationIds;
}
