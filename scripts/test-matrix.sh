#!/usr/bin/env bash
# The SQL side of every test against several PostgreSQL majors (issue 26): for each, fetches the
# server (scripts/pg-server.sh), builds and installs uhok_embed for it, installs the test models
# into its share directory, and runs scripts/test.sh: all of it for 15, and for the others with
# UHOK_SQL_ONLY=1 (pg_regress, the README's examples, concurrency, preload, model files and
# switches, limits, address space, logical replication, upgrades, the Python client; not
# embed-core's cargo tests or hadolint, which do not depend on the server). Ends with one line
# per major and fails if any did.
#
#   scripts/test-matrix.sh [MAJOR...]   (default: 15 18)
#
# A major other than 15 builds in a target directory of its own (build-extension.sh): about 9
# minutes cold on 2 cores, seconds after.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
majors=("$@")
[ ${#majors[@]} -gt 0 ] || majors=(15 18)
logs=$(mktemp -d /tmp/uhok_embed_matrix.XXXX)
# pg-server.sh needs Python's venv before any major's test run has installed it.
"$here/install-deps.sh"
summary=()
status=0
for major in "${majors[@]}"; do
    printf '\n==> PostgreSQL %s\n' "$major"
    pg_config=$("$here/pg-server.sh" "$major")
    started=$SECONDS
    set +e
    # 15 runs everything; the others skip what does not depend on the server.
    sql_only=1
    [ "$major" != 15 ] || sql_only=0
    PG_CONFIG=$pg_config UHOK_SQL_ONLY=$sql_only bash "$here/test.sh" 2>&1 | tee "$logs/pg$major.log"
    rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" = 0 ] || status=1
    summary+=("PostgreSQL $major ($("$pg_config" --version), $(( (SECONDS - started) / 60 )) min): $(tail -n 1 "$logs/pg$major.log")")
done
echo
printf '%s\n' "${summary[@]}"
echo "(logs: $logs)"
exit $status
