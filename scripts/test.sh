#!/usr/bin/env bash
# Runs the whole test suite: unit tests, the adapter contract suites against
# SQLite, PostgreSQL, Redis and the file stores, and the end-to-end HTTP and
# WebSocket tests.
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

# Redis, for the cross-node event bus and presence tests (each test uses its
# own key prefix).
export CHAT_TEST_REDIS_URL="${CHAT_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
redis_up() {
    local hostport="${CHAT_TEST_REDIS_URL#redis://}"
    hostport="${hostport##*@}"
    hostport="${hostport%%/*}"
    if command -v redis-cli >/dev/null 2>&1; then
        redis-cli -h "${hostport%%:*}" -p "${hostport##*:}" ping >/dev/null 2>&1
    else
        (exec 3<>"/dev/tcp/${hostport%%:*}/${hostport##*:}") >/dev/null 2>&1
    fi
}
if ! redis_up && command -v redis-server >/dev/null 2>&1; then
    echo "test.sh: Redis is not running; starting it on 127.0.0.1:6379" >&2
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null 2>&1 ||
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null 2>&1 || true
    for _ in $(seq 1 20); do
        redis_up && break
        sleep 0.5
    done
fi
if ! redis_up; then
    cat >&2 <<MSG
test.sh: cannot reach Redis at $CHAT_TEST_REDIS_URL.
  The Redis adapter and two-node tests need a Redis (6 or newer). Either
  install and start one locally (Debian: apt-get install redis-server), or
  point CHAT_TEST_REDIS_URL at one.
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

# Attachments: an S3-compatible server for the S3 adapter and a ClamAV
# daemon for the scanner. Both come from the package registries (PyPI's
# moto, Debian's clamav-daemon); a test whose server could not be installed
# says SKIPPED on stderr. Both are stopped when this script ends.
services_dir="${CHAT_TEST_SERVICES_DIR:-$HOME/.cache/chat-test}"
mkdir -p "$services_dir"
service_pids=()
stop_services() {
    for pid in "${service_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    rm -rf "$services_dir/run"
}
trap stop_services EXIT
mkdir -p "$services_dir/run"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() {
    for _ in $(seq 1 "$2"); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}

# moto: a Python S3 server, one pip install, no service account, starts in
# about a second. Installed once into a virtualenv under the cache folder.
start_s3() {
    local venv="$services_dir/moto-venv"
    if [ ! -x "$venv/bin/moto_server" ]; then
        echo "test.sh: installing moto[server] (S3-compatible test server) from PyPI" >&2
        python3 -m venv "$venv" >&2 && "$venv/bin/pip" install --quiet 'moto[server]' >&2 || return 1
    fi
    local port
    port="$(free_port)"
    "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$services_dir/run/moto.log" 2>&1 &
    service_pids+=("$!")
    wait_for_port "$port" 60 || return 1
    export CHAT_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
}

# clamd with a one-signature database that detects the EICAR test string
# anywhere in a file: the real daemon and protocol, without the virus
# database download (freshclam needs the internet).
start_clamd() {
    if ! command -v clamd >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: installing clamav-daemon from Debian's packages" >&2
        # No terminal in CI: debconf must not ask anything.
        export DEBIAN_FRONTEND=noninteractive
        (apt-get install -y -q clamav-daemon >&2 </dev/null ||
            { apt-get update -q >&2 </dev/null && apt-get install -y -q clamav-daemon >&2 </dev/null; }) || return 1
    fi
    command -v clamd >/dev/null 2>&1 || return 1
    local dir="$services_dir/run/clamd" port
    mkdir -p "$dir/db"
    chmod 755 "$services_dir/run" "$dir" "$dir/db"
    local eicar='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
    printf 'Eicar-Test-Signature:0:*:%s\n' "$(printf '%s' "$eicar" | od -An -tx1 | tr -d ' \n')" >"$dir/db/chat-test.ndb"
    port="$(free_port)"
    cat >"$dir/clamd.conf" <<CONF
Foreground yes
TCPSocket $port
TCPAddr 127.0.0.1
DatabaseDirectory $dir/db
LogFile $dir/clamd.log
StreamMaxLength 20M
CONF
    clamd --config-file="$dir/clamd.conf" >"$dir/stdout.log" 2>&1 &
    service_pids+=("$!")
    wait_for_port "$port" 120 || return 1
    export CHAT_TEST_CLAMD_ADDR="127.0.0.1:$port"
}

if [ -z "${CHAT_TEST_S3_ENDPOINT:-}" ]; then
    start_s3 || echo "test.sh: WARNING: no S3-compatible server could be installed or started; the S3 tests will say SKIPPED" >&2
fi
if [ -z "${CHAT_TEST_CLAMD_ADDR:-}" ]; then
    start_clamd || echo "test.sh: WARNING: clamd could not be installed or started; the real-clamd tests will say SKIPPED" >&2
fi

cargo test --workspace --locked "$@"
