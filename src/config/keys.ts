/** Every key pollbridge reads, by the place of the file it is read from. */

export const ROOT_KEYS = ['database', 'http', 'callout', 'polling', 'instances', 'instancesDir', 'pollbridge.cluster.leaseSeconds'] as const;
export const HTTP_KEYS = ['listen', 'metricsPerInstance'] as const;
export const POLLING_KEYS = ['maxConcurrent', 'maxConcurrentPerOrigin'] as const;
export const CALLOUT_KEYS = ['listen', 'tls'] as const;
export const CALLOUT_TLS_KEYS = ['cert', 'key'] as const;
export const INSTANCE_KEYS = ['name', 'element', 'provider', 'configuration', 'tags'] as const;
/**
 * AMPLIFY's read-only fields of an instance, as `GET /instances` returns them: an export pasted as
 * it is carries them. They describe AMPLIFY's copy (its ids, dates, cache, owner, its own
 * instance token), never how to poll, so they are dropped before the instance is read or
 * fingerprinted: a new `updatedDate` restarts nothing.
 */
export const AMPLIFY_INSTANCE_FIELDS: readonly string[] = [
  'id', 'createdDate', 'updatedDate', 'token', 'elementId', 'valid', 'disabled', 'description',
  'maxCacheSize', 'cacheTimeToLive', 'cachingEnabled', 'providerData', 'externalAuthentication', 'user',
  'eventsEnabled', 'traceLoggingEnabled', 'authenticationType', 'provisionInteractions', 'channelName',
  'retrieveObjectsAfterInstantiation', 'objects',
];
/**
 * Of `element`, only `key` is read. An export holds AMPLIFY's whole description of the element
 * there (id, name, image, flags, …), which has grown with AMPLIFY's versions: every other key is
 * dropped, and a misspelt `key` is still caught as missing.
 */
export const ELEMENT_KEYS = ['key'] as const;
export const PROVIDER_KEYS = ['baseUrl', 'auth'] as const;
export const AUTH_KEYS: Readonly<Record<string, readonly string[]>> = {
  oauth2_refresh_token: ['type', 'tokenUrl', 'clientId', 'clientSecret', 'refreshToken'],
  bearer: ['type', 'token'],
  basic: ['type', 'username', 'password'],
  none: ['type'],
};

/** The element whose AMPLIFY hub URLs pollbridge maps to the provider's own API. */
export const CONCUR_ELEMENT = 'concur';

/** AMPLIFY's instance settings that pollbridge reads; AMPLIFY's `configuration` holds others too. */
export const AMPLIFY_CONFIGURATION_KEYS = [
  'event.notification.enabled', 'event.vendor.type', 'event.notification.callback.url',
  'event.notification.signature.key', 'event.poller.refresh_interval', 'event.poller.configuration',
] as const;
export const INSTANCE_EXTENSION_KEYS: ReadonlySet<string> = new Set([
  'pollbridge.poller.cron', 'pollbridge.poller.backfillFrom', 'pollbridge.poller.overlapSeconds',
  'pollbridge.poller.settleSeconds', 'pollbridge.poller.timezone', 'pollbridge.poller.seenRetentionDays',
  'pollbridge.delivery.maxEventsPerNotification', 'pollbridge.delivery.timeoutMs',
  'pollbridge.delivery.retrySchedule', 'pollbridge.delivery.concurrency', 'pollbridge.delivery.ordered',
  'pollbridge.notification.previousSignatureKeys',
  'pollbridge.callout.enabled', 'pollbridge.callout.path', 'pollbridge.callout.username', 'pollbridge.callout.password',
  'pollbridge.callout.failedQueueMinutes',
]);

/** AMPLIFY's fields of one resource of `event.poller.configuration`. */
export const RESOURCE_KEYS = [
  'url', 'idField', 'filterByUpdatedDate', 'filterByCurrentDate', 'datesConfiguration', 'createdCheckTolerance', 'pageSize', 'pollDelay',
] as const;
export const RESOURCE_EXTENSION_KEYS: ReadonlySet<string> = new Set(['pollbridge.items', 'pollbridge.nextPage', 'pollbridge.oldestFirst']);
export const DATES_KEYS = [
  'updatedDateField', 'updatedDateFormat', 'updatedDateTimezone', 'createdDateField', 'createdDateFormat', 'createdDateTimezone',
] as const;

/** `${kind:…}` references resolved when the file is read. */
export const SECRET_KINDS = ['env', 'file', 'credential'] as const;
/** Macros of a resource's `url`, expanded at each poll (as `compileUrlTemplate` knows them). */
export const URL_MACROS = ['date', 'gmtDate', 'dateTimeZone', 'epoch'] as const;
