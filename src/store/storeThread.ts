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

/**
 * The short writes of the callout connector (a receipt group per answer round, an event per
 * fetched object), of the deliverer (its attempts) and of a poll's end: synchronous work, a
 * transaction each, and no state kept beside the database. At a few hundred callouts a second,
 * or the 67 polls a second of 4,000 streams a minute, a commit (an fsync) each kept this thread
 * waiting on the disk for most of its time, and the writes behind them waiting for it. Those that
 * arrive together share one commit.
 */
const SHARED_COMMIT: ReadonlySet<StoreRequest['method']> = new Set(['recordCallouts', 'completeCallout', 'recordAttempts', 'completePoll']);

let store: SqliteStore;
try {
  store = new SqliteStore((workerData as { path: string }).path);
  port.postMessage({ id: 0, result: 'open' } satisfies StoreReply);
} catch (err) {
  port.postMessage({ id: 0, error: errorData(err) } satisfies StoreReply);
  port.close();
}

const invoke = (request: StoreRequest): Promise<unknown> => {
  const method = store[request.method] as (...args: unknown[]) => Promise<unknown>;
  return method.apply(store, fromWire(request.method, request.args));
};

const answer = (request: StoreRequest, result: Promise<unknown>): Promise<void> => result.then(
  (value) => port.postMessage({ id: request.id, result: value } satisfies StoreReply),
  (err: unknown) => port.postMessage({ id: request.id, error: errorData(err) } satisfies StoreReply),
);

/** Shared-commit calls received and not yet run: they run before any other call, so the order holds. */
let waiting: StoreRequest[] = [];

function runWaiting(): void {
  const calls = waiting;
  waiting = [];
  if (calls.length <= 1) {
    for (const call of calls) void answer(call, invoke(call));
    return;
  }
  const results: Promise<unknown>[] = [];
  try {
    store.inOneCommit(() => {
      for (const call of calls) results.push(invoke(call));
    });
  } catch (err) {
    // The commit failed: what each call returned was undone with it.
    for (const result of results) result.catch(() => {});
    for (const call of calls) port.postMessage({ id: call.id, error: errorData(err) } satisfies StoreReply);
    return;
  }
  calls.forEach((call, i) => void answer(call, results[i]!));
}

port.on('message', (request: StoreRequest) => {
  if (SHARED_COMMIT.has(request.method)) {
    // The messages already queued are delivered before the immediate: they join this commit.
    if (waiting.length === 0) setImmediate(runWaiting);
    waiting.push(request);
    return;
  }
  runWaiting();
  void answer(request, invoke(request)).finally(() => {
    if (request.method === 'close') port.close();
  });
});
