import { describe, expect, it } from 'vitest';
import { replicasLine, summaryText } from '../src/cli/statusView.js';
import type { StreamStatus } from '../src/store/types.js';

const stream = (i: number, replica: string | undefined): StreamStatus => ({
  instance: `company-${i}`, resource: 'reports', cursor: 0, lastPollAt: undefined, lastPollOk: undefined, lastPollError: undefined,
  lastSuccessAt: undefined, pending: 0, dead: 0, rejected: 0, lastDeliveryError: undefined, replica,
});

describe('status on a cluster', () => {
  it('counts the streams each replica holds, most first, and those none holds', () => {
    const streams = [stream(1, 'vm-b'), stream(2, 'vm-a'), stream(3, 'vm-b'), stream(4, undefined), stream(5, 'vm-c')];
    expect(replicasLine(streams)).toBe('replicas holding streams: vm-b 2, vm-a 1, vm-c 1, none 1');
    expect(replicasLine([stream(1, undefined)])).toBe('replicas holding streams: none 1');
  });

  it('the summary of a cluster says who holds what; a lone daemon\'s does not', () => {
    const streams = Array.from({ length: 30 }, (_, i) => stream(i, i % 3 === 0 ? 'vm-a' : 'vm-b'));
    const input = { streams, configured: undefined, counts: { pending: 0, delivered: 0, dead: 0 }, callouts: [], waiting: [], nowMs: 0 };
    expect(summaryText({ ...input, clustered: true })).toContain('replicas holding streams: vm-b 20, vm-a 10\n');
    expect(summaryText(input)).not.toContain('replicas');
  });
});
