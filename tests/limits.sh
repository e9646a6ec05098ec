#!/usr/bin/env bash
# Inputs and settings that used to abort a backend (and so reset the cluster), cancels that
# waited for a whole forward pass, and the smaller trust items of issue 11:
#   - a 300 MB text, a 200 MB text of words (exactly the tokens of its first words), a batch of
#     long texts with uhok_embed.batch_size 4096, all under a 3 GB address-space limit per process
#     (as with vm.overcommit_memory=2): each embeds, nothing aborts;
#   - settings that size memory are bounded (cache_size), threads count at most the CPUs;
#   - statement_timeout stops a long batch (1 and 2 threads) and the session works afterwards;
#   - pgvector dropped and re-created in a session; a database that is not UTF8.
# The timings belong to bench/trust.sh; this asserts behaviour only.
#
#   tests/limits.sh PORT   (on a cluster of its own: a crash here cannot hide in another test)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../scripts/common.sh"
port=${1:?usage: tests/limits.sh PORT}

# 3 GB of address space for the postmaster and every backend (ulimit is inherited).
ulimit -v $((3 * 1024 * 1024))
throwaway_cluster limits "$port"
psql_do() { psql -X -q -At -v ON_ERROR_STOP=0 -v VERBOSITY=sqlstate -h "$cluster" -p "$port" -U postgres -d postgres "$@" 2>&1; }
psql_do -c "CREATE EXTENSION uhok_embed CASCADE" >/dev/null

. "$here/lib.sh"

check "a 300 MB word embeds" 384 \
    "$(psql_do -c "SELECT vector_dims(uhok_embed(repeat('갈', 100000000)))")"
check "a 200 MB text of words gives exactly its first 512 tokens' embedding" t \
    "$(psql_do -c "SELECT uhok_embed(repeat('갈비탕 ', 25000000)) = uhok_embed(repeat('갈비탕 ', 1000))")"
check "batch_size 4096 over 32 texts of 512 tokens: 4 passes of at most 64 MB" "32|4" \
    "$(psql_do -c "SET uhok_embed.batch_size = 4096" \
        -c "SELECT cardinality(uhok_embed_batch(ARRAY(SELECT repeat('갈비탕 ', 300) || g FROM generate_series(1, 32) g))),
                   (uhok_embed_info(load => false)->>'forward_passes')::int - 0")"
check "more than 100,000 texts in one batch: a clear refusal before any work" "ERROR:  54000" \
    "$(psql_do -c "SELECT uhok_embed_batch(array_fill(''::text, ARRAY[100001]))")"
check "cache_size is bounded" "ERROR:  22023" \
    "$(psql_do -c "SELECT uhok_embed_info(load => false) IS NULL" -o /dev/null -c "SET uhok_embed.cache_size = 1000000")"
check "threads count at most the CPUs" "$(nproc)" \
    "$(psql_do -c "SET uhok_embed.threads = 64" -c "SELECT uhok_embed_info()->>'threads'")"

for threads in 1 2; do
    check "statement_timeout stops a batch of 200 long texts ($threads threads), the session goes on" \
        "$(printf 'ERROR:  57014\n1')" \
        "$(psql_do -c "SET uhok_embed.threads = $threads" -c "SET statement_timeout = '1s'" \
            -c "SELECT cardinality(uhok_embed_batch(ARRAY(SELECT repeat('갈비탕 ', 2000) || g FROM generate_series(1, 200) g)))" \
            -c "SELECT 1")"
done
check "pg_cancel_backend stops a batch" "ERROR:  57014" \
    "$(psql_do -c "SELECT cardinality(uhok_embed_batch(ARRAY(SELECT repeat('갈비탕 ', 2000) || g FROM generate_series(1, 200) g)))" &
       sleep 2
       psql_do -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%uhok_embed_batch%' AND pid <> pg_backend_pid()" >/dev/null
       wait)"

check "pgvector dropped and created again in one session" "$(printf '384\n384')" \
    "$(psql_do -c "SELECT vector_dims((uhok_embed_batch(ARRAY['a']))[1])" \
        -c "DROP EXTENSION uhok_embed" -c "DROP EXTENSION vector" \
        -c "SET client_min_messages = warning" -c "CREATE EXTENSION uhok_embed CASCADE" \
        -c "SELECT vector_dims((uhok_embed_batch(ARRAY['a']))[1])")"

psql_do -c "CREATE DATABASE euc_kr TEMPLATE template0 ENCODING 'EUC_KR' LOCALE 'C'" >/dev/null
check "CREATE EXTENSION in an EUC_KR database: a clear refusal" "ERROR:  0A000" \
    "$(psql_do -d euc_kr -c "CREATE EXTENSION vector" -c "CREATE EXTENSION uhok_embed")"

# fp16 weights (issue 23.4): the fast pass from one fp32 copy in the snapshot store, not candle's
# private copy per backend; cancels stop a long batch as for fp32 models.
ensure_venv numpy
fp16=$(mktemp -d /tmp/uhok_embed_fp16.XXXX)
"$VENV/bin/python" "$here/../scripts/make_fp16_model.py" "$PG_SHAREDIR/uhok_embed/models/all-MiniLM-L6-v2" "$fp16/model"
chmod -R a+rX "$fp16"
check "an fp16 model runs the fast pass, close to its fp32 original, from one widened copy" "$(printf 'fast|t\n1')" \
    "$(psql_do -c "SET uhok_embed.model_path = '$fp16/model'" \
        -c "CREATE TEMP TABLE fp16 AS SELECT uhok_embed_info()->>'backend' AS backend, uhok_embed('kimchi stew') AS v" \
        -c "SET uhok_embed.model_path = '\$sharedir/uhok_embed/models/all-MiniLM-L6-v2'" \
        -c "SELECT backend, (v <=> uhok_embed('kimchi stew')) < 0.01 FROM fp16" \
        -c "SELECT count(*) FROM pg_ls_dir('uhok_embed') f WHERE f LIKE 'pgsql_tmp.%.fp32'")"
check "statement_timeout stops an fp16 model's batch of 200 long texts" "$(printf 'ERROR:  57014\n1')" \
    "$(psql_do -c "SET uhok_embed.model_path = '$fp16/model'" -c "SET statement_timeout = '1s'" \
        -c "SELECT cardinality(uhok_embed_batch(ARRAY(SELECT repeat('kimchi stew ', 2000) || g FROM generate_series(1, 200) g)))" \
        -c "SELECT 1")"
rm -rf "$fp16"

check "no backend crashed" 0 \
    "$(grep -cE 'terminated by signal|was terminated|server process .* exited' "$cluster/server.log" || true)"
exit $fail
