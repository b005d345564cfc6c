-- Replicas are the PostgreSQL store's (postgres/0007_replica_streams.sql): kept so that both
-- stores number their migrations alike.
SELECT 1;
