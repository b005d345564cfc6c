-- The streams each replica can poll (those of its own config): a stream is placed only among the
-- replicas that have it, so that while configs differ (a rolling change, a SIGHUP on one host)
-- no stream is given to a replica that would never poll it. NULL: all (a replica of before).
ALTER TABLE replicas ADD COLUMN streams BIGINT[];
