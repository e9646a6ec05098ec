#!/usr/bin/env bash
# uhok_embed inside PostgreSQL: query latency, first call in a new connection, and memory with
# 64 connections, each measured without and with shared_preload_libraries = 'uhok_embed'.
# One compute thread, the query cache off (uhok_embed.cache_size = 0) except where it says so.
#
# usage: bench/latency_memory.sh [MODEL_FOLDER_NAME]   (default: the default model)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$root/scripts/common.sh"
cd "$root"
model=${1:-}
connections=${BENCH_CONNECTIONS:-64}

"$root/scripts/install-deps.sh" >/dev/null
"$root/scripts/install-models.sh" >/dev/null
"$root/scripts/build-extension.sh" >/dev/null 2>&1

port=${UHOK_BENCH_PORT:-54332}
throwaway_cluster bench "$port"
echo "max_connections = $((connections + 10))" >> "$cluster/data/postgresql.conf"
[ -n "$model" ] && echo "uhok_embed.model_path = '\$sharedir/uhok_embed/models/$model'" >> "$cluster/data/postgresql.conf"
psql=(psql -X -q -At -v ON_ERROR_STOP=1 -h "$cluster" -p "$port" -U postgres -d postgres)
restart() {
    "$root/scripts/cluster.sh" stop "$cluster"
    "$root/scripts/cluster.sh" start "$cluster" "$port"
}
"${psql[@]}" -c "CREATE EXTENSION IF NOT EXISTS uhok_embed CASCADE" >/dev/null 2>&1

# p50 / p95 of one query's uhok_embed() inside the server (no client round trip).
latency() {  # latency CACHE_SIZE -> "p50 p95" in ms
    PGOPTIONS="-c uhok_embed.cache_size=$1 -c uhok_embed.threads=1" "${psql[@]}" -f "$here/query_latency.sql" 2>&1 |
        sed 's/^.*NOTICE: *//'
}
# A new connection's first uhok_embed(), median of 5: "server_ms client_wall_ms" (the client's
# wall time includes starting psql and connecting).
first_call() {
    for _ in 1 2 3 4 5; do
        t0=$EPOCHREALTIME
        server=$("${psql[@]}" -f "$here/first_call.sql" 2>&1 | sed 's/^.*NOTICE: *//')
        echo "$server $(awk "BEGIN { printf \"%.1f\", ($EPOCHREALTIME - $t0) * 1000 }")"
    done | sort -n | sed -n 3p
}
# Memory of N idle connections that have each embedded once: the sum of their PSS (shared
# pages divided among the processes sharing them) and the machine's used memory.
memory() {  # -> "pss_mb used_delta_mb"
    sync; local used0; used0=$(free -m | awk '/^Mem:/ { print $3 }')
    local pids=()
    for _ in $(seq 1 "$connections"); do
        "${psql[@]}" -c "SELECT uhok_embed('갈비탕') IS NOT NULL; SELECT pg_sleep(60)" >/dev/null 2>&1 &
        pids+=($!)
    done
    # Wait until every connection has embedded (they then sleep).
    for _ in $(seq 1 120); do
        n=$("${psql[@]}" -c "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND wait_event = 'PgSleep'")
        [ "$n" -ge "$connections" ] && break
        sleep 1
    done
    local pss=0
    for pid in $("${psql[@]}" -c "SELECT pid FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND wait_event = 'PgSleep'"); do
        pss=$((pss + $(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup")))
    done
    local used1; used1=$(free -m | awk '/^Mem:/ { print $3 }')
    "${psql[@]}" -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()" >/dev/null
    wait "${pids[@]}" 2>/dev/null || true
    echo "$((pss / 1024)) $((used1 - used0))"
}

info=$("${psql[@]}" -c "SELECT (i->>'model') || ' (' || (i->>'layers') || ' layers), weights ' || pg_size_pretty((pg_stat_file((i->>'model_dir') || '/model.safetensors')).size) || ', forward pass: ' || (i->>'backend') FROM uhok_embed_info() i")
weights_mb=$("${psql[@]}" -c "SELECT (pg_stat_file((i->>'model_dir') || '/model.safetensors')).size / 1048576 FROM uhok_embed_info() i")
read -r p50 p95 < <(latency 0)
read -r c50 c95 < <(latency 1024)
read -r first first_wall < <(first_call)
read -r pss used < <(memory)

echo "shared_preload_libraries = 'uhok_embed'" >> "$cluster/data/postgresql.conf"
restart
read -r first_pre first_pre_wall < <(first_call)
read -r pss_pre used_pre < <(memory)

echo "uhok_embed in PostgreSQL: $info"
echo "$(machine_line); uhok_embed.threads = 1"
echo
copies=$(( weights_mb * 13 / 10 ))
echo "| measure | without preload | with shared_preload_libraries | target |"
echo "|---|---|---|---|"
echo "| SELECT uhok_embed('갈비탕') in the server, p50 / p95 ms (cache off) | $p50 / $p95 | same code path | |"
echo "| the same, answered from uhok_embed.cache_size, p50 / p95 ms | $c50 / $c95 | same code path | |"
echo "| new connection's first uhok_embed('갈비탕') inside the server, ms (median of 5) | $first | $first_pre | <= 50 |"
echo "| the same, client wall ms (incl. starting psql and connecting) | $first_wall | $first_pre_wall | |"
echo "| $connections connections after one uhok_embed() each: sum of backend PSS, MB | $pss | $pss_pre | <= $copies (1.3 x the $weights_mb MB weights file) |"
echo "| the same: machine used-memory increase, MB | $used | $used_pre | <= $copies |"
