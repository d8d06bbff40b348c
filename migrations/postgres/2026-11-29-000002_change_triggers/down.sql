DROP TRIGGER clients_changed ON clients;
DROP TRIGGER client_changed ON clients;
DROP FUNCTION steelcut_clients_changed();
DROP FUNCTION steelcut_client_changed();
