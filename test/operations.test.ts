import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { readConfig } from '../src/config/load.js';
import { CLI, runCli, startCli } from './helpers/cli.js';
import { harness } from './helpers/harness.js';
import { SIM_ENV } from './helpers/simConfig.js';
import { tempDir, waitFor } from './helpers/tmp.js';

const UNIT = fileURLToPath(new URL('../deploy/pollbridge.service', import.meta.url));
const REPLICA_DROP_IN = fileURLToPath(new URL('../deploy/replica.conf', import.meta.url));
const DEPLOY_CONFIG = fileURLToPath(new URL('../deploy/poller.config.json', import.meta.url));

/** systemd-analyze if installed (`.ci/setup-test-tools` installs it; tests never install anything). */
function systemdAnalyze(): string | undefined {
  return spawnSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' }).stdout.trim() || undefined;
}

/** Metric lines `name{labels} value` into [name, labels, value]. */
function parseMetrics(text: string): { name: string; labels: string; value: number }[] {
  return text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => {
    const m = /^(\w+)(\{[^}]*\})? (\S+)$/.exec(l);
    if (!m) throw new Error(`unparsable metric line: ${l}`);
    return { name: m[1]!, labels: m[2] ?? '', value: Number(m[3]) };
  });
}

describe('systemd', () => {
  it('the unit passes systemd-analyze verify with no warning', (ctx) => {
    const analyze = systemdAnalyze();
    if (!analyze) {
      // CI must check the unit: a missing tool there is a broken setup, not a reason to skip.
      if (process.env.CI) throw new Error('systemd-analyze is not installed: CI runs .ci/setup-test-tools first (Debian\'s systemd package)');
      ctx.skip('systemd-analyze is not installed: run .ci/setup-test-tools (as root, Debian) to check the unit');
      return;
    }
    const dir = tempDir();
    // verify checks that ExecStart's program exists: point it at an executable of this checkout.
    const unit = join(dir, 'pollbridge.service');
    const bin = join(dir, 'pollbridge');
    writeFileSync(bin, `#!/bin/sh\nexec ${process.execPath} ${CLI} "$@"\n`, { mode: 0o755 });
    const text = readFileSync(UNIT, 'utf8');
    expect(text).toMatch(/^ExecStart=pollbridge run /m);
    writeFileSync(unit, text.replace('ExecStart=pollbridge ', `ExecStart=${bin} `));
    const result = spawnSync(analyze, ['verify', unit], { encoding: 'utf8' });
    expect(result.stderr.split('\n').filter((l) => l.includes('pollbridge.service'))).toEqual([]);
    expect(result.status).toBe(0);
    for (const line of ['Type=exec', 'StateDirectory=pollbridge', 'ConfigurationDirectory=pollbridge', 'Restart=on-failure', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'SystemCallFilter=@system-service @pkey', 'RestartPreventExitStatus=2', 'TimeoutStopSec=20s']) {
      expect(text).toContain(line);
    }
  });

  it('the replica drop-in runs the database of the config, its URL from a credential, and the unit still verifies', (ctx) => {
    const dropIn = readFileSync(REPLICA_DROP_IN, 'utf8');
    expect(dropIn).toMatch(/^ExecStart=\nExecStart=pollbridge run\n/m);
    expect(dropIn).toMatch(/^LoadCredential=database-url:\/etc\/pollbridge\/credentials\/database-url$/m);
    const creds = join(tempDir(), 'creds');
    mkdirSync(creds);
    for (const name of ['concur-client-secret', 'concur-refresh-token', 'signature-key']) writeFileSync(join(creds, name), `${name}-value\n`);
    writeFileSync(join(creds, 'database-url'), 'postgres://pollbridge:db-pass-value@db.internal:5432/pollbridge\n');
    const filled = readFileSync(DEPLOY_CONFIG, 'utf8').replace('YOUR-CONCUR-CLIENT-ID', 'client-id').replace('hooks.example.com', 'hooks.acme.internal');
    const config = JSON.parse(filled) as Record<string, unknown>;
    const file = join(tempDir(), 'poller.config.json');
    writeFileSync(file, JSON.stringify({ ...config, database: '${credential:database-url}' }));
    const loaded = readConfig(file, { env: { CREDENTIALS_DIRECTORY: creds } }).config!;
    expect([loaded.database, loaded.databaseUrl]).toEqual(['postgres://pollbridge@db.internal:5432/pollbridge', 'postgres://pollbridge:db-pass-value@db.internal:5432/pollbridge']);
    const analyze = systemdAnalyze();
    if (!analyze) {
      if (process.env.CI) throw new Error('systemd-analyze is not installed: CI runs .ci/setup-test-tools first (Debian\'s systemd package)');
      ctx.skip('systemd-analyze is not installed: run .ci/setup-test-tools (as root, Debian) to check the unit');
      return;
    }
    const dir = tempDir();
    const bin = join(dir, 'pollbridge');
    writeFileSync(bin, `#!/bin/sh\nexec ${process.execPath} ${CLI} "$@"\n`, { mode: 0o755 });
    // The unit as systemd reads it with the drop-in: the drop-in's lines after the unit's own.
    const unit = join(dir, 'pollbridge.service');
    const merged = `${readFileSync(UNIT, 'utf8')}\n${dropIn}`.replaceAll('ExecStart=pollbridge ', `ExecStart=${bin} `);
    writeFileSync(unit, merged);
    const result = spawnSync(analyze, ['verify', unit], { encoding: 'utf8' });
    expect(result.stderr.split('\n').filter((l) => l.includes('pollbridge.service'))).toEqual([]);
    expect(result.status).toBe(0);
  });

  it('the service config reads its secrets from LoadCredential files', () => {
    const creds = join(tempDir(), 'creds');
    mkdirSync(creds);
    for (const name of ['concur-client-secret', 'concur-refresh-token', 'signature-key']) writeFileSync(join(creds, name), `${name}-value\n`);
    // Its placeholders filled in, as the operator must (validate refuses them: test/validate.test.ts).
    const filled = readFileSync(DEPLOY_CONFIG, 'utf8').replace('YOUR-CONCUR-CLIENT-ID', 'client-id').replace('hooks.example.com', 'hooks.acme.internal');
    const file = join(tempDir(), 'poller.config.json');
    writeFileSync(file, filled);
    const result = readConfig(file, { env: { CREDENTIALS_DIRECTORY: creds } });
    expect(result.issues).toEqual([]);
    expect(result.config!.instances[0]!.signatureKey).toBe('signature-key-value');
    expect(result.config!.database).toBe('/var/lib/pollbridge/pollbridge.db');
  });
});

describe('health and metrics', () => {
  it('/healthz turns 503 with the reason when polling stalls, and 200 again when it recovers', async () => {
    const h = await harness({}, {}, (c) => ({ ...c, http: { listen: '127.0.0.1:0' } }));
    const { daemon } = h.daemon();
    await daemon.start();
    const healthz = async () => {
      const res = await fetch(`${daemon.httpUrl}/healthz`);
      return { status: res.status, body: (await res.json()) as { status: string; reasons: string[]; streams: number; late: number; lateStreams: string[] } };
    };
    await waitFor('a first poll', async () => (await healthz()).status === 200);
    h.sim.faults.tokenError = { status: 400, error: 'invalid_grant' };
    h.sim.revokeAccessTokens();
    const stalled = await waitFor('503', async () => {
      const r = await healthz();
      return r.status === 503 ? r : undefined;
    });
    expect(stalled.body.reasons).toEqual([expect.stringMatching(/^1 of 1 streams late \(3 scheduled polls came and went without one completing\): ConcurTest\/reports \(no completed poll for \d+ s\)$/)]);
    expect(stalled.body).toMatchObject({ streams: 1, late: 1, lateStreams: ['ConcurTest/reports'] });
    h.sim.faults.tokenError = undefined;
    await waitFor('200 again', async () => (await healthz()).status === 200);
  });

  it('/healthz counts every late stream and names the first five, the longest late first', async () => {
    const h = await harness({}, {}, (c) => {
      const instance = c.instances[0]!;
      const reports = instance.configuration['event.poller.configuration'].reports;
      const resources = Object.fromEntries(['r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7'].map((r) => [r, reports]));
      return { ...c, http: { listen: '127.0.0.1:0' }, instances: [{ ...instance, configuration: { ...instance.configuration, 'event.poller.configuration': resources } }] };
    });
    const { daemon } = h.daemon();
    await daemon.start();
    type Health = { status: number; body: { reasons: string[]; streams: number; late: number; lateStreams: string[] } };
    const healthz = async (): Promise<Health> => {
      const res = await fetch(`${daemon.httpUrl}/healthz`);
      return { status: res.status, body: (await res.json()) as Health['body'] };
    };
    await waitFor('healthy', async () => (await healthz()).status === 200);
    h.sim.faults.tokenError = { status: 400, error: 'invalid_grant' };
    h.sim.revokeAccessTokens();
    const stalled = await waitFor('all seven late', async () => {
      const r = await healthz();
      return r.body.late === 7 ? r : undefined;
    });
    expect(stalled.status).toBe(503);
    expect(stalled.body.streams).toBe(7);
    expect(stalled.body.lateStreams).toHaveLength(5);
    expect(new Set(stalled.body.lateStreams).size).toBe(5);
    for (const s of stalled.body.lateStreams) expect(s).toMatch(/^ConcurTest\/r[1-7]$/);
    expect(stalled.body.reasons).toEqual([expect.stringMatching(/^7 of 7 streams late \(3 scheduled polls came and went without one completing\): (ConcurTest\/r[1-7] \(no completed poll for \d+ s\), ){4}ConcurTest\/r[1-7] \(no completed poll for \d+ s\) and 2 more$/)]);
    const named = [...stalled.body.reasons[0]!.matchAll(/(ConcurTest\/r\d) \(no completed poll for (\d+) s\)/g)];
    expect(named.map((m) => m[1])).toEqual(stalled.body.lateStreams);
    const seconds = named.map((m) => Number(m[2]));
    expect(seconds).toEqual([...seconds].sort((a, b) => b - a));
    h.sim.faults.tokenError = undefined;
    await waitFor('200 again', async () => (await healthz()).status === 200);
  });

  it('/healthz says the database cannot be written while another process holds its write lock', { timeout: 60_000 }, async () => {
    const h = await harness({}, {}, (c) => ({ ...c, http: { listen: '127.0.0.1:0' } }));
    const p = startCli(['run', '-c', h.configFile], SIM_ENV);
    try {
      const url = (await p.waitForLog('health and metrics listening')).url as string;
      const healthz = async () => {
        const res = await fetch(`${url}/healthz`);
        return { status: res.status, body: (await res.json()) as { status: string; reasons: string[] } };
      };
      await waitFor('healthy', async () => (await healthz()).status === 200);
      // As a sqlite3 shell left in an open write transaction would.
      const holder = new Database(join(h.dir, 'state/pollbridge.db'));
      holder.prepare('BEGIN IMMEDIATE').run();
      try {
        const locked = await healthz();
        expect(locked.status).toBe(503);
        expect(locked.body.reasons).toContainEqual(expect.stringMatching(/^database cannot be written: database is locked$/));
      } finally {
        holder.prepare('ROLLBACK').run();
        holder.close();
      }
      await waitFor('healthy again', async () => (await healthz()).status === 200);
    } finally {
      p.child.kill('SIGTERM');
      await p.exited;
    }
  });

  it('/metrics is scraped and parsed during a real run of the CLI', { timeout: 60_000 }, async () => {
    // Every stretch of time read before it is 10 s old is read once more after: each change is then
    // seen again, a duplicate. (A stretch first read when already older than the overlap needs no
    // second read: with 1 s, a slow first poll made the duplicates depend on the machine's speed.)
    const h = await harness({ 'pollbridge.poller.overlapSeconds': 10 }, {}, (c) => ({ ...c, http: { listen: '127.0.0.1:0' } }));
    const p = startCli(['run', '-c', h.configFile], SIM_ENV);
    try {
      const url = (await p.waitForLog('health and metrics listening')).url as string;
      // Made once polling runs, so that a poll reads them well within the overlap.
      await p.waitForLog('poll finished');
      h.sim.createReport();
      h.sim.createReport();
      await waitFor('two events', () => h.events().length === 2);
      h.sim.faults.listFailures.push({ status: 429, retryAfter: '1' });
      const metrics = await waitFor('metrics after a 429 and a recheck', async () => {
        const parsed = parseMetrics(await (await fetch(`${url}/metrics`)).text());
        const has = (name: string, min: number) => parsed.some((m) => m.name === name && m.value >= min);
        return has('pollbridge_upstream_429_total', 1) && has('pollbridge_duplicates_suppressed_total', 2) ? parsed : undefined;
      }, 40_000);
      const value = (name: string, labels = '') => metrics.filter((m) => m.name === name && m.labels.includes(labels)).reduce((a, m) => a + m.value, 0);
      expect(value('pollbridge_polls_total', 'result="ok"')).toBeGreaterThanOrEqual(1);
      expect(value('pollbridge_events_emitted_total')).toBe(2);
      expect(value('pollbridge_records_rejected_total')).toBe(0);
      // No record before the start: every record read is either a new change or one already announced.
      expect(value('pollbridge_duplicates_suppressed_total')).toBe(value('pollbridge_records_seen_total') - 2);
      // Two changes made together go in one notification, or two if a poll's window ended between them.
      const notifications = h.receiver.accepted.length;
      expect([1, 2]).toContain(notifications);
      expect(value('pollbridge_delivery_attempts_total', 'class="2xx"')).toBe(notifications);
      expect(value('pollbridge_outbox_notifications', 'status="pending"')).toBe(0);
      expect(value('pollbridge_outbox_notifications', 'status="dead"')).toBe(0);
      expect(value('pollbridge_poll_duration_seconds_count')).toBeGreaterThanOrEqual(1);
      expect(value('pollbridge_delivery_latency_seconds_count')).toBe(notifications);
      expect(metrics.some((m) => m.name === 'pollbridge_cursor_lag_seconds' && m.value >= 0 && m.value < 60)).toBe(true);
      expect(metrics.some((m) => m.name === 'pollbridge_clock_skew_seconds')).toBe(true);
    } finally {
      p.child.kill('SIGTERM');
      expect((await p.exited).code).toBe(0);
    }
  });
});

describe('metrics beyond the happy path', () => {
  /** Sums the samples of `name` whose labels include `labels`, from one scrape. */
  const scrape = async (url: string) => {
    const metrics = parseMetrics(await (await fetch(`${url}/metrics`)).text());
    return (name: string, labels = '') => metrics.filter((m) => m.name === name && m.labels.includes(labels)).reduce((a, m) => a + m.value, 0);
  };

  it('/metrics counts delivery attempts by class (3xx, 4xx, 5xx, network) and the dead letters', async () => {
    const h = await harness(
      { 'pollbridge.delivery.retrySchedule': [1, 1, 600] },
      {},
      (c) => ({ ...c, http: { listen: '127.0.0.1:0' } }),
      // A redirect, a server error, then 410 Gone, which dead-letters at once.
      (n) => (n === 1 ? { status: 302, body: 'moved', headers: { location: '/elsewhere' } } : n === 2 ? 500 : 410),
    );
    h.sim.createReport();
    const { daemon } = h.daemon({ since: Date.now() * 1000 - 60_000_000 });
    await daemon.start();
    const url = daemon.httpUrl!;
    await waitFor('a dead letter', async () => (await scrape(url))('pollbridge_outbox_notifications', 'status="dead"') === 1, 20_000);
    // The next notification finds nobody listening.
    await h.receiver.close();
    h.sim.createReport();
    const value = await waitFor('a network failure', async () => {
      const v = await scrape(url);
      return v('pollbridge_delivery_attempts_total', 'class="network"') >= 1 ? v : undefined;
    }, 20_000);
    expect(value('pollbridge_delivery_attempts_total', 'class="3xx"')).toBe(1);
    expect(value('pollbridge_delivery_attempts_total', 'class="5xx"')).toBe(1);
    expect(value('pollbridge_delivery_attempts_total', 'class="4xx"')).toBe(1);
    expect(value('pollbridge_delivery_attempts_total', 'class="2xx"')).toBe(0);
    expect(value('pollbridge_outbox_notifications', 'status="dead"')).toBe(1);
    expect(value('pollbridge_outbox_notifications', 'status="pending"')).toBe(1);
    expect(value('pollbridge_delivery_latency_seconds_count')).toBe(0);
    // The redirect was not followed: three requests, all to the callback URL.
    expect(h.receiver.requests).toBe(3);
  });

  it('/metrics counts polls that failed and polls left unsettled', async () => {
    const h = await harness({}, {}, (c) => ({ ...c, http: { listen: '127.0.0.1:0' } }));
    const { daemon, logs } = h.daemon();
    await daemon.start();
    const url = daemon.httpUrl!;
    await waitFor('a poll', async () => (await scrape(url))('pollbridge_polls_total', 'result="ok"') >= 1);

    // More than the 3 in-poll retries.
    h.sim.faults.listFailures.push(...Array.from({ length: 4 }, () => ({ status: 500 })));
    await waitFor('a failed poll', async () => (await scrape(url))('pollbridge_polls_total', 'result="failed"') >= 1);

    // Four reports on one millisecond, more than a page of 3, are swept page by page; before
    // every second page one more comes in ahead of them (ids sort first, each before the last),
    // so a record of the first page comes again on the second and no sweep is confirmed.
    const stamp = Date.now();
    for (let i = 0; i < 4; i++) h.sim.createReport({}, { modifiedMs: stamp });
    let inserted = 0;
    h.sim.faults.beforePage = (page) => {
      if (page === 1) h.sim.createReport({ ID: `0000${String(9999 - ++inserted)}` }, { modifiedMs: stamp });
    };
    await waitFor('an unsettled poll', async () => (await scrape(url))('pollbridge_polls_total', 'result="unsettled"') >= 1);
    h.sim.faults.beforePage = undefined;
    const okBefore = (await scrape(url))('pollbridge_polls_total', 'result="ok"');
    await waitFor('a settled poll again', async () => (await scrape(url))('pollbridge_polls_total', 'result="ok"') > okBefore);

    const value = await scrape(url);
    expect(value('pollbridge_polls_total', 'result="failed"')).toBe(1);
    expect(value('pollbridge_polls_total', 'result="unsettled"')).toBeGreaterThanOrEqual(1);
    expect(logs.messages('records kept changing while a part of the window was read; it is read again next poll').length).toBe(value('pollbridge_polls_total', 'result="unsettled"'));
    await waitFor('every report announced', () => h.events().length === 4 + inserted);
  });
});

describe('start-up', () => {
  it('a port already in use for http.listen is one clear line and exit 1, with the lock released', async () => {
    const blocker = (await import('node:http')).createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const port = (blocker.address() as import('node:net').AddressInfo).port;
    try {
      const h = await harness({}, {}, (c) => ({ ...c, http: { listen: `127.0.0.1:${port}` } }));
      const result = await runCli(['run', '-c', h.configFile], SIM_ENV);
      expect(result.code).toBe(1);
      expect(result.stderr).toBe(`pollbridge: cannot listen on 127.0.0.1:${port} (http.listen): EADDRINUSE`);
      const again = await runCli(['run', '--once', '-c', h.configFile], SIM_ENV);
      expect(again.code).toBe(0);
    } finally {
      blocker.close();
    }
  });
});

describe('logs', () => {
  it('never show a signature key, client secret, refresh or access token, even when requests fail', async () => {
    const h = await harness({}, {}, (c) => ({ ...c, http: { listen: '127.0.0.1:0' } }));
    await h.receiver.close();
    h.sim.createReport();
    const p = startCli(['run', '-c', h.configFile, '--log-level', 'debug', '--since', new Date(Date.now() - 60_000).toISOString()], SIM_ENV);
    try {
      await p.waitForLog('delivery failed, will retry');
      h.sim.revokeAccessTokens();
      h.sim.faults.tokenError = { status: 401, error: 'invalid_client' };
      await p.waitForLog('poll failed; the next poll goes on from its last committed part');
    } finally {
      p.child.kill('SIGTERM');
      await p.exited;
    }
    const output = [...p.stdout, ...p.stderr].join('\n');
    expect(output).toContain('ECONNREFUSED');
    expect(output).toContain('invalid_client');
    const secrets = [h.key, SIM_ENV.SIM_CLIENT_SECRET, 'sim-refresh-token', ...h.sim.issuedTokens];
    expect(h.sim.issuedTokens.length).toBeGreaterThanOrEqual(2);
    for (const secret of secrets) expect(output, `a secret reached the logs`).not.toContain(secret);
  });
});

describe('reload', () => {
  it('SIGHUP applies a valid new config without dropping the outbox, and refuses an invalid one', async () => {
    const h = await harness();
    const second = await harness();
    const p = startCli(['run', '-c', h.configFile, '--since', new Date(Date.now() - 60_000).toISOString()], SIM_ENV);
    try {
      await p.waitForLog('pollbridge started');
      const good = readFileSync(h.configFile, 'utf8');

      writeFileSync(h.configFile, '{ "instances": [ ');
      p.child.kill('SIGHUP');
      const refused = await p.waitForLog('config reload refused: the running config stays');
      expect(refused.problems).toEqual([expect.stringMatching(/poller\.config\.json: is not valid JSON/)]);
      h.sim.createReport();
      await waitFor('an event under the old config', () => h.events().length === 1);

      const config = JSON.parse(good) as { instances: { configuration: Record<string, unknown> }[] };
      config.instances[0]!.configuration['event.notification.callback.url'] = second.receiver.url;
      config.instances[0]!.configuration['event.notification.signature.key'] = second.key;
      writeFileSync(h.configFile, JSON.stringify(config));
      p.child.kill('SIGHUP');
      await p.waitForLog('config reloaded');
      const moved = h.sim.createReport();
      await waitFor('the next event at the new callback, signed with the new key', () => second.receiver.accepted.length === 1);
      expect(second.receiver.accepted[0]!.events[0]!.objectId).toBe(moved.ID);
      expect(h.events()).toHaveLength(1);
      expect(second.receiver.failures).toEqual([]);
    } finally {
      p.child.kill('SIGTERM');
      expect((await p.exited).code).toBe(0);
    }
  });
});
