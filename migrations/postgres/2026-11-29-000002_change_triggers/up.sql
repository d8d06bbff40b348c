-- Every change to `clients`, whoever makes it (the CLI or plain SQL: an UPDATE or DELETE by a
-- DBA), is announced at once on the channel `steelcut_clients` (the payload is the client id,
-- or `*` for a TRUNCATE), which daemons LISTEN to; and bumps the change counter that daemons
-- also poll, the only path on a hot standby, where LISTEN does not exist.
CREATE FUNCTION steelcut_client_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('steelcut_clients', OLD.client_id);
    ELSE
        PERFORM pg_notify('steelcut_clients', NEW.client_id);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION steelcut_clients_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE store_state SET generation = generation + 1 WHERE id = 1;
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('steelcut_clients', '*');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER client_changed AFTER INSERT OR UPDATE OR DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION steelcut_client_changed();
CREATE TRIGGER clients_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON clients
    FOR EACH STATEMENT EXECUTE FUNCTION steelcut_clients_changed();
