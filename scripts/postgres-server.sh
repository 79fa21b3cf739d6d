#!/usr/bin/env bash
# A private PostgreSQL server for tests and benchmarks: Debian's postgresql, a fresh cluster in a
# directory of its own, listening only on a Unix socket in that directory (no TCP port, nothing
# shared with a system server). The server refuses to run as root, so as root it runs as the
# `postgres` user (runuser) and the directory is handed to that user.
#
#   scripts/postgres-server.sh start DIR     initdb (first time) + start; prints the connection URL
#   scripts/postgres-server.sh stop DIR      fast shutdown (waits)
#   scripts/postgres-server.sh restart DIR   stop + start (the same data)
#   scripts/postgres-server.sh kill DIR      SIGKILL the postmaster (a crash; start recovers)
#   scripts/postgres-server.sh url DIR       the URL: postgresql:///tilekit?host=DIR/socket&user=postgres
#   scripts/postgres-server.sh run DIR CMD.. start, run CMD with TILEKIT_TEST_POSTGRES_URL set, stop
#                                            (even when CMD fails); exits with CMD's status
set -euo pipefail

action=${1:?usage: postgres-server.sh start|stop|restart|kill|url|run DIR [CMD...]}
dir=${2:?usage: postgres-server.sh start|stop|restart|kill|url|run DIR [CMD...]}
shift 2
dir=$(mkdir -p "$dir" && cd "$dir" && pwd)

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/pg_ctl" ] || { echo "postgres-server: no PostgreSQL server (apt-get install postgresql)" >&2; exit 1; }

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
user=$([ "$(id -u)" -eq 0 ] && echo postgres || id -un)
url="postgresql:///tilekit?host=$dir/socket&user=$user"

start() {
    mkdir -p "$dir/socket"
    [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_owner "$bin/initdb" -D "$dir/data" -U "$user" --auth=trust --encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
            { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    # listen_addresses='': Unix socket only. fsync stays on: the restart tests must see what a
    # real server keeps. max_connections covers the benchmark's 16 workers per queue and the tests.
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses='' -c unix_socket_directories='$dir/socket' -c max_connections=200" start >/dev/null ||
        { tail -20 "$dir/server.log" >&2; exit 1; }
    as_owner "$bin/psql" -h "$dir/socket" -U "$user" -d postgres -qtAc \
        "SELECT 1 FROM pg_database WHERE datname = 'tilekit'" | grep -q 1 ||
        as_owner "$bin/createdb" -h "$dir/socket" -U "$user" tilekit
}

stop() {
    [ -f "$dir/data/postmaster.pid" ] || return 0
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
}

case $action in
    start) start; echo "$url" ;;
    stop) stop ;;
    restart) stop; start; echo "$url" ;;
    kill)
        [ -f "$dir/data/postmaster.pid" ] && kill -9 "$(head -1 "$dir/data/postmaster.pid")" || true
        # A killed postmaster leaves its backends; they exit once they notice. Wait for the
        # socket lock to go so that `start` can bind again.
        for _ in $(seq 100); do pgrep -u postgres -f "$dir/data" >/dev/null || break; sleep 0.1; done
        # The lock files name a pid that is gone (or a zombie nobody reaps, which the server's
        # liveness check takes for alive): remove them.
        rm -f "$dir/data/postmaster.pid" "$dir"/socket/.s.PGSQL.*.lock
        ;;
    url) echo "$url" ;;
    run)
        [ $# -gt 0 ] || { echo "postgres-server: run needs a command" >&2; exit 2; }
        start >/dev/null
        trap stop EXIT
        status=0
        TILEKIT_TEST_POSTGRES_URL=$url TILEKIT_TEST_POSTGRES_DIR=$dir "$@" || status=$?
        exit "$status"
        ;;
    *) echo "postgres-server: unknown action '$action'" >&2; exit 2 ;;
esac
