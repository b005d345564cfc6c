import { AbortError } from 'p-retry';
import { AuthError, type Authenticator } from './auth.js';
import { describeNetworkError, type GetText, type TextResponse } from './httpClient.js';
import { type FetchPolicy, isTransientStatus, type RetryNotice, retryTransient, transient } from './retry.js';

export class UpstreamError extends Error {
  constructor(message: string, readonly statusCode?: number, options?: ErrorOptions) {
    super(message, options);
    this.name = 'UpstreamError';
  }
}

export type FetchResult = { body: unknown; serverDate: string | undefined };

const excerpt = (text: string): string => text.replace(/\s+/g, ' ').trim().slice(0, 120);

/** Reads an answer's text; throws (a one-line message) when it is not what was expected. */
export type BodyParser = (text: string, contentType: string | undefined) => unknown;

export const parseJson: BodyParser = (text, contentType) => {
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`invalid JSON (${contentType ?? 'no content type'})`);
  }
};

/**
 * GET one JSON document. Transient failures (network, 5xx, 429) are retried with exponential
 * backoff and jitter, waiting out `Retry-After` on 429/503; a 401 refreshes the token once;
 * anything else fails at once with the status and a short excerpt of what came back. `onRetry`
 * hears of each retry before its wait.
 */
export async function fetchJson(
  getText: GetText,
  auth: Authenticator,
  url: string,
  policy: FetchPolicy,
  signal?: AbortSignal,
  onStatus?: (statusCode: number) => void,
  onRetry?: (notice: RetryNotice) => void,
): Promise<FetchResult> {
  return fetchDocument(getText, auth, url, policy, parseJson, signal, onStatus, onRetry);
}

/** `fetchJson` with another reader of the answer's text (Concur's XML-only APIs). */
export async function fetchDocument(
  getText: GetText,
  auth: Authenticator,
  url: string,
  policy: FetchPolicy,
  parse: BodyParser,
  signal?: AbortSignal,
  onStatus?: (statusCode: number) => void,
  onRetry?: (notice: RetryNotice) => void,
): Promise<FetchResult> {
  let reauthenticated = false;
  const attempt = async (): Promise<FetchResult> => {
    let response: TextResponse;
    for (;;) {
      let authHeaders: Record<string, string>;
      try {
        authHeaders = await auth.headers(signal);
      } catch (err) {
        // A refused refresh does not heal in seconds: fail this poll at once, try again next poll.
        if (err instanceof AuthError) throw new AbortError(err);
        throw err;
      }
      const headers = { accept: 'application/json', ...authHeaders };
      try {
        response = await getText(url, headers, signal);
      } catch (err) {
        if (signal?.aborted) throw new AbortError(new UpstreamError(`GET ${url} aborted`));
        const reason = describeNetworkError(err);
        throw transient(new UpstreamError(`GET ${url} failed: ${reason}`, undefined, { cause: err }), reason);
      }
      if (response.statusCode !== 401 || reauthenticated) break;
      reauthenticated = true;
      auth.invalidate();
    }
    const status = response.statusCode;
    onStatus?.(status);
    if (isTransientStatus(status)) throw transient(new UpstreamError(`GET ${url} answered ${status}: ${excerpt(response.body)}`, status), `answered ${status}`, response.headers['retry-after']);
    if (status < 200 || status >= 300) {
      throw new AbortError(new UpstreamError(`GET ${url} answered ${status}: ${excerpt(response.body)}`, status));
    }
    try {
      return { body: parse(response.body, response.headers['content-type']), serverDate: response.headers.date };
    } catch (err) {
      throw new AbortError(new UpstreamError(`GET ${url} answered ${status} with ${(err as Error).message}: ${excerpt(response.body)}`, status));
    }
  };
  return retryTransient(attempt, policy, signal, onRetry);
}
