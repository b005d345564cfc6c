-- The PostgreSQL store's schema, numbered as the SQLite one (../0001_initial.sql): each file here
-- makes what the file of the same number there makes. Times are ms (or µs, *_us) since the epoch
-- in BIGINT, as there; node-postgres reads them back as numbers (src/store/pg/pool.ts).
CREATE TABLE streams (
  id BIGSERIAL PRIMARY KEY,
  instance TEXT NOT NULL,
  resource TEXT NOT NULL,
  cursor_us BIGINT NOT NULL,
  origin_us BIGINT NOT NULL,
  last_poll_at BIGINT,
  last_poll_ok BOOLEAN,
  last_poll_error TEXT,
  last_success_at BIGINT,
  UNIQUE (instance, resource)
);

-- Every change announced, per stream: see ../0001_initial.sql for why the key leads with the instant.
CREATE TABLE seen (
  stream_id BIGINT NOT NULL REFERENCES streams (id),
  updated_us BIGINT NOT NULL,
  object_id TEXT NOT NULL,
  PRIMARY KEY (stream_id, updated_us, object_id)
);

CREATE TABLE notifications (
  seq BIGSERIAL PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  stream_id BIGINT NOT NULL REFERENCES streams (id),
  instance TEXT NOT NULL,
  body TEXT NOT NULL,
  event_count INTEGER NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
  attempts INTEGER NOT NULL DEFAULT 0,
  replay_base INTEGER NOT NULL DEFAULT 0,
  next_attempt_at BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  delivered_at BIGINT,
  last_status INTEGER,
  last_error TEXT
);
CREATE INDEX notifications_due ON notifications (next_attempt_at, seq) WHERE status = 'pending';
CREATE INDEX notifications_status ON notifications (status, seq);
CREATE INDEX notifications_pending_instance ON notifications (instance, seq) WHERE status = 'pending';
CREATE INDEX notifications_stream ON notifications (stream_id, status);

CREATE TABLE attempts (
  notification_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  started_at BIGINT NOT NULL,
  duration_ms BIGINT NOT NULL,
  status_code INTEGER,
  error TEXT,
  response_excerpt TEXT,
  PRIMARY KEY (notification_id, attempt)
);

CREATE TABLE auth_state (
  instance TEXT PRIMARY KEY,
  seed_hash TEXT NOT NULL,
  refresh_token TEXT NOT NULL,
  geolocation TEXT,
  updated_at BIGINT NOT NULL
);

CREATE TABLE rejected_records (
  id BIGSERIAL PRIMARY KEY,
  stream_id BIGINT NOT NULL REFERENCES streams (id),
  seen_at BIGINT NOT NULL,
  position TEXT NOT NULL,
  reason TEXT NOT NULL,
  record TEXT NOT NULL
);
-- A record can be long: its uniqueness is kept on a digest, not the text (a btree entry is at most a third of a page).
CREATE UNIQUE INDEX rejected_once ON rejected_records (stream_id, reason, md5(record));
