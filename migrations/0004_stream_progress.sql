-- Where a stream stands, beyond the cursor:
-- recheck_us: every change stamped before it was read again once it was older than the overlap
--   (records that become visible late are caught there; NULL: the cursor at the time).
-- skew_ms: the provider's clock minus ours at the last read, kept so that a restart starts with
--   windows in the provider's time rather than in ours.
-- forgotten_us: seen changes before this instant were pruned; nothing older is announced again,
--   even if seenRetentionDays is raised later.
ALTER TABLE streams ADD COLUMN recheck_us INTEGER;
ALTER TABLE streams ADD COLUMN skew_ms INTEGER;
ALTER TABLE streams ADD COLUMN forgotten_us INTEGER;
