#!/usr/bin/env bash
# Runs docs/runbooks.md as written (issue 26): every block marked `<!-- runbook: root -->` as
# root from the repository's root, every `<!-- runbook: server -->` block as the cluster's OS
# user with PGDATA, PGHOST, PGPORT, PGUSER and the major's bin/ on PATH, in the file's order, on
# a cluster of its own whose database `recipes` already has "RECIPE_VECTOR_TABLE" (HNSW index,
# 350 rows without vectors) and pgvector, and a second database `shop` with uhok_embed 0.5.0.
# After each block it checks what the runbook promises.
#
# Two things differ from a DBA's run, both said when they happen: `build-extension.sh --release`
# builds the dev profile, which the test run has built already (UHOK_RUNBOOK_RELEASE=1 runs the
# release build as written: on 15, 2026-12-07, all checks passed in 5.4 minutes, most of it the
# release build), and the model hub is pointed at a closed port (a run must not download).
# What the blocks change outside the cluster is put back at the end: the default model and its
# .chosen mark, the model the runbook installs, /srv/models, and the files the uninstall removes.
#
# usage: runbooks.sh PORT   (uhok_embed, pgvector and the test models installed for $PG_CONFIG)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
port=${1:?port}
. "$root/scripts/common.sh"
. "$here/lib.sh"
unset UHOK_CLUSTER_CONF   # the default model path, as a DBA's server has it
store=$UHOK_MODEL_STORE
pkglibdir=$("$PG_CONFIG" --pkglibdir)

# --- what the blocks change outside the cluster, put back on exit ------------------------------
saved=$(mktemp -d /tmp/uhok_embed_runbooks_saved.XXXX)
default_before=$(readlink "$store/model")
chosen_before=no; [ ! -e "$store/.chosen" ] || chosen_before=yes
srv_before=no; [ ! -e /srv/models ] || srv_before=yes
mkdir "$saved/lib" "$saved/extension"
cp -a "$pkglibdir/uhok_embed.so" "$saved/lib/"
cp -a "$PG_SHAREDIR"/extension/uhok_embed[-.]* "$saved/extension/"
cp -a "$PG_SHAREDIR/uhok_embed" "$saved/share-link"
restore() {
    cp -a "$saved/lib/uhok_embed.so" "$pkglibdir/"
    cp -a "$saved"/extension/. "$PG_SHAREDIR/extension/"
    [ -L "$PG_SHAREDIR/uhok_embed" ] || cp -a "$saved/share-link" "$PG_SHAREDIR/uhok_embed"
    ln -sfn "$default_before" "$store/model.new.$$" && mv -Tf "$store/model.new.$$" "$store/model"
    [ "$chosen_before" = yes ] || rm -f "$store/.chosen"
    rm -rf "$store/models/recipes-ko-v2" "$saved"
    [ "$srv_before" = yes ] || rm -rf /srv/models
}
throwaway_cluster runbooks "$port"
trap '"$SCRIPTS/cluster.sh" stop "$cluster"; rm -rf "$cluster"; restore' EXIT

# --- the server a DBA already runs -------------------------------------------------------------
psql=(psql -X -q -At -v ON_ERROR_STOP=1 -h "$cluster" -p "$port" -U postgres)
"${psql[@]}" -d postgres -c "CREATE DATABASE recipes" -c "CREATE DATABASE shop"
"${psql[@]}" -d recipes <<SQL
CREATE EXTENSION vector;
CREATE TABLE "RECIPE_VECTOR_TABLE" ("RECIPE_ID" bigint PRIMARY KEY, "COOKING_NAME" text NOT NULL,
                                    "VECTOR_NAME" vector(384), "EMBEDDING_VERSION" text);
CREATE INDEX ON "RECIPE_VECTOR_TABLE" USING hnsw ("VECTOR_NAME" vector_l2_ops);
CREATE TEMP TABLE names (name text);
\copy names FROM '$root/demo/recipes.txt'
INSERT INTO "RECIPE_VECTOR_TABLE" ("RECIPE_ID", "COOKING_NAME") SELECT row_number() OVER (), name FROM names;
SQL
"${psql[@]}" -d shop -c "SET client_min_messages = warning" -c "CREATE EXTENSION uhok_embed VERSION '0.5.0' CASCADE"
# The model runbook 3 installs: a real sentence-transformers folder under the name it gives.
mkdir -p /srv/models
cp -r "$store/models/all-MiniLM-L6-v2" /srv/models/recipes-ko-v2

# --- the blocks --------------------------------------------------------------------------------
blocks=$(mktemp -d "$saved/blocks.XXXX")
python3 - "$root/docs/runbooks.md" "$blocks" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
for i, (kind, code) in enumerate(re.findall(r"<!-- runbook: (root|server) -->\n```sh\n(.*?)```", text, re.S), 1):
    open(f"{sys.argv[2]}/{i:02d}.{kind}", "w", encoding="utf-8").write(code)
PY
chmod -R a+rX "$saved"
count=$(ls "$blocks" | wc -l)
check "docs/runbooks.md has the 11 blocks this test knows" 11 "$count"
[ "$count" = 11 ] || exit 1

run_block() {  # run_block FILE: runs it as the runbook says, its output in $out
    local file=$1 code status=0
    # A file per block: a postmaster restarted by a block keeps writing to that block's output.
    out=$saved/out.$(basename "$file")
    code=$(cat "$file")
    if [ "${UHOK_RUNBOOK_RELEASE:-0}" != 1 ] && grep -q 'build-extension.sh --release' <<< "$code"; then
        echo "  (build-extension.sh --release run as build-extension.sh: UHOK_RUNBOOK_RELEASE=1 for the release build)"
        code=${code//build-extension.sh --release/build-extension.sh}
    fi
    case "$file" in
    *.root)
        (cd "$root" && HF_ENDPOINT=http://127.0.0.1:9 bash -euo pipefail -c "$code") >"$out" 2>&1 || status=$? ;;
    *.server)
        # Its output in a file, not a pipe (a restarted postmaster keeps stderr open).
        as_owner env -u RUST_BACKTRACE PGDATA="$cluster/data" PGHOST="$cluster" PGPORT="$port" \
            PGUSER=postgres PATH="$PG_BINDIR:$PATH" bash -euo pipefail -c "$code" >"$out" 2>&1 || status=$? ;;
    esac
    check "block $(basename "$file") exits 0" 0 "$status"
    [ "$status" = 0 ] || sed 's/^/    /' "$out" | tail -n 20
}
sql() { "${psql[@]}" -d recipes -c "$1"; }
rows_with_version() { sql "SELECT count(*) FROM \"RECIPE_VECTOR_TABLE\" WHERE \"EMBEDDING_VERSION\" = '$1' AND \"VECTOR_NAME\" IS NOT NULL"; }

echo "1. install on an existing server"
run_block "$blocks/01.root"
check "... the share directory links to the models" "$store" "$(readlink "$PG_SHAREDIR/uhok_embed")"
run_block "$blocks/02.server"
version=$(sql "SELECT uhok_embed_version()")
check "... the model loads" "ok" "$(sql "SELECT uhok_embed_info()->>'status'")"
check "... every row embedded by the backfill, with the model's version" 350 "$(rows_with_version "$version")"
check "... and the search finds 갈비탕 first" 1 "$(grep -c '^ *1 | 갈비탕' "$out")"
sql "INSERT INTO \"RECIPE_VECTOR_TABLE\" VALUES (351, '우거지 갈비탕')"
check "... new rows are embedded by the trigger" 351 "$(rows_with_version "$version")"

echo "2. preload"
run_block "$blocks/03.server"
check "... a new connection has the model before its first call" true "$(tail -n 1 "$out")"
check "... shared_preload_libraries" uhok_embed "$(sql "SHOW shared_preload_libraries")"

echo "3. install a model and switch to it"
run_block "$blocks/04.root"
check "... it is the default" models/recipes-ko-v2 "$(readlink "$store/model")"
run_block "$blocks/05.server"
new_version=$(head -n 1 "$out")
check "... a new session uses it" "recipes-ko-v2@" "${new_version%@*}@"
check "... and the backfill re-embedded every row with it" 351 "$(rows_with_version "$new_version")"
run_block "$blocks/06.root"
run_block "$blocks/07.server"
check "... going back: every row has the first model's version again" 351 "$(rows_with_version "$version")"

echo "4. upgrade the extension"
run_block "$blocks/08.root"
run_block "$blocks/09.server"
current=$(sql "SELECT default_version FROM pg_available_extensions WHERE name = 'uhok_embed'")
check "... every database that has it is at $current" "recipes: $current
shop: $current" "$(grep -E '^(recipes|shop): ' "$out" | sort)"
sql "UPDATE \"RECIPE_VECTOR_TABLE\" SET \"COOKING_NAME\" = '갈비찜', \"EMBEDDING_VERSION\" = NULL WHERE \"RECIPE_ID\" = 351"
check "... and the attached table still syncs" 351 "$(rows_with_version "$version")"

echo "6. uninstall"
run_block "$blocks/10.server"
check "... the extension is gone, the vectors stay" "0 351" \
    "$(sql "SELECT count(*) FROM pg_extension WHERE extname = 'uhok_embed'") $(sql "SELECT count(\"VECTOR_NAME\") FROM \"RECIPE_VECTOR_TABLE\"")"
check "... writes go on without the trigger" "352 0" \
    "$(sql "INSERT INTO \"RECIPE_VECTOR_TABLE\" VALUES (352, '갈비탕')" && sql "SELECT count(*), count(\"VECTOR_NAME\") FILTER (WHERE \"RECIPE_ID\" = 352) FROM \"RECIPE_VECTOR_TABLE\"" | tr '|' ' ')"
check "... not preloaded, no private copies left" " no" \
    "$(sql "SHOW shared_preload_libraries") $([ -e "$cluster/data/uhok_embed" ] && echo yes || echo no)"
run_block "$blocks/11.root"
check "... the files are gone" "" "$(ls "$pkglibdir/uhok_embed.so" "$PG_SHAREDIR"/extension/uhok_embed[-.]* "$PG_SHAREDIR/uhok_embed" 2>/dev/null || true)"
exit $fail
