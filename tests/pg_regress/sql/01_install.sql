-- CREATE EXTENSION, then embed with the configured model.
CREATE EXTENSION uhok_embed CASCADE;
SELECT extname FROM pg_extension WHERE extname IN ('vector', 'uhok_embed') ORDER BY 1;
-- The built-in default, and what this cluster sets (scripts/test.sh pins the stand-in model in
-- postgresql.conf, so a test run does not depend on, or change, the server's default model).
SELECT boot_val, setting, source FROM pg_settings WHERE name = 'uhok_embed.model_path';
SHOW uhok_embed.threads;
-- The result is pgvector's own type: no cast needed.
SELECT pg_typeof(uhok_embed('갈비탕')), vector_dims(uhok_embed('갈비탕'));
-- Volatility, strictness and parallel safety are deliberate (see api.rs and the README).
-- uhok_embed_internal holds what the extension's own SQL calls (see sql/sync.sql).
SELECT pronamespace::regnamespace AS schema, proname, provolatile, proisstrict, proparallel,
       pg_get_function_arguments(oid) AS args, pg_get_function_result(oid) AS result
FROM pg_proc WHERE proname LIKE 'uhok\_%' ORDER BY proname, pronamespace::regnamespace::text;

-- A helper for the tests that follow: the largest per-component difference of two vectors.
CREATE FUNCTION max_abs_diff(a vector, b vector) RETURNS real LANGUAGE sql IMMUTABLE AS $$
    SELECT max(abs(x - y)) FROM unnest(a::real[], b::real[]) AS p(x, y)
$$;
