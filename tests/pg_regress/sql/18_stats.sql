-- uhok_embed_stats (issue 14): its shape, counts that move as they should, reset, and who may
-- read and reset. This cluster does not preload uhok_embed, so the figures are this session's
-- own and the output is exact; tests/stats.sh checks the cluster-wide table under preloading.
\d uhok_embed_stats
\d uhok_embed_stats_info
SELECT scope, entries, max_entries, dealloc FROM uhok_embed_stats_info;
SELECT count(*) FROM uhok_embed_stats;
SET client_min_messages = warning;
SELECT uhok_embed_stats_reset() IS NOT NULL AS reset;
SELECT stats_reset <= clock_timestamp() AS reset_recorded, entries FROM uhok_embed_stats_info;

-- One uhok_embed twice: a miss that runs the model, then a cache hit. The model loads in the
-- first call and is counted there.
SET uhok_embed.model_path = '$sharedir/uhok_embed/models/all-MiniLM-L6-v2';
SELECT uhok_embed('갈비탕') = uhok_embed('갈비탕') AS same;
-- A batch of 100 texts: 100 texts, 4 forward passes of 32.
SELECT array_length(uhok_embed_batch(array(SELECT 'recipe ' || i FROM generate_series(1, 100) AS i)), 1) AS n;
-- A text past max_seq_length (256 tokens here) is counted as truncated, and logged when asked.
SET uhok_embed.log_truncated = notice;
SET client_min_messages = notice;
SELECT uhok_embed(repeat('kimchi ', 300)) IS NOT NULL AS embedded;
SELECT uhok_embed_batch(ARRAY['short', repeat('broth ', 400), repeat('rice ', 500)]) IS NOT NULL AS embedded;
RESET uhok_embed.log_truncated;
SET client_min_messages = warning;
-- A failed call is counted as an error (here under no model version: none could load).
SET uhok_embed.model_path = '/nonexistent/model';
SELECT uhok_embed('갈비탕');
SET uhok_embed.model_path = '$sharedir/uhok_embed/models/all-MiniLM-L6-v2';
-- So is one the model refuses.
SELECT uhok_embed_batch(array_fill('x'::text, ARRAY[100001]));

-- The sync triggers (row and batch mode), backfill and uhok_search each have their own row.
CREATE TABLE stats_row (id bigint PRIMARY KEY, name text, v vector(384), version text);
SELECT uhok_embed_attach('stats_row', 'name', 'v', 'version');
INSERT INTO stats_row (id, name) VALUES (1, '갈비탕'), (2, '김치찌개'), (3, NULL);
CREATE TABLE stats_batch (id bigint PRIMARY KEY, name text, v vector(384), version text);
SELECT uhok_embed_attach('stats_batch', 'name', 'v', 'version', mode => 'batch');
INSERT INTO stats_batch SELECT i, 'dish ' || i FROM generate_series(1, 10) AS i;
CREATE TABLE stats_backfill (id bigint PRIMARY KEY, name text, v vector(384));
INSERT INTO stats_backfill SELECT i, 'soup ' || i FROM generate_series(1, 5) AS i;
CALL uhok_embed_backfill('stats_backfill', 'name', 'v');
SELECT count(*) FROM uhok_search('갈비탕', 'stats_row', 'id', 'v', 2);

SELECT function, model_version LIKE 'all-MiniLM-L6-v2@%' AS version_ok, calls, texts, tokens, truncated,
       errors, cache_hits, cache_misses, forward_passes, model_loads,
       total_time > 0 AS timed, mean_time * calls BETWEEN total_time * 0.999 AND total_time * 1.001 AS mean_ok,
       min_time <= p50_time AND p50_time <= p95_time AND p95_time <= p99_time AND p99_time <= max_time AS percentiles_ordered,
       (model_loads > 0) = (load_time > 0) AS load_time_ok
FROM uhok_embed_stats
ORDER BY function, model_version NULLS FIRST;
SELECT userid = 'postgres'::regrole AS mine, dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AS here
FROM uhok_embed_stats GROUP BY 1, 2;
SELECT scope, entries, dealloc FROM uhok_embed_stats_info;

-- uhok_embed.stats = off stops counting (superuser only, like pg_stat_statements.track).
SET uhok_embed.stats = off;
SELECT uhok_embed('not counted') IS NOT NULL AS embedded;
RESET uhok_embed.stats;
SELECT sum(calls) AS calls FROM uhok_embed_stats WHERE function = 'uhok_embed';

-- Who may read and reset: a role sees its own rows; pg_read_all_stats sees every row; only a
-- superuser, or a role granted EXECUTE, may reset.
CREATE ROLE stats_user;
GRANT SELECT ON stats_row TO stats_user;
SET ROLE stats_user;
SET uhok_embed.stats = off;  -- refused: only a superuser may stop the counting
SELECT count(*) AS rows_seen FROM uhok_embed_stats;
SELECT uhok_embed('된장찌개') IS NOT NULL AS embedded;
SELECT function, calls, texts FROM uhok_embed_stats;
SELECT uhok_embed_stats_reset();
RESET ROLE;
GRANT pg_read_all_stats TO stats_user;
SET ROLE stats_user;
SELECT count(DISTINCT function) AS functions_seen FROM uhok_embed_stats;
RESET ROLE;
GRANT EXECUTE ON FUNCTION uhok_embed_stats_reset() TO stats_user;
SET ROLE stats_user;
SELECT uhok_embed_stats_reset() IS NOT NULL AS reset;
SELECT count(*) FROM uhok_embed_stats;
RESET ROLE;

DROP TABLE stats_row, stats_batch, stats_backfill;
REVOKE EXECUTE ON FUNCTION uhok_embed_stats_reset() FROM stats_user;
REVOKE pg_read_all_stats FROM stats_user;
DROP ROLE stats_user;
