DROP TRIGGER clients_deleted;
DROP TRIGGER clients_updated;
DROP TRIGGER clients_inserted;
