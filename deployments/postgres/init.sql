-- First start of the PostgreSQL container: the app database is POSTGRES_DB (taskflow);
-- Prefect gets a database of its own on the same server.
CREATE DATABASE prefect;
