import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { pollbridgeVersion } from '../version.js';

/**
 * Each stream at scrape time: `scheduleLagSec`, how late its due poll is now (0 when not due
 * yet or running); `late`, no poll completed while STALL_POLLS came and went.
 */
export type StreamGaugeSource = () => { instance: string; resource: string; cursorLagSec: number; skewSec: number | undefined; scheduleLagSec: number; late: boolean }[];
export type OutboxGaugeSource = () => Promise<{ pending: number; dead: number }>;

/**
 * The daemon's Prometheus metrics, on a registry of its own (no global state, so tests and
 * several daemons in one process do not collide). Gauges that describe state (cursor lag,
 * outbox) are read at scrape time rather than kept in step by hand.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly polls: Counter<'instance' | 'resource' | 'result'>;
  readonly pollDuration: Histogram<'instance' | 'resource'>;
  readonly recordsSeen: Counter<'instance' | 'resource'>;
  readonly eventsEmitted: Counter<'instance' | 'resource'>;
  readonly duplicatesSuppressed: Counter<'instance' | 'resource'>;
  readonly recordsRejected: Counter<'instance' | 'resource'>;
  readonly upstreamRateLimited: Counter<'instance' | 'resource'>;
  readonly deliveryAttempts: Counter<'instance' | 'class'>;
  readonly deliveryDuration: Histogram<'instance'>;
  readonly deliveryLatency: Histogram<'instance'>;
  readonly callouts: Counter<'result'>;
  readonly calloutEvents: Counter<'instance' | 'outcome'>;
  readonly failedQueueRounds: Counter<'instance' | 'result'>;
  readonly scheduleLag: Histogram;

  constructor(streams: StreamGaugeSource, outbox: OutboxGaugeSource) {
    const registers = [this.registry];
    const streamLabels = ['instance', 'resource'] as const;
    this.polls = new Counter({ name: 'pollbridge_polls_total', help: 'Polls by result: ok, unsettled (window kept open) or failed.', labelNames: [...streamLabels, 'result'], registers });
    this.pollDuration = new Histogram({
      name: 'pollbridge_poll_duration_seconds', help: 'Duration of a poll, all pages and sweeps.', labelNames: streamLabels, registers,
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    });
    this.recordsSeen = new Counter({ name: 'pollbridge_records_seen_total', help: 'Records read from the provider.', labelNames: streamLabels, registers });
    this.eventsEmitted = new Counter({ name: 'pollbridge_events_emitted_total', help: 'New changes queued as events.', labelNames: streamLabels, registers });
    this.duplicatesSuppressed = new Counter({ name: 'pollbridge_duplicates_suppressed_total', help: 'Records whose change was already announced.', labelNames: streamLabels, registers });
    this.recordsRejected = new Counter({ name: 'pollbridge_records_rejected_total', help: 'Records without an id or with an unreadable date.', labelNames: streamLabels, registers });
    this.upstreamRateLimited = new Counter({ name: 'pollbridge_upstream_429_total', help: '429 answers from the provider.', labelNames: streamLabels, registers });
    this.deliveryAttempts = new Counter({ name: 'pollbridge_delivery_attempts_total', help: 'Delivery attempts by status class (2xx, 3xx, 4xx, 5xx, network).', labelNames: ['instance', 'class'], registers });
    this.deliveryDuration = new Histogram({
      name: 'pollbridge_delivery_duration_seconds', help: 'Duration of one delivery attempt.', labelNames: ['instance'], registers,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15],
    });
    this.deliveryLatency = new Histogram({
      name: 'pollbridge_delivery_latency_seconds', help: 'From queued to delivered, retries included.', labelNames: ['instance'], registers,
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 30, 300, 3600, 86400],
    });
    this.callouts = new Counter({
      name: 'pollbridge_callouts_total',
      help: "Requests to the callout connector by result: accepted (200 after commit), test_connection, or why refused (unauthorized, throttled, too_large, malformed, unsafe_xml, not_found, method_not_allowed, timeout, unavailable, tls_failed, not_http, headers_too_large, headers_timeout).",
      labelNames: ['result'], registers,
    });
    this.calloutEvents = new Counter({
      name: 'pollbridge_callout_events_total', help: 'Callout receipts by outcome: event (queued), fetch_failed (queued without the object), duplicate (already announced).',
      labelNames: ['instance', 'outcome'], registers,
    });
    this.failedQueueRounds = new Counter({
      name: 'pollbridge_callout_failed_queue_rounds_total', help: "Reads of Concur's failed-notification queue by result (ok, failed).", labelNames: ['instance', 'result'], registers,
    });
    this.scheduleLag = new Histogram({
      name: 'pollbridge_poll_schedule_lag_seconds', help: 'How late each poll started behind its due time.', registers,
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    });
    // The usual build_info: the running version as labels, for joins and for spotting a fleet half upgraded.
    new Gauge({ name: 'pollbridge_build_info', help: 'Always 1; the running pollbridge and node versions as labels.', labelNames: ['version', 'node'], registers })
      .set({ version: pollbridgeVersion(), node: process.versions.node }, 1);
    new Gauge({
      name: 'pollbridge_cursor_lag_seconds', help: 'How far each cursor is behind now.', labelNames: streamLabels, registers,
      collect() {
        this.reset();
        for (const s of streams()) this.set({ instance: s.instance, resource: s.resource }, s.cursorLagSec);
      },
    });
    new Gauge({
      name: 'pollbridge_clock_skew_seconds', help: "Provider's clock minus ours, from its Date header.", labelNames: streamLabels, registers,
      collect() {
        this.reset();
        for (const s of streams()) if (s.skewSec !== undefined) this.set({ instance: s.instance, resource: s.resource }, s.skewSec);
      },
    });
    new Gauge({
      name: 'pollbridge_outbox_notifications', help: 'Notifications in the outbox, by status.', labelNames: ['status'], registers,
      async collect() {
        const counts = await outbox();
        this.set({ status: 'pending' }, counts.pending);
        this.set({ status: 'dead' }, counts.dead);
      },
    });
  }
}

export function statusClass(statusCode: number | undefined): string {
  return statusCode === undefined ? 'network' : `${Math.floor(statusCode / 100)}xx`;
}
