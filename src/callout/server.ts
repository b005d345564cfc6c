import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { TEST_CONNECTION_PATH } from '../config/callout.js';
import type { CalloutListenConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import type { CalloutNotification } from '../store/types.js';
import { abortableSleep } from '../util/abortableSleep.js';
import { type BasicCredentials, matchCredentials, parseBasicAuth } from './basicAuth.js';
import { NotificationFormatError, parseNotification } from './notificationXml.js';
import { AuthThrottle } from './throttle.js';
import { UnsafeXmlError, XmlSyntaxError } from './xml.js';

/** A notification is a few hundred bytes; anything near this is not one. */
export const MAX_BODY_BYTES = 64 * 1024;
/** A client that has not sent its headers, or its whole body, by then is cut off. */
const HEADERS_TIMEOUT_MS = 10_000;
const BODY_TIMEOUT_MS = 10_000;
const MAX_CONNECTIONS = 1024;
/** The longest a stop waits for answers in progress (each waits for its commit). */
const CLOSE_GRACE_MS = 5_000;

/** One instance's connector: where Concur posts, with which credentials. */
export type CalloutRoute = BasicCredentials & { instance: string; path: string };

/** Every way a request ends, for `pollbridge_callouts_total{result}` and the log. */
export type CalloutResult =
  | 'accepted' | 'test_connection' | 'unauthorized' | 'throttled' | 'too_large' | 'malformed' | 'unsafe_xml' | 'not_found'
  | 'method_not_allowed' | 'timeout' | 'unavailable' | 'tls_failed' | 'not_http' | 'headers_too_large' | 'headers_timeout';

export type CalloutServerDeps = {
  /** The routes of the running config: a reload changes them without a new listener. */
  routes: () => readonly CalloutRoute[];
  /** Settles once the notification is committed; a rejection is answered 503. */
  receive: (instance: string, body: string, notification: CalloutNotification) => Promise<void>;
  onResult: (result: CalloutResult) => void;
  log: Logger;
  throttle?: AuthThrottle;
};

export type CalloutServer = {
  url: string;
  /** New certificate and key for the connections from now on (a renewal, on SIGHUP). */
  setTls(tls: { cert: string; key: string }): void;
  close(): Promise<void>;
};

class BodyError extends Error {
  constructor(readonly result: 'too_large' | 'timeout', message: string) {
    super(message);
  }
}

/** What each result is answered, and whether the log hears of it (bad input, at warn). */
const ANSWERS: Record<CalloutResult, { status: number; warn: boolean }> = {
  accepted: { status: 200, warn: false },
  test_connection: { status: 200, warn: false },
  unauthorized: { status: 401, warn: true },
  throttled: { status: 429, warn: true },
  too_large: { status: 413, warn: true },
  malformed: { status: 400, warn: true },
  unsafe_xml: { status: 400, warn: true },
  not_found: { status: 404, warn: true },
  method_not_allowed: { status: 405, warn: true },
  timeout: { status: 408, warn: true },
  unavailable: { status: 503, warn: false },
  // No HTTP answer: the handshake failed (an old TLS version, plain HTTP to the TLS port, a scanner).
  tls_failed: { status: 0, warn: true },
  // Refused by node's parser before any route: told apart from a notification gone wrong, so that
  // a scanner and a change of Concur's format do not look alike on a dashboard.
  not_http: { status: 400, warn: true },
  headers_too_large: { status: 431, warn: true },
  headers_timeout: { status: 408, warn: true },
};

/** Bad input from the open internet can come by the thousand: its log lines are sampled per result. */
const WARN_EVERY_MS = 10_000;

/**
 * Concur's application connector: `POST {path}` of each callout instance, with HTTP Basic
 * credentials, answered 200 only once the notification is committed, and Test Connection. Bad
 * input is answered at once and leaves nothing behind: bodies over MAX_BODY_BYTES are refused
 * before they are read, XML with a DTD is refused before it is parsed, slow clients are cut off,
 * and failed credentials from one address are paced (see AuthThrottle). Only the configured
 * paths answer anything but 404.
 */
export async function startCalloutServer(listen: CalloutListenConfig, deps: CalloutServerDeps): Promise<CalloutServer> {
  const throttle = deps.throttle ?? new AuthThrottle();
  const lastWarned = new Map<CalloutResult, { at: number; suppressed: number }>();
  const warn = (result: CalloutResult, fields: { reason: string; method?: string; path?: string; from?: string }): void => {
    const now = Date.now();
    const last = lastWarned.get(result);
    if (!last || now - last.at >= WARN_EVERY_MS) {
      lastWarned.set(result, { at: now, suppressed: 0 });
      deps.log.warn('callout refused', { result, status: ANSWERS[result].status, ...fields, ...(last?.suppressed ? { alikeSinceLast: last.suppressed } : {}) });
    } else {
      last.suppressed++;
    }
  };
  const end = (res: http.ServerResponse, result: CalloutResult, reason: string, req: http.IncomingMessage, headers: http.OutgoingHttpHeaders = {}): void => {
    deps.onResult(result);
    const { status } = ANSWERS[result];
    // The path is logged, never a header: the Authorization header holds the password.
    if (ANSWERS[result].warn) warn(result, { reason, method: req.method, path: pathOf(req), from: req.socket.remoteAddress });
    if (res.headersSent || res.destroyed) return;
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', ...headers }).end(`${reason}\n`);
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const path = pathOf(req);
    const routes = deps.routes();
    if (path === TEST_CONNECTION_PATH) {
      if (req.method !== 'GET' && req.method !== 'HEAD') return end(res, 'method_not_allowed', 'use GET', req, { allow: 'GET, HEAD', ...closing(req) });
      const route = await authenticate(req, res, routes);
      if (route) end(res, 'test_connection', 'OK', req);
      return;
    }
    const candidates = routes.filter((r) => r.path === path);
    if (candidates.length === 0) return end(res, 'not_found', 'not found', req, closing(req));
    if (req.method !== 'POST') return end(res, 'method_not_allowed', 'use POST', req, { allow: 'POST', ...closing(req) });
    const route = await authenticate(req, res, candidates);
    if (!route) return;
    const declared = Number(req.headers['content-length']);
    if (declared > MAX_BODY_BYTES) return end(res, 'too_large', `the body is over ${MAX_BODY_BYTES} bytes`, req, { connection: 'close' });
    let body: string;
    try {
      body = await readBody(req);
    } catch (err) {
      if (!(err instanceof BodyError)) throw err;
      end(res, err.result, err.message, req, { connection: 'close' });
      req.socket.destroySoon();
      return;
    }
    let notification: CalloutNotification;
    try {
      notification = parseNotification(body);
    } catch (err) {
      if (err instanceof UnsafeXmlError) return end(res, 'unsafe_xml', `not accepted: ${err.message}`, req);
      if (err instanceof XmlSyntaxError || err instanceof NotificationFormatError) return end(res, 'malformed', `not a Concur notification: ${err.message}`, req);
      throw err;
    }
    try {
      await deps.receive(route.instance, body, notification);
    } catch (err) {
      deps.log.error('callout not committed; answered 503 so that Concur sends it again', { instance: route.instance, error: (err as Error).message });
      return end(res, 'unavailable', 'cannot store the notification now; send it again later', req, { 'retry-after': '60' });
    }
    end(res, 'accepted', 'OK', req);
  };

  /** The route whose credentials the request carries, or undefined once it has been answered. */
  const authenticate = async (req: http.IncomingMessage, res: http.ServerResponse, candidates: readonly CalloutRoute[]): Promise<CalloutRoute | undefined> => {
    const address = throttleKey(req.socket.remoteAddress);
    // A monotonic clock: a wall clock set back would stretch the pacing.
    const admitted = throttle.admit(address, performance.now());
    if (admitted.kind === 'refuse') {
      end(res, 'throttled', 'too many failed attempts; try again later', req, { 'retry-after': String(admitted.retryAfterSec), ...closing(req) });
      return undefined;
    }
    try {
      if (admitted.kind === 'wait') {
        const gone = new AbortController();
        const onClose = (): void => gone.abort();
        req.socket.once('close', onClose);
        await abortableSleep(admitted.ms, gone.signal);
        req.socket.off('close', onClose);
        if (gone.signal.aborted) return undefined;
      }
      const index = matchCredentials(parseBasicAuth(req.headers.authorization), candidates);
      if (index >= 0) return candidates[index];
      throttle.failed(address, performance.now());
      end(res, 'unauthorized', 'unauthorized', req, { 'www-authenticate': 'Basic realm="pollbridge", charset="UTF-8"', ...closing(req) });
      return undefined;
    } finally {
      throttle.done(address);
    }
  };

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    handle(req, res).catch((err: unknown) => {
      deps.log.error('callout request failed', { error: (err as Error).message, path: pathOf(req) });
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
      res.end('internal error\n');
    });
  };
  const options = {
    headersTimeout: HEADERS_TIMEOUT_MS,
    requestTimeout: HEADERS_TIMEOUT_MS + BODY_TIMEOUT_MS,
    // Node checks the two timeouts above this often (default 30 s): slow clients go sooner.
    connectionsCheckingInterval: 1000,
    keepAliveTimeout: 5_000,
    maxHeaderSize: 16 * 1024,
  };
  const server: http.Server = listen.tls
    ? https.createServer({ ...options, cert: listen.tls.cert, key: listen.tls.key, minVersion: 'TLSv1.2' }, onRequest)
    : http.createServer(options, onRequest);
  // Sockets answered from clientError: the parser reports their end once more (HPE_INVALID_EOF_STATE),
  // which is the same request, not another bad one.
  const answered = new WeakSet<object>();
  // Concur opens a few; a client opening thousands only gets refused connections.
  server.maxConnections = MAX_CONNECTIONS;
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (answered.has(socket)) {
      socket.destroy();
      return;
    }
    answered.add(socket);
    // A client that hung up is no refusal of ours.
    if (err.code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    // Headers too slow or too large, a failed TLS handshake (it comes here too), or not HTTP at
    // all: answered, counted and logged here.
    const result: CalloutResult = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'headers_timeout' : err.code === 'HPE_HEADER_OVERFLOW' ? 'headers_too_large'
      : err.code?.startsWith('ERR_SSL_') || (err as { library?: string }).library === 'SSL routines' ? 'tls_failed' : 'not_http';
    deps.onResult(result);
    const reason = result === 'headers_timeout' ? `the headers did not arrive within ${HEADERS_TIMEOUT_MS / 1000} s` : result === 'headers_too_large' ? 'the headers are too large'
      : result === 'tls_failed' ? `TLS handshake failed (${err.code ?? err.message})` : `not an HTTP request (${err.code ?? 'unknown'})`;
    warn(result, { reason, from: (socket as Socket).remoteAddress });
    if (result !== 'tls_failed' && socket.writable) socket.end(`HTTP/1.1 ${ANSWERS[result].status} ${http.STATUS_CODES[ANSWERS[result].status]}\r\nconnection: close\r\n\r\n`);
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { address, port } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  return {
    url: `${listen.tls ? 'https' : 'http'}://${host}:${port}`,
    setTls: (tls) => (server as https.Server).setSecureContext({ cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }),
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // Answers in progress wait for their commit: given a moment, they answer 200 rather than
      // leave Concur to send again.
      const timer = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
      await closed;
      clearTimeout(timer);
    },
  };
}

/**
 * Whom the throttle counts failures of: an IPv4 address, or an IPv6 /64 (one host usually holds
 * a whole /64, and would otherwise guess from a fresh address each time).
 */
export function throttleKey(address: string | undefined): string {
  if (!address) return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!address.includes(':')) return address;
  const [head = '', tail = ''] = address.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '').toLowerCase()).join(':')}::/64`;
}

function pathOf(req: http.IncomingMessage): string {
  const url = req.url ?? '/';
  const query = url.search(/[?#]/);
  return query < 0 ? url : url.slice(0, query);
}

/** An answer sent before the body was read: the connection cannot carry another request. */
function closing(req: http.IncomingMessage): http.OutgoingHttpHeaders {
  return req.complete ? {} : { connection: 'close' };
}

/** The body as UTF-8, refused past MAX_BODY_BYTES (chunked bodies declare no length) or BODY_TIMEOUT_MS. */
function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => fail(new BodyError('timeout', `the body did not arrive within ${BODY_TIMEOUT_MS / 1000} s`)), BODY_TIMEOUT_MS);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      req.off('data', onData);
      req.pause();
      reject(err);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) fail(new BodyError('too_large', `the body is over ${MAX_BODY_BYTES} bytes`));
      else chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.once('error', fail);
  });
}
