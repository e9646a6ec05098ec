#!/usr/bin/env bash
# A model whose weights are stored as fp16 against its fp32 original (issue 23.4): each
# backend's memory after one call, the sum over 8 connections, a query's latency, and how long a
# long batch runs past statement_timeout. Same run, same cluster, the installed build.
#
#   bench/fp16_model.sh [MODEL_FOLDER_NAME]   (default: multilingual-e5-small-fixture)
#
# Memory: VmHWM (peak resident set) of a fresh connection after uhok_embed('갈비탕'), and the
# sum of PSS (shared pages divided among the processes sharing them) of 8 idle connections that
# have each embedded once. Cancel: statement_timeout = 1 s on uhok_embed_batch of 200 texts of
# ~5,000 tokens, the statement's wall time minus 1 s as the client sees it, worst of 3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$root/scripts/common.sh"
model=${1:-multilingual-e5-small-fixture}
port=${UHOK_BENCH_PORT:-54335}
ensure_venv numpy
work=$(mktemp -d /tmp/uhok_embed_fp16_bench.XXXX)
cp -rL "$PG_SHAREDIR/uhok_embed/models/$model" "$work/fp32"
"$VENV/bin/python" "$root/scripts/make_fp16_model.py" "$work/fp32" "$work/fp16"
chmod -R a+rX "$work"
throwaway_cluster fp16 "$port"
trap '"$SCRIPTS/cluster.sh" stop "$cluster"; rm -rf "$cluster" "$work"' EXIT
psql=(psql -X -q -At -h "$cluster" -p "$port" -U postgres -d postgres)
"${psql[@]}" -c "CREATE EXTENSION uhok_embed CASCADE" >/dev/null 2>&1

measure() {  # measure FOLDER -> one table row's cells
    local opts="-c uhok_embed.model_path=$1 -c uhok_embed.cache_size=0"
    # Load once first: the snapshot copy (and the fp32 copy of fp16 weights) is not measured.
    PGOPTIONS="$opts" "${psql[@]}" -c "SELECT uhok_embed_info()->>'backend'" > "$work/backend"
    local hwm pss=0 pids=() pid
    hwm=$(PGOPTIONS="$opts" "${psql[@]}" -c "SELECT uhok_embed('갈비탕') IS NOT NULL" -o /dev/null \
        -c "\\o" -c "SELECT pg_backend_pid()" -c "SELECT pg_sleep(1)" | head -n 1 |
        { read -r p; sleep 0.5; awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$p/status"; })
    for _ in $(seq 8); do
        PGOPTIONS="$opts" "${psql[@]}" -c "SELECT uhok_embed('갈비탕') IS NOT NULL; SELECT pg_sleep(30)" >/dev/null 2>&1 &
        pids+=($!)
    done
    for _ in $(seq 60); do
        [ "$("${psql[@]}" -c "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'")" -ge 8 ] && break
        sleep 0.5
    done
    for pid in $("${psql[@]}" -c "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep'"); do
        pss=$((pss + $(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup")))
    done
    "${psql[@]}" -c "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE wait_event = 'PgSleep'" >/dev/null
    wait "${pids[@]}" 2>/dev/null || true
    local p50
    p50=$(PGOPTIONS="$opts -c uhok_embed.threads=1" "${psql[@]}" -f "$here/query_latency.sql" 2>&1 |
        sed 's/^.*NOTICE: *//' | cut -d' ' -f1)
    local worst=0 t0 ms
    for _ in 1 2 3; do
        t0=$EPOCHREALTIME
        PGOPTIONS="$opts" "${psql[@]}" -c "SET statement_timeout = '1s'" \
            -c "SELECT uhok_embed_batch(ARRAY(SELECT repeat('갈비탕 ', 1700) || g FROM generate_series(1, 200) g))" >/dev/null 2>&1 || true
        ms=$(awk "BEGIN { printf \"%.0f\", ($EPOCHREALTIME - $t0) * 1000 - 1000 }")
        [ "$ms" -gt "$worst" ] && worst=$ms
    done
    echo "$(cat "$work/backend") | $hwm MB | $((pss / 1024)) MB | $p50 ms | $worst ms"
}

echo "uhok_embed $("${psql[@]}" -c "SELECT extversion FROM pg_extension WHERE extname = 'uhok_embed'"), $model, weights: fp32 $(du -m "$work/fp32/model.safetensors" | cut -f1) MB, fp16 $(du -m "$work/fp16/model.safetensors" | cut -f1) MB"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| weights | forward pass | backend peak RSS after one query | 8 connections: sum of PSS | query p50 (1 thread) | long batch ends after statement_timeout (worst of 3) |"
echo "|---|---|---|---|---|---|"
echo "| fp32 | $(measure "$work/fp32") |"
echo "| fp16 | $(measure "$work/fp16") |"
