-- The snapshot store from SQL (issue 23.6): uhok_embed_snapshots() lists the private copies in
-- $PGDATA/uhok_embed, and uhok_embed_snapshots_remove_unused() removes what no live model file
-- names. Both are for superusers (and whom they grant them to).
SET uhok_embed.model_path = '$sharedir/uhok_embed/models/all-MiniLM-L6-v2';
SELECT vector_dims(uhok_embed('갈비탕')) AS loaded;
-- The loaded model's weights and tokenizer: copies in use, named by their files.
SELECT kind, in_use, bytes > 0 AS has_bytes, length(sha256) AS sha256_length
FROM uhok_embed_snapshots()
WHERE EXISTS (SELECT FROM unnest(sources) AS s
              WHERE s LIKE '%/all-MiniLM-L6-v2/model.safetensors' OR s LIKE '%/all-MiniLM-L6-v2/tokenizer.json')
ORDER BY bytes DESC;
-- Every copy in use is named by a file, every other is not (one rule for both).
SELECT bool_and(in_use = (cardinality(sources) > 0)) AS in_use_iff_named
FROM uhok_embed_snapshots() WHERE kind <> 'incoming';

-- A copy nothing names (what an old model's copy becomes once its files are gone or replaced),
-- and a file derived from it: listed as unused, then removed, and only they.
DO $$
DECLARE
    store text := current_setting('data_directory') || '/uhok_embed/';
BEGIN
    EXECUTE format('COPY (SELECT ''orphan'') TO %L', store || 'pgsql_tmp.' || repeat('ab', 32));
    EXECUTE format('COPY (SELECT ''orphan'') TO %L', store || 'pgsql_tmp.' || repeat('ab', 32) || '.fp32');
END
$$;
-- (Earlier tests may have left unused copies too: only these two are shown.)
SELECT file, kind, bytes, sha256 = repeat('ab', 32) AS sha256_ok, sources, in_use
FROM uhok_embed_snapshots() WHERE sha256 = repeat('ab', 32) ORDER BY file;
CREATE TEMP TABLE in_use_before AS SELECT file FROM uhok_embed_snapshots() WHERE in_use;
SELECT file, kind, bytes, in_use FROM uhok_embed_snapshots_remove_unused()
WHERE sha256 = repeat('ab', 32) ORDER BY file;
SELECT count(*) AS unused_left FROM uhok_embed_snapshots() WHERE NOT in_use;
SELECT (SELECT count(*) FROM in_use_before) = (SELECT count(*) FROM uhok_embed_snapshots() WHERE in_use)
       AS in_use_kept;
SELECT count(*) AS removed_again FROM uhok_embed_snapshots_remove_unused();
-- The model still works from its copies.
SELECT vector_dims(uhok_embed('김치찌개')) AS still_embeds;

-- Not for PUBLIC: they show server paths and delete files.
CREATE ROLE uhok_snapshots_user;
SET ROLE uhok_snapshots_user;
SELECT count(*) FROM uhok_embed_snapshots();
SELECT count(*) FROM uhok_embed_snapshots_remove_unused();
RESET ROLE;
DROP ROLE uhok_snapshots_user;
