/**
 * One PostgreSQL server for the whole test run (vitest's global setup): each test that needs one
 * makes its own database on it (test/helpers/pg.ts). When no server can start, the reason is
 * passed on, and every PostgreSQL test fails with it (or skips, where POLLBRIDGE_SKIP_PG says so
 * outside CI): the SQLite tests run either way.
 */
import type { TestProject } from 'vitest/node';
import { startPgServer, type PgServer } from '../../src/sim/pgServer.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
    pgError: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let server: PgServer | undefined;
  try {
    server = await startPgServer();
    project.provide('pgAdminUrl', server.url());
    project.provide('pgError', '');
  } catch (err) {
    project.provide('pgAdminUrl', '');
    project.provide('pgError', (err as Error).message);
  }
  return async () => { await server?.stop(); };
}
