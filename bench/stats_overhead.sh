#!/usr/bin/env bash
# What uhok_embed_stats costs a query: p50 of uhok_embed() inside the server with
# uhok_embed.stats on and off, same run, alternating (on, off, on, off, ...) so that noise hits
# both alike, on a preloaded cluster (the shared table: an LWLock and atomic additions per call).
# Two cases: a query that runs the model (cache off: p50 of 300), and a cached query (a few
# microseconds: where the recording's share is largest; the mean of 50,000 calls). Prints each
# round's figure, the median of the rounds, and the difference; the goal is under 1% on a query.
#
# usage: bench/stats_overhead.sh [ROUNDS]   (default 7; the stand-in multilingual model)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$root/scripts/common.sh"
cd "$root"
rounds=${1:-7}

"$root/scripts/install-deps.sh" >/dev/null
"$root/scripts/install-models.sh" --no-hub >/dev/null
"$root/scripts/build-extension.sh" >/dev/null 2>&1

port=${UHOK_BENCH_PORT:-54333}
UHOK_CLUSTER_CONF="uhok_embed.model_path = '\$sharedir/uhok_embed/models/multilingual-e5-small-fixture'
shared_preload_libraries = 'uhok_embed'" throwaway_cluster bench_stats "$port"
psql=(psql -X -q -At -v ON_ERROR_STOP=1 -h "$cluster" -p "$port" -U postgres -d postgres)
"${psql[@]}" -c "SET client_min_messages = warning" -c "CREATE EXTENSION uhok_embed CASCADE"

p50() {  # p50 STATS -> ms of a query that runs the model (300 queries, bench/query_latency.sql)
    PGOPTIONS="-c uhok_embed.stats=$1 -c uhok_embed.cache_size=0 -c uhok_embed.threads=1" \
        "${psql[@]}" -f "$here/query_latency.sql" 2>&1 | sed 's/^.*NOTICE: *//' | cut -d' ' -f1
}
cached() {  # cached STATS -> us per call of a cached query, the mean of 50,000 (a p50 of
            # single calls would be mostly clock_timestamp()'s own cost)
    PGOPTIONS="-c uhok_embed.stats=$1" "${psql[@]}" -c "DO \$\$
        DECLARE t0 timestamptz; q text := '갈비탕';
        BEGIN
            PERFORM uhok_embed(q);
            t0 := clock_timestamp();
            FOR i IN 1..50000 LOOP PERFORM uhok_embed(q); END LOOP;
            RAISE NOTICE '%', round((extract(epoch FROM clock_timestamp() - t0) * 1e6 / 50000)::numeric, 3);
        END \$\$" 2>&1 | sed 's/^.*NOTICE: *//'
}
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

machine_line
echo "PostgreSQL $("$PG_BINDIR/postgres" --version | awk '{ print $3 }'), uhok_embed $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1), preloaded; multilingual-e5-small-fixture, 1 thread; $rounds rounds, on and off alternating"
for case in "p50:ms:a query that runs the model (cache_size 0), p50 of 300" \
            "cached:us:a cached query, mean of 50,000 calls"; do
    fn=${case%%:*}; rest=${case#*:}; unit=${rest%%:*}; title=${rest#*:}
    on=(); off=()
    for _ in $(seq 1 "$rounds"); do
        on+=("$($fn on)")
        off+=("$($fn off)")
    done
    m_on=$(printf '%s\n' "${on[@]}" | median)
    m_off=$(printf '%s\n' "${off[@]}" | median)
    echo "$title, $unit per round:"
    echo "  stats on : ${on[*]}"
    echo "  stats off: ${off[*]}"
    awk -v a="$m_on" -v b="$m_off" -v u="$unit" 'BEGIN { printf "  median of rounds: on %.3f %s, off %.3f %s, difference %+.3f %s (%+.1f%%)\n", a, u, b, u, a - b, u, (a - b) / b * 100 }'
done
echo "recorded: $("${psql[@]}" -c "SELECT sum(calls) FROM uhok_embed_stats") calls in uhok_embed_stats"
