/** One token refresh at a time per instance across the replicas of a database. */
import type { AuthState } from '../types.js';
import type { PgContext } from './context.js';

/**
 * The first half of the token locks' two-part advisory key (the second is the instance's hash):
 * two-part keys never meet the one-part migration lock, whatever an instance hashes to.
 */
const TOKEN_LOCK_CLASS = 0x746f6b6e; // "tokn"

/**
 * How long a replica waits for another's refresh (ms): one refresh with its retries and its save
 * takes less, and a holder paused for longer (a frozen VM) keeps the lock rightly, as it may
 * hold the only working refresh token. Under the pool's query timeout, so that the server ends
 * the wait, not the client (which would leave the statement running there).
 */
const LOCK_WAIT_MS = 45_000;

/**
 * Runs `refresh` holding `instance`'s token lock: a transaction-scoped advisory lock on a
 * connection of its own, let go when that transaction ends. `refresh` gets the auth state stored
 * when the lock was taken, and saves its result through the pool before it returns, so the save
 * is committed before the next holder reads. A connection lost on the way fails the call (the
 * server let the lock go with it); the process goes on.
 */
export async function withTokenLock<T>(ctx: PgContext, instance: string, refresh: (stored: AuthState | undefined) => Promise<T>): Promise<T> {
  const client = await ctx.pool.connect();
  // A checked-out connection has no listener of the pool's: one that dies while `refresh` runs
  // (no query of ours on it) would emit an unhandled 'error' and end the process.
  let lost: Error | undefined;
  const onError = (err: Error): void => {
    lost ??= err;
  };
  client.on('error', onError);
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    await client.query(`SET LOCAL lock_timeout = ${LOCK_WAIT_MS}`);
    await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [TOKEN_LOCK_CLASS, instance]);
    const { rows } = await client.query<{ seed_hash: string; refresh_token: string; geolocation: string | null; access_token: string | null; access_expires_at: number | null }>(
      'SELECT seed_hash, refresh_token, geolocation, access_token, access_expires_at FROM auth_state WHERE instance = $1', [instance],
    );
    const row = rows[0];
    const stored: AuthState | undefined = row && {
      seedHash: row.seed_hash, refreshToken: row.refresh_token, geolocation: row.geolocation ?? undefined,
      accessToken: row.access_token ?? undefined, accessExpiresAt: row.access_expires_at ?? undefined,
    };
    const result = await refresh(stored);
    // The server let the lock go with the connection, perhaps while `refresh` ran: said, not hidden.
    if (lost) throw new Error(`the token lock of ${instance} was lost with its connection: ${lost.message}`, { cause: lost });
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
    client.removeListener('error', onError);
    // A connection that died or could not roll back is not given back to the pool.
    client.release(broken ?? lost);
  }
}
