-- OAuth clients. Lists (grant types, resources, scopes) are stored space-separated: none of
-- their values may contain a space (RFC 6749 section 3.3 scope tokens; resource indicators are
-- validated the same way), and one TEXT column keeps the schema identical on both backends.
CREATE TABLE clients (
    client_id   VARCHAR(64) PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    resources   TEXT NOT NULL,
    scopes      TEXT NOT NULL DEFAULT '',
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- A single row whose generation grows with every change to `clients`. Running daemons poll it
-- (one cheap SELECT) to drop cached credentials, so a rotated secret or a disabled client stops
-- working everywhere within a second, even on nodes that may only read.
CREATE TABLE store_state (
    id         INTEGER PRIMARY KEY NOT NULL,
    generation BIGINT NOT NULL
);
INSERT INTO store_state (id, generation) VALUES (1, 0);
