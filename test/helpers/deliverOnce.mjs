// Delivers the outbox of one database once (`run --once` style) with the built deliverer, the way
// the daemon does, in a process of its own: a test runs it under a small heap limit.
// Usage: node deliverOnce.mjs DB_PATH CALLBACK_URL KEY
import { Deliverer } from '../../dist/deliver/deliverer.js';
import { createLogger } from '../../dist/log.js';
import { createHttpClient } from '../../dist/poll/httpClient.js';
import { ThreadedStore } from '../../dist/store/threadedStore.js';

const [path, url, key] = process.argv.slice(2);
const store = await ThreadedStore.open(path);
const target = { url, keys: { current: key, previous: [] }, timeoutMs: 60_000, concurrency: 1, ordered: false, policy: { scheduleSec: [3600], maxRetryAfterSec: 5, jitter: 0 } };
const deliverer = new Deliverer({ store, http: createHttpClient({ timeoutMs: 60_000 }), log: createLogger({ level: 'warn' }), targets: () => new Map([['Docs', target]]) });
await deliverer.start({ untilIdle: true });
await store.close();
