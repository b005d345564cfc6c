import { spawn, spawnSync } from 'node:child_process';
import { closeSync, fstatSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { chooseLogOutput, createLogger, type LoggerOptions } from '../src/log.js';
import { DEFAULT_SIM_CREDENTIALS } from '../src/sim/concurSim.js';
import { CLI, runCli } from './helpers/cli.js';
import { harness } from './helpers/harness.js';
import { SIM_ENV } from './helpers/simConfig.js';
import { tempDir } from './helpers/tmp.js';

const SECRET = DEFAULT_SIM_CREDENTIALS.clientSecret;
const PRIORITY: Record<string, string> = { error: '<3>', warn: '<4>', info: '<6>', debug: '<7>' };

/** The lines a logger with `options` writes. */
function logTo(options: LoggerOptions) {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  return { log: createLogger({ level: 'debug', stream, ...options }), lines };
}

describe('choosing the format', () => {
  const pipe = { isTTY: false, device: 12n, inode: 3456n };
  const terminal = { isTTY: true, device: 25n, inode: 7n };

  it('auto is text on a terminal and JSON elsewhere; json and text are taken as asked', () => {
    expect(chooseLogOutput('auto', terminal, undefined)).toEqual({ format: 'text', journald: false });
    expect(chooseLogOutput('auto', pipe, undefined)).toEqual({ format: 'json', journald: false });
    expect(chooseLogOutput('json', terminal, undefined)).toEqual({ format: 'json', journald: false });
    expect(chooseLogOutput('text', pipe, undefined)).toEqual({ format: 'text', journald: false });
  });

  it('the priority prefix only when stdout is the stream JOURNAL_STREAM names, in either format', () => {
    expect(chooseLogOutput('auto', pipe, '12:3456')).toEqual({ format: 'json', journald: true });
    expect(chooseLogOutput('text', pipe, '12:3456')).toEqual({ format: 'text', journald: true });
    // Inherited by a child whose stdout went elsewhere: not the journal.
    expect(chooseLogOutput('auto', pipe, '12:3457')).toMatchObject({ journald: false });
    expect(chooseLogOutput('auto', terminal, '12:3456')).toEqual({ format: 'text', journald: false });
    expect(chooseLogOutput('auto', pipe, 'garbage')).toMatchObject({ journald: false });
    expect(chooseLogOutput('auto', { isTTY: false }, '12:3456')).toMatchObject({ journald: false });
  });
});

describe('line formats', () => {
  it('text: time, level, message, then key=value fields, one line even for a stack, secrets redacted', () => {
    const { log, lines } = logTo({ format: 'text', secrets: [SECRET] });
    log.child({ instance: 'ConcurTest' }).warn('page request failed; retrying', { attempt: 1, waitMs: 1234, reason: 'answered 503', problems: ['a b'] });
    log.error(new Error(`refused: ${SECRET}\nsecond line`));
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARN  page request failed; retrying instance=ConcurTest attempt=1 waitMs=1234 reason="answered 503" problems=\["a b"\]$/);
    expect(lines[1]).toMatch(/ ERROR refused: \[redacted\]\\nsecond line stack="Error: refused: \[redacted\]\\nsecond line\\n {4}at /);
    expect(lines.join('\n')).not.toContain(SECRET);
  });

  it('journald: each line starts with its sd-daemon priority, in JSON and in text; JSON without it is unchanged', () => {
    for (const format of ['json', 'text'] as const) {
      const { log, lines } = logTo({ format, journald: true });
      log.error('e');
      log.warn('w');
      log.info('i');
      log.debug('d');
      expect(lines.map((l) => l.slice(0, 3))).toEqual(['<3>', '<4>', '<6>', '<7>']);
      if (format === 'json') expect(JSON.parse(lines[0]!.slice(3))).toMatchObject({ level: 'error', message: 'e' });
    }
    const plain = logTo({});
    plain.log.info('i', { n: 1 });
    expect(plain.lines[0]).toMatch(/^\{"level":"info","message":"i","n":1,"timestamp":"[^"]+"\}$/);
  });
});

/** Runs `command` to its end (30 s at most), collecting stdout. */
async function exec(command: string, args: string[], env: NodeJS.ProcessEnv, stdout: 'pipe' | number = 'pipe') {
  const child = spawn(command, args, { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', stdout, 'pipe'] });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => { out += c.toString('utf8'); });
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const status = await new Promise<number | null>((resolve) => child.once('close', resolve));
  clearTimeout(killer);
  return { status, stdout: out };
}

/** The sim's token endpoint refusing every refresh with an error that echoes the client secret. */
async function refusingHarness() {
  const h = await harness();
  h.sim.faults.tokenError = { status: 400, error: `invalid_grant: client ${SECRET} is locked` };
  return h;
}

describe('run --log-format, through the CLI', () => {
  it('under journald (stdout is the stream JOURNAL_STREAM names) every line carries its priority: <3> errors, <4> warnings, <6> info', async () => {
    const h = await refusingHarness();
    // One retried token request first: a warning.
    h.sim.faults.tokenFailures.push({ status: 503 });
    const out = join(tempDir(), 'stdout');
    const fd = openSync(out, 'w');
    const { dev, ino } = fstatSync(fd, { bigint: true });
    const { status } = await exec(process.execPath, [CLI, 'run', '--once', '-c', h.configFile], { ...SIM_ENV, JOURNAL_STREAM: `${dev}:${ino}` }, fd);
    closeSync(fd);
    expect(status).toBe(1);
    const lines = readFileSync(out, 'utf8').split('\n').filter(Boolean);
    for (const line of lines) {
      const m = /^(<\d>)(\{.*\})$/.exec(line);
      expect(m, line).not.toBeNull();
      expect(m![1]).toBe(PRIORITY[(JSON.parse(m![2]!) as { level: string }).level]);
    }
    expect(lines.find((l) => l.includes('"message":"poll failed')), 'the failed poll').toMatch(/^<3>\{.*"level":"error"/);
    expect(lines.find((l) => l.includes('"message":"pollbridge stopped"'))).toMatch(/^<6>\{/);
    expect(lines.find((l) => l.includes('"message":"token request failed; retrying"'))).toMatch(/^<4>\{/);
    expect(lines.join('\n')).not.toContain(SECRET);
  });

  it('under journald, what pollbridge says on stderr before or instead of starting is an error (<3>) on every line', () => {
    const dir = tempDir();
    const config = join(dir, 'bad.json');
    writeFileSync(config, '{ "instances": [] }');
    const err = join(dir, 'stderr');
    const fd = openSync(err, 'w');
    const { dev, ino } = fstatSync(fd, { bigint: true });
    const result = spawnSync(process.execPath, [CLI, 'run', '-c', config], { env: { PATH: process.env.PATH, JOURNAL_STREAM: `${dev}:${ino}` }, stdio: ['ignore', 'ignore', fd] });
    closeSync(fd);
    expect(result.status).toBe(2);
    const lines = readFileSync(err, 'utf8').split('\n').filter(Boolean);
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(line).toMatch(/^<3>\S/);
    expect(lines.join('\n')).toContain('instances: must be a non-empty array of instances');
  });

  it('not a terminal, not the journal: JSON lines as before, even with a JOURNAL_STREAM inherited from elsewhere', async () => {
    const h = await refusingHarness();
    const result = await runCli(['run', '--once', '-c', h.configFile], { ...SIM_ENV, JOURNAL_STREAM: '1:1' });
    expect(result.code).toBe(1);
    const lines = result.stdout.split('\n').filter(Boolean);
    expect(lines.length).toBeGreaterThan(1);
    expect(lines.every((l) => l.startsWith('{"'))).toBe(true);
    expect(result.logs.find((l) => l.level === 'error')).toMatchObject({ message: expect.stringMatching(/^poll failed/), error: expect.stringContaining('[redacted]') });
  });

  it.each([
    ['--log-format text', ['--log-format', 'text'], {}],
    ['POLLBRIDGE_LOG_FORMAT=text', [], { POLLBRIDGE_LOG_FORMAT: 'text' }],
  ])('%s: one readable line per entry, the secret redacted', async (_name, flags, env) => {
    const h = await refusingHarness();
    const result = await runCli(['run', '--once', '-c', h.configFile, ...flags], { ...SIM_ENV, ...env });
    expect(result.code).toBe(1);
    const lines = result.stdout.split('\n').filter(Boolean);
    expect(lines.find((l) => l.includes(' INFO  pollbridge stopped'))).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z INFO  pollbridge stopped$/);
    const failed = lines.find((l) => / ERROR poll failed/.test(l));
    expect(failed).toMatch(/ instance=ConcurTest resource=reports .*error="[^"]*invalid_grant: client \[redacted\] is locked/);
    expect(lines.some((l) => l.startsWith('{'))).toBe(false);
    expect(result.stdout).not.toContain(SECRET);
  });

  it('an unknown format is refused with the choices', async () => {
    const result = await runCli(['run', '--once', '--log-format', 'xml', '-c', 'none.json']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('log format must be one of auto, json, text, got "xml"');
  });

  it('on a terminal (a pty from script(1)), text by default', async (ctx) => {
    if (spawnSync('sh', ['-c', 'command -v script']).status !== 0) ctx.skip('script(1) is not installed');
    const h = await refusingHarness();
    const command = [process.execPath, CLI, 'run', '--once', '-c', h.configFile].map((a) => `'${a}'`).join(' ');
    // Not spawnSync: the simulator answers from this process's event loop.
    const result = await exec('script', ['-qec', command, '/dev/null'], { ...SIM_ENV });
    expect(result.status).toBe(1);
    const lines = result.stdout.split(/\r?\n/).filter(Boolean);
    expect(lines.find((l) => l.includes('pollbridge stopped'))).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z INFO  pollbridge stopped$/);
    expect(lines.some((l) => l.startsWith('{'))).toBe(false);
    expect(result.stdout).not.toContain(SECRET);
  });
});
