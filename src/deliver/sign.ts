import { createHmac, timingSafeEqual } from 'node:crypto';

/** Key bytes for Standard Webhooks: a `whsec_` secret is base64, anything else is its UTF-8. */
export function standardKeyBytes(key: string): Buffer {
  return key.startsWith('whsec_') ? Buffer.from(key.slice('whsec_'.length), 'base64') : Buffer.from(key, 'utf8');
}

/** AMPLIFY's `Elements-Webhook-Signature`: HMAC-SHA256 of the raw body, key as UTF-8. */
export function amplifySignature(key: string, body: string | Buffer): string {
  return 'sha256=' + createHmac('sha256', key).update(body).digest('base64');
}

export function standardSignature(key: string, id: string, timestampSec: number, body: string | Buffer): string {
  const mac = createHmac('sha256', standardKeyBytes(key));
  mac.update(`${id}.${timestampSec}.`);
  mac.update(body);
  return 'v1,' + mac.digest('base64');
}

export type SigningKeys = { current?: string | undefined; previous: readonly string[] };

/** All signature headers of one delivery attempt. The timestamp is the attempt's, not the event's. */
export function signatureHeaders(id: string, body: string, keys: SigningKeys, timestampSec: number): Record<string, string> {
  const headers: Record<string, string> = {
    'Elements-Webhook-Id': id,
    'webhook-id': id,
    'webhook-timestamp': String(timestampSec),
  };
  if (keys.current) {
    headers['Elements-Webhook-Signature'] = amplifySignature(keys.current, body);
    headers['webhook-signature'] = [keys.current, ...keys.previous]
      .map((k) => standardSignature(k, id, timestampSec, body))
      .join(' ');
  }
  return headers;
}

export class VerificationError extends Error {}

export type VerifyOptions = {
  /** How far `webhook-timestamp` may be from now, in seconds (default 300, as Standard Webhooks). */
  toleranceSec?: number;
  nowSec?: number;
};

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const lower = name.toLowerCase();
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() === lower) return Array.isArray(v) ? v[0] : v;
  }
  return undefined;
}

/**
 * Checks a received notification the way a receiver should: every signature scheme present must
 * verify (at least one must be present), comparisons are constant-time, and a Standard Webhooks
 * timestamp outside the tolerance is refused to stop replays. Throws VerificationError.
 */
export function verifyNotification(
  body: string | Buffer,
  headers: Record<string, string | string[] | undefined>,
  key: string,
  options: VerifyOptions = {},
): void {
  const amplify = header(headers, 'Elements-Webhook-Signature');
  const standard = header(headers, 'webhook-signature');
  if (!amplify && !standard) throw new VerificationError('no Elements-Webhook-Signature or webhook-signature header');
  if (amplify && !safeEqual(amplify, amplifySignature(key, body))) {
    throw new VerificationError('Elements-Webhook-Signature does not match the body');
  }
  if (standard) {
    const id = header(headers, 'webhook-id');
    const timestamp = header(headers, 'webhook-timestamp');
    if (!id || !timestamp || !/^\d+$/.test(timestamp)) throw new VerificationError('webhook-id or webhook-timestamp missing or malformed');
    const toleranceSec = options.toleranceSec ?? 300;
    const nowSec = options.nowSec ?? Math.floor(Date.now() / 1000);
    if (Math.abs(nowSec - Number(timestamp)) > toleranceSec) {
      throw new VerificationError(`webhook-timestamp is more than ${toleranceSec} s from now`);
    }
    const expected = standardSignature(key, id, Number(timestamp), body);
    if (!standard.split(' ').some((candidate) => safeEqual(candidate, expected))) {
      throw new VerificationError('no webhook-signature matches the body');
    }
  }
}
