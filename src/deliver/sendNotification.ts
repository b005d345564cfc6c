import type { Got } from 'got';
import { describeNetworkError } from '../poll/httpClient.js';
import { parseRetryAfter } from '../util/retryAfter.js';
import type { AttemptResult } from './retryPolicy.js';
import { signatureHeaders, type SigningKeys } from './sign.js';

export type SendResult = AttemptResult & { durationMs: number; responseExcerpt: string | undefined };

const EXCERPT_BYTES = 2048;

/** One POST of a stored notification, signed for this attempt. Never throws. */
export async function sendNotification(
  http: Got,
  target: { url: string; keys: SigningKeys; timeoutMs: number },
  notification: { id: string; body: string },
  signal?: AbortSignal,
): Promise<SendResult> {
  const started = performance.now();
  const headers = {
    'content-type': 'application/json',
    ...signatureHeaders(notification.id, notification.body, target.keys, Math.floor(Date.now() / 1000)),
  };
  try {
    const response = await http.post(target.url, { body: notification.body, headers, timeout: { request: target.timeoutMs }, signal });
    return {
      statusCode: response.statusCode,
      error: response.statusCode >= 200 && response.statusCode < 300 ? undefined : `HTTP ${response.statusCode}`,
      retryAfterSec: parseRetryAfter(response.headers['retry-after'], Date.now()),
      durationMs: Math.round(performance.now() - started),
      responseExcerpt: Buffer.from(response.body).subarray(0, EXCERPT_BYTES).toString('utf8') || undefined,
    };
  } catch (err) {
    return { statusCode: undefined, error: describeNetworkError(err), retryAfterSec: undefined, durationMs: Math.round(performance.now() - started), responseExcerpt: undefined };
  }
}
