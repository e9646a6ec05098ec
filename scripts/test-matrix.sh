#!/usr/bin/env bash
# The SQL side of every test against several PostgreSQL majors (issue 26): for each, fetches the
# server (scripts/pg-server.sh), builds and installs uhok_embed for it, installs the test models
# into its share directory, and runs scripts/test.sh: all of it for 15, and for the others with
# UHOK_SQL_ONLY=1 (pg_regress, the README's examples, concurrency, preload, model files and
# switches, limits, address space, logical replication, upgrades, the Python client; not
# embed-core's cargo tests or hadolint, which do not depend on the server). Then pg_upgrade from
# the oldest major to the newest (tests/pg_upgrade.sh). Ends with one line per major and one
# total, "N passed, M failed", and fails if any test did.
#
#   scripts/test-matrix.sh [MAJOR...]   (default: 15 16 18, what .ci/run runs; 15 to 18 all: 15 16 17 18)
#
# A major other than 15 builds in a target directory of its own (build-extension.sh): about 9
# minutes cold on 2 cores, seconds after. 17 is built from source first (pg-server.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
majors=("$@")
[ ${#majors[@]} -gt 0 ] || majors=(15 16 18)
logs=$(mktemp -d /tmp/uhok_embed_matrix.XXXX)
# pg-server.sh needs Python's venv before any major's test run has installed it.
"$here/install-deps.sh"
summary=()
status=0
passed=0
failed=0
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
    # test.sh's last line: "N passed, M failed" (none when it stopped early: one failure).
    if counts=$(tail -n 1 "$logs/pg$major.log" | grep -E '^[0-9]+ passed, [0-9]+ failed$'); then
        passed=$((passed + ${counts%% *}))
        failed=$((failed + $(awk '{ print $3 }' <<< "$counts")))
    else
        failed=$((failed + 1))
    fi
    summary+=("PostgreSQL $major ($("$pg_config" --version), $(( (SECONDS - started) / 60 )) min): $(tail -n 1 "$logs/pg$major.log")")
done

# pg_upgrade from the oldest major to the newest. Debian's 15.20 keeps an "attribute version" in
# every column's attoptions (pg_attver, a back-branch security fix) that no PostgreSQL 18 to be
# had here (18.4, 18.6) knows: its pg_upgrade fails restoring even a one-column table without
# uhok_embed. So the upgrade starts from the oldest major whose upgrade PostgreSQL itself supports.
newest=${majors[-1]}
new_config=$("$here/pg-server.sh" "$newest")
for old in "${majors[@]}"; do
    [ "$old" != "$newest" ] || break
    old_config=$("$here/pg-server.sh" "$old")
    if grep -qa pg_attver "$("$old_config" --bindir)/postgres" &&
       ! grep -qa pg_attver "$("$new_config" --bindir)/postgres"; then
        summary+=("pg_upgrade $old -> $newest: not tried, PostgreSQL cannot ($("$old_config" --version) stores pg_attver, which $("$new_config" --version) does not know)")
        echo "${summary[-1]}"
        continue
    fi
    printf '\n==> pg_upgrade from PostgreSQL %s to %s\n' "$old" "$newest"
    rc=0
    bash "$here/../tests/pg_upgrade.sh" "$old_config" "$new_config" 54343 2>&1 | tee "$logs/pg_upgrade.log" || rc=$?
    if [ "$rc" = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); status=1; fi
    summary+=("pg_upgrade $old -> $newest: $([ "$rc" = 0 ] && echo ok || echo FAILED)")
    break
done
echo
printf '%s\n' "${summary[@]}"
echo "(logs: $logs)"
echo "$passed passed, $failed failed"
exit $status
