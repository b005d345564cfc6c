import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { verifyNotification } from '../src/deliver/sign.js';
import { runCli } from './helpers/cli.js';

describe('verifyNotification given a key that decodes to no bytes', () => {
  // `whsec_${SECRET}` with SECRET unset, or a rest that is not base64, is an empty HMAC key: anyone
  // can sign with it, as with the empty string the helper already refuses.
  it.each(['whsec_', 'whsec_!!!!', 'whsec_===='])('refuses %j instead of accepting a signature anyone can make', (key) => {
    const body = '{"forged":true}';
    const ts = Math.floor(Date.now() / 1000);
    const forged = 'v1,' + createHmac('sha256', Buffer.alloc(0)).update(`x.${ts}.${body}`).digest('base64');
    const headers = { 'webhook-id': 'x', 'webhook-timestamp': String(ts), 'webhook-signature': forged };
    expect(() => verifyNotification(body, headers, key)).toThrow(TypeError);
    expect(() => verifyNotification(body, headers, ['whsec_c2VjcmV0', key])).toThrow(TypeError);
  });

  it('pollbridge verify refuses it as a user error, before reading a body', async () => {
    const ts = Math.floor(Date.now() / 1000);
    const forged = 'v1,' + createHmac('sha256', Buffer.alloc(0)).update(`x.${ts}.{}`).digest('base64');
    const result = await runCli(['verify', '--key', 'whsec_', '-H', 'webhook-id: x', '-H', `webhook-timestamp: ${ts}`, '-H', `webhook-signature: ${forged}`], {}, '{}');
    expect(result.stdout).not.toContain('verified');
    expect(result.stderr).toContain('a whsec_ key needs its base64 bytes after the prefix');
    expect(result.code).toBe(1);
  });
});
