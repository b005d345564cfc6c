import { Counter, Gauge, Histogram, type LabelValues, Registry } from 'prom-client';
import { pollbridgeVersion } from '../version.js';

export type StreamGauge = {
  instance: string;
  resource: string;
  cursorLagSec: number;
  skewSec: number | undefined;
  /** How late the stream's due poll is now (0: not due yet, or running). */
  scheduleLagSec: number;
  /** No poll completed while the daemon's STALL_POLLS scheduled ones came and went. */
  late: boolean;
};
export type StreamGaugeSource = () => readonly StreamGauge[];
export type OutboxGaugeSource = () => Promise<{ pending: number; dead: number }>;

export type MetricsOptions = {
  /**
   * Series labelled by instance (and per-stream lag and skew gauges). Off for thousands of
   * instances: 4,000 streams times every label set is more series than a Prometheus wants
   * from one target.
   */
  perInstance: boolean;
};

/**
 * One metric name with two label sets: with `instance` in per-instance mode, without it
 * otherwise. Keeping the name (rather than a separate `*_by_instance` metric) means a
 * dashboard that sums by the other labels (`sum by (resource, result) (rate(pollbridge_polls_total[5m]))`)
 * reads the same in both modes, and existing per-instance dashboards keep working where
 * per-instance is on. The total is always counted, so switching per-instance off exports a
 * total that is continuous since start; only the per-instance series are dropped.
 */
abstract class PerInstanceMetric<L extends string, M extends Counter<string> | Histogram<string>> {
  private perInstance = false;

  constructor(private readonly name: string, protected readonly total: M, protected readonly each: M) {}

  protected get counting(): boolean {
    return this.perInstance;
  }

  protected withoutInstance(labels: LabelValues<L>): LabelValues<string> {
    const { instance: _instance, ...rest } = labels as LabelValues<string>;
    return rest;
  }

  /** Exports the labelled or the total metric under the name; turning per-instance off forgets its series. */
  show(registry: Registry, perInstance: boolean): void {
    if (!perInstance) this.each.reset();
    this.perInstance = perInstance;
    registry.removeSingleMetric(this.name);
    registry.registerMetric(perInstance ? this.each : this.total);
  }
}

export class PerInstanceCounter<L extends string> extends PerInstanceMetric<L, Counter<string>> {
  constructor(config: { name: string; help: string; labelNames: readonly L[] }) {
    super(
      config.name,
      new Counter({ ...config, labelNames: config.labelNames.filter((l) => l !== 'instance'), registers: [] }),
      new Counter({ ...config, labelNames: [...config.labelNames], registers: [] }),
    );
  }

  inc(labels: LabelValues<L>, n?: number): void {
    this.total.inc(this.withoutInstance(labels), n);
    if (this.counting) this.each.inc(labels as LabelValues<string>, n);
  }
}

export class PerInstanceHistogram<L extends string> extends PerInstanceMetric<L, Histogram<string>> {
  constructor(config: { name: string; help: string; labelNames: readonly L[]; buckets: number[] }) {
    super(
      config.name,
      new Histogram({ ...config, labelNames: config.labelNames.filter((l) => l !== 'instance'), registers: [] }),
      new Histogram({ ...config, labelNames: [...config.labelNames], registers: [] }),
    );
  }

  observe(labels: LabelValues<L>, value: number): void {
    this.total.observe(this.withoutInstance(labels), value);
    if (this.counting) this.each.observe(labels as LabelValues<string>, value);
  }
}

/**
 * The daemon's Prometheus metrics, on a registry of its own (no global state, so tests and
 * several daemons in one process do not collide). Gauges that describe state (cursor lag,
 * outbox) are read at scrape time rather than kept in step by hand.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly polls: PerInstanceCounter<'instance' | 'resource' | 'result'>;
  readonly pollDuration: PerInstanceHistogram<'instance' | 'resource'>;
  /** How late each poll started behind its due time; the daemon observes it as a poll starts. */
  readonly scheduleLag: Histogram;
  readonly recordsSeen: PerInstanceCounter<'instance' | 'resource'>;
  readonly eventsEmitted: PerInstanceCounter<'instance' | 'resource'>;
  readonly duplicatesSuppressed: PerInstanceCounter<'instance' | 'resource'>;
  readonly recordsRejected: PerInstanceCounter<'instance' | 'resource'>;
  readonly upstreamRateLimited: PerInstanceCounter<'instance' | 'resource'>;
  readonly deliveryAttempts: PerInstanceCounter<'instance' | 'class'>;
  readonly deliveryDuration: PerInstanceHistogram<'instance'>;
  readonly deliveryLatency: PerInstanceHistogram<'instance'>;
  readonly callouts: Counter<'result'>;
  readonly calloutEvents: PerInstanceCounter<'instance' | 'outcome'>;
  readonly failedQueueRounds: PerInstanceCounter<'instance' | 'result'>;
  private readonly split: PerInstanceMetric<string, Counter<string> | Histogram<string>>[];
  private readonly streamGauges: { name: string; gauge: Gauge }[];
  private perInstance: boolean;

  constructor(streams: StreamGaugeSource, outbox: OutboxGaugeSource, options: MetricsOptions = { perInstance: true }) {
    const registers = [this.registry];
    const streamLabels = ['instance', 'resource'] as const;
    this.polls = new PerInstanceCounter({ name: 'pollbridge_polls_total', help: 'Polls by result: ok, unsettled (window kept open) or failed.', labelNames: [...streamLabels, 'result'] });
    this.pollDuration = new PerInstanceHistogram({
      name: 'pollbridge_poll_duration_seconds', help: 'Duration of a poll, all pages and sweeps.', labelNames: streamLabels,
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    });
    this.scheduleLag = new Histogram({
      name: 'pollbridge_poll_schedule_lag_seconds', help: 'How late each poll started behind its due time.', registers,
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    });
    this.recordsSeen = new PerInstanceCounter({ name: 'pollbridge_records_seen_total', help: 'Records read from the provider.', labelNames: streamLabels });
    this.eventsEmitted = new PerInstanceCounter({ name: 'pollbridge_events_emitted_total', help: 'New changes queued as events.', labelNames: streamLabels });
    this.duplicatesSuppressed = new PerInstanceCounter({ name: 'pollbridge_duplicates_suppressed_total', help: 'Records whose change was already announced.', labelNames: streamLabels });
    this.recordsRejected = new PerInstanceCounter({ name: 'pollbridge_records_rejected_total', help: 'Records without an id or with an unreadable date.', labelNames: streamLabels });
    this.upstreamRateLimited = new PerInstanceCounter({ name: 'pollbridge_upstream_429_total', help: '429 answers from the provider.', labelNames: streamLabels });
    this.deliveryAttempts = new PerInstanceCounter({ name: 'pollbridge_delivery_attempts_total', help: 'Delivery attempts by status class (2xx, 3xx, 4xx, 5xx, network).', labelNames: ['instance', 'class'] });
    this.deliveryDuration = new PerInstanceHistogram({
      name: 'pollbridge_delivery_duration_seconds', help: 'Duration of one delivery attempt.', labelNames: ['instance'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15],
    });
    this.deliveryLatency = new PerInstanceHistogram({
      name: 'pollbridge_delivery_latency_seconds', help: 'From queued to delivered, retries included.', labelNames: ['instance'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 30, 300, 3600, 86400],
    });
    this.callouts = new Counter({
      name: 'pollbridge_callouts_total',
      help: "Requests to the callout connector by result: accepted (200 after commit), test_connection, or why refused (unauthorized, throttled, too_large, malformed, unsafe_xml, not_found, method_not_allowed, timeout, unavailable, tls_failed, not_http, headers_too_large, headers_timeout).",
      labelNames: ['result'], registers,
    });
    this.calloutEvents = new PerInstanceCounter({
      name: 'pollbridge_callout_events_total', help: 'Callout receipts by outcome: event (queued), fetch_failed (queued without the object), duplicate (already announced).',
      labelNames: ['instance', 'outcome'],
    });
    this.failedQueueRounds = new PerInstanceCounter({
      name: 'pollbridge_callout_failed_queue_rounds_total', help: "Reads of Concur's failed-notification queue by result (ok, failed).", labelNames: ['instance', 'result'],
    });
    this.split = [
      this.polls, this.pollDuration, this.recordsSeen, this.eventsEmitted, this.duplicatesSuppressed, this.recordsRejected,
      this.upstreamRateLimited, this.deliveryAttempts, this.deliveryDuration, this.deliveryLatency, this.calloutEvents, this.failedQueueRounds,
    ];
    // The usual build_info: the running version as labels, for joins and for spotting a fleet half upgraded.
    new Gauge({ name: 'pollbridge_build_info', help: 'Always 1; the running pollbridge and node versions as labels.', labelNames: ['version', 'node'], registers })
      .set({ version: pollbridgeVersion(), node: process.versions.node }, 1);

    // Every stream gauge reads the same snapshot: one pass over the streams per scrape,
    // whatever their number. prom-client runs synchronous collects back to back, so the
    // snapshot is forgotten at the next microtask (at worst a scrape takes two).
    let snapshot: readonly StreamGauge[] | undefined;
    const current = (): readonly StreamGauge[] => {
      if (snapshot === undefined) {
        snapshot = streams();
        queueMicrotask(() => { snapshot = undefined; });
      }
      return snapshot;
    };
    const summary = (gauge: Gauge, value: (all: readonly StreamGauge[]) => number): void => {
      gauge.set(value(current()));
    };
    new Gauge({ name: 'pollbridge_streams', help: 'Streams (instance and resource) polled.', registers, collect() { summary(this, (all) => all.length); } });
    new Gauge({
      name: 'pollbridge_streams_late', help: 'Streams whose due poll is late.', registers,
      collect() { summary(this, (all) => all.reduce((n, s) => n + (s.late ? 1 : 0), 0)); },
    });
    new Gauge({
      name: 'pollbridge_cursor_lag_seconds_max', help: 'The largest cursor lag over all streams (0 without streams).', registers,
      collect() { summary(this, (all) => all.reduce((max, s) => Math.max(max, s.cursorLagSec), 0)); },
    });
    new Gauge({
      name: 'pollbridge_schedule_lag_seconds_max', help: 'How late the latest due poll is, over all streams (0: none is due).', registers,
      collect() { summary(this, (all) => all.reduce((max, s) => Math.max(max, s.scheduleLagSec ?? 0), 0)); },
    });
    // Per stream: only in per-instance mode (registered by setPerInstance).
    this.streamGauges = [
      { name: 'pollbridge_cursor_lag_seconds', gauge: new Gauge({
        name: 'pollbridge_cursor_lag_seconds', help: 'How far each cursor is behind now.', labelNames: streamLabels, registers: [],
        collect() {
          this.reset();
          for (const s of current()) this.set({ instance: s.instance, resource: s.resource }, s.cursorLagSec);
        },
      }) },
      { name: 'pollbridge_clock_skew_seconds', gauge: new Gauge({
        name: 'pollbridge_clock_skew_seconds', help: "Provider's clock minus ours, from its Date header.", labelNames: streamLabels, registers: [],
        collect() {
          this.reset();
          for (const s of current()) if (s.skewSec !== undefined) this.set({ instance: s.instance, resource: s.resource }, s.skewSec);
        },
      }) },
    ];
    new Gauge({
      name: 'pollbridge_outbox_notifications', help: 'Notifications in the outbox, by status.', labelNames: ['status'], registers,
      async collect() {
        const counts = await outbox();
        this.set({ status: 'pending' }, counts.pending);
        this.set({ status: 'dead' }, counts.dead);
      },
    });
    this.perInstance = !options.perInstance;
    this.setPerInstance(options.perInstance);
  }

  /**
   * On a cluster: every series carries the replica's name, so that replicas scraped behind one
   * job name stay apart, and the leases it may use are counted.
   */
  setReplica(name: string, leasesHeld: () => number): void {
    this.registry.setDefaultLabels({ replica: name });
    new Gauge({
      name: 'pollbridge_stream_leases_held', help: 'Stream leases this replica holds and may poll under now.', registers: [this.registry],
      collect() { this.set(leasesHeld()); },
    });
  }

  /** Switches per-instance series on or off (a reload): off drops those already exported. */
  setPerInstance(on: boolean): void {
    if (on === this.perInstance) return;
    this.perInstance = on;
    for (const m of this.split) m.show(this.registry, on);
    for (const { name, gauge } of this.streamGauges) {
      this.registry.removeSingleMetric(name);
      if (on) this.registry.registerMetric(gauge);
    }
  }
}

export function statusClass(statusCode: number | undefined): string {
  return statusCode === undefined ? 'network' : `${Math.floor(statusCode / 100)}xx`;
}
