-- Concur's Event Notification callout: see ../0005_callouts.sql.
CREATE TABLE callouts (
  id BIGSERIAL PRIMARY KEY,
  instance TEXT NOT NULL,
  source TEXT NOT NULL CHECK (source IN ('push', 'failed-queue')),
  body TEXT NOT NULL,
  event_type TEXT NOT NULL,
  object_type TEXT NOT NULL,
  object_uri TEXT NOT NULL,
  event_date_time TEXT NOT NULL,
  context TEXT NOT NULL,
  notification_uri TEXT,
  received_at BIGINT NOT NULL,
  done_at BIGINT,
  deleted_at BIGINT
);
CREATE INDEX callouts_to_ingest ON callouts (id) WHERE done_at IS NULL;
CREATE INDEX callouts_done ON callouts (instance, done_at) WHERE done_at IS NOT NULL;
CREATE INDEX callouts_to_delete ON callouts (instance, id) WHERE notification_uri IS NOT NULL AND deleted_at IS NULL;
CREATE UNIQUE INDEX callouts_failed_once ON callouts (instance, notification_uri) WHERE notification_uri IS NOT NULL;

CREATE TABLE callout_events (
  stream_id BIGINT NOT NULL REFERENCES streams (id),
  event_key TEXT NOT NULL,
  notification_id TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (stream_id, event_key)
);
CREATE INDEX callout_events_age ON callout_events (stream_id, created_at);
