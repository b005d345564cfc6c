ALTER TABLE auth_state ADD COLUMN access_token TEXT;
ALTER TABLE auth_state ADD COLUMN access_expires_at BIGINT;
