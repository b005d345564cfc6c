import { randomFillSync } from 'node:crypto';
import { monotonicFactory } from 'ulid';

const pool = Buffer.alloc(4096);
let offset = pool.length;

/**
 * ulid's default generator asks the OS for one random byte per character, which costs more than
 * the rest of a page's work together; one 4 KiB fill serves 256 ids.
 */
function pooledRandom(): number {
  if (offset >= pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  return pool[offset++]! / 256;
}

/** Notification ids: ULIDs, increasing even within one millisecond, so they sort by creation. */
export const newNotificationId: () => string = monotonicFactory(pooledRandom);
