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
    let answered: (() => void) | undefined;
    // Once the status line is in, it is the answer: a body that breaks off (stalls into the
    // timeout, a reset, bad gzip) only shortens the excerpt. Rejecting would turn a 200 the
    // receiver acted on into a network error, and the notification would be sent again.
    request.on('error', (err: Error) => (answered ? answered() : reject(err)));
    request.once('response', (response: { statusCode: number; headers: Record<string, string | string[] | undefined> }) => {
      const chunks: Buffer[] = [];
      let size = 0;
      // As got does once it has a whole answer: destroying the request releases its listener on
      // `signal`, which lives as long as the deliverer. Before the end, it also closes the connection.
      const finish = (): void => {
        const retryAfter = response.headers['retry-after'];
        resolve({ statusCode: response.statusCode, retryAfter: typeof retryAfter === 'string' ? retryAfter : undefined, excerpt: Buffer.concat(chunks).subarray(0, EXCERPT_BYTES) });
        request.destroy();
      };
      answered = finish;
      request.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        size += chunk.length;
        if (size >= EXCERPT_BYTES) finish();
      });
      request.once('end', finish);
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
