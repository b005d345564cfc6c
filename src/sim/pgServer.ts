/**
 * A throwaway PostgreSQL server for tests and benches: its own data directory in a temporary
 * folder, its own port on 127.0.0.1, stopped and removed afterwards. It runs the server binaries
 * of the machine (Debian's `postgresql` package; `.ci/setup-test-tools` installs it), never a
 * stand-in: what the store is tested against is what it runs against.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export type PgServer = {
  /** A URL for `database` (the server's own `postgres` database when left out). */
  url(database?: string): string;
  /** A new empty database, for one test or one bench run; returns its URL. */
  createDatabase(prefix?: string): Promise<string>;
  readonly port: number;
  stop(): Promise<void>;
};

export class PgUnavailableError extends Error {}

/** `PG_BIN`, else the newest of Debian's /usr/lib/postgresql/<version>/bin, else the PATH. */
export function findPgBin(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.PG_BIN) return existsSync(join(env.PG_BIN, 'postgres')) ? env.PG_BIN : undefined;
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
    for (const v of versions) if (existsSync(join(root, v, 'bin', 'postgres'))) return join(root, v, 'bin');
  }
  const which = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' });
  const path = which.stdout.trim();
  return path ? join(path, '..') : undefined;
}

/** initdb and postgres refuse to run as root: as root, they run as the `postgres` user the package made. */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'));
  if (!line) throw new PgUnavailableError('running as root, and there is no postgres user to run the server as (install Debian\'s postgresql package)');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts a server. `durable` keeps fsync on (benches measure what production pays); tests turn it
 * off, as nothing they check depends on surviving the machine's crash, only the process's.
 */
export async function startPgServer(options: { durable?: boolean; maxConnections?: number } = {}): Promise<PgServer> {
  const bin = findPgBin();
  if (!bin) throw new PgUnavailableError('no PostgreSQL server binaries found (set PG_BIN, or install Debian\'s postgresql package: .ci/setup-test-tools does)');
  const user = runAs();
  const dir = mkdtempSync(join(tmpdir(), 'pollbridge-pg-'));
  const data = join(dir, 'data');
  if (user) chownSync(dir, user.uid, user.gid);
  const init = spawnSync(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync', '--locale=C'], {
    encoding: 'utf8', ...(user ?? {}),
  });
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new PgUnavailableError(`initdb failed (exit ${init.status}): ${(init.stderr || init.stdout || String(init.error)).trim().slice(0, 500)}`);
  }
  let lastError: Error | undefined;
  // The port is free when picked and may be taken before the server binds it: try a few.
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const args = ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1',
      '-c', `max_connections=${options.maxConnections ?? 400}`, '-c', 'shared_buffers=128MB'];
    if (!options.durable) args.push('-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off');
    const child = spawn(join(bin, 'postgres'), args, { stdio: ['ignore', 'ignore', 'pipe'], ...(user ?? {}) });
    let log = '';
    child.stderr!.on('data', (chunk: Buffer) => { log = (log + chunk.toString()).slice(-4000); });
    try {
      await waitReady(child, port, () => log);
      return server(child, port, dir);
    } catch (err) {
      lastError = err as Error;
      child.kill('SIGKILL');
    }
  }
  rmSync(dir, { recursive: true, force: true });
  throw new PgUnavailableError(`the PostgreSQL server did not start: ${lastError?.message}`);
}

async function waitReady(child: ChildProcess, port: number, log: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`postgres exited (${child.exitCode}): ${log().trim().slice(-500)}`);
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
    try {
      await client.connect();
      await client.query('SELECT 1');
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      await client.end().catch(() => {});
    }
  }
  throw new Error(`postgres was not ready in 30 s: ${log().trim().slice(-500)}`);
}

function server(child: ChildProcess, port: number, dir: string): PgServer {
  let counter = 0;
  const url = (database = 'postgres'): string => `postgres://postgres@127.0.0.1:${port}/${database}`;
  return {
    port,
    url,
    async createDatabase(prefix = 'pollbridge') {
      const name = `${prefix}_${process.pid}_${Date.now().toString(36)}_${counter++}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
      const client = new pg.Client({ connectionString: url() });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return url(name);
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        // SIGINT: the "fast" shutdown; connections still open are cut.
        child.kill('SIGINT');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
