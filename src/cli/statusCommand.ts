import { instantOrDash, isoOrDash, table } from './format.js';
import { withCliStore } from './openStore.js';

export async function statusCommand(opts: { db?: string; config?: string; json?: boolean }): Promise<void> {
  await withCliStore(opts, { readonly: true }, async (store) => {
    const streams = await store.streams();
    const counts = await store.notificationCounts();
    if (opts.json) {
      process.stdout.write(JSON.stringify({ streams: streams.map((s) => ({ ...s, cursor: instantOrDash(s.cursor) })), notifications: counts }, null, 2) + '\n');
      return;
    }
    process.stdout.write(table(
      ['INSTANCE', 'RESOURCE', 'CURSOR', 'LAST POLL', 'RESULT', 'PENDING', 'DEAD', 'REJECTED', 'LAST ERROR'],
      streams.map((s) => [
        s.instance, s.resource, instantOrDash(s.cursor), isoOrDash(s.lastPollAt),
        s.lastPollOk === undefined ? '-' : s.lastPollOk ? 'ok' : 'failed',
        String(s.pending), String(s.dead), String(s.rejected), s.lastPollError ?? s.lastDeliveryError ?? '',
      ]),
    ));
    process.stdout.write(`notifications: ${counts.pending} pending, ${counts.delivered} delivered, ${counts.dead} dead\n`);
  });
}
