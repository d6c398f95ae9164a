#!/bin/bash
# Run once by the postgres image on the primary's first start (/docker-entrypoint-initdb.d): the role the
# replica copies and streams with, its replication slot, and the pg_hba line that lets it in (the image's own
# lines match no replication connection). Sourced instead when not executable, so it never exits by itself.
set -e

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set password="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'password';
-- The primary keeps the WAL the replica has not received yet, so a replica that falls behind catches up
-- instead of needing a new base backup. A replica removed for good must have its slot dropped too.
SELECT pg_create_physical_replication_slot('replica');
SQL

echo "host replication replicator all scram-sha-256" >>"$PGDATA/pg_hba.conf"
