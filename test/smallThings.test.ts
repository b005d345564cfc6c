import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../src/cli/program.js';
import { refuseTerminalStdin, verificationHint } from '../src/cli/verifyCommand.js';
import { startHttpServer } from '../src/daemon/httpServer.js';
import { Metrics } from '../src/daemon/metrics.js';
import { signatureHeaders } from '../src/deliver/sign.js';
import { acquireDaemonLock, isDaemonLockHeld } from '../src/store/lock.js';
import { CLI, runCli, startCli } from './helpers/cli.js';
import { harness } from './helpers/harness.js';
import { SIM_ENV } from './helpers/simConfig.js';
import { tempDir, waitFor } from './helpers/tmp.js';

const nowSec = () => Math.floor(Date.now() / 1000);
const asFlags = (headers: Record<string, string>) => Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);

describe('HEAD on /healthz and /metrics', () => {
  it('answers as GET does, without a body; other methods still get 405', async () => {
    const server = await startHttpServer({ host: '127.0.0.1', port: 0 }, async () => ({ ok: true, reasons: [] }), new Metrics(() => [], async () => ({ pending: 0, dead: 0 })));
    try {
      for (const path of ['/healthz', '/metrics']) {
        const get = await fetch(`${server.url}${path}`);
        const head = await fetch(`${server.url}${path}`, { method: 'HEAD' });
        expect(head.status, path).toBe(get.status);
        expect(head.headers.get('content-type'), path).toBe(get.headers.get('content-type'));
        expect(await head.text(), path).toBe('');
        expect((await get.text()).length, path).toBeGreaterThan(0);
      }
      const post = await fetch(`${server.url}/healthz`, { method: 'POST' });
      expect(post.status).toBe(405);
      expect(post.headers.get('allow')).toBe('GET, HEAD');
    } finally {
      await server.close();
    }
  });
});

describe('sim --port', () => {
  it('names a port in use in one line and exits 1, not with a stack trace and the bug code', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      const result = await runCli(['sim', '--port', String(port)]);
      expect(result.code).toBe(1);
      expect(result.stderr).toBe(`pollbridge: cannot listen on 127.0.0.1:${port}: the port is in use (choose another with --port, or --port 0 for any free one)`);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  it('says in its banner that the refresh token rotates', async () => {
    const sim = startCli(['sim', '--port', '0', '--rate', '0']);
    try {
      const line = await waitFor('the banner', () => sim.stdout.find((l) => l.includes('refresh token')  && l.includes('rotates')));
      expect(line).toMatch(/the refresh token rotates: each refresh answers a new one and the old one stops working/);
    } finally {
      sim.child.kill('SIGTERM');
      expect(await sim.exited).toEqual({ code: 0, signal: null });
    }
  });
});

describe('verify', () => {
  const key = 'whsec_' + randomBytes(24).toString('base64');
  const body = '{"message":{"eventId":"01J","events":[]}}';

  it('with the wrong key says that no signature matches the keys given, instead of blaming the body', async () => {
    const headers = asFlags(signatureHeaders('01J', body, { current: key, previous: [] }, nowSec()));
    const wrong = await runCli(['verify', '--key', 'whsec_not-the-key', ...headers], {}, body);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toBe('pollbridge: NOT verified: no webhook-signature matches the given keys (a wrong key, or a body or webhook headers changed since they were signed)');
    const amplify = await runCli(['verify', '--key', 'whsec_not-the-key', '--amplify-only', ...headers], {}, body);
    expect(amplify.stderr).toBe('pollbridge: NOT verified: Elements-Webhook-Signature matches none of the given keys (a wrong key, or a body changed since it was signed)');
  });

  it('points at --tolerance-sec when a capture is older than the tolerance', async () => {
    const dayOld = asFlags(signatureHeaders('01J', body, { current: key, previous: [] }, nowSec() - 86_400));
    const result = await runCli(['verify', '--key', key, ...dayOld], {}, body);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^pollbridge: NOT verified: webhook-timestamp is more than 300 s from now \(it was signed 864\d\d s ago; to check an old capture, give --tolerance-sec 864\d\d or more\)$/);
    const accepted = await runCli(['verify', '--key', key, '--tolerance-sec', '90000', ...dayOld], {}, body);
    expect(accepted.stdout).toBe('verified');
  });

  it('hints by the timestamp alone: old, ahead of our clock, or within the tolerance', () => {
    expect(verificationHint({ 'webhook-timestamp': '1000' }, 300, 2000)).toBe(' (it was signed 1000 s ago; to check an old capture, give --tolerance-sec 1000 or more)');
    expect(verificationHint({ 'webhook-timestamp': '3000' }, 300, 2000)).toBe(" (its timestamp is 1000 s ahead of this machine's clock; is either clock off?)");
    expect(verificationHint({ 'webhook-timestamp': '1900' }, 300, 2000)).toBe('');
    expect(verificationHint({}, 300, 2000)).toBe('');
  });

  it('refuses a terminal on stdin, where it would wait for a body nobody types', () => {
    expect(() => refuseTerminalStdin(true)).toThrow(/^the body is read from stdin, which is a terminal: pipe the received body in/);
    expect(() => refuseTerminalStdin(false)).not.toThrow();
    expect(() => refuseTerminalStdin(undefined)).not.toThrow();
  });

  it.runIf(existsSync('/usr/bin/script'))('on a real terminal with nothing piped in, ends at once with the hint', async () => {
    const headers = asFlags(signatureHeaders('01J', body, { current: key, previous: [] }, nowSec()));
    const quoted = [process.execPath, CLI, 'verify', '--key', key, ...headers].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    // script(1) gives the command a pseudo-terminal as its stdin; its own stdin stays open, as a user's would.
    const child = spawn('script', ['-qec', quoted, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => { output += c.toString('utf8'); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    clearTimeout(timer);
    expect(output).toContain('pollbridge: the body is read from stdin, which is a terminal: pipe the received body in');
    expect(code).toBe(1);
  });
});

describe('the daemon lock probe', () => {
  it('tells a held lock from a free one without taking it', () => {
    const db = `${tempDir()}/p.db`;
    expect(isDaemonLockHeld(db)).toBe(false);
    const lock = acquireDaemonLock(db);
    try {
      expect(isDaemonLockHeld(db)).toBe(true);
    } finally {
      lock.release();
    }
    expect(isDaemonLockHeld(db)).toBe(false);
    // The probe took nothing: a daemon can still start.
    acquireDaemonLock(db).release();
  });
});

describe('events show and replay', () => {
  it('find ids in any case, and replay says that it queues and whether a daemon is running to send', { timeout: 60_000 }, async () => {
    let receiverUp = false;
    const h = await harness({ 'pollbridge.delivery.retrySchedule': '' }, {}, undefined, () => (receiverUp ? 200 : 500));
    h.sim.createReport();
    const first = h.daemon({ since: (Date.now() - 60_000) * 1000 });
    await first.daemon.runOnce();
    const db = first.config.database;
    const [dead] = JSON.parse((await runCli(['events', 'list', '--db', db, '--status', 'dead', '--json'])).stdout) as { id: string }[];
    const lower = dead!.id.toLowerCase();
    expect(lower).not.toBe(dead!.id);

    const shown = await runCli(['events', 'show', lower, '--db', db]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(`${dead!.id}  ConcurTest/reports  dead`);

    const idle = await runCli(['replay', lower, '--db', db]);
    expect(idle.code).toBe(0);
    expect(idle.stdout).toBe('1 notification(s) queued for delivery again; no daemon is running on this database: they are sent when `pollbridge run` (or `run --once`) starts');

    receiverUp = true;
    const running = startCli(['run', '-c', h.configFile], SIM_ENV);
    try {
      await running.waitForLog('pollbridge started');
      await waitFor('the replayed notification delivered', async () => h.receiver.requests > 1 && JSON.parse((await runCli(['status', '--db', db, '--json'])).stdout).notifications.delivered === 1);
      const again = await runCli(['replay', dead!.id.toLowerCase(), '--db', db]);
      expect(again.stdout).toBe('1 notification(s) queued for delivery again; the daemon running on this database sends them within seconds');
    } finally {
      running.child.kill('SIGTERM');
      await running.exited;
    }
  });
});

describe('demo | head -2', () => {
  it('removes its temp folder when its output pipe closes early', { timeout: 30_000 }, async () => {
    const demo = startCli(['demo', '--rate', '5', '--seconds', '25']);
    const first = await waitFor('the first line', () => demo.stdout[0]);
    const config = /config (\S+)$/.exec(first)![1]!;
    expect(existsSync(config)).toBe(true);
    // As `head` does after its lines: the reader goes away, and the next write fails with EPIPE.
    demo.child.stdout!.destroy();
    const { code } = await demo.exited;
    expect(code).toBe(0);
    expect(existsSync(dirname(config))).toBe(false);
  });
});

describe('--help', () => {
  /** Every command, with its path: `events list` as well as `run`. */
  const commands = (command: Command, path: string[] = []): [string, Command][] =>
    command.commands.filter((c) => c.name() !== 'help').flatMap((c) => [[[...path, c.name()].join(' '), c] as [string, Command], ...commands(c, [...path, c.name()])]);
  const helpOf = (command: Command): string => {
    let text = '';
    command.configureOutput({ writeOut: (s) => { text += s; } });
    command.outputHelp();
    return text;
  };

  it('describes every command, and shows examples for each one that runs', () => {
    const all = commands(buildProgram());
    expect(all.map(([name]) => name)).toEqual(expect.arrayContaining(['run', 'events list', 'events show', 'replay', 'verify', 'sim', 'demo']));
    for (const [name, command] of all) {
      expect(command.description(), name).not.toBe('');
      // A group (events) only lists its subcommands; each of those has its own examples.
      if (command.commands.length > 0) continue;
      expect(helpOf(command), name).toMatch(new RegExp(`\\nExamples:\\n  pollbridge ${name}[ \\n]`));
    }
  });

  it('lists the commands with descriptions and examples from the built CLI', async () => {
    const result = await runCli(['--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/\n {2}replay \[options\] \[ids\.\.\.\] +queue notifications to be sent again/);
    expect(result.stdout).toContain('\nExamples:\n  pollbridge demo ');
    const events = await runCli(['events', '--help']);
    expect(events.stdout).toMatch(/\n {2}list \[options\] +list notifications, newest first\n/);
  });
});

describe('README', () => {
  const root = new URL('..', import.meta.url);
  const section = (text: string, heading: string): string => {
    const start = text.indexOf(`\n## ${heading}\n`);
    return text.slice(start, text.indexOf('\n## ', start + 1));
  };

  it('keeps the Performance table and links the write-up, which lives in docs/performance.md', () => {
    const performance = section(readFileSync(new URL('README.md', root), 'utf8'), 'Performance');
    expect(performance).toContain('| metric ');
    expect(performance).toContain('](docs/performance.md)');
    // The table and a paragraph: the write-up itself is not here any more.
    expect(performance.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('|')).length).toBeLessThanOrEqual(10);
    expect(readFileSync(new URL('docs/performance.md', root), 'utf8')).toContain('Steady change under a slow, faulty API');
  });

  it('says that replay queues, not sends', () => {
    const text = readFileSync(new URL('README.md', root), 'utf8');
    expect(text).not.toMatch(/replay[^.|]*\bsends\b/);
    expect(text).toMatch(/`pollbridge replay` queues them again/);
  });
});
