import pg from 'pg';

// BIGINT (int8) holds ms and µs since the epoch: well inside 2^53, so read as numbers, not strings.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

export type PgPoolOptions = {
  /** Connections at most; the daemon's polls, deliveries and leases share them. */
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

/** Runs `fn` in one transaction on one connection of `pool`: committed when it returns, rolled back when it throws. */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  return withClient(pool, async (client, lost) => {
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      try {
        await client.query('ROLLBACK');
      } catch (rollbackErr) {
        broken = rollbackErr as Error;
      }
      throw err;
    } finally {
      // A connection that could not even roll back is not given back to the pool.
      if (broken) lost(broken);
    }
  });
}

/**
 * Runs `fn` on a connection of `pool`, given back after. A pool hears a connection's 'error' only
 * while it is idle: one lost while checked out (the server restarted between two statements)
 * would be an unhandled 'error' event, which ends the process. Here it is heard, and the
 * connection is not given back; the statement that meets it fails on its own. `lost` marks the
 * connection unusable from `fn`.
 */
export async function withClient<T>(pool: pg.Pool, fn: (client: pg.PoolClient, lost: (err: Error) => void) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const onError = (err: Error): void => { broken ??= err; };
  client.on('error', onError);
  try {
    return await fn(client, onError);
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}
