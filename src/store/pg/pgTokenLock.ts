/** One token refresh at a time per instance across the replicas of a database. */
import type { AuthState } from '../types.js';
import type { PgContext } from './context.js';
import { pgErrorText, PgStoreError } from './pgErrors.js';
import { inTransaction } from './pool.js';

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
export const LOCK_WAIT_MS = 45_000;

/**
 * Token locks held or awaited at once by one replica (its lockPool's connections): more wait
 * their turn for a connection, as long as for a lock.
 */
export const TOKEN_LOCK_CONNECTIONS = 8;

/**
 * How long a lock holder's transaction may sit idle while its refresh runs (ms): longer than a
 * refresh can take, its 4 attempts of 10 s with their waits, up to 2 min each on a Retry-After.
 * Past it, the server ends the session (a replica cut off mid-refresh) and the lock is free.
 */
export const TOKEN_LOCK_IDLE_MS = 10 * 60_000;

/**
 * Runs `refresh` holding `instance`'s token lock: a transaction-scoped advisory lock on a
 * connection of its own, let go when that transaction ends. `refresh` gets the auth state stored
 * when the lock was taken, and saves its result through the pool before it returns, so the save
 * is committed before the next holder reads. A connection lost on the way fails the call (the
 * server let the lock go with it); the process goes on.
 */
export async function withTokenLock<T>(ctx: PgContext, instance: string, refresh: (stored: AuthState | undefined) => Promise<T>): Promise<T> {
  // The lock's own steps fail as the store's calls do, saying what failed; what `refresh` throws
  // reaches the caller as it is.
  let step: string | undefined = `taking the token lock of ${instance}`;
  try {
    return await inTransaction(ctx.lockPool, async (client, connection) => {
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
      step = undefined;
      const result = await refresh(stored);
      // The server let the lock go with the connection, perhaps while `refresh` ran: said, not hidden.
      const lost = connection.lost;
      if (lost) throw new PgStoreError(`the token lock of ${instance} was lost with its connection: ${pgErrorText(lost)}`, lost);
      step = `letting go of the token lock of ${instance}`;
      return result;
    });
  } catch (err) {
    if (step === undefined || err instanceof PgStoreError) throw err;
    throw new PgStoreError(`${step} failed: ${pgErrorText(err)}`, err);
  }
}
