#!/usr/bin/env bash
# uhok_embed_stats cluster-wide (shared_preload_libraries = 'uhok_embed'): the calls of several
# concurrent sessions add up exactly, each role has its rows, a full table gives way and counts
# it (uhok_embed.stats_max), a reset in one session is seen by all, and a backend killed with
# SIGKILL (the postmaster then resets shared memory) leaves a view that works, reset.
# tests/pg_regress/sql/18_stats.sql covers the view's shape and counts within one session.
#
# usage: stats.sh PORT   (uhok_embed and the test models installed)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../scripts/common.sh"
port=${1:?port}
UHOK_CLUSTER_CONF="${UHOK_CLUSTER_CONF:-}
shared_preload_libraries = 'uhok_embed'
uhok_embed.stats_max = 40
max_connections = 40" throwaway_cluster stats "$port"
psql=(psql -X -q -At -v ON_ERROR_STOP=1 -h "$cluster" -p "$port" -U postgres -d postgres)
"${psql[@]}" -c "SET client_min_messages = warning" -c "CREATE EXTENSION uhok_embed CASCADE"
. "$here/lib.sh"

check "the figures are the cluster's, with room for uhok_embed.stats_max entries" "cluster|0|40" \
    "$("${psql[@]}" -c "SELECT scope, entries, max_entries FROM uhok_embed_stats_info")"

# Six sessions at once, as two roles: each makes 20 uhok_embed calls (10 distinct texts, so
# 10 cache hits), one uhok_embed_batch of 50 texts, and one failing call.
"${psql[@]}" -c "CREATE ROLE app_a" -c "CREATE ROLE app_b"
for s in 1 2 3 4 5 6; do
    role=app_a; [ $((s % 2)) = 0 ] && role=app_b
    "${psql[@]}" -v ON_ERROR_STOP=0 >/dev/null 2>&1 <<SQL &
SET ROLE $role;
SELECT count(uhok_embed('session $s text ' || (i % 10))) FROM generate_series(1, 20) AS i;
SELECT array_length(uhok_embed_batch(array(SELECT 'batch $s ' || i FROM generate_series(1, 50) AS i)), 1);
SELECT uhok_embed_batch(array_fill('x'::text, ARRAY[100001]));
SQL
done
wait
totals=$("${psql[@]}" -c "
    SELECT string_agg(format('%s %s %s/%s/%s/%s/%s', r.rolname, s.function, s.calls, s.texts, s.errors, s.cache_hits, s.cache_misses), ', '
                      ORDER BY r.rolname, s.function)
    FROM uhok_embed_stats s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname LIKE 'app_%'")
check "six sessions' calls add up: calls/texts/errors/cache hits/misses per role and function" \
    "app_a uhok_embed 60/60/0/30/30, app_a uhok_embed_batch 6/150/3/0/0, app_b uhok_embed 60/60/0/30/30, app_b uhok_embed_batch 6/150/3/0/0" \
    "$totals"
check "forward passes: one per uncached text, two per batch of 50 (batch_size 32)" "60 12" \
    "$("${psql[@]}" -c "SELECT concat_ws(' ', sum(forward_passes) FILTER (WHERE function = 'uhok_embed'), sum(forward_passes) FILTER (WHERE function = 'uhok_embed_batch'))
                        FROM uhok_embed_stats s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname LIKE 'app_%'")"
check "a role sees only its own rows" "uhok_embed uhok_embed_batch" \
    "$("${psql[@]}" -c "SET ROLE app_a" -c "SELECT string_agg(function, ' ' ORDER BY function) FROM uhok_embed_stats")"

# 50 more roles, one call each: more entries than uhok_embed.stats_max; the ones with the
# fewest calls give way, and dealloc counts them.
"${psql[@]}" >/dev/null <<'SQL'
SELECT format('CREATE ROLE app_many_%s', i) FROM generate_series(1, 50) AS i \gexec
SELECT format('SET ROLE app_many_%s', i), 'SELECT uhok_embed(''갈비탕'')', 'RESET ROLE' FROM generate_series(1, 50) AS i \gexec
SQL
check "a full table keeps uhok_embed.stats_max entries and counts the ones that gave way" "40 t" \
    "$("${psql[@]}" -c "SELECT concat_ws(' ', entries, dealloc >= 10) FROM uhok_embed_stats_info")"
check "the busiest entries stay" "app_a uhok_embed 60, app_b uhok_embed 60" \
    "$("${psql[@]}" -c "SELECT string_agg(format('%s %s %s', r.rolname, s.function, s.calls), ', ' ORDER BY r.rolname)
                        FROM uhok_embed_stats s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname IN ('app_a', 'app_b') AND s.function = 'uhok_embed'")"

"${psql[@]}" -c "SELECT uhok_embed_stats_reset()" >/dev/null
check "a reset in one session empties the table for all" "0 0 0" \
    "$("${psql[@]}" -c "SELECT concat_ws(' ', count(*), (SELECT entries FROM uhok_embed_stats_info), (SELECT dealloc FROM uhok_embed_stats_info)) FROM uhok_embed_stats")"

# A backend killed mid-flight: the postmaster kills every backend and makes shared memory
# again (the shmem startup hook runs anew); the server comes back and the view works.
"${psql[@]}" -c "SELECT uhok_embed('before the crash')" >/dev/null
"${psql[@]}" -c "SELECT pg_sleep(60)" >/dev/null 2>&1 &
sleeper=$!
victim=
for _ in $(seq 1 40); do
    victim=$("${psql[@]}" -c "SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'")
    [ -n "$victim" ] && break
    sleep 0.25
done
kill -9 "$victim"
wait "$sleeper" || true
for _ in $(seq 1 30); do "${psql[@]}" -c "SELECT 1" >/dev/null 2>&1 && break; sleep 1; done
check "after a crash restart the server serves and the figures start again" "1 cluster 1" \
    "$("${psql[@]}" -c "SELECT vector_dims(uhok_embed('after the crash')) / 384" -c "SELECT scope || ' ' || entries FROM uhok_embed_stats_info" | paste -sd ' ')"
check "the crash was a SIGKILL, logged once" 1 "$(grep -c 'was terminated by signal 9' "$cluster/server.log")"
exit $fail
