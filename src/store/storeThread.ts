/**
 * The thread that owns the database for a ThreadedStore: it opens a SqliteStore and runs the
 * calls it is sent, one at a time, in the order they were sent.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { fromWire } from './pageWire.js';
import { SqliteStore } from './sqliteStore.js';
import type { StoreReply, StoreRequest } from './threadedStore.js';

const port = parentPort!;
const errorData = (err: unknown) => {
  const e = err as { name?: string; message?: string; code?: unknown };
  return { name: e.name ?? 'Error', message: e.message ?? String(err), code: typeof e.code === 'string' ? e.code : undefined };
};

let store: SqliteStore;
try {
  store = new SqliteStore((workerData as { path: string }).path);
  port.postMessage({ id: 0, result: 'open' } satisfies StoreReply);
} catch (err) {
  port.postMessage({ id: 0, error: errorData(err) } satisfies StoreReply);
  port.close();
}

port.on('message', (request: StoreRequest) => {
  const method = store[request.method] as (...args: unknown[]) => Promise<unknown>;
  method.apply(store, fromWire(request.method, request.args)).then(
    (result) => port.postMessage({ id: request.id, result } satisfies StoreReply),
    (err: unknown) => port.postMessage({ id: request.id, error: errorData(err) } satisfies StoreReply),
  ).finally(() => {
    if (request.method === 'close') port.close();
  });
});
