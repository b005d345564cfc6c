import pg from 'pg';

// BIGINT (int8) holds ms and µs since the epoch: well inside 2^53, so read as numbers, not strings.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

export type PgPoolOptions = {
  /** Connections at most; the daemon's polls, deliveries and leases share them (token locks have TOKEN_LOCK_CONNECTIONS more of their own). */
  max?: number;
  /** How long a call waits for a connection before it fails (ms). */
  connectTimeoutMs?: number;
  /**
   * How long the server keeps a transaction of ours that waits on us (ms) before ending it. A
   * replica cut off mid-transaction (a partition, a frozen VM) leaves its session open on the
   * server with its row locks held (a page commit locks its stream's lease): without this, the
   * others would wait on them until TCP gives up, hours later, and take over nothing meanwhile.
   */
  idleInTransactionMs?: number;
};

/** Our transactions never wait on anything but the server between statements: seconds idle mean the client is gone. */
export const DEFAULT_IDLE_IN_TRANSACTION_MS = 5000;

/**
 * A pool on `url`. A connection lost while idle (the server restarted, the network dropped) is an
 * 'error' event on the pool: handled here, it costs that connection only, and the next call opens
 * a new one. Unhandled, node would end the process.
 */
export function createPool(url: string, options: PgPoolOptions = {}, onIdleError?: (err: Error) => void): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 20,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
    idleTimeoutMillis: 30_000,
    // A statement stuck behind a lock, or a server gone silent, fails the call rather than holding it for ever.
    query_timeout: 60_000,
    keepAlive: true,
    idle_in_transaction_session_timeout: options.idleInTransactionMs ?? DEFAULT_IDLE_IN_TRANSACTION_MS,
    application_name: 'pollbridge',
  });
  pool.on('error', (err) => onIdleError?.(err));
  return pool;
}

/** A checked-out connection's state: `lost`, the error it died of, if it did; `fail` marks it unusable. */
export type ConnectionState = { readonly lost: Error | undefined; fail(err: Error): void };

/** Runs `fn` in one transaction on one connection of `pool`: committed when it returns, rolled back when it throws. */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient, state: ConnectionState) => Promise<T>): Promise<T> {
  return withClient(pool, async (client, state) => {
    try {
      await client.query('BEGIN');
      const result = await fn(client, state);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      // A connection that could not even roll back is not given back to the pool.
      await client.query('ROLLBACK').catch((rollbackErr: unknown) => state.fail(rollbackErr as Error));
      throw err;
    }
  });
}

/**
 * Runs `fn` on a connection of `pool`, given back after. A pool hears a connection's 'error' only
 * while it is idle: one lost while checked out (the server restarted between two statements)
 * would be an unhandled 'error' event, which ends the process. Here it is heard, and the
 * connection is not given back; the statement that meets it fails on its own.
 */
export async function withClient<T>(pool: pg.Pool, fn: (client: pg.PoolClient, state: ConnectionState) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let lost: Error | undefined;
  const state: ConnectionState = { get lost() { return lost; }, fail: (err) => { lost ??= err; } };
  client.on('error', state.fail);
  try {
    return await fn(client, state);
  } finally {
    client.off('error', state.fail);
    client.release(lost);
  }
}
