import { describe, expect, it } from 'vitest';
import { Metrics, type StreamGauge } from '../src/daemon/metrics.js';

const RESOURCES = ['reports', 'requests'] as const;

/** `count` instances × 2 resources; instance i's cursor lag is i seconds, its schedule lag i / 10. */
function fleet(count: number): StreamGauge[] {
  return Array.from({ length: count }, (_, i) => RESOURCES.map((resource) => ({
    instance: `company-${i}`, resource, cursorLagSec: i, skewSec: 0.5, scheduleLagSec: i / 10, late: i % 7 === 0,
  }))).flat();
}

/** The value of the series `name{labels}` exactly, from the exposition text. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Every series of a metric name (its sample lines). */
const seriesOf = (text: string, name: string): string[] => text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));

/** Records the same traffic for every stream: one ok poll, 3 records and 1 event each, one delivery. */
function traffic(metrics: Metrics, streams: readonly StreamGauge[]): void {
  for (const { instance, resource } of streams) {
    metrics.polls.inc({ instance, resource, result: 'ok' });
    metrics.recordsSeen.inc({ instance, resource }, 3);
    metrics.eventsEmitted.inc({ instance, resource }, 1);
    metrics.pollDuration.observe({ instance, resource }, 0.4);
    metrics.deliveryAttempts.inc({ instance, class: '2xx' });
    metrics.deliveryDuration.observe({ instance }, 0.02);
  }
}

const outbox = async () => ({ pending: 5, dead: 1 });

describe('metrics at 4,000 streams', () => {
  it('without per-instance series: no instance label anywhere, totals by resource and class, and the fleet gauges', async () => {
    const streams = fleet(2000);
    const metrics = new Metrics(() => streams, outbox, { perInstance: false });
    traffic(metrics, streams);
    metrics.scheduleLag.observe(0.3);
    const text = await metrics.registry.metrics();
    expect(text).not.toContain('instance=');
    expect(sample(text, 'pollbridge_polls_total{resource="reports",result="ok"}')).toBe(2000);
    expect(sample(text, 'pollbridge_polls_total{resource="requests",result="ok"}')).toBe(2000);
    expect(sample(text, 'pollbridge_records_seen_total{resource="reports"}')).toBe(6000);
    expect(sample(text, 'pollbridge_delivery_attempts_total{class="2xx"}')).toBe(4000);
    expect(sample(text, 'pollbridge_delivery_duration_seconds_count')).toBe(4000);
    expect(sample(text, 'pollbridge_poll_duration_seconds_count{resource="requests"}')).toBe(2000);
    expect(sample(text, 'pollbridge_streams')).toBe(4000);
    expect(sample(text, 'pollbridge_streams_late')).toBe(2 * Math.ceil(2000 / 7));
    expect(sample(text, 'pollbridge_cursor_lag_seconds_max')).toBe(1999);
    expect(sample(text, 'pollbridge_schedule_lag_seconds_max')).toBeCloseTo(199.9);
    expect(sample(text, 'pollbridge_poll_schedule_lag_seconds_bucket{le="0.5"}')).toBe(1);
    expect(sample(text, 'pollbridge_poll_schedule_lag_seconds_bucket{le="0.25"}')).toBe(0);
    expect(sample(text, 'pollbridge_outbox_notifications{status="pending"}')).toBe(5);
    expect(seriesOf(text, 'pollbridge_cursor_lag_seconds')).toEqual([]);
    expect(seriesOf(text, 'pollbridge_clock_skew_seconds')).toEqual([]);
    // The exposition stays the size of the totals, not of the fleet.
    expect(text.split('\n').length).toBeLessThan(300);
  });

  it('with per-instance series: the same names labelled by instance, which add up to the totals of the other mode', async () => {
    const streams = fleet(50);
    const metrics = new Metrics(() => streams, outbox, { perInstance: true });
    traffic(metrics, streams);
    const text = await metrics.registry.metrics();
    expect(text).toContain('instance=');
    const polls = seriesOf(text, 'pollbridge_polls_total');
    expect(polls).toHaveLength(100);
    expect(polls.reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0)).toBe(100);
    expect(sample(text, 'pollbridge_polls_total{instance="company-7",resource="requests",result="ok"}')).toBe(1);
    expect(sample(text, 'pollbridge_delivery_attempts_total{instance="company-3",class="2xx"}')).toBe(2);
    expect(seriesOf(text, 'pollbridge_records_seen_total').reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0)).toBe(300);
    expect(sample(text, 'pollbridge_cursor_lag_seconds{instance="company-42",resource="reports"}')).toBe(42);
    expect(sample(text, 'pollbridge_clock_skew_seconds{instance="company-0",resource="requests"}')).toBe(0.5);
    expect(seriesOf(text, 'pollbridge_cursor_lag_seconds')).toHaveLength(100);
    // The fleet gauges do not depend on the mode.
    expect(sample(text, 'pollbridge_streams')).toBe(100);
    expect(sample(text, 'pollbridge_cursor_lag_seconds_max')).toBe(49);
  });

  it('switching per-instance off drops the labelled series and keeps the totals counted since start; on again starts them afresh', async () => {
    const streams = fleet(20);
    const metrics = new Metrics(() => streams, outbox, { perInstance: true });
    traffic(metrics, streams);
    metrics.setPerInstance(false);
    let text = await metrics.registry.metrics();
    expect(text).not.toContain('instance=');
    expect(sample(text, 'pollbridge_polls_total{resource="reports",result="ok"}')).toBe(20);
    traffic(metrics, streams);
    text = await metrics.registry.metrics();
    expect(sample(text, 'pollbridge_polls_total{resource="reports",result="ok"}')).toBe(40);
    expect(sample(text, 'pollbridge_delivery_attempts_total{class="2xx"}')).toBe(80);

    metrics.setPerInstance(true);
    traffic(metrics, streams);
    text = await metrics.registry.metrics();
    // Per instance: only what came after the switch.
    expect(sample(text, 'pollbridge_polls_total{instance="company-1",resource="reports",result="ok"}')).toBe(1);
    expect(seriesOf(text, 'pollbridge_polls_total')).toHaveLength(40);
    expect(seriesOf(text, 'pollbridge_cursor_lag_seconds')).toHaveLength(40);
    // Each name is exported once, whichever its label set.
    expect(text.match(/^# TYPE pollbridge_polls_total /gm)).toHaveLength(1);
    expect(text.match(/^# TYPE pollbridge_cursor_lag_seconds /gm)).toHaveLength(1);
  });

  it('reads the streams once per scrape, and the fleet gauges are 0 without streams', async () => {
    let reads = 0;
    const streams = fleet(10);
    const metrics = new Metrics(() => { reads++; return streams; }, outbox, { perInstance: true });
    await metrics.registry.metrics();
    expect(reads).toBe(1);
    await metrics.registry.metrics();
    expect(reads).toBe(2);

    const empty = new Metrics(() => [], outbox, { perInstance: false });
    const text = await empty.registry.metrics();
    for (const name of ['pollbridge_streams', 'pollbridge_streams_late', 'pollbridge_cursor_lag_seconds_max', 'pollbridge_schedule_lag_seconds_max']) {
      expect(sample(text, name), name).toBe(0);
    }
  });
});
