-- One row that health checks rewrite: proof that the database still takes a write.
CREATE TABLE pollbridge_health (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  checked_at INTEGER NOT NULL
);
