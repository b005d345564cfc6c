-- Concur's Event Notification callout. Every notification is kept as received, committed before
-- Concur is answered 200: from then on it is ours to turn into an event, whatever happens.
-- source: 'push' (POSTed to us) or 'failed-queue' (read from Concur's failed notifications).
-- notification_uri: a failed-queue item's URI at Concur; deleted_at: when Concur confirmed its DELETE.
-- done_at: when the receipt became an event (or was found a duplicate of one).
CREATE TABLE callouts (
  id INTEGER PRIMARY KEY,
  instance TEXT NOT NULL,
  source TEXT NOT NULL CHECK (source IN ('push', 'failed-queue')),
  body TEXT NOT NULL,
  event_type TEXT NOT NULL,
  object_type TEXT NOT NULL,
  object_uri TEXT NOT NULL,
  event_date_time TEXT NOT NULL,
  context TEXT NOT NULL,
  notification_uri TEXT,
  received_at INTEGER NOT NULL,
  done_at INTEGER,
  deleted_at INTEGER
);
CREATE INDEX callouts_to_ingest ON callouts (id) WHERE done_at IS NULL;
-- The hourly prune finds the done receipts by age without reading every body.
CREATE INDEX callouts_done ON callouts (instance, done_at) WHERE done_at IS NOT NULL;
CREATE INDEX callouts_to_delete ON callouts (instance, id) WHERE notification_uri IS NOT NULL AND deleted_at IS NULL;
-- Concur lists a failed notification until its DELETE lands: read twice, it is one receipt.
CREATE UNIQUE INDEX callouts_failed_once ON callouts (instance, notification_uri) WHERE notification_uri IS NOT NULL;

-- One row per event made from callouts: the same notification about the same state of the object
-- (its key, see src/callout/event.ts) makes no second event, however often Concur sends it.
CREATE TABLE callout_events (
  stream_id INTEGER NOT NULL REFERENCES streams (id),
  event_key TEXT NOT NULL,
  notification_id TEXT NOT NULL,
  -- Kept as long as the instance's seen changes (seenRetentionDays), then pruned with the done receipts.
  created_at INTEGER NOT NULL,
  PRIMARY KEY (stream_id, event_key)
) WITHOUT ROWID;
CREATE INDEX callout_events_age ON callout_events (stream_id, created_at);
