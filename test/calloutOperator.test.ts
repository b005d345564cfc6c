import { describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';
import { basicAuth, CONNECTOR, NOTIFY_PATH, withCallout } from './helpers/callout.js';
import { harness } from './helpers/harness.js';
import { waitFor } from './helpers/tmp.js';

/** A counter's value in /metrics text, by its full label set as printed (absent: 0). */
function metric(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

describe('a pushed event as the operator sees it: /metrics, events, status and replay', () => {
  it('logs no credential; counts the push in /metrics, lists and shows its event on the (callout) stream, counts its receipt in status, and replays it under the same id', { timeout: 60_000 }, async () => {
    const h = await harness({}, {}, (c) => ({ ...withCallout(c), http: { listen: '127.0.0.1:0' } }));
    const first = h.daemon();
    await first.daemon.start();
    h.sim.setCallout({ url: `${first.daemon.calloutUrl}${NOTIFY_PATH}`, ...CONNECTOR, retryDelaysMs: [50, 50, 50] });
    const report = h.sim.createReport({ ApprovalStatusCode: 'A_PEND' });
    await h.sim.calloutsSettled();
    const pushed = await waitFor('the pushed event delivered', () => h.receiver.accepted.find((r) => (r.raw as { notification?: unknown }).notification));
    expect(pushed.events[0]!.objectId).toBe(report.ID);

    const metrics = await (await fetch(`${first.daemon.httpUrl}/metrics`)).text();
    expect(metric(metrics, 'pollbridge_callouts_total', 'result="accepted"')).toBe(1);
    expect(metric(metrics, 'pollbridge_callout_events_total', 'instance="ConcurTest",outcome="event"')).toBe(1);
    expect(metric(metrics, 'pollbridge_callout_events_total', 'instance="ConcurTest",outcome="duplicate"')).toBe(0);
    expect(metric(metrics, 'pollbridge_callout_failed_queue_rounds_total', 'instance="ConcurTest",result="ok"')).toBeGreaterThan(0);
    await first.daemon.stop();
    // At debug level, through a push, its fetch, its delivery and a stop: neither the password
    // nor the Authorization header it travelled in (which no redaction list knows) is logged.
    const logged = first.logs.raw.join('\n');
    expect(logged).toContain('callout queued as an event');
    for (const secret of [CONNECTOR.password, basicAuth(CONNECTOR.username, CONNECTOR.password).slice('Basic '.length)]) expect(logged).not.toContain(secret);
    const db = first.config.database;

    const listed = await runCli(['events', 'list', '--db', db, '--json']);
    expect(listed.code).toBe(0);
    const rows = JSON.parse(listed.stdout) as { id: string; instance: string; resource: string; status: string }[];
    expect(rows.filter((r) => r.resource === '(callout)')).toEqual([expect.objectContaining({ id: pushed.id, instance: 'ConcurTest', status: 'delivered' })]);

    const shown = await runCli(['events', 'show', pushed.id, '--db', db]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(`${pushed.id}  ConcurTest/(callout)  delivered  1 event(s)`);
    expect(shown.stdout).toContain(report.ID);
    expect(shown.stdout).toContain('Report Entered Expense Report Workflow Step - SUBMIT');

    const status = await runCli(['status', '--db', db, '--json']);
    expect(status.code).toBe(0);
    const json = JSON.parse(status.stdout) as { streams: { instance: string; resource: string }[]; callouts: Record<string, unknown>[] };
    // Concur pushes: the stream has no cursor, in JSON as in the table's '-'.
    expect(json.streams).toContainEqual(expect.objectContaining({ instance: 'ConcurTest', resource: '(callout)', cursor: null }));
    expect(json.callouts).toEqual([expect.objectContaining({ instance: 'ConcurTest', received: 1, awaitingEvent: 0, awaitingDelete: 0 })]);
    const table = await runCli(['status', '--db', db]);
    expect(table.stdout).toMatch(/^ConcurTest +\(callout\) +- +/m);
    expect(table.stdout).toMatch(/^callouts ConcurTest: 1 received \(last \d+ s ago\), 0 waiting for their event, 0 waiting for their DELETE at Concur$/m);

    const replay = await runCli(['replay', pushed.id, '--db', db]);
    expect(replay.code).toBe(0);
    expect(replay.stdout).toMatch(/^1 notification\(s\) queued for delivery again/);
    const before = h.receiver.seenIds.filter((id) => id === pushed.id).length;
    const second = h.daemon();
    await second.daemon.start();
    await waitFor('the replayed event delivered again', () => h.receiver.seenIds.filter((id) => id === pushed.id).length > before || undefined);
    const again = h.receiver.accepted.filter((r) => r.id === pushed.id);
    expect(again.at(-1)!.body).toBe(pushed.body);
  });
});
