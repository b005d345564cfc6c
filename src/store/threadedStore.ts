import { Worker } from 'node:worker_threads';
import { StoreOpenError } from './files.js';
import { MigrationError } from './migrate.js';
import { toWire } from './pageWire.js';
import type { Store } from './types.js';

/** A store call that failed on the database thread; `code` is SQLite's (SQLITE_FULL, …) when it has one. */
export class StoreError extends Error {
  constructor(message: string, readonly code?: string) {
    super(message);
    this.name = 'StoreError';
  }
}

type Method = Exclude<keyof Store, 'close' | 'died' | 'cluster'>;
export type StoreRequest = { id: number; method: Method | 'close'; args: unknown[] };
export type StoreReply = { id: number; result?: unknown; error?: { name: string; message: string; code: string | undefined } };

const METHODS = [
  'openStream', 'openStreams', 'commitPage', 'completePoll', 'failPoll', 'pruneSeen', 'dueNotifications', 'nextDueAt', 'recordAttempts',
  'dueHeads', 'instancesWithPending', 'checkWritable', 'expediteRetries', 'loadAuthState', 'saveAuthState', 'streams',
  'notificationCounts', 'listNotifications', 'getNotification', 'replay', 'replayDead',
  'recordCallouts', 'calloutsToIngest', 'completeCallout', 'calloutsToDelete', 'markCalloutDeleted', 'calloutCounts', 'pruneCallouts', 'instancesWithWaitingCallouts',
] as const satisfies readonly Method[];
// Compile-time check that every method of Store is forwarded.
const allForwarded: Exclude<Method, (typeof METHODS)[number]> extends never ? true : never = true;
void allForwarded;

export interface ThreadedStore extends Store {}

/**
 * The SQLite store on a thread of its own. A commit waits for its fsync; on the main thread that
 * wait would stop everything else (reading the next page, delivering, answering /healthz). Here
 * the main thread only posts calls and gets answers, so a page is fetched and parsed while the
 * one before it is committed. Calls run one at a time in the order they are made, as they would
 * on one connection.
 */
export class ThreadedStore {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(value: unknown): void; reject(err: Error): void }>();
  private stopped: Error | undefined;
  private closing = false;
  private onDeath: ((err: Error) => void) | undefined;
  readonly died = new Promise<Error>((resolve) => { this.onDeath = resolve; });

  private constructor(private readonly worker: Worker, readonly path: string) {
    worker.on('message', (reply: StoreReply) => {
      const call = this.pending.get(reply.id);
      if (!call) return;
      this.pending.delete(reply.id);
      if (reply.error) call.reject(new StoreError(reply.error.message, reply.error.code));
      else call.resolve(reply.result);
    });
    worker.on('error', (err) => this.fail(new StoreError(`the database thread failed: ${err.message}`)));
    worker.on('exit', (code) => this.fail(new StoreError(`the database thread stopped (exit code ${code})`)));
    for (const method of METHODS) {
      (this as Record<string, unknown>)[method] = (...args: unknown[]) => this.call(method, toWire(method, args));
    }
  }

  /** Opens (and migrates) the database on a new thread; refuses as `new SqliteStore` would. */
  static open(path: string): Promise<ThreadedStore> {
    // The thread's code is beside this module once built.
    const worker = new Worker(new URL('./storeThread.js', import.meta.url), { workerData: { path } });
    return new Promise((resolve, reject) => {
      const failed = (err: Error): void => {
        void worker.terminate();
        reject(err);
      };
      worker.once('error', failed);
      worker.once('message', (reply: StoreReply) => {
        worker.off('error', failed);
        if (!reply.error) {
          resolve(new ThreadedStore(worker, path));
          return;
        }
        const { name, message } = reply.error;
        failed(name === 'MigrationError' ? new MigrationError(message) : new StoreOpenError(`cannot open the database ${path}: ${message}`));
      });
    });
  }

  private call(method: Method | 'close', args: unknown[]): Promise<unknown> {
    if (this.stopped) return Promise.reject(this.stopped);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, method, args } satisfies StoreRequest);
    });
  }

  private fail(err: Error): void {
    if (!this.stopped && !this.closing) this.onDeath?.(err);
    this.stopped ??= err;
    for (const call of this.pending.values()) call.reject(err);
    this.pending.clear();
  }

  /** Waits for the calls already made, closes the database, and ends the thread. */
  async close(): Promise<void> {
    if (this.stopped) return;
    this.closing = true;
    await this.call('close', []);
    this.stopped = new StoreError('the store is closed');
    await this.worker.terminate();
  }
}
