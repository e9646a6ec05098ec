#!/usr/bin/env bash
# The demo: installs what is missing, builds and installs uhok_embed, starts a throwaway
# PostgreSQL 15 cluster with pgvector, creates sql/recipe_schema.sql ("RECIPE_VECTOR_TABLE" with
# an HNSW index and the sync triggers), loads 350 Korean recipe names (the triggers embed them),
# prints the top 5 of uhok_search() for a few queries, and stops the cluster.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/common.sh"
cd "$root"

"$here/install-deps.sh"
"$here/install-models.sh"
echo "==> building and installing uhok_embed (log: /tmp/uhok_embed_build.log)" >&2
"$here/build-extension.sh" >/tmp/uhok_embed_build.log 2>&1 || { tail -n 40 /tmp/uhok_embed_build.log; exit 1; }

port=${UHOK_DEMO_PORT:-54330}
throwaway_cluster demo "$port"
psql=(psql -X -q -v ON_ERROR_STOP=1 -h "$cluster" -p "$port" -U postgres -d postgres)

"${psql[@]}" -c 'CREATE EXTENSION uhok_embed CASCADE' -f sql/recipe_schema.sql >/dev/null
model=$("${psql[@]}" -At -c "SELECT uhok_embed_info()->>'model'")
"${psql[@]}" -At -c "SELECT 'model: ' || (i->>'model') || ' (' || (i->>'dim') || ' dims, version ' || (i->>'version') || ', loaded in ' || (i->>'load_ms') || ' ms)' FROM uhok_embed_info() i"

# COPY the names in: the trigger uhok_embed_attach() set up embeds each row as it is written.
started=$EPOCHREALTIME
"${psql[@]}" -f demo/load.sql
elapsed=$(awk "BEGIN { print $EPOCHREALTIME - $started }")
"${psql[@]}" -At -c "SELECT count(\"VECTOR_NAME\") || ' recipes embedded and indexed in $(printf '%.1f' "$elapsed") s' FROM \"RECIPE_VECTOR_TABLE\""

for q in '갈비탕' '김치찌개' '매운 국물 요리' 'spicy noodles' 'chocolate dessert'; do
    echo
    echo "top 5 for '$q':"
    "${psql[@]}" -v q="$q" -f demo/search.sql
done
if [ "$model" = multilingual-e5-small-fixture ]; then
    cat <<'EOF2'

NOTE: these results come from multilingual-e5-small-fixture, the STAND-IN model installed where
the product's model (paraphrase-multilingual-MiniLM-L12-v2) could not be fetched. Korean queries
find Korean dishes; the English ones ('spicy noodles', 'chocolate dessert') find unrelated ones.
scripts/install-models.sh said why, and how to install the product model.
EOF2
fi
echo
echo "the plan the backend's query gets (the query text is a parameter):"
"${psql[@]}" <<'SQL'
PREPARE find_similar_ids(text, int) AS
SELECT "RECIPE_ID" FROM "RECIPE_VECTOR_TABLE" ORDER BY "VECTOR_NAME" <-> uhok_embed($1) LIMIT $2;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE find_similar_ids('갈비탕', 25);
SQL
