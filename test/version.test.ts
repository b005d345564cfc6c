import { spawnSync } from 'node:child_process';
import { cpSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli, startCli } from './helpers/cli.js';
import { harness } from './helpers/harness.js';
import { SIM_ENV } from './helpers/simConfig.js';
import { tempDir, waitFor } from './helpers/tmp.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const USER_AGENT = `pollbridge/${VERSION} (+node ${process.versions.node})`;

describe('version', () => {
  it('pollbridge --version prints the package version', async () => {
    const result = await runCli(['--version']);
    expect(result).toMatchObject({ code: 0, stdout: VERSION });
  });

  it('is read when it runs from the package.json beside dist/, so an installed copy reports its own', () => {
    const dir = tempDir();
    cpSync(join(ROOT, 'dist'), join(dir, 'dist'), { recursive: true });
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ ...pkg, version: '9.8.7-installed' }));
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    const result = spawnSync(process.execPath, [join(dir, 'dist', 'cli.js'), '--version'], { encoding: 'utf8', timeout: 30_000 });
    expect(result.stdout.trim()).toBe('9.8.7-installed');
  });

  it('every request carries it in the User-Agent (token, pages, deliveries), and /metrics has pollbridge_build_info', async () => {
    const h = await harness({}, {}, (c) => ({ ...c, http: { listen: '127.0.0.1:0' } }));
    h.sim.createReport();
    const p = startCli(['run', '-c', h.configFile, '--since', new Date(Date.now() - 60_000).toISOString()], SIM_ENV);
    try {
      const url = (await p.waitForLog('health and metrics listening')).url as string;
      await waitFor('one event', () => h.events().length === 1);
      expect(h.sim.tokenRequestCount).toBeGreaterThanOrEqual(1);
      expect(h.sim.listQueries.length).toBeGreaterThanOrEqual(1);
      expect([...h.sim.userAgents]).toEqual([USER_AGENT]);
      expect(h.receiver.accepted[0]!.headers['user-agent']).toBe(USER_AGENT);
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toContain(`pollbridge_build_info{version="${VERSION}",node="${process.versions.node}"} 1\n`);
    } finally {
      p.child.kill('SIGTERM');
      expect((await p.exited).code).toBe(0);
    }
  });
});
