import { createHmac, randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { signatureHeaders, verifyNotification } from '../src/deliver/sign.js';

const body = JSON.stringify({ message: { eventId: '01JTEST', events: [{ eventType: 'UPDATED', objectId: 'F4F0' }] } });
const now = () => Math.floor(Date.now() / 1000);

function flip(text: string): string {
  const buf = Buffer.from(text);
  buf[10] = buf[10]! ^ 1;
  return buf.toString();
}

describe.each([
  ['a whsec_ key', 'whsec_' + randomBytes(24).toString('base64')],
  ['a plain AMPLIFY key', 'my shared secret'],
])('signatures with %s', (_name, key) => {
  const headers = signatureHeaders('01JTEST', body, { current: key, previous: [] }, now());
  const receiverKey = key.startsWith('whsec_') ? new Webhook(key) : new Webhook(key, { format: 'raw' });

  it('verify with the standardwebhooks library as they are', () => {
    expect(receiverKey.verify(body, headers)).toMatchObject({ message: { eventId: '01JTEST' } });
  });

  it("match an independent HMAC of AMPLIFY's Elements-Webhook-Signature", () => {
    expect(headers['Elements-Webhook-Signature']).toBe('sha256=' + createHmac('sha256', key).update(body).digest('base64'));
    expect(headers['Elements-Webhook-Id']).toBe(headers['webhook-id']);
  });

  it('fail on a changed byte, for the library and for our verifier', () => {
    expect(() => receiverKey.verify(flip(body), headers)).toThrow();
    expect(() => verifyNotification(flip(body), headers, key)).toThrow(/does not match/);
    expect(() => verifyNotification(body, headers, key + 'x')).toThrow();
    expect(() => verifyNotification(body, headers, key)).not.toThrow();
  });
});

describe('verifyNotification', () => {
  const key = 'whsec_' + randomBytes(24).toString('base64');

  it('refuses a timestamp outside the tolerance (replays) and accepts one inside', () => {
    const old = signatureHeaders('id1', body, { current: key, previous: [] }, now() - 600);
    expect(() => verifyNotification(body, old, key)).toThrow(/more than 300 s/);
    expect(() => verifyNotification(body, old, key, { toleranceSec: 900 })).not.toThrow();
  });

  it('refuses a request with no signature at all, and a Standard Webhooks signature without its id', () => {
    expect(() => verifyNotification(body, {}, key)).toThrow(/no Elements-Webhook-Signature/);
    const h = signatureHeaders('id1', body, { current: key, previous: [] }, now());
    const { 'webhook-id': _id, 'Elements-Webhook-Id': _eid, ...withoutId } = h;
    expect(() => verifyNotification(body, withoutId, key)).toThrow(/webhook-id/);
  });

  it('reads headers case-insensitively, as Node lowercases them', () => {
    const h = signatureHeaders('id1', body, { current: key, previous: [] }, now());
    const lower = Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
    expect(() => verifyNotification(Buffer.from(body), lower, key)).not.toThrow();
  });

  it('sends one v1 signature per key during rotation, and receivers on either key verify', () => {
    const previous = 'whsec_' + randomBytes(24).toString('base64');
    const h = signatureHeaders('id1', body, { current: key, previous: [previous] }, now());
    expect(h['webhook-signature']!.split(' ')).toHaveLength(2);
    expect(() => new Webhook(key).verify(body, h)).not.toThrow();
    expect(() => new Webhook(previous).verify(body, h)).not.toThrow();
  });

  it('sends no signature headers when no key is set', () => {
    const h = signatureHeaders('id1', body, { current: undefined, previous: [] }, now());
    expect(h['Elements-Webhook-Signature']).toBeUndefined();
    expect(h['webhook-signature']).toBeUndefined();
    expect(h['webhook-id']).toBe('id1');
  });
});
