/** One token refresh at a time per instance across the replicas of a database. */
import type { AuthState } from '../types.js';
import { notYet, type PgContext } from './context.js';

export async function withTokenLock<T>(ctx: PgContext, instance: string, refresh: (stored: AuthState | undefined) => Promise<T>): Promise<T> { throw notYet('withTokenLock'); }
