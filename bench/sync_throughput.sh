#!/usr/bin/env bash
# Rows per second for the four ways uhok_embed fills RECIPE_VECTOR_TABLE, on the same 10,000
# Korean recipe names, one compute thread, in one run on a throwaway cluster:
#   row by row      SELECT uhok_embed(name) FROM names
#   batch           SELECT uhok_embed_batch(array_agg(name)) FROM names
#   trigger (bulk)  INSERT INTO "RECIPE_VECTOR_TABLE" SELECT ... and COPY ... FROM a file
#                   (uhok_embed_attach's triggers),
#                   in row mode (the default: each row embedded by its own trigger) and in
#                   batch mode (mode => 'batch': the statement's rows embedded together), with
#                   the forward passes each took
#   backfill        CALL uhok_embed_backfill(...) over the same rows with no vectors
#   initial load    the trigger INSERT into the table without its HNSW index, then CREATE INDEX
# and, as the reference, sentence-transformers (torch CPU, one thread) at its best batch size on
# the same names, in the same run (the environment bench/vs_sentence_transformers.sh builds);
# and, for the trigger and backfill, the old pipeline's same job: sentence-transformers, then its
# vectors written into the same indexed table (that write timed in this run).
#
# usage: bench/sync_throughput.sh [MODEL_FOLDER_NAME]   (default: the default model)
# BENCH_ROWS=N changes the row count (default 10000). BENCH_REFERENCE=0 skips sentence-transformers
# (no torch to install): uhok_embed's own figures only, the "vs row" column their reference.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$root/scripts/common.sh"
cd "$root"
rows=${BENCH_ROWS:-10000}
model=${1:-}

"$root/scripts/install-deps.sh" >/dev/null
"$root/scripts/install-models.sh" >/dev/null
"$root/scripts/build-extension.sh" >/dev/null 2>&1
reference=${BENCH_REFERENCE:-1}
venv=$BENCH_VENV
[ "$reference" != 1 ] || ensure_bench_venv
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

port=${UHOK_BENCH_PORT:-54331}
throwaway_cluster bench "$port"
psql=(psql -X -q -At -v ON_ERROR_STOP=1 -h "$cluster" -p "$port" -U postgres -d postgres)
model_setting=${model:+\$sharedir/uhok_embed/models/$model}
export PGOPTIONS="-c uhok_embed.threads=1${model_setting:+ -c uhok_embed.model_path=$model_setting}"

"${psql[@]}" >/dev/null <<SQL
CREATE EXTENSION uhok_embed CASCADE;
\\i sql/recipe_schema.sql
-- 10,000 distinct names: the demo's 350 dishes with everyday modifiers.
CREATE TABLE dishes (r text);
\\copy dishes FROM 'demo/recipes.txt'
CREATE TABLE names AS
SELECT row_number() OVER () AS id, name FROM (
    SELECT ltrim(m || ' ' || r) AS name
    FROM (SELECT r, row_number() OVER () AS ri FROM dishes) dishes,
         unnest(ARRAY['', '엄마표', '초간단', '황금레시피', '매콤한', '백종원', '자취생', '10분', '다이어트', '캠핑',
                      '비건', '집밥', '명절', '아이반찬', '술안주', '보양식', '전자레인지', '에어프라이어', '대용량',
                      '1인분', '얼큰한', '달콤한', '고소한', '바삭한', '부드러운', '건강한', '든든한', '시원한', '새콤달콤', '맛집']) AS m
    ORDER BY ri, m) s
LIMIT $rows;
SQL
"${psql[@]}" -c "SELECT uhok_embed('warm up')" >/dev/null

# Each step starts on a quiet server: the previous step's dead rows vacuumed and no autovacuum
# worker running. (Left to autovacuum, the backfill's leftovers were vacuumed during the next
# step and made it 4 s of 23 slower on these 2 cores.)
quiesce() {
    "${psql[@]}" -c "VACUUM ANALYZE" >/dev/null
    while [ "$("${psql[@]}" -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")" != 0 ]; do
        sleep 0.2
    done
}
timed() {  # timed SQL -> seconds
    quiesce
    local t0=$EPOCHREALTIME
    "${psql[@]}" -c "$1" >/dev/null
    awk "BEGIN { printf \"%.2f\", $EPOCHREALTIME - $t0 }"
}
timed_passes() {  # timed_passes SQL -> "seconds passes" (the forward passes its session ran)
    quiesce
    local t0=$EPOCHREALTIME out
    out=$("${psql[@]}" -c "$1" -c "SELECT uhok_embed_info(load => false)->>'forward_passes'")
    awk -v p="$(echo "$out" | tail -n 1)" "BEGIN { printf \"%.2f %s\", $EPOCHREALTIME - $t0, p }"
}
row=$(timed "SELECT sum(vector_dims(uhok_embed(name))) FROM names")
batch=$(timed "SELECT sum(vector_dims(v)) FROM unnest((SELECT uhok_embed_batch(array_agg(name ORDER BY id)) FROM names)) AS v")
insert_names="INSERT INTO \"RECIPE_VECTOR_TABLE\" (\"RECIPE_ID\", \"COOKING_NAME\") SELECT id, name FROM names"
# COPY from a file, as a bulk load arrives (psql's \copy: the server reads it from the client).
copy_file=$cluster/names.tsv
"${psql[@]}" -c "\\copy (SELECT id, name FROM names ORDER BY id) TO '$copy_file'"
copy_names="\\copy \"RECIPE_VECTOR_TABLE\" (\"RECIPE_ID\", \"COOKING_NAME\") FROM '$copy_file'"
truncate="TRUNCATE \"RECIPE_VECTOR_TABLE\""
read -r trigger trigger_passes <<< "$(timed_passes "$insert_names")"
# The trigger's vectors, for the old pipeline's write step below.
"${psql[@]}" -c "CREATE TABLE computed AS SELECT * FROM \"RECIPE_VECTOR_TABLE\"" -c "$truncate" >/dev/null
read -r copy_row copy_row_passes <<< "$(timed_passes "$copy_names")"
# The same statements in batch mode, then back to the default for the steps below.
attach="SELECT uhok_embed_attach('\"RECIPE_VECTOR_TABLE\"', 'COOKING_NAME', 'VECTOR_NAME', 'EMBEDDING_VERSION'"
"${psql[@]}" -c "$truncate" \
    -c "SELECT uhok_embed_detach('\"RECIPE_VECTOR_TABLE\"', 'VECTOR_NAME')" -c "$attach, mode => 'batch')" >/dev/null
read -r trigger_batch trigger_batch_passes <<< "$(timed_passes "$insert_names")"
"${psql[@]}" -c "$truncate" >/dev/null
read -r copy_batch copy_batch_passes <<< "$(timed_passes "$copy_names")"
"${psql[@]}" -c "SELECT uhok_embed_detach('\"RECIPE_VECTOR_TABLE\"', 'VECTOR_NAME')" -c "$attach)" >/dev/null
"${psql[@]}" -c "ALTER TABLE \"RECIPE_VECTOR_TABLE\" DISABLE TRIGGER USER" \
    -c "UPDATE \"RECIPE_VECTOR_TABLE\" SET \"VECTOR_NAME\" = NULL, \"EMBEDDING_VERSION\" = NULL" \
    -c "ALTER TABLE \"RECIPE_VECTOR_TABLE\" ENABLE TRIGGER USER" -c "VACUUM \"RECIPE_VECTOR_TABLE\"" >/dev/null
backfill=$(PGOPTIONS="$PGOPTIONS -c client_min_messages=warning" timed "CALL uhok_embed_backfill('\"RECIPE_VECTOR_TABLE\"', 'COOKING_NAME', 'VECTOR_NAME', 'EMBEDDING_VERSION')")
# The old pipeline's second half: the HTTP service computed the vectors, then they were written
# into the same table and index. Its write step alone, vectors already computed (inserted from a
# table in the server, cheaper than from a client): the reference for the trigger and backfill.
"${psql[@]}" -c "TRUNCATE \"RECIPE_VECTOR_TABLE\"" -c "ALTER TABLE \"RECIPE_VECTOR_TABLE\" DISABLE TRIGGER USER" >/dev/null
write_only=$(timed "INSERT INTO \"RECIPE_VECTOR_TABLE\" SELECT * FROM computed")
"${psql[@]}" -c "ALTER TABLE \"RECIPE_VECTOR_TABLE\" ENABLE TRIGGER USER" >/dev/null
# An initial load the way pgvector advises: without the HNSW index, which is built afterwards.
"${psql[@]}" -c "TRUNCATE \"RECIPE_VECTOR_TABLE\"" -c "DROP INDEX \"RECIPE_VECTOR_TABLE_VECTOR_NAME_hnsw\"" >/dev/null
load_then_index=$(timed "INSERT INTO \"RECIPE_VECTOR_TABLE\" (\"RECIPE_ID\", \"COOKING_NAME\") SELECT id, name FROM names;
    SET maintenance_work_mem = '512MB';
    CREATE INDEX \"RECIPE_VECTOR_TABLE_VECTOR_NAME_hnsw\" ON \"RECIPE_VECTOR_TABLE\" USING hnsw (\"VECTOR_NAME\" vector_l2_ops)")

names_file=$cluster/names.txt
"${psql[@]}" -c "\\copy (SELECT name FROM names ORDER BY id) TO '$names_file'"
model_dir=$("${psql[@]}" -c "SELECT uhok_embed_info()->>'model_dir'")
st_per_s=0
if [ "$reference" = 1 ]; then
    st=$("$venv/bin/python" "$here/reference.py" st-batch "$model_dir" "$names_file")
    st_per_s=$("$venv/bin/python" -c "import json,sys; print(json.loads(sys.argv[1])['per_s'])" "$st")
    st_size=$("$venv/bin/python" -c "import json,sys; print(json.loads(sys.argv[1])['batch_size'])" "$st")
fi

info=$("${psql[@]}" -c "SELECT (i->>'model') || ' (' || (i->>'layers') || ' layers, ' || (i->>'dim') || ' dims), batch_size ' || (i->>'batch_size') || ', threads ' || (i->>'threads') FROM uhok_embed_info() i")
echo "uhok_embed sync throughput: $rows Korean recipe names"
echo "model: $info"
machine_line
echo "server: $("$PG_BINDIR/postgres" --version), HNSW index on the table during the trigger insert"
echo
printf '| %-56s | %8s | %10s | %9s | %24s |\n' "method" "seconds" "rows/s" "vs row" "vs sentence-transformers"
printf '|%s|%s|%s|%s|%s|\n' "----------------------------------------------------------" "----------" "------------" "-----------" "--------------------------"
for m in "row by row: uhok_embed(name)|$row" "uhok_embed_batch(array_agg(name))|$batch" \
         "INSERT ... SELECT, sync trigger, mode row ($trigger_passes passes)|$trigger" \
         "INSERT ... SELECT, sync trigger, mode batch ($trigger_batch_passes passes)|$trigger_batch" \
         "COPY, sync trigger, mode row ($copy_row_passes passes)|$copy_row" \
         "COPY, sync trigger, mode batch ($copy_batch_passes passes)|$copy_batch" \
         "CALL uhok_embed_backfill(...)|$backfill" \
         "the same INSERT without the index, then CREATE INDEX|$load_then_index"; do
    name=${m%|*}; secs=${m#*|}
    awk -v n="$name" -v s="$secs" -v r="$rows" -v base="$row" -v st="$st_per_s" \
        'BEGIN { vs = st > 0 ? sprintf("%23.1fx", r / s / st) : sprintf("%24s", "(skipped)")
                 printf "| %-56s | %8.1f | %10.1f | %8.1fx | %s |\n", n, s, r / s, base / s, vs }'
done
if [ "$reference" != 1 ]; then
    echo
    echo "(sentence-transformers skipped: BENCH_REFERENCE=0)"
    exit 0
fi
awk -v r="$rows" -v st="$st_per_s" -v b="$st_size" \
    'BEGIN { printf "| %-56s | %8.1f | %10.1f | %9s | %24s |\n", "reference: sentence-transformers, batch " b, r / st, st, "", "1.0x" }'
echo
echo "The same job as the trigger and backfill in the old pipeline: sentence-transformers computes"
echo "the vectors, then they are written into the same indexed table (the write measured alone):"
echo
printf '| %-56s | %8s | %10s | %24s |\n' "method" "seconds" "rows/s" "uhok_embed's is faster by"
printf '|%s|%s|%s|%s|\n' "----------------------------------------------------------" "----------" "------------" "--------------------------"
awk -v r="$rows" -v st="$st_per_s" -v wr="$write_only" -v t="$trigger" -v tb="$trigger_batch" -v cr="$copy_row" -v cb="$copy_batch" -v bf="$backfill" 'BEGIN {
    old = r / st + wr
    printf "| %-56s | %8.1f | %10.1f | %24s |\n", "writing the computed vectors (HNSW insert)", wr, r / wr, ""
    printf "| %-56s | %8.1f | %10.1f | %24s |\n", "sentence-transformers + that write", old, r / old, ""
    printf "| %-56s | %8.1f | %10.1f | %23.1fx |\n", "INSERT ... SELECT, sync trigger, mode row", t, r / t, old / t
    printf "| %-56s | %8.1f | %10.1f | %23.1fx |\n", "INSERT ... SELECT, sync trigger, mode batch", tb, r / tb, old / tb
    printf "| %-56s | %8.1f | %10.1f | %23.1fx |\n", "COPY, sync trigger, mode row", cr, r / cr, old / cr
    printf "| %-56s | %8.1f | %10.1f | %23.1fx |\n", "COPY, sync trigger, mode batch", cb, r / cb, old / cb
    printf "| %-56s | %8.1f | %10.1f | %23.1fx |\n", "CALL uhok_embed_backfill(...)", bf, r / bf, old / bf }'
