import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { CLI, runCli } from './helpers/cli.js';
import { harness } from './helpers/harness.js';
import { withResource } from './helpers/simConfig.js';
import { tempDir } from './helpers/tmp.js';

/** A database holding `count` pending notifications, made by a real run against the simulator. */
async function databaseWithPending(count: number): Promise<string> {
  // The receiver refuses the first round; a run --once then leaves the rest pending.
  const h = await harness({ 'pollbridge.delivery.maxEventsPerNotification': 1 }, {}, (c) => withResource(c, { pageSize: 100 }), () => 503);
  const base = Date.now() - 30_000;
  for (let i = 0; i < count; i++) h.sim.createReport({}, { modifiedMs: base + i });
  const run = h.daemon({ since: (Date.now() - 60_000) * 1000 });
  expect(await run.daemon.runOnce()).toMatchObject({ failedPolls: 0, pending: count });
  return run.config.database;
}

/** Runs a shell pipeline to completion, bounded in time. */
function shell(script: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn('bash', ['-c', script], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  return new Promise((resolve) => child.once('close', (code) => {
    clearTimeout(timer);
    resolve({ code, stdout, stderr });
  }));
}

describe('exit codes (README, Command line)', () => {
  it('`events list | head -1` ends quietly: exit 0, nothing on stderr, when head closes the pipe early', async () => {
    const db = await databaseWithPending(1000);
    const full = await runCli(['events', 'list', '--db', db, '--limit', '1000']);
    expect(full.code).toBe(0);
    // More than a pipe's buffer (64 KiB) and head's one read (8 KiB) together: the CLI is still
    // writing when head exits and the pipe closes.
    expect(full.stdout.length).toBeGreaterThan(65_536 + 8_192);
    // pipefail: the pipeline's status is the CLI's when it fails.
    const piped = await shell('set -o pipefail; "$NODE" "$CLI" events list --db "$DB" --limit 1000 | head -1', { NODE: process.execPath, CLI, DB: db });
    expect(piped.stderr).toBe('');
    expect(piped.code).toBe(0);
    expect(piped.stdout).toMatch(/^ID +INSTANCE +RESOURCE +STATUS +EVENTS +ATTEMPTS +CREATED +LAST *\n$/);
  });

  it('an unexpected error is a bug: exit 70 with its stack on stderr', async () => {
    const db = await databaseWithPending(1);
    // A state no code path makes or handles: a column of the outbox gone.
    const damage = new Database(db);
    damage.exec('ALTER TABLE notifications DROP COLUMN last_status');
    damage.close();
    const result = await runCli(['events', 'list', '--db', db]);
    expect(result.code).toBe(70);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^pollbridge: unexpected error: SqliteError: no such column: \S*last_status\n {4}at /);
  });

  it('a file that is not a database is the operator\'s to fix: exit 1 with one line, no stack', async () => {
    const file = join(tempDir(), 'notes.db');
    writeFileSync(file, 'not a database, only some notes\n'.repeat(200));
    for (const args of [['status', '--db', file], ['events', 'list', '--db', file]]) {
      const result = await runCli(args);
      expect(result.code).toBe(1);
      expect(result.stderr).toBe(`pollbridge: cannot open the database ${file}: file is not a database`);
    }
  });

  it('expected failures are not bugs: a bad option is exit 1 with one line, no stack', async () => {
    const result = await runCli(['events', 'list', '--db', '/nonexistent/p.db', '--limit', '0']);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('pollbridge: --limit must be a whole number of at least 1, got "0"');
  });
});
