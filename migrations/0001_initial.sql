-- One row per (instance, resource): where polling stands and how the last poll went.
CREATE TABLE streams (
  id INTEGER PRIMARY KEY,
  instance TEXT NOT NULL,
  resource TEXT NOT NULL,
  -- Upper bound (µs since epoch) of the last window fully processed.
  cursor_us INTEGER NOT NULL,
  -- Records changed before this instant are history, never announced (no backfill by default).
  origin_us INTEGER NOT NULL,
  last_poll_at INTEGER,
  last_poll_ok INTEGER,
  last_poll_error TEXT,
  last_success_at INTEGER,
  UNIQUE (instance, resource)
);

-- Every change announced: (object, updated instant) per stream. A row here and its notification
-- are written in one transaction, so a change is either seen-and-queued or neither. Kept narrow:
-- this is the table that grows, and every record of every poll is looked up in it. The key
-- leads with the updated instant: pages arrive roughly in change order, so new rows land side
-- by side at the end of the index (a few pages written per commit, not one per record), and
-- pruning by age is a range delete.
CREATE TABLE seen (
  stream_id INTEGER NOT NULL REFERENCES streams (id),
  updated_us INTEGER NOT NULL,
  object_id TEXT NOT NULL,
  PRIMARY KEY (stream_id, updated_us, object_id)
) WITHOUT ROWID;

-- The outbox. The body is fixed when the notification is created, so every attempt sends the
-- same bytes under the same id.
CREATE TABLE notifications (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  stream_id INTEGER NOT NULL REFERENCES streams (id),
  instance TEXT NOT NULL,
  body TEXT NOT NULL,
  event_count INTEGER NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
  attempts INTEGER NOT NULL DEFAULT 0,
  -- Attempts made before the last replay: a replayed notification gets a fresh retry schedule.
  replay_base INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  delivered_at INTEGER,
  last_status INTEGER,
  last_error TEXT
);
CREATE INDEX notifications_due ON notifications (next_attempt_at, seq) WHERE status = 'pending';
CREATE INDEX notifications_status ON notifications (status, seq);

CREATE TABLE attempts (
  notification_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  started_at INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL,
  status_code INTEGER,
  error TEXT,
  response_excerpt TEXT,
  PRIMARY KEY (notification_id, attempt)
) WITHOUT ROWID;

-- OAuth2 state that must survive restarts: Concur rotates the refresh token on every use.
CREATE TABLE auth_state (
  instance TEXT PRIMARY KEY,
  -- Hash of the refresh token in the config when this row was written: a new token in the
  -- config (re-authorised) wins over the stored rotation.
  seed_hash TEXT NOT NULL,
  refresh_token TEXT NOT NULL,
  geolocation TEXT,
  updated_at INTEGER NOT NULL
);

-- Records that could not be turned into a change (no id, bad date): kept, never silently dropped.
CREATE TABLE rejected_records (
  id INTEGER PRIMARY KEY,
  stream_id INTEGER NOT NULL REFERENCES streams (id),
  seen_at INTEGER NOT NULL,
  position TEXT NOT NULL,
  reason TEXT NOT NULL,
  record TEXT NOT NULL,
  UNIQUE (stream_id, reason, record)
);
