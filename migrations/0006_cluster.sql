-- Replicas, stream leases and claims are the PostgreSQL store's (postgres/0006_cluster.sql): a
-- SQLite database has one daemon, held by its lock file. Kept so that both stores number their
-- migrations alike.
SELECT 1;
