-- uhok_embed_info(): the old service's /health.
SET uhok_embed.model_path = '$sharedir/uhok_embed/models/all-MiniLM-L6-v2';
-- In a fresh backend nothing is loaded until asked.
\c
SELECT uhok_embed_info(load => false)->>'status' AS status,
       uhok_embed_info(load => false)->'loaded' AS loaded;
SET uhok_embed.model_path = '$sharedir/uhok_embed/models/all-MiniLM-L6-v2';
SELECT key FROM jsonb_object_keys(uhok_embed_info()) AS key ORDER BY key;
SELECT i->>'status' AS status, i->>'model' AS model, i->'dim' AS dim, i->'max_seq_length' AS max_seq_length,
       i->>'pooling' AS pooling, i->'normalize' AS normalize, i->'model_normalizes' AS model_normalizes,
       i->>'device' AS device, i->'threads' AS threads, i->'loaded' AS loaded, i->'layers' AS layers,
       i->>'version' AS version, (i->>'load_ms')::float8 > 0 AS load_ms_positive,
       i->>'model_dir' LIKE '%/uhok_embed/models/all-MiniLM-L6-v2' AS model_dir_resolved
FROM uhok_embed_info() AS i;
SET uhok_embed.model_path = '$sharedir/uhok_embed/models/multilingual-e5-small-fixture';
SELECT i->>'model' AS model, i->'dim' AS dim, i->'max_seq_length' AS max_seq_length,
       i->'vocab_size' AS vocab_size, i->'layers' AS layers, i->>'version' AS version
FROM uhok_embed_info() AS i;
-- After RESET, the cluster's model (postgresql.conf, or the default link) answers too.
RESET uhok_embed.model_path;
SELECT uhok_embed_info()->>'status' AS status, uhok_embed_info()->'dim' AS dim;

-- The query cache (uhok_embed.cache_size): a repeated text is answered without the model.
SET uhok_embed.cache_size = 16;
SELECT (uhok_embed_info()->'cache'->>'hits')::int AS hits_before, (uhok_embed_info()->>'forward_passes')::int AS passes_before \gset
SELECT uhok_embed('김치찌개') = uhok_embed(' 김치찌개 ') AS same_vector;
SELECT uhok_embed(t) IS NOT NULL FROM (VALUES ('김치찌개'), ('김치찌개'), ('된장찌개')) AS v(t);
SELECT (uhok_embed_info()->'cache'->>'hits')::int - :hits_before AS hits,
       (uhok_embed_info()->>'forward_passes')::int - :passes_before AS forward_passes;
-- The cache keeps at most cache_size entries, least recently used out.
SELECT count(uhok_embed('dish ' || g)) FROM generate_series(1, 40) g;
SELECT uhok_embed_info()->'cache'->'entries' AS entries;
-- 0 turns it off.
SET uhok_embed.cache_size = 0;
SELECT (uhok_embed_info()->>'forward_passes')::int AS passes_before \gset
SELECT uhok_embed(t) IS NOT NULL FROM (VALUES ('김치찌개'), ('김치찌개')) AS v(t);
SELECT (uhok_embed_info()->>'forward_passes')::int - :passes_before AS forward_passes;
RESET uhok_embed.cache_size;

-- Server paths and load errors (which name files) only for superusers and members of
-- pg_read_server_files; other roles see the status, model, version, dim and counters.
CREATE ROLE uhok_info_reader;
SET ROLE uhok_info_reader;
SELECT key FROM jsonb_object_keys(uhok_embed_info()) AS key ORDER BY key;
RESET ROLE;
SET uhok_embed.model_path = '/nonexistent/model';
SET ROLE uhok_info_reader;
SELECT uhok_embed_info()->>'status' AS status, uhok_embed_info()->>'error' AS error;
RESET ROLE;
GRANT pg_read_server_files TO uhok_info_reader;
SET ROLE uhok_info_reader;
SELECT uhok_embed_info()->>'error' LIKE '%/nonexistent/model%' AS error_names_the_path,
       uhok_embed_info() ? 'model_dir' AS has_model_dir;
RESET ROLE;
RESET uhok_embed.model_path;
DROP ROLE uhok_info_reader;
