import { describe, expect, it } from 'vitest';
import { harness } from './helpers/harness.js';
import { waitFor } from './helpers/tmp.js';

/** Review: what idle polls cost. */
describe('requests per idle poll', () => {
  it('overlap 0: nothing is ever due a second read, so an idle poll is one request', async () => {
    const h = await harness({ 'pollbridge.poller.overlapSeconds': '0' });
    await h.daemon().daemon.runOnce();
    const perPoll: number[] = [];
    for (let i = 0; i < 3; i++) {
      const second = Math.floor(h.sim.now() / 1000);
      await waitFor('the provider\'s next second', () => Math.floor(h.sim.now() / 1000) > second, 2000);
      const asked = h.sim.listQueries.length;
      await h.daemon().daemon.runOnce();
      perPoll.push(h.sim.listQueries.length - asked);
    }
    expect(perPoll).toEqual([1, 1, 1]);
  });
});
