#!/usr/bin/env bash
# A backfill with one model and single-row UPDATEs through the sync trigger with another model,
# on the same rows at the same time. Afterwards every row's vector must come from the model its
# version names (and equal that model's embedding of its current text).
#
# usage: trigger_vs_backfill.sh CLUSTER_DIR PORT   (a running cluster with uhok_embed installed)
set -euo pipefail
dir=${1:?cluster dir}; port=${2:?port}
psql=(psql -X -q -At -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres)
export PGOPTIONS="-c client_min_messages=warning"
db=uhok_embed_concurrency
minilm='$sharedir/uhok_embed/models/all-MiniLM-L6-v2'
e5='$sharedir/uhok_embed/models/multilingual-e5-small-fixture'

"${psql[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
"${psql[@]}" -d "$db" >/dev/null <<SQL
CREATE EXTENSION uhok_embed CASCADE;
SET uhok_embed.model_path = '$minilm';
CREATE TABLE dishes (id bigint PRIMARY KEY, name text, v vector(384), version text);
SELECT uhok_embed_attach('dishes', 'name', 'v', 'version');
INSERT INTO dishes (id, name) SELECT g, 'dish number ' || g FROM generate_series(1, 400) g;
SQL

# Session A: switch models and backfill everything, in small batches.
PGOPTIONS="$PGOPTIONS -c uhok_embed.model_path=$e5" \
    "${psql[@]}" -d "$db" -c "CALL uhok_embed_backfill('dishes', 'name', 'v', 'version', 16)" &
backfill=$!
# Session B, meanwhile: 60 single-row UPDATEs with the first model, each its own transaction.
sleep 1
for i in $(seq 1 60); do
    echo "UPDATE dishes SET name = 'changed dish $i' WHERE id = $(( (i * 37) % 400 + 1 ));"
done | PGOPTIONS="$PGOPTIONS -c uhok_embed.model_path=$minilm" "${psql[@]}" -d "$db"
wait $backfill

check() {  # check MODEL_PATH -> "rows|bad rows" among rows whose version names that model
    PGOPTIONS="$PGOPTIONS -c uhok_embed.model_path=$1" "${psql[@]}" -d "$db" -c "
        SELECT count(*) || '|' || count(*) FILTER (WHERE NOT coalesce(
            (SELECT max(abs(x - y)) FROM unnest(v::real[], uhok_embed(name)::real[]) AS p(x, y)) <= 1e-5, false))
        FROM dishes WHERE version = uhok_embed_version()"
}
a=$(check "$e5"); b=$(check "$minilm")
total=$("${psql[@]}" -d "$db" -c "SELECT count(*) FROM dishes")
echo "rows: $total; from the backfill's model: ${a%|*} (${a#*|} mismatched); from the trigger's model: ${b%|*} (${b#*|} mismatched)"
"${psql[@]}" -d postgres -c "DROP DATABASE $db"
[ "${a#*|}" = 0 ] && [ "${b#*|}" = 0 ] && [ $(( ${a%|*} + ${b%|*} )) = "$total" ]
