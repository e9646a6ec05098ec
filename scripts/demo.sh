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
"${psql[@]}" -At -c "SELECT 'model: ' || (i->>'model') || ' (' || (i->>'dim') || ' dims, version ' || (i->>'version') || ', loaded in ' || (i->>'load_ms') || ' ms)' FROM uhok_embed_info() i"

# COPY the names in: the trigger uhok_embed_attach() set up embeds each row as it is written.
started=$EPOCHREALTIME
"${psql[@]}" <<'SQL'
CREATE TEMP TABLE names (name text);
\copy names FROM 'demo/recipes.txt'
INSERT INTO "RECIPE_VECTOR_TABLE" ("RECIPE_ID", "COOKING_NAME") SELECT row_number() OVER (), name FROM names;
SQL
elapsed=$(awk "BEGIN { print $EPOCHREALTIME - $started }")
"${psql[@]}" -At -c "SELECT count(\"VECTOR_NAME\") || ' recipes embedded and indexed in $(printf '%.1f' "$elapsed") s' FROM \"RECIPE_VECTOR_TABLE\""

for q in '갈비탕' '김치찌개' '매운 국물 요리' 'spicy noodles' 'chocolate dessert'; do
    echo
    echo "top 5 for '$q':"
    "${psql[@]}" -v q="$q" <<'SQL'
SELECT row_number() OVER (ORDER BY s.distance) AS rank, s.recipe_id, r."COOKING_NAME" AS cooking_name,
       round(s.distance::numeric, 4) AS distance
FROM uhok_search(:'q', 5) AS s JOIN "RECIPE_VECTOR_TABLE" AS r ON r."RECIPE_ID" = s.recipe_id
ORDER BY s.distance;
SQL
done
echo
echo "the plan the backend's query gets (the query text is a parameter):"
"${psql[@]}" <<'SQL'
PREPARE find_similar_ids(text, int) AS
SELECT "RECIPE_ID" FROM "RECIPE_VECTOR_TABLE" ORDER BY "VECTOR_NAME" <-> uhok_embed($1) LIMIT $2;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE find_similar_ids('갈비탕', 25);
SQL
