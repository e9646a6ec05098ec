#!/usr/bin/env bash
# A backfill while other sessions insert rows and update other columns of the rows it walks
# (an indexed column, so each update writes the row anew elsewhere, often past the end the
# walk measured): every row must end with the backfill model's vector of its text, from the
# walk or from its own trigger. Before 0.8.0 the walk fixed its page count at the start and
# missed the rows moved past it.
#
# usage: backfill_vs_writers.sh CLUSTER_DIR PORT   (a running cluster with uhok_embed installed)
set -euo pipefail
dir=${1:?cluster dir}; port=${2:?port}
psql=(psql -X -q -At -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres)
export PGOPTIONS="-c client_min_messages=warning"
db=uhok_embed_backfill_writers
minilm='$sharedir/uhok_embed/models/all-MiniLM-L6-v2'
e5='$sharedir/uhok_embed/models/multilingual-e5-small-fixture'

"${psql[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
# 1,500 rows embedded by one model; the backfill then moves them to the other.
"${psql[@]}" -d "$db" >/dev/null <<SQL
CREATE EXTENSION uhok_embed CASCADE;
SET uhok_embed.model_path = '$minilm';
CREATE TABLE dishes (id bigint PRIMARY KEY, name text, price integer, v vector(384), version text);
CREATE INDEX ON dishes (price);
SELECT uhok_embed_attach('dishes', 'name', 'v', 'version');
INSERT INTO dishes (id, name, price) SELECT g, 'dish number ' || g, g FROM generate_series(1, 1500) g;
SQL

export PGOPTIONS="$PGOPTIONS -c uhok_embed.model_path=$e5"
"${psql[@]}" -d "$db" -c "CALL uhok_embed_backfill('dishes', 'name', 'v', 'version', 32)" &
backfill=$!
# Meanwhile: price updates spread over the table (each its own transaction, the row written
# anew), and new rows (embedded by their trigger with the backfill's model).
sleep 1
for i in $(seq 1 300); do
    echo "UPDATE dishes SET price = price + 10000 WHERE id = $(( (i * 7919) % 1500 + 1 ));"
    [ $((i % 10)) = 0 ] && echo "INSERT INTO dishes (id, name, price) VALUES ($((2000 + i)), 'new dish $i', $i);"
done | "${psql[@]}" -d "$db"
wait $backfill

result=$("${psql[@]}" -d "$db" -c "
    SELECT count(*) || ' ' || count(*) FILTER (WHERE version IS DISTINCT FROM uhok_embed_version()
        OR NOT coalesce((SELECT max(abs(x - y)) FROM unnest(v::real[], uhok_embed(name)::real[]) AS p(x, y)) <= 1e-5, false))
    FROM dishes")
echo "rows: ${result% *}; without the backfill model's vector of their text: ${result#* }"
"${psql[@]}" -d postgres -c "DROP DATABASE $db"
[ "${result#* }" = 0 ] && [ "${result% *}" = 1530 ]
