import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CLI } from './helpers/cli.js';
import { harness } from './helpers/harness.js';
import { SIM_ENV } from './helpers/simConfig.js';
import { tempDir } from './helpers/tmp.js';

const UNIT = fileURLToPath(new URL('../deploy/pollbridge.service', import.meta.url));
const SECCOMP_EXEC = fileURLToPath(new URL('./fixtures/seccompExec.py', import.meta.url));
/** Debian's python3 with python3-seccomp, both installed by `.ci/setup-test-tools`. */
const PYTHON = '/usr/bin/python3';

/** What this test needs from the machine, or why it is missing. */
function missingTools(): string | undefined {
  if (spawnSync('sh', ['-c', 'command -v systemd-analyze']).status !== 0) return 'systemd-analyze is not installed';
  if (spawnSync(PYTHON, ['-c', 'import seccomp']).status !== 0) return `${PYTHON} cannot import seccomp (Debian package python3-seccomp)`;
  return undefined;
}

/** A @group's system calls as this machine's systemd expands it, nested groups included. */
function expandGroup(group: string, seen = new Set<string>()): Set<string> {
  const result = spawnSync('systemd-analyze', ['syscall-filter', group], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`systemd-analyze syscall-filter ${group}: ${result.stderr}`);
  const names = new Set<string>();
  for (const line of result.stdout.split('\n').slice(1).map((l) => l.trim())) {
    if (!line || line.startsWith('#')) continue;
    if (!line.startsWith('@')) names.add(line);
    else if (!seen.has(line)) {
      seen.add(line);
      for (const n of expandGroup(line, seen)) names.add(n);
    }
  }
  return names;
}

/**
 * The system calls a unit's `SystemCallFilter=` lines allow, in systemd's reading: the first line
 * is an allow list (the unit has no deny-only form), later lines add to it, `~` lines take away.
 */
export function allowedSyscalls(unit: string): Set<string> {
  const lines = unit.split('\n').filter((l) => l.startsWith('SystemCallFilter=')).map((l) => l.slice('SystemCallFilter='.length).trim());
  if (lines.length === 0 || lines[0]!.startsWith('~')) throw new Error('the unit must start its SystemCallFilter= with an allow list');
  const allowed = new Set<string>();
  for (const line of lines) {
    const deny = line.startsWith('~');
    for (const item of (deny ? line.slice(1) : line).split(/\s+/).filter(Boolean)) {
      const names = item.startsWith('@') ? expandGroup(item) : new Set([item]);
      for (const n of names) {
        if (deny) allowed.delete(n);
        else allowed.add(n);
      }
    }
  }
  return allowed;
}

describe('the systemd unit, run under its own system call filter', () => {
  it('the built daemon, with the unit\'s node flags, completes run --once under a seccomp filter made of the unit\'s SystemCallFilter= lines', { timeout: 120_000 }, async (ctx) => {
    const missing = missingTools();
    if (missing) {
      // CI installs both (.ci/setup-test-tools): there a missing tool is a failure, not a reason to skip.
      if (process.env.CI) throw new Error(`${missing}: run .ci/setup-test-tools first`);
      ctx.skip(`${missing}; .ci/setup-test-tools installs it`);
      return;
    }
    const unit = readFileSync(UNIT, 'utf8');
    const allowed = allowedSyscalls(unit);
    // As root, SQLite gives its journal the database's owner with fchown(), a call the unit's
    // dynamic user never makes: allowed here only when this test runs as root.
    if (process.getuid?.() === 0) allowed.add('fchown');
    const dir = tempDir();
    const allowedFile = join(dir, 'allowed-syscalls');
    writeFileSync(allowedFile, [...allowed].join('\n'));
    // ExecStart=pollbridge run …: the installed command, whose first line gives node its flags.
    expect(unit).toMatch(/^ExecStart=pollbridge run /m);
    const shebang = /^#!\/usr\/bin\/env -S node (.*)$/m.exec(readFileSync(CLI, 'utf8').split('\n')[0]!);
    expect(shebang, 'dist/cli.js starts with #!/usr/bin/env -S node FLAGS').not.toBeNull();
    const nodeFlags = shebang![1]!.split(/\s+/);
    expect(nodeFlags).toContain('--max-old-space-size=128');

    const h = await harness();
    const report = h.sim.createReport();
    const args = [SECCOMP_EXEC, allowedFile, process.execPath, ...nodeFlags, CLI, 'run', '--once', '-c', h.configFile, '--since', new Date(Date.now() - 60_000).toISOString()];
    // Asynchronous: the simulator and the receiver answer from this process.
    const child = spawn(PYTHON, args, { env: { PATH: process.env.PATH, ...SIM_ENV }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => { output += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { output += c.toString(); });
    const exited = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
    expect(exited, `pollbridge under the unit's filter:\n${output.slice(-2000)}`).toEqual({ code: 0, signal: null });
    expect(h.events().map((e) => e.objectId)).toEqual([report.ID]);
  });

  it('the filter is real: node dies with SIGSYS when a system call it needs at start is left out', (ctx) => {
    const missing = missingTools();
    if (missing) {
      if (process.env.CI) throw new Error(`${missing}: run .ci/setup-test-tools first`);
      ctx.skip(`${missing}; .ci/setup-test-tools installs it`);
      return;
    }
    const allowed = allowedSyscalls(readFileSync(UNIT, 'utf8'));
    // Without the protection-key calls V8 asks for at start: the unit as it was before @pkey.
    for (const n of expandGroup('@pkey')) allowed.delete(n);
    const allowedFile = join(tempDir(), 'allowed-syscalls');
    writeFileSync(allowedFile, [...allowed].join('\n'));
    const result = spawnSync(PYTHON, [SECCOMP_EXEC, allowedFile, process.execPath, '-e', 'console.log(1)'], { encoding: 'utf8' });
    expect(result.signal).toBe('SIGSYS');
  });
});
