#!/usr/bin/env bash
# Sourced by scripts/test.sh: unless CELLFAB_TEST_POSTGRES_URL is already set, starts a
# throw-away PostgreSQL cluster (initdb + pg_ctl, as user postgres when run as root) on a free
# port of 127.0.0.1 in a temporary folder, exports CELLFAB_TEST_POSTGRES_URL for cargo test and
# stops and deletes the cluster when the calling shell exits, even after a failure.

if [ -n "${CELLFAB_TEST_POSTGRES_URL:-}" ]; then
  echo "PostgreSQL for the tests: given by CELLFAB_TEST_POSTGRES_URL"
  return 0 2>/dev/null || exit 0
fi

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi

free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

pg_dir=$(mktemp -d /tmp/cellfab-pg.XXXXXX)
pg_port=$(free_port)
# PostgreSQL refuses to run as root: use the postgres user then.
if [ "$(id -u)" = 0 ]; then
  chown postgres "$pg_dir"
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

stop_postgres() {
  as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
}
trap stop_postgres EXIT

as_pg "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U postgres >"$pg_dir/initdb.log" 2>&1 \
  || { cat "$pg_dir/initdb.log" >&2; exit 1; }
as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 \
  -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
  || { cat "$pg_dir/server.log" >&2; exit 1; }
export CELLFAB_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
echo "PostgreSQL for the tests: throw-away cluster on 127.0.0.1:$pg_port ($("$pg_bin/postgres" --version))"
