import type { DateParser } from '../time/dateParser.js';
import type { ConfigIssue } from './issues.js';
import type { Instant } from '../time/instant.js';
import type { UrlTemplate } from '../poll/urlTemplate.js';

export type AuthConfig =
  | { type: 'oauth2_refresh_token'; tokenUrl: string; clientId: string; clientSecret: string; refreshToken: string }
  | { type: 'bearer'; token: string }
  | { type: 'basic'; username: string; password: string }
  | { type: 'none' };

export type Schedule = { kind: 'interval'; intervalMs: number } | { kind: 'cron'; expression: string };

export type ResourceConfig = {
  /** The key under `event.poller.configuration`; becomes `objectType`. */
  name: string;
  url: string;
  urlTemplate: UrlTemplate;
  idField: string;
  filterByUpdatedDate: boolean;
  updatedDateField: string;
  parseUpdatedDate: DateParser;
  createdDateField: string | undefined;
  parseCreatedDate: DateParser | undefined;
  createdCheckToleranceSec: number;
  pageSize: number;
  pollDelaySec: number;
  /** Dot path of the record list in a response (generic elements). */
  itemsPath: string;
  /** Dot path of the next page's URL in a response (generic elements). */
  nextPagePath: string;
  /**
   * The API returns records oldest first by the updated date (generic elements, whose URLs have no
   * end date): read by keyset paging. Only the operator can say so: no page proves it.
   */
  oldestFirst: boolean;
};

export type DeliveryConfig = {
  maxEventsPerNotification: number;
  timeoutMs: number;
  /** Delay before each retry, in seconds; its length is the number of retries. */
  retryScheduleSec: number[];
  /** Most requests in flight to one callback URL. */
  concurrency: number;
  /** Strict order per instance: one at a time, and nothing passes a failing notification. */
  ordered: boolean;
};

/**
 * The instance as Concur's application connector (`pollbridge.callout.*`): present only when
 * enabled. Concur's Event Notification callout POSTs to `path` with these Basic credentials.
 */
export type InstanceCalloutConfig = {
  path: string;
  username: string;
  password: string;
  /** How often Concur's failed-notification queue is read and emptied, ms (0: never). */
  failedQueueMs: number;
};

export type InstanceConfig = {
  name: string;
  /**
   * Digest of the instance as written, its references resolved: a reload restarts an instance
   * whose digest changed and leaves the others running.
   */
  fingerprint: string;
  /** The `instancesDir` file it came from; undefined for an instance of the main file. */
  source: string | undefined;
  elementKey: string;
  enabled: boolean;
  callbackUrl: string;
  signatureKey: string | undefined;
  previousSignatureKeys: string[];
  baseUrl: string;
  auth: AuthConfig;
  schedule: Schedule;
  backfillFrom: Instant | undefined;
  overlapSec: number;
  settleSec: number;
  /** Seen changes are kept this long behind the cursor; older records count as history. */
  seenRetentionSec: number;
  timeZone: string;
  delivery: DeliveryConfig;
  resources: ResourceConfig[];
  callout: InstanceCalloutConfig | undefined;
};

export type HttpConfig = { host: string; port: number };

/**
 * The top-level `callout` listener. `tls` holds the PEM texts as read when the file was loaded
 * (a reload reads them again: certificate renewals); without it the listener is plain HTTP.
 */
export type CalloutListenConfig = HttpConfig & { tls: { cert: string; key: string } | undefined };

/** An `instancesDir` file that did not validate: refused alone, the rest of the config goes ahead. */
export type RefusedInstanceFile = {
  file: string;
  /** The instance's name, when the file could be read that far. */
  name: string | undefined;
  issues: ConfigIssue[];
};

/** How many polls and provider requests run at once (top-level `polling`). */
export type PollingLimits = {
  /** Polls running at once, across all instances. */
  maxConcurrent: number;
  /** Requests in flight to one provider origin (scheme, host and port): pages and token requests. */
  maxConcurrentPerOrigin: number;
};

/** Replicas on one PostgreSQL database (`pollbridge.cluster.*`); unused with SQLite. */
export type ClusterConfig = {
  /** A replica that stops renewing its leases loses its streams to the others this long after its last renewal. */
  leaseMs: number;
};

export const DEFAULT_LEASE_SECONDS = 15;

export type PollbridgeConfig = {
  file: string;
  /** SQLite: the database file's resolved path. PostgreSQL: the URL without its password, for messages. */
  database: string;
  /** The PostgreSQL URL, password and all (a secret), when `database` is one; undefined for SQLite. */
  databaseUrl: string | undefined;
  cluster: ClusterConfig;
  http: HttpConfig | undefined;
  /**
   * Per-instance series on /metrics (`http.metricsPerInstance`; default: on up to
   * METRICS_PER_INSTANCE_LIMIT instances). Totals and the worst lag are there either way.
   */
  metricsPerInstance: boolean;
  polling: PollingLimits;
  /** The resolved `instancesDir`, if set. */
  instancesDir: string | undefined;
  /** `instancesDir` files refused; their instances are not in `instances` (a running one keeps its last good config). */
  refused: RefusedInstanceFile[];
  callout: CalloutListenConfig | undefined;
  instances: InstanceConfig[];
  /** Every secret value the file resolved, so the logger can keep them out of every line. */
  secrets: string[];
  /** What will work, but likely not as meant: `validate` prints them, `run` logs them at start. */
  warnings: ConfigIssue[];
};
