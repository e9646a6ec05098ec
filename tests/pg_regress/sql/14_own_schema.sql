-- Overloads in the extension's own schema (issue 23.2). A name qualified with a schema is still
-- resolved among every overload in that schema: a role that may CREATE in the schema the
-- extension was installed in (public, on clusters upgraded from PostgreSQL 14 or older, or where
-- a DBA granted it) adds a function of the same name with one more, defaulted, argument, and
-- each call the extension's SQL makes to that name becomes ambiguous (42725): every trigger,
-- backfill and search fails from then on. So the extension's SQL calls only functions in
-- uhok_embed_internal, a schema it creates and owns, where nobody else may create anything.
--
-- Here a role with CREATE on public squats every function that 0.2.0's SQL called by its
-- qualified name (with a defaulted extra argument, and a VARIADIC form where one could match),
-- then a superuser uses every entry point: no error, and no squatter's function runs.
SET uhok_embed.model_path = '$sharedir/uhok_embed/models/all-MiniLM-L6-v2';
CREATE ROLE uhok_embed_squatter;
GRANT CREATE ON SCHEMA public TO uhok_embed_squatter;
SET ROLE uhok_embed_squatter;
DO $do$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT * FROM (VALUES
        ('uhok_embed', 'input text, "normalize" boolean DEFAULT true, squat integer DEFAULT 0', 'vector'),
        ('uhok_embed', 'VARIADIC squat text[]', 'vector'),
        ('uhok_embed_batch', 'inputs text[], "normalize" boolean DEFAULT true, squat integer DEFAULT 0', 'vector[]'),
        ('uhok_embed_batch', 'VARIADIC squat text[][]', 'vector[]'),
        ('uhok_embed_version', 'squat integer DEFAULT 0', 'text'),
        ('uhok_embed_version', 'VARIADIC squat integer[]', 'text'),
        ('uhok_embed_vector_schema', 'squat integer DEFAULT 0', 'name'),
        ('uhok_embed_check_column', 'tbl regclass, col name, types text[], squat integer DEFAULT 0', 'void'),
        ('uhok_embed_backfill_step', 'tbl regclass, text_column name, vector_column name, version_column name,
                                      batch_size integer, state jsonb, squat integer DEFAULT 0', 'jsonb'),
        ('uhok_search', 'query text, tbl regclass, id_column name, vector_column name, top_k integer DEFAULT 25,
                         exclude_ids bigint[] DEFAULT ''{}'', page integer DEFAULT 0, squat integer DEFAULT 0',
         'TABLE (recipe_id bigint, distance double precision)')) AS v(name, args, result)
    LOOP
        EXECUTE format('CREATE FUNCTION public.%I(%s) RETURNS %s LANGUAGE plpgsql AS %L',
                       f.name, f.args, f.result,
                       format('BEGIN RAISE EXCEPTION %L; END', 'the squatter''s ' || f.name || ' ran'));
    END LOOP;
END
$do$;
-- The extension's own schema is closed to the squatter.
CREATE FUNCTION uhok_embed_internal.uhok_embed_version(squat integer DEFAULT 0) RETURNS text
LANGUAGE sql AS 'SELECT NULL';
RESET ROLE;
SELECT count(*) AS squatted FROM pg_proc WHERE proowner = 'uhok_embed_squatter'::regrole;

-- Every entry point, called as a DBA would (none of these names is squatted).
CREATE TABLE own_batch (id bigint PRIMARY KEY, body text, v vector(384), ver text);
CREATE TABLE own_row (body text, v vector(384));
CREATE TABLE "RECIPE_VECTOR_TABLE" ("RECIPE_ID" bigint PRIMARY KEY, "COOKING_NAME" text, "VECTOR_NAME" vector(384));
SELECT uhok_embed_attach('own_batch', 'body', 'v', 'ver');
SELECT uhok_embed_attach('own_row', 'body', 'v');
SELECT uhok_embed_attach('"RECIPE_VECTOR_TABLE"', 'COOKING_NAME', 'VECTOR_NAME');
INSERT INTO own_batch (id, body) VALUES (1, 'chocolate cake'), (2, 'ramen'), (3, NULL);
COPY own_batch (id, body) FROM STDIN;
4	bibimbap
5	kimchi stew
\.
UPDATE own_batch SET body = 'miso ramen' WHERE id = 2;
INSERT INTO own_row VALUES ('chocolate cake'), (NULL);
UPDATE own_row SET body = 'beef soup' WHERE body IS NULL;
INSERT INTO "RECIPE_VECTOR_TABLE" VALUES (1, 'chocolate cake'), (2, 'ramen'), (3, 'kimchi stew');
-- Stale rows for the backfill: an old version, a vector lost with the triggers off.
UPDATE own_batch SET ver = 'old' WHERE id = 1;
ALTER TABLE own_batch DISABLE TRIGGER USER;
UPDATE own_batch SET v = NULL WHERE id = 4;
ALTER TABLE own_batch ENABLE TRIGGER USER;
SET client_min_messages = warning;
CALL uhok_embed_backfill('own_batch', 'body', 'v', 'ver', 2);
RESET client_min_messages;
SELECT recipe_id FROM uhok_search('chocolate cake', 2);
SELECT uhok_embed_detach('own_batch', 'v');
SELECT uhok_embed_detach('own_row', 'v');

-- The squatter's functions gone, every vector is checked against uhok_embed of its text.
DROP OWNED BY uhok_embed_squatter;
SELECT count(*) AS rows, count(v) AS vectors,
       bool_and(max_abs_diff(v, uhok_embed(body)) <= 1e-5) AS all_equal,
       bool_and(ver = uhok_embed_version()) AS versions_current
FROM own_batch WHERE body IS NOT NULL;
SELECT count(*) AS rows, bool_and(max_abs_diff(v, uhok_embed(body)) <= 1e-5) AS all_equal FROM own_row;

-- uhok_embed_internal belongs to the extension: anyone may use it, nobody but its owner create in it.
SELECT n.nspname, pg_get_userbyid(n.nspowner) = current_user AS owned_by_installer,
       has_schema_privilege('public', n.oid, 'USAGE') AS public_usage,
       has_schema_privilege('public', n.oid, 'CREATE') AS public_create,
       EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid
               AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'uhok_embed') AND d.deptype = 'e') AS member
FROM pg_namespace n WHERE n.nspname = 'uhok_embed_internal';
-- What the extension's SQL calls there.
SELECT p.oid::regprocedure AS internal_function
FROM pg_proc p WHERE p.pronamespace = 'uhok_embed_internal'::regnamespace ORDER BY p.oid::regprocedure::text;

DROP TABLE own_batch, own_row, "RECIPE_VECTOR_TABLE";
REVOKE CREATE ON SCHEMA public FROM uhok_embed_squatter;
DROP ROLE uhok_embed_squatter;
