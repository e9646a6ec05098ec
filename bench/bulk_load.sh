#!/usr/bin/env bash
# Batch mode at scale (issue 27): rows/s of INSERT ... SELECT and COPY into a table attached in
# batch mode, at three sizes, for this version's statement trigger and for 0.8.0's (the same
# library; the database updated only to 0.8.0), in the same run. Besides rows/s it prints the
# trigger's own cost per row: the statement's time less the model's (uhok_embed_stats' time
# for the trigger's calls), which is what grows with the statement when the trigger is not
# linear (0.8.0 numbered the whole transition table again for every 4,096 rows).
#
# usage: bench/bulk_load.sh [SIZES...]   (default 100000 300000 1000000; about 20 minutes per
#        million rows per method and version on a 2-core host with all-MiniLM-L6-v2)
# BENCH_VERSIONS="0.8.0 current" by default; BENCH_MODEL=all-MiniLM-L6-v2 by default.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$root/scripts/common.sh"
cd "$root"
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(100000 300000 1000000)
versions=${BENCH_VERSIONS:-0.8.0 current}
model=${BENCH_MODEL:-all-MiniLM-L6-v2}

"$root/scripts/install-deps.sh" >/dev/null
"$root/scripts/install-models.sh" --no-hub >/dev/null
"$root/scripts/build-extension.sh" >/dev/null 2>&1

port=${UHOK_BENCH_PORT:-54334}
UHOK_CLUSTER_CONF="uhok_embed.model_path = '\$sharedir/uhok_embed/models/$model'
uhok_embed.threads = 1
autovacuum = off" throwaway_cluster bench_bulk "$port"
psql=(psql -X -q -At -v ON_ERROR_STOP=1 -h "$cluster" -p "$port" -U postgres)
machine_line
echo "PostgreSQL $("$PG_BINDIR/postgres" --version | awk '{ print $3 }'), $model, 1 thread, uhok_embed.batch_size 32, batch mode, no index but the primary key"
printf '%-8s %-7s %8s %9s %8s %9s %15s\n' version method rows seconds rows/s model_s "trigger us/row"
for v in $versions; do
    db=bulk_${v//./_}
    "${psql[@]}" -d postgres -c "CREATE DATABASE $db"
    if [ "$v" = current ]; then
        "${psql[@]}" -d "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION uhok_embed CASCADE"
    else
        "${psql[@]}" -d "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION uhok_embed VERSION '0.1.0' CASCADE" \
            -c "ALTER EXTENSION uhok_embed UPDATE TO '$v'"
    fi
    # The demo's 350 recipe names, numbered so that no two rows share a text.
    "${psql[@]}" -d "$db" -c "CREATE TABLE names (i integer GENERATED ALWAYS AS IDENTITY (MINVALUE 0 START 0), name text)" \
        -c "\\copy names (name) FROM '$root/demo/recipes.txt'"
    for n in "${sizes[@]}"; do
        for method in insert copy; do
            rows="SELECT g, n.name || ' ' || g FROM generate_series(1, $n) g JOIN names n ON n.i = g % 350"
            if [ $method = insert ]; then load="INSERT INTO bulk (id, name) $rows"; else load="COPY bulk (id, name) FROM '$cluster/rows.tsv'"; fi
            line=$("${psql[@]}" -d "$db" -F ' ' <<SQL
SET client_min_messages = warning;
DROP TABLE IF EXISTS bulk;
CREATE TABLE bulk (id bigint PRIMARY KEY, name text, v vector(384), version text);
SELECT uhok_embed_attach('bulk', 'name', 'v', 'version', mode => 'batch') \g /dev/null
COPY ($rows) TO '$cluster/rows.tsv';
CHECKPOINT;
SELECT uhok_embed_stats_reset() \g /dev/null
SELECT clock_timestamp() AS t0 \gset
$load;
SELECT extract(epoch FROM clock_timestamp() - :'t0'),
       (SELECT coalesce(sum(total_time), 0) / 1000 FROM uhok_embed_stats WHERE function = 'trigger'),
       (SELECT count(v) FROM bulk WHERE version = uhok_embed_version());
SQL
)
            read -r secs model_s embedded <<< "$line"
            [ "$embedded" = "$n" ] || { echo "FAILED: $v $method $n: $embedded of $n rows embedded" >&2; exit 1; }
            awk -v v="$v" -v m="$method" -v n="$n" -v s="$secs" -v ms="$model_s" 'BEGIN {
                printf "%-8s %-7s %8d %9.1f %8.1f %9.1f %15.1f\n", v, m, n, s, n / s, ms, (s - ms) / n * 1e6 }'
        done
    done
done
