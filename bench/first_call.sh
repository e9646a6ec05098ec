#!/usr/bin/env bash
# A new connection's first uhok_embed(), connection after connection (issue 23.5): p50, p95 and
# max over N fresh connections, without and with shared_preload_libraries = 'uhok_embed', same
# run, same model folder, files unchanged throughout.
#
#   bench/first_call.sh [MODEL_FOLDER_NAME]   (default: the default model; BENCH_CONNECTIONS=50)
#
# Each connection runs bench/first_call.sql as its first statement (the time inside the server,
# no client round trip) and then reads its own load_ms from uhok_embed_info(load => false).
# The first connection after the server starts is counted like the others: it is the case a
# pooler that recycles connections hits. The cluster's first load ever, which copies the model
# into the snapshot store, is shown on its own line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$root/scripts/common.sh"
cd "$root"
model=${1:-}
connections=${BENCH_CONNECTIONS:-50}
port=${UHOK_BENCH_PORT:-54334}
throwaway_cluster first_call "$port"
[ -n "$model" ] && echo "uhok_embed.model_path = '\$sharedir/uhok_embed/models/$model'" >> "$cluster/data/postgresql.conf"
"$root/scripts/cluster.sh" stop "$cluster" >/dev/null
"$root/scripts/cluster.sh" start "$cluster" "$port" >/dev/null
psql=(psql -X -q -At -v ON_ERROR_STOP=1 -h "$cluster" -p "$port" -U postgres -d postgres)
"${psql[@]}" -c "CREATE EXTENSION IF NOT EXISTS uhok_embed CASCADE" >/dev/null 2>&1

series() {  # N fresh connections -> one "first_ms load_ms" line each
    local i
    for i in $(seq 1 "$connections"); do
        "${psql[@]}" -f "$here/first_call.sql" -c "SELECT coalesce(uhok_embed_info(load => false)->>'load_ms', '0')" 2>&1 |
            sed 's/^.*NOTICE: *//' | paste -sd ' '
    done
}
pct() {  # pct COLUMN: "p50 p95 max" of that column of stdin
    cut -d' ' -f"$1" | sort -n | awk '{ v[NR] = $1 } END {
        printf "%.1f / %.1f / %.1f", v[int((NR + 1) / 2)], v[int(NR * 0.95 + 0.5)], v[NR] }'
}
summary() {  # summary SERIES -> "first call p50 / p95 / max ms (its model load: ...)"
    echo "$(pct 1 <<<"$1") ms (its model load: $(pct 2 <<<"$1") ms)"
}

# The cluster's very first load: $PGDATA/uhok_embed is empty, so it copies the mapped files
# into it (snapshot.rs: hash, write, fsync); every later load finds the copy.
first_ever=$("${psql[@]}" -f "$here/first_call.sql" -c "SELECT coalesce(uhok_embed_info(load => false)->>'load_ms', '0')" 2>&1 |
    sed 's/^.*NOTICE: *//' | paste -sd ' ')
version=$("${psql[@]}" -c "SELECT (i->>'version') || ', ' || (i->>'layers') || ' layers, forward pass ' || (i->>'backend') FROM uhok_embed_info() i")
plain=$(series)
echo "shared_preload_libraries = 'uhok_embed'" >> "$cluster/data/postgresql.conf"
"$root/scripts/cluster.sh" stop "$cluster" >/dev/null
"$root/scripts/cluster.sh" start "$cluster" "$port" >/dev/null
preloaded=$(series)

echo "uhok_embed $("${psql[@]}" -c "SELECT extversion FROM pg_extension WHERE extname = 'uhok_embed'"), model $version"
machine_line
echo "$connections new connections one after another; first uhok_embed('갈비탕') inside the server, p50 / p95 / max:"
echo "| | first call | target |"
echo "|---|---|---|"
echo "| without preload | $(summary "$plain") | p95 <= 50 ms, never seconds |"
echo "| shared_preload_libraries | $(summary "$preloaded") | p95 <= 50 ms, never seconds |"
echo "| the cluster's first load ever (copies the weights into its snapshot store; once per model content) | ${first_ever% *} ms (its model load: ${first_ever#* } ms) | |"
echo
echo "each connection's first call, ms, in order (without preload): $(cut -d' ' -f1 <<<"$plain" | paste -sd ' ')"
echo "each connection's first call, ms, in order (preloaded): $(cut -d' ' -f1 <<<"$preloaded" | paste -sd ' ')"
