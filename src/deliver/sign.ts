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

/**
 * `current` signs; `previous` (`pollbridge.notification.previousSignatureKeys`) are the keys being
 * rotated out, listed from the one receivers hold first.
 */
export type SigningKeys = { current?: string | undefined; previous: readonly string[] };

/**
 * All signature headers of one delivery attempt. The timestamp is the attempt's, not the event's.
 *
 * Rotation: `webhook-signature` carries one `v1,` signature per key, so a Standard Webhooks
 * receiver holding any of them verifies. `Elements-Webhook-Signature` can carry only one, and
 * receivers compare it whole, by hand: it stays on the first previous key until the rotation
 * ends (the list is emptied), so a receiver that has not moved yet keeps working; the README
 * gives the steps. Every attempt is signed afresh, so a retry after the end carries the new key.
 */
export function signatureHeaders(id: string, body: string, keys: SigningKeys, timestampSec: number): Record<string, string> {
  const headers: Record<string, string> = {
    'Elements-Webhook-Id': id,
    'webhook-id': id,
    'webhook-timestamp': String(timestampSec),
  };
  if (keys.current) {
    headers['Elements-Webhook-Signature'] = amplifySignature(keys.previous[0] ?? keys.current, body);
    headers['webhook-signature'] = [keys.current, ...keys.previous]
      .map((k) => standardSignature(k, id, timestampSec, body))
      .join(' ');
  }
  return headers;
}

export class VerificationError extends Error {}

export type VerifyOptions = {
  /**
   * How far `webhook-timestamp` may be from now, in whole seconds, 0 or more (default 300, as
   * Standard Webhooks). Anything else throws a RangeError: a NaN would disable the check.
   */
  toleranceSec?: number;
  /** Now, in unix seconds (default: the clock). */
  nowSec?: number;
  /**
   * Check `Elements-Webhook-Signature` alone, as AMPLIFY's receivers did. It carries no timestamp,
   * so a captured request can be replayed: deduplicate on `Elements-Webhook-Id`. Without this
   * option a request lacking the timestamped Standard Webhooks headers is refused.
   */
  amplifyOnly?: boolean;
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
 * Checks a received notification the way a receiver should, with every key it accepts (one, or
 * the old and the new during a rotation); comparisons are constant-time. Throws VerificationError.
 *
 * By default the proof is the Standard Webhooks signature: `webhook-id`, `webhook-timestamp` and
 * `webhook-signature` must all be there, the timestamp within the tolerance (replays), and one of
 * its signatures must match one of the keys. `Elements-Webhook-Signature` is then not consulted:
 * it covers less (the body only), and during a rotation it is signed with the old key. A request
 * with AMPLIFY's header alone is refused unless the caller opts in with `amplifyOnly`.
 */
export function verifyNotification(
  body: string | Buffer,
  headers: Record<string, string | string[] | undefined>,
  keys: string | readonly string[],
  options: VerifyOptions = {},
): void {
  const accepted = typeof keys === 'string' ? [keys] : keys;
  // An unset environment variable must not become a key that anyone can sign with: neither ""
  // nor a `whsec_` whose rest decodes to no bytes ("whsec_" + an unset variable).
  if (accepted.length === 0 || accepted.some((k) => typeof k !== 'string' || standardKeyBytes(k).length === 0)) {
    throw new TypeError('verifyNotification needs at least one key, and no empty one (a whsec_ key must have base64 bytes after the prefix)');
  }
  if (options.amplifyOnly) {
    const amplify = header(headers, 'Elements-Webhook-Signature');
    if (!amplify) throw new VerificationError('no Elements-Webhook-Signature header');
    if (!accepted.some((k) => safeEqual(amplify, amplifySignature(k, body)))) {
      // A wrong key and a changed body look the same here: the message must not blame one of them.
      throw new VerificationError('Elements-Webhook-Signature matches none of the given keys (a wrong key, or a body changed since it was signed)');
    }
    return;
  }
  const toleranceSec = options.toleranceSec ?? 300;
  if (!Number.isSafeInteger(toleranceSec) || toleranceSec < 0) {
    throw new RangeError(`toleranceSec must be a whole number of seconds, 0 or more, got ${toleranceSec}`);
  }
  const missing = ['webhook-id', 'webhook-timestamp', 'webhook-signature'].filter((name) => !header(headers, name));
  if (missing.length > 0) {
    throw new VerificationError(
      `no ${missing.join(', ')} header: without the timestamped Standard Webhooks headers a captured request could be replayed (checking Elements-Webhook-Signature alone is an explicit opt-in, amplifyOnly)`,
    );
  }
  const id = header(headers, 'webhook-id')!;
  const timestamp = header(headers, 'webhook-timestamp')!;
  const standard = header(headers, 'webhook-signature')!;
  if (!/^\d+$/.test(timestamp)) throw new VerificationError('webhook-timestamp is not unix seconds');
  const nowSec = options.nowSec ?? Math.floor(Date.now() / 1000);
  if (Math.abs(nowSec - Number(timestamp)) > toleranceSec) {
    throw new VerificationError(`webhook-timestamp is more than ${toleranceSec} s from now`);
  }
  const candidates = standard.split(' ');
  const expected = accepted.map((k) => standardSignature(k, id, Number(timestamp), body));
  if (!candidates.some((candidate) => expected.some((e) => safeEqual(candidate, e)))) {
    throw new VerificationError('no webhook-signature matches the given keys (a wrong key, or a body or webhook headers changed since they were signed)');
  }
}
