-- uhok_embed needs pgvector 0.8 or later (issue 26): CREATE EXTENSION and ALTER EXTENSION
-- UPDATE check the installed version with uhok_embed_internal.uhok_embed_require_pgvector().
\set SHOW_CONTEXT never
CREATE EXTENSION IF NOT EXISTS uhok_embed CASCADE;
SELECT current_database() AS regress_db \gset
CREATE FUNCTION pg_temp.check_version(v text) RETURNS TABLE (sqlstate text, message text, hint text)
LANGUAGE plpgsql AS $$
DECLARE
    h text;
BEGIN
    PERFORM uhok_embed_internal.uhok_embed_require_pgvector(v);
    RETURN QUERY SELECT 'accepted'::text, NULL::text, NULL::text;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
    RETURN QUERY SELECT SQLSTATE::text, SQLERRM::text, h;
END
$$;
SELECT v AS pgvector, c.sqlstate, c.message
FROM unnest(ARRAY['0.8.0', '0.8.5', '0.10.1', '1.0.0', '0.7.4', '0.5', 'dev', NULL]) AS v,
     pg_temp.check_version(v) AS c;
SELECT hint FROM pg_temp.check_version('0.7.4');

-- The real thing, in a database of its own whose pgvector claims to be 0.7.4.
CREATE DATABASE uhok_embed_old_pgvector;
\c uhok_embed_old_pgvector
\set SHOW_CONTEXT never
CREATE EXTENSION vector;
UPDATE pg_extension SET extversion = '0.7.4' WHERE extname = 'vector';
CREATE EXTENSION uhok_embed;
SELECT count(*) AS uhok_embed_installed FROM pg_extension WHERE extname = 'uhok_embed';
-- An installation made before the check (0.5.0) is not updated on it either.
CREATE EXTENSION uhok_embed VERSION '0.5.0';
ALTER EXTENSION uhok_embed UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'uhok_embed';
-- With pgvector 0.8 the update goes through.
UPDATE pg_extension SET extversion = '0.8.0' WHERE extname = 'vector';
ALTER EXTENSION uhok_embed UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'uhok_embed';
\c :regress_db
DROP DATABASE uhok_embed_old_pgvector;
-- A fresh session (the \c above) reads the check's body under its own string settings.
SET standard_conforming_strings = off;
SELECT 'accepted' AS result FROM uhok_embed_internal.uhok_embed_require_pgvector('0.8.5');
RESET standard_conforming_strings;
