# PgBouncer for docker-compose.yml: Debian's package (1.18), the one dxapi's own PgBouncer tests run, and
# pg_isready for the health check. The configuration is mounted (compose/pgbouncer.ini, compose/userlist.txt).
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends pgbouncer postgresql-client \
    && rm -rf /var/lib/apt/lists/*
# The package creates the postgres user; PgBouncer refuses to run as root.
USER postgres
EXPOSE 6432
CMD ["/usr/sbin/pgbouncer", "/etc/pgbouncer/pgbouncer.ini"]
