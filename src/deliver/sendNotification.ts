import type { Got } from 'got';
import { describeNetworkError } from '../poll/httpClient.js';
import { parseRetryAfter } from '../util/retryAfter.js';
import type { AttemptResult } from './retryPolicy.js';
import { signatureHeaders, type SigningKeys } from './sign.js';

export type SendResult = AttemptResult & { durationMs: number; responseExcerpt: string | undefined };

/** As much of a receiver's answer as is read: kept in the attempt log, the rest is never read. */
export const EXCERPT_BYTES = 2048;

type Answer = { statusCode: number; retryAfter: string | undefined; excerpt: Buffer };

/**
 * POSTs `body` and reads at most EXCERPT_BYTES of the answer, then closes the connection. The
 * answer is only wanted for the attempt log: buffering it whole would let one receiver answering
 * hundreds of megabytes exhaust the heap, before the attempt is recorded, on every restart.
 */
function post(http: Got, url: string, options: { body: string; headers: Record<string, string>; timeoutMs: number; signal?: AbortSignal }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = http.stream.post(url, { body: options.body, headers: options.headers, timeout: { request: options.timeoutMs }, signal: options.signal });
    request.once('error', reject);
    request.once('response', (response: { statusCode: number; headers: Record<string, string | string[] | undefined> }) => {
      const chunks: Buffer[] = [];
      let size = 0;
      // As got does once it has a whole answer: destroying the request releases its listener on
      // `signal`, which lives as long as the deliverer. Before the end, it also closes the connection.
      const answered = (): void => {
        const retryAfter = response.headers['retry-after'];
        resolve({ statusCode: response.statusCode, retryAfter: typeof retryAfter === 'string' ? retryAfter : undefined, excerpt: Buffer.concat(chunks).subarray(0, EXCERPT_BYTES) });
        request.destroy();
      };
      request.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        size += chunk.length;
        if (size >= EXCERPT_BYTES) answered();
      });
      request.once('end', answered);
    });
  });
}

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
    const answer = await post(http, target.url, { body: notification.body, headers, timeoutMs: target.timeoutMs, signal });
    return {
      statusCode: answer.statusCode,
      error: answer.statusCode >= 200 && answer.statusCode < 300 ? undefined : `HTTP ${answer.statusCode}`,
      retryAfterSec: parseRetryAfter(answer.retryAfter, Date.now()),
      durationMs: Math.round(performance.now() - started),
      responseExcerpt: answer.excerpt.toString('utf8') || undefined,
    };
  } catch (err) {
    return { statusCode: undefined, error: describeNetworkError(err), retryAfterSec: undefined, durationMs: Math.round(performance.now() - started), responseExcerpt: undefined };
  }
}
