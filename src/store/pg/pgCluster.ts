/** Replicas on one database: liveness, stream leases with fences, the token lock. */
import type { AuthState, ClusterStore, Lease, LeaseHolder, ReplicaInfo } from '../types.js';
import { notYet, type PgContext } from './context.js';
import { withTokenLock } from './pgTokenLock.js';

export class PgCluster implements ClusterStore {
  readonly replica: { id: string; name: string };

  constructor(private readonly ctx: PgContext) {
    this.replica = ctx.replica;
  }

  async heartbeat(ttlMs: number): Promise<ReplicaInfo[]> { throw notYet('heartbeat'); }
  async syncLeases(round: { keep: readonly number[]; take: readonly number[]; release: readonly number[] }, ttlMs: number): Promise<{ held: Lease[]; dbNow: number }> { throw notYet('syncLeases'); }
  async leaseHolders(): Promise<LeaseHolder[]> { throw notYet('leaseHolders'); }
  withTokenLock<T>(instance: string, refresh: (stored: AuthState | undefined) => Promise<T>): Promise<T> {
    return withTokenLock(this.ctx, instance, refresh);
  }
  async leave(): Promise<void> { throw notYet('leave'); }
}
