#!/usr/bin/env bash
# Runs the whole test suite: unit tests, the adapter contract suite against
# SQLite and PostgreSQL, and the end-to-end HTTP tests.
#
# PostgreSQL tests create one database per test on the server named by
# CHAT_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
# When that server is local and not running, this script starts it.
set -euo pipefail

cd "$(dirname "$0")/.."

export CHAT_TEST_DATABASE_URL="${CHAT_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

pg_up() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -d "$CHAT_TEST_DATABASE_URL" >/dev/null 2>&1
    else
        # Host and port from the URL; a bare TCP check.
        local hostport="${CHAT_TEST_DATABASE_URL#*@}"
        hostport="${hostport%%/*}"
        (exec 3<>"/dev/tcp/${hostport%%:*}/${hostport##*:}") >/dev/null 2>&1
    fi
}

if ! pg_up; then
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ] && [ -n "$(ls -A /etc/postgresql 2>/dev/null)" ]; then
        version="$(ls /etc/postgresql | sort -V | tail -n 1)"
        echo "test.sh: PostgreSQL is not running; starting cluster $version/main" >&2
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        for _ in $(seq 1 30); do
            pg_up && break
            sleep 1
        done
    fi
fi

if ! pg_up; then
    cat >&2 <<MSG
test.sh: cannot reach PostgreSQL at $CHAT_TEST_DATABASE_URL.
  The PostgreSQL adapter and end-to-end tests need a PostgreSQL (15 or newer)
  server whose user may CREATE DATABASE. Either:
    - install and start one locally (Debian: apt-get install postgresql,
      then pg_ctlcluster <version> main start; trust auth for 127.0.0.1), or
    - point CHAT_TEST_DATABASE_URL at one.
MSG
    exit 1
fi

# Tests leave their databases behind when they fail or are interrupted:
# clear those of earlier runs (best effort).
if command -v psql >/dev/null 2>&1; then
    psql "$CHAT_TEST_DATABASE_URL" -Atqc \
        "select datname from pg_database where datname like 'chat_test_%'" 2>/dev/null |
        while read -r db; do
            psql "$CHAT_TEST_DATABASE_URL" -qc "drop database if exists \"$db\" with (force)" >/dev/null 2>&1 || true
        done
fi

exec cargo test --workspace --locked "$@"
