-- The access token and when it stops being used (ms since epoch, with the safety margin taken
-- off). A restart within the hour polls with it instead of refreshing: with Concur rotating the
-- refresh token on every refresh, each refresh is a moment in which a crash, after Concur has
-- answered and before the answer is stored, would strand the instance with a spent token.
ALTER TABLE auth_state ADD COLUMN access_token TEXT;
ALTER TABLE auth_state ADD COLUMN access_expires_at INTEGER;
