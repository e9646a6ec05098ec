#!/usr/bin/env bash
# pg_upgrade from one PostgreSQL major to another keeps uhok_embed working (issue 26): a cluster
# of the old major with the recipe table attached (row mode, model version per row), its HNSW
# index, and a table with a generated column `uhok_embed(note) STORED`, upgraded with the new
# major's pg_upgrade. Right after, with no model installed anew and no backfill: the model is
# found at the default path (the models live in one store for every major, install-models.sh),
# its version is the one the rows carry, uhok_search returns what it returned before, through
# the HNSW index, and new rows are embedded by the trigger and the generated column. Then
# ALTER EXTENSION vector UPDATE (0.8.0 -> the new major's pgvector) keeps all of that.
#
# usage: pg_upgrade.sh OLD_PG_CONFIG NEW_PG_CONFIG PORT   (uhok_embed, pgvector and the models
#        installed for both majors; uses PORT and PORT + 1; scripts/test-matrix.sh runs it)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
old_config=${1:?usage: pg_upgrade.sh OLD_PG_CONFIG NEW_PG_CONFIG PORT}
new_config=${2:?new pg_config}
port=${3:?port}
. "$root/scripts/common.sh"
. "$here/lib.sh"
old_bin=$("$old_config" --bindir)
new_bin=$("$new_config" --bindir)
# The default model path, as a DBA's server has it: no test pin.
unset UHOK_CLUSTER_CONF
work=$(mktemp -d /tmp/uhok_embed_pg_upgrade.XXXX)
chown "$PG_OS_USER" "$work"
old=$work/old
new=$work/new
trap 'PG_CONFIG=$old_config "$root/scripts/cluster.sh" stop "$old"; PG_CONFIG=$new_config "$root/scripts/cluster.sh" stop "$new"; rm -rf "$work"' EXIT
sql() {  # sql BINDIR CLUSTER PORT SQL...: one result, unaligned
    local bin=$1 dir=$2 p=$3
    shift 3
    PGOPTIONS="-c client_min_messages=warning" "$bin/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$dir" -p "$p" -U postgres -d recipes "${@/#/-c}"
}
old_sql() { sql "$old_bin" "$old" "$port" "$@"; }
new_sql() { sql "$new_bin" "$new" $((port + 1)) "$@"; }

echo "  $("$old_config" --version) -> $("$new_config" --version)"
PG_CONFIG=$old_config "$root/scripts/cluster.sh" start "$old" "$port"
"$old_bin/createdb" -h "$old" -p "$port" -U postgres recipes
old_sql "CREATE EXTENSION uhok_embed CASCADE"
PGOPTIONS="-c client_min_messages=warning" "$old_bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$old" -p "$port" -U postgres -d recipes \
    -f "$root/sql/recipe_schema.sql" -f "$root/demo/load.sql" >/dev/null
old_sql "CREATE TABLE notes (id int PRIMARY KEY, note text,
             v vector(384) GENERATED ALWAYS AS (uhok_embed(note)) STORED)" \
        "INSERT INTO notes (id, note) VALUES (1, '국물이 진한 갈비탕'), (2, '매운 비빔국수')"

# What the checks compare: the model's version, a search, the generated column's vectors.
version_query="SELECT uhok_embed_version()"
search_query="SELECT string_agg(recipe_id || ':' || round(distance::numeric, 6), ' ') FROM uhok_search('갈비탕', top_k => 10)"
notes_query="SELECT string_agg(id || ':' || (v = uhok_embed(note)), ' ' ORDER BY id) FROM notes"
version_before=$(old_sql "$version_query")
search_before=$(old_sql "$search_query")
check "before: every row has a vector of the loaded model" 350 \
    "$(old_sql "SELECT count(*) FROM \"RECIPE_VECTOR_TABLE\" WHERE \"EMBEDDING_VERSION\" = uhok_embed_version() AND \"VECTOR_NAME\" IS NOT NULL")"
PG_CONFIG=$old_config "$root/scripts/cluster.sh" stop "$old"

PG_CONFIG=$new_config "$root/scripts/cluster.sh" init "$new" $((port + 1))
upgrade() {  # pg_upgrade ARGS...: as the clusters' owner, in a folder it owns (it writes logs there)
    (cd "$work" && runuser -u "$PG_OS_USER" -- "$new_bin/pg_upgrade" -b "$old_bin" -B "$new_bin" \
        -d "$old/data" -D "$new/data" -U postgres --socketdir="$work" \
        -p "$port" -P $((port + 1)) "$@") >"$work/pg_upgrade.out" 2>&1
}
status=0; upgrade --check || status=$?
check "pg_upgrade --check passes (uhok_embed.so and vector.so load in the new major)" 0 "$status"
status=0; upgrade || status=$?
check "pg_upgrade" 0 "$status"
[ "$status" = 0 ] || sed 's/^/    /' "$work/pg_upgrade.out" | tail -n 30
PG_CONFIG=$new_config "$root/scripts/cluster.sh" start "$new" $((port + 1))

check "after: the model at the default path, with the same version" "$version_before" "$(new_sql "$version_query")"
check "... every row still current (nothing to backfill)" 350 \
    "$(new_sql "SELECT count(*) FROM \"RECIPE_VECTOR_TABLE\" WHERE \"EMBEDDING_VERSION\" = uhok_embed_version()")"
check "... uhok_search returns what it returned before" "$search_before" "$(new_sql "$search_query")"
check "... through the HNSW index" 1 \
    "$(new_sql "EXPLAIN (COSTS OFF) SELECT \"RECIPE_ID\" FROM \"RECIPE_VECTOR_TABLE\" ORDER BY \"VECTOR_NAME\" <-> uhok_embed('갈비탕') LIMIT 5" |
        grep -c 'Index Scan using "RECIPE_VECTOR_TABLE_VECTOR_NAME_hnsw"')"
check "... a new row is embedded by the trigger and found" "351 351" \
    "$(new_sql "INSERT INTO \"RECIPE_VECTOR_TABLE\" (\"RECIPE_ID\", \"COOKING_NAME\") VALUES (351, '우거지 갈비탕')" \
        "SELECT count(*) FROM \"RECIPE_VECTOR_TABLE\" WHERE \"EMBEDDING_VERSION\" = uhok_embed_version()" \
        "SELECT recipe_id FROM uhok_search('우거지 갈비탕', top_k => 1)" | xargs)"
check "... the generated column keeps its vectors and computes new ones" "1:true 2:true 3:true" \
    "$(new_sql "INSERT INTO notes (id, note) VALUES (3, '얼큰한 김치찌개')" "$notes_query")"

search_after=$(new_sql "$search_query")
vector_before=$(new_sql "SELECT extversion FROM pg_extension WHERE extname = 'vector'")
new_sql "ALTER EXTENSION vector UPDATE" "ALTER EXTENSION uhok_embed UPDATE"
echo "  pgvector $vector_before -> $(new_sql "SELECT extversion FROM pg_extension WHERE extname = 'vector'")"
check "after ALTER EXTENSION vector UPDATE: the same version, the same search" \
    "$version_before $search_after" "$(new_sql "$version_query") $(new_sql "$search_query")"
exit $fail
