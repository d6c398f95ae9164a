#!/bin/bash
# The replica's entrypoint (runs as the image's postgres user): on the first start, a copy of the primary by
# pg_basebackup -R, which also writes standby.signal and primary_conninfo; then PostgreSQL as a hot standby.
# PGPASSWORD is the replication role's password; the WAL receiver reads it from the environment too.
set -euo pipefail

primary=db

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    # depends_on waits for the primary's health check already; this also covers a primary restarting since.
    until pg_isready --quiet --host="$primary"; do
        echo "waiting for the primary at $primary"
        sleep 1
    done
    # On failure pg_basebackup empties the directory again, so the next start copies afresh.
    pg_basebackup --host="$primary" --username=replicator --no-password --pgdata="$PGDATA" \
        --wal-method=stream --slot=replica --write-recovery-conf --checkpoint=fast
    chmod 0700 "$PGDATA"  # the image leaves it world-writable for other users; PostgreSQL refuses that
fi

# hot_standby_feedback: the primary's vacuum waits for the replica's long reads (exports) instead of having
# them cancelled by the replay.
exec postgres -c hot_standby_feedback=on
