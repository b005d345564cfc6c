import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseNumberOption } from '../src/cli/options.js';
import { UserError } from '../src/cli/userError.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/tmp.js';

describe('numeric options are read strictly', () => {
  const grace = { min: 0, max: 600_000, integer: true, unit: 'milliseconds' };

  it('takes plain decimal digits in range', () => {
    expect(parseNumberOption('--grace-ms', '0', grace)).toBe(0);
    expect(parseNumberOption('--grace-ms', '2500', grace)).toBe(2500);
    expect(parseNumberOption('--rate', '0.25', { min: 0, max: 1000 })).toBe(0.25);
    expect(parseNumberOption('--limit', '9007199254740991', { min: 1, integer: true })).toBe(Number.MAX_SAFE_INTEGER);
  });

  it.each(['abc', '', ' ', ' 5', '5 ', '0x10', '1e3', 'Infinity', 'NaN', '1.5', '-1', '600001', '5ms', '9'.repeat(400)])(
    'refuses %j with one line naming the option, what it takes and the value', (value) => {
      let thrown: unknown;
      try {
        parseNumberOption('--grace-ms', value, grace);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(UserError);
      expect((thrown as Error).message).toBe(`--grace-ms must be a whole number of milliseconds from 0 to 600000, got ${JSON.stringify(value)}`);
    });

  it('refuses ".5" (a number starts with a digit) and a whole number past 2^53, which would not be exact', () => {
    expect(() => parseNumberOption('--rate', '.5', { min: 0 })).toThrow('--rate must be a number of at least 0, got ".5"');
    expect(() => parseNumberOption('--limit', '9007199254740993', { min: 1, integer: true })).toThrow(UserError);
  });
});

describe('the CLI refuses a bad numeric option before doing anything', () => {
  // A missing config shows that the option is judged first: the old code went on and read it.
  const missing = (): string => join(tempDir(), 'missing.json');

  it.each([
    [['run', '--grace-ms', 'abc'], '--grace-ms must be a whole number of milliseconds from 0 to 600000, got "abc"'],
    [['run', '--grace-ms', '-1'], '--grace-ms must be a whole number of milliseconds from 0 to 600000, got "-1"'],
    [['events', 'list', '--limit', '5x'], '--limit must be a whole number of at least 1, got "5x"'],
    [['sim', '--port', '0x50'], '--port must be a whole number from 0 to 65535, got "0x50"'],
    [['sim', '--rate', 'fast'], '--rate must be a number of changes per second from 0 to 1000, got "fast"'],
    [['demo', '--seconds', ''], '--seconds must be a whole number of seconds from 1 to 86400, got ""'],
    [['demo', '--events', '1e2'], '--events must be a whole number of at least 1, got "1e2"'],
  ])('%j', async (args, message) => {
    const result = await runCli([...args, ...(args[0] === 'run' || args[0] === 'events' ? ['-c', missing()] : [])]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`pollbridge: ${message}`);
    expect(result.stdout).toBe('');
  });
});
