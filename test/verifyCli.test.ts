import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseToleranceSec } from '../src/cli/verifyCommand.js';
import { signatureHeaders } from '../src/deliver/sign.js';
import { runCli } from './helpers/cli.js';

const body = '{"message":{"eventId":"01J","events":[]}}';
const now = () => Math.floor(Date.now() / 1000);
const asFlags = (headers: Record<string, string>) => Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);

describe('--tolerance-sec', () => {
  it('takes whole seconds, 0 or more', () => {
    expect(parseToleranceSec('0')).toBe(0);
    expect(parseToleranceSec('300')).toBe(300);
    expect(parseToleranceSec('86400')).toBe(86_400);
  });

  it.each(['abc', '-1', '1.5', '', ' 5', '1e3', '0x10', '99999999999999999999'])('refuses "%s" with one line, as the NaN it made disabled the check', (value) => {
    expect(() => parseToleranceSec(value)).toThrow(`--tolerance-sec must be a whole number of seconds, 0 or more, got "${value}"`);
  });

  it('is refused by the CLI before anything is verified', async () => {
    const key = 'whsec_' + randomBytes(24).toString('base64');
    const dayOld = signatureHeaders('01J', body, { current: key, previous: [] }, now() - 86_400);
    const result = await runCli(['verify', '--key', key, '--tolerance-sec', 'abc', ...asFlags(dayOld)], {}, body);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe('pollbridge: --tolerance-sec must be a whole number of seconds, 0 or more, got "abc"');
    const negative = await runCli(['verify', '--key', key, '--tolerance-sec', '-1', ...asFlags(dayOld)], {}, body);
    expect(negative.stderr).toBe('pollbridge: --tolerance-sec must be a whole number of seconds, 0 or more, got "-1"');
    expect(negative.code).toBe(1);
  });
});

describe('pollbridge verify', () => {
  const oldKey = 'old shared secret';
  const newKey = 'whsec_' + randomBytes(24).toString('base64');

  it('refuses a day-old captured request with webhook-signature removed, unless told --amplify-only', async () => {
    const dayOld = signatureHeaders('01J', body, { current: newKey, previous: [] }, now() - 86_400);
    const { 'webhook-signature': _removed, ...stripped } = dayOld;
    const refused = await runCli(['verify', '--key', newKey, ...asFlags(stripped)], {}, body);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^pollbridge: NOT verified: no webhook-signature header: without the timestamped Standard Webhooks headers a captured request could be replayed/);
    const amplifyOnly = await runCli(['verify', '--key', newKey, '--amplify-only', ...asFlags(stripped)], {}, body);
    expect(amplifyOnly.stderr).toBe('');
    expect(amplifyOnly.stdout).toBe('verified');
    expect(amplifyOnly.code).toBe(0);
  });

  it('verifies a request signed during a rotation with the old key, the new key, or both (--key repeated)', async () => {
    const during = asFlags(signatureHeaders('01J', body, { current: newKey, previous: [oldKey] }, now()));
    for (const keys of [[oldKey], [newKey], [oldKey, newKey]]) {
      const result = await runCli(['verify', ...keys.flatMap((k) => ['--key', k]), ...during], {}, body);
      expect(result.stdout, keys.join(' + ')).toBe('verified');
    }
    const newOnly = await runCli(['verify', '--key', newKey, '--amplify-only', ...during], {}, body);
    expect(newOnly.stderr).toBe('pollbridge: NOT verified: Elements-Webhook-Signature matches none of the given keys (a wrong key, or a body changed since it was signed)');
    const both = await runCli(['verify', '--key', oldKey, '--key', newKey, '--amplify-only', ...during], {}, body);
    expect(both.stdout).toBe('verified');
  });
});
