-- uhok_embed_batch() looks up pgvector's vector type once per backend with an SPI query
-- (src/vector.rs vector_type_oid). In 0.1.0 its = operators were unqualified, so they resolved
-- through the caller's search_path: with a hostile schema ahead of pg_catalog, its = operators
-- were called (as the caller, a superuser here) and, answering true, made the query return the
-- wrong type OID, cached for the backend: the next uhok_embed_batch crashed the backend. Every
-- operator in that query is now qualified: no call, no WARNING, the right dimensions.
CREATE ROLE uhok_embed_evil_c;
CREATE SCHEMA evil_c AUTHORIZATION uhok_embed_evil_c;
GRANT USAGE ON SCHEMA evil_c TO PUBLIC;
SET ROLE uhok_embed_evil_c;
CREATE TABLE evil_c.calls (fn text);
GRANT INSERT ON evil_c.calls TO PUBLIC;
CREATE FUNCTION evil_c.called(what text) RETURNS boolean LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE WARNING 'evil_c.% called', what;
    BEGIN
        INSERT INTO evil_c.calls VALUES (what);
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN true;
END $$;
DO $do$
DECLARE
    t record;
    n integer := 0;
BEGIN
    FOR t IN SELECT * FROM (VALUES ('name', 'name'), ('name', 'text'), ('oid', 'oid'), ('oid', 'regclass'),
                                   ('regclass', 'oid'), ('"char"', '"char"'), ('text', 'text')) AS v(l, r) LOOP
        n := n + 1;
        EXECUTE format('CREATE FUNCTION evil_c.op_%s(%s, %s) RETURNS boolean LANGUAGE plpgsql
                        SET search_path = pg_catalog, pg_temp AS %L',
                       n, t.l, t.r, format('BEGIN RETURN evil_c.called(%L); END', format('%s = %s', t.l, t.r)));
        EXECUTE format('CREATE OPERATOR evil_c.= (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil_c.op_%s)', t.l, t.r, n);
    END LOOP;
END
$do$;
RESET ROLE;
-- A fresh backend whose first embeddings run with evil_c ahead of pg_catalog.
\c
SET uhok_embed.model_path = '$sharedir/uhok_embed/models/all-MiniLM-L6-v2';
SET search_path = evil_c, pg_catalog, public;
SELECT public.vector_dims(public.uhok_embed('chocolate cake')) AS dims;
SELECT public.uhok_embed_batch(ARRAY['chocolate cake', 'ramen']) IS NOT NULL AS batch_embedded;
SELECT public.vector_dims((public.uhok_embed_batch(ARRAY['chocolate cake']))[1]) AS batch_dims;
RESET search_path;
SELECT count(*) AS evil_calls FROM evil_c.calls;
SET client_min_messages = warning;
DROP SCHEMA evil_c CASCADE;
RESET client_min_messages;
DROP ROLE uhok_embed_evil_c;
