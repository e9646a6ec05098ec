#!/usr/bin/env bash
# A throwaway PostgreSQL cluster ($PG_CONFIG's major, 15 by default) on a private port and socket
# directory, for tests and the demo.
#
#   cluster.sh init DIR PORT    initdb (if needed), not started (tests/pg_upgrade.sh's new cluster)
#   cluster.sh start DIR PORT   initdb (if needed) and start; prints nothing on success
#   cluster.sh stop DIR         stop it (the data stays in DIR until you delete it)
#
# $UHOK_CLUSTER_CONF, if set, is appended to a new cluster's postgresql.conf (scripts/test.sh
# pins the test model there, so a test run does not depend on the server's default model).
#
# PostgreSQL refuses to run as root, so as root the cluster belongs to $PG_OS_USER.
# Connect with: psql -h DIR -p PORT -U postgres
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

init_cluster() {
    port=${1:?port}
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown "$PG_OS_USER" "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        # Data checksums off on every major (18 turned them on by default; 15 had them off):
        # pg_upgrade between two test clusters needs them the same.
        local checksums=()
        [ "$PG_MAJOR" -lt 18 ] || checksums=(--no-data-checksums)
        as_owner "$PG_BINDIR/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
            "${checksums[@]}" >/dev/null
        cat >> "$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
port = $port
unix_socket_directories = '$dir'
fsync = off
log_min_messages = warning
${UHOK_CLUSTER_CONF:-}
CONF
    fi
}

cmd=${1:?usage: cluster.sh init|start DIR PORT | stop DIR}
dir=${2:?cluster directory}
case "$cmd" in
init)
    init_cluster "${3:-}"
    ;;
start)
    init_cluster "${3:-}"
    # pgrx appends a Rust backtrace to every ERROR's DETAIL when RUST_BACKTRACE is set; expected
    # output must not depend on the caller's environment.
    as_owner env -u RUST_BACKTRACE "$PG_BINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
    ;;
stop)
    as_owner "$PG_BINDIR/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    ;;
*)
    echo "usage: cluster.sh init|start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
