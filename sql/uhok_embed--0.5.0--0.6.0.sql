-- uhok_embed 0.5.0 -> 0.6.0 (issue 26): pgvector 0.8 or later, checked.
-- - uhok_embed_internal.uhok_embed_require_pgvector(version text) refuses a pgvector older than
--   0.8.0 (uhok_search needs its iterative index scans); CREATE EXTENSION calls it, and so does
--   this update, so an installation on an older pgvector stays at 0.5.0 with a clear ERROR.
-- Released: never edit this file (tests/released_scripts.sh); tests/upgrade.sh checks that it
-- gives what a fresh install gives.

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION uhok_embed UPDATE TO '0.6.0'" to load this file. \quit

-- pgvector 0.8 or later: uhok_search sets hnsw.iterative_scan (0.8.0) so that excluded ids
-- and pages still give top_k rows. The control file's requires = 'vector' takes any version.
-- The same check runs at ALTER EXTENSION uhok_embed UPDATE (uhok_embed--0.5.0--0.6.0.sql).
CREATE FUNCTION uhok_embed_internal.uhok_embed_require_pgvector(version text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    -- No backslashes: PL/pgSQL reads this literal under the caller's standard_conforming_strings.
    parts text[] := regexp_match(version, '^([0-9]+)[.]([0-9]+)');
BEGIN
    IF version IS NULL THEN
        RAISE EXCEPTION 'uhok_embed requires pgvector, which is not installed in this database'
            USING ERRCODE = 'undefined_object',
                  HINT = 'CREATE EXTENSION uhok_embed CASCADE creates it.';
    END IF;
    IF parts IS NULL OR (parts[1]::integer, parts[2]::integer) < (0, 8) THEN
        RAISE EXCEPTION 'uhok_embed requires pgvector 0.8.0 or later, and this database has %', version
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'uhok_search relies on pgvector 0.8''s iterative index scans (hnsw.iterative_scan).',
                  HINT = 'Install pgvector 0.8 or later on the server, then ALTER EXTENSION vector UPDATE in this database.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION uhok_embed_internal.uhok_embed_require_pgvector(text) IS
'Refuses a pgvector older than 0.8.0 (CREATE EXTENSION and ALTER EXTENSION UPDATE call it with the installed version).';
SELECT uhok_embed_internal.uhok_embed_require_pgvector(
    (SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'vector'));
