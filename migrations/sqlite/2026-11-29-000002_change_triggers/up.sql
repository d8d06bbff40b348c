-- Every change to `clients`, whoever makes it (the CLI or plain SQL), bumps the change counter
-- that running daemons poll, so cached credentials never outlive a change by more than a second.
CREATE TRIGGER clients_inserted AFTER INSERT ON clients
BEGIN
    UPDATE store_state SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER clients_updated AFTER UPDATE ON clients
BEGIN
    UPDATE store_state SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER clients_deleted AFTER DELETE ON clients
BEGIN
    UPDATE store_state SET generation = generation + 1 WHERE id = 1;
END;
