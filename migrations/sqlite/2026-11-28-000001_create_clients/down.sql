DROP TABLE store_state;
DROP TABLE clients;
