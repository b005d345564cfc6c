import { createHmac, randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { signatureHeaders, VerificationError, verifyNotification } from '../src/deliver/sign.js';

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
    expect(() => verifyNotification(flip(body), headers, key)).toThrow(/no webhook-signature matches the given keys/);
    expect(() => verifyNotification(flip(body), headers, key, { amplifyOnly: true })).toThrow(/Elements-Webhook-Signature matches none of the given keys/);
    const otherKey = key.startsWith('whsec_') ? 'whsec_' + randomBytes(24).toString('base64') : key + 'x';
    expect(() => verifyNotification(body, headers, otherKey)).toThrow(/no webhook-signature matches/);
    expect(() => verifyNotification(body, headers, otherKey, { amplifyOnly: true })).toThrow(/Elements-Webhook-Signature matches none of the given keys/);
    expect(() => verifyNotification(body, headers, key)).not.toThrow();
    expect(() => verifyNotification(body, headers, key, { amplifyOnly: true })).not.toThrow();
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
    expect(() => verifyNotification(body, {}, key)).toThrow(/no webhook-id, webhook-timestamp, webhook-signature header/);
    expect(() => verifyNotification(body, {}, key, { amplifyOnly: true })).toThrow(/no Elements-Webhook-Signature/);
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

describe('key rotation', () => {
  const oldKey = 'old shared secret';
  const newKey = 'whsec_' + randomBytes(24).toString('base64');
  const hmac = (k: string) => 'sha256=' + createHmac('sha256', k).update(body).digest('base64');

  it("keeps Elements-Webhook-Signature on the first previous key until the rotation ends, so a receiver comparing it by hand keeps working", () => {
    const during = signatureHeaders('id1', body, { current: newKey, previous: [oldKey, 'older still'] }, now());
    expect(during['Elements-Webhook-Signature']).toBe(hmac(oldKey));
    expect(during['webhook-signature']!.split(' ')).toHaveLength(3);
    const after = signatureHeaders('id1', body, { current: newKey, previous: [] }, now());
    expect(after['Elements-Webhook-Signature']).toBe(hmac(newKey));
  });

  it('verifies with the helper holding the old key, the new key or both, during the rotation and after it', () => {
    const during = signatureHeaders('id1', body, { current: newKey, previous: [oldKey] }, now());
    for (const keys of [oldKey, newKey, [oldKey, newKey], [newKey, oldKey]]) {
      expect(() => verifyNotification(body, during, keys)).not.toThrow();
    }
    expect(() => verifyNotification(body, during, [oldKey], { amplifyOnly: true })).not.toThrow();
    expect(() => verifyNotification(body, during, [oldKey, newKey], { amplifyOnly: true })).not.toThrow();
    // AMPLIFY's header is on the old key until the end: documented, and why step 2 accepts both.
    expect(() => verifyNotification(body, during, [newKey], { amplifyOnly: true })).toThrow(/Elements-Webhook-Signature matches none of the given keys/);

    const after = signatureHeaders('id1', body, { current: newKey, previous: [] }, now());
    expect(() => verifyNotification(body, after, [oldKey, newKey])).not.toThrow();
    expect(() => verifyNotification(body, after, [oldKey, newKey], { amplifyOnly: true })).not.toThrow();
    expect(() => verifyNotification(body, after, oldKey)).toThrow(/no webhook-signature matches/);
    expect(() => verifyNotification(body, after, oldKey, { amplifyOnly: true })).toThrow(/Elements-Webhook-Signature matches none of the given keys/);
  });

  it('refuses no key, or an empty one (an unset variable), instead of verifying against it', () => {
    const h = signatureHeaders('id1', body, { current: newKey, previous: [] }, now());
    expect(() => verifyNotification(body, h, [])).toThrow(TypeError);
    expect(() => verifyNotification(body, h, '')).toThrow(TypeError);
    expect(() => verifyNotification(body, h, [newKey, ''])).toThrow(TypeError);
  });
});

describe('replay protection', () => {
  const key = 'whsec_' + randomBytes(24).toString('base64');
  const dayOld = signatureHeaders('id1', body, { current: key, previous: [] }, now() - 86_400);

  it('refuses a day-old request, also with webhook-signature, webhook-timestamp or webhook-id removed', () => {
    expect(() => verifyNotification(body, dayOld, key)).toThrow(/more than 300 s/);
    for (const name of ['webhook-signature', 'webhook-timestamp', 'webhook-id']) {
      const { [name]: _removed, ...stripped } = dayOld;
      expect(() => verifyNotification(body, stripped, key), name).toThrow(new RegExp(`no ${name} header.*amplifyOnly`));
    }
    const { 'webhook-signature': _s, 'webhook-timestamp': _t, 'webhook-id': _i, ...amplifyAlone } = dayOld;
    expect(() => verifyNotification(body, amplifyAlone, key)).toThrow(/no webhook-id, webhook-timestamp, webhook-signature header/);
  });

  it('checks the AMPLIFY header alone only when the caller opts in by name', () => {
    const { 'webhook-signature': _s, 'webhook-timestamp': _t, 'webhook-id': _i, ...amplifyAlone } = dayOld;
    expect(() => verifyNotification(body, amplifyAlone, key, { amplifyOnly: true })).not.toThrow();
    expect(() => verifyNotification(body, amplifyAlone, key, { amplifyOnly: false })).toThrow(VerificationError);
  });

  it.each([Number.NaN, -1, 1.5, Number.POSITIVE_INFINITY])('refuses a tolerance of %s rather than checking nothing', (toleranceSec) => {
    expect(() => verifyNotification(body, dayOld, key, { toleranceSec })).toThrow(RangeError);
  });

  it('takes a tolerance of 0 as the same second', () => {
    const t = now();
    const h = signatureHeaders('id1', body, { current: key, previous: [] }, t);
    expect(() => verifyNotification(body, h, key, { toleranceSec: 0, nowSec: t })).not.toThrow();
    expect(() => verifyNotification(body, h, key, { toleranceSec: 0, nowSec: t + 1 })).toThrow(/more than 0 s/);
  });
});
