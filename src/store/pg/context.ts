import type pg from 'pg';

/** What every part of the PostgreSQL store shares: the pool, and who this replica is. */
export type PgContext = {
  pool: pg.Pool;
  /**
   * The token locks' connections, apart from `pool`: a lock is held on one while its refresh runs
   * (seconds, or a wait for another replica's), and the refresh saves its rotated token through
   * `pool` before the lock goes. Sharing one pool, refreshes as many as its connections would hold
   * them all and wait for one to save with (the save failed, the lock went with the new refresh
   * token unsaved), and polls, deliveries and leases would wait behind refreshes.
   */
  lockPool: pg.Pool;
  /** `id` is new every start; `name` is the host's (or --replica), for people. */
  replica: { id: string; name: string };
  /**
   * How long a claim lasts where its caller names none (ms): a callout receipt being turned into
   * an event, a notification outside any DeliveryGroup. Longer than the requests its claimant may
   * make for it, so that no other replica takes it while they may run.
   */
  claimMs: number;
  /** The next commit number each stream's current poll chain accepts (PageCommit.chain), in this process. */
  chains: Map<number, { id: string; next: number }>;
};
