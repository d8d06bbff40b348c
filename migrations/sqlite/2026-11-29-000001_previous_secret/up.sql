-- Secret rotation with overlap: `client update --new-secret --keep-old-secret-for D` keeps the
-- previous secret's hash valid until `previous_secret_expires_at` (Unix seconds).
ALTER TABLE clients ADD COLUMN previous_secret_hash TEXT;
ALTER TABLE clients ADD COLUMN previous_secret_expires_at BIGINT;
