-- search_path safety (CVE-2018-1058): the extension's functions, triggers and procedure run
-- whatever the caller's search_path holds. A schema "evil", owned by an unprivileged role,
-- holds look-alikes of every function, aggregate, operator and catalog relation the extension's
-- SQL uses, each overloaded on the argument types it is likely called with; each records its
-- call in evil.calls and as a WARNING instead of doing its job. A superuser then uses every
-- entry point with evil early in its search_path: nothing may be called.
-- (Without pg_catalog in search_path PostgreSQL searches it first, so evil, public and
-- pg_catalog, evil, public only catch better-matching overloads; evil, pg_catalog, public puts
-- evil ahead of everything.)
SET uhok_embed.model_path = '$sharedir/uhok_embed/models/all-MiniLM-L6-v2';
CREATE ROLE uhok_embed_evil;
CREATE SCHEMA evil AUTHORIZATION uhok_embed_evil;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
SET ROLE uhok_embed_evil;
CREATE TABLE evil.calls (fn text);
GRANT SELECT, INSERT ON evil.calls TO PUBLIC;
-- Records a call; never raises (a function that must not write, STABLE say, can still warn).
CREATE FUNCTION evil.called(what text) RETURNS boolean LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE WARNING 'evil.% called', what;
    BEGIN
        INSERT INTO evil.calls VALUES (what);
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN true;
END $$;
DO $do$
DECLARE
    f record;
    o record;
    t record;
    n integer := 0;
BEGIN
    -- Functions: name, argument types, result type, what to return.
    FOR f IN SELECT * FROM (VALUES
        ('format', 'text', 'text', '$1'), ('format', 'text, text', 'text', '$1'),
        ('format', 'text, text, text', 'text', '$1'), ('format', 'text, name', 'text', '$1'),
        ('format', 'text, name, name', 'text', '$1'), ('format', 'text, anyelement', 'text', '$1'),
        ('format', 'text, text, text, text', 'text', '$1'), ('format', 'text, VARIADIC text[]', 'text', '$1'),
        ('format', 'text, name, name, regclass', 'text', '$1'), ('format', 'text, text, regclass', 'text', '$1'),
        ('jsonb_build_object', 'text, text', 'jsonb', 'NULL'), ('jsonb_build_object', 'text, anyelement', 'jsonb', 'NULL'),
        ('jsonb_build_object', 'name, text', 'jsonb', 'NULL'), ('jsonb_build_object', 'text, bigint', 'jsonb', 'NULL'),
        ('jsonb_build_object', 'text, text, text, bigint', 'jsonb', 'NULL'),
        ('jsonb_populate_record', 'anyelement, jsonb', 'anyelement', '$1'),
        ('unnest', 'anyarray', 'SETOF anyelement', NULL), ('unnest', 'text[]', 'SETOF text', NULL),
        ('unnest', 'bigint[]', 'SETOF bigint', NULL), ('unnest', 'int2vector', 'SETOF smallint', NULL),
        ('unnest', 'vector[]', 'SETOF vector', NULL),
        ('row_number', '', 'bigint', '1'),
        ('length', 'text', 'integer', '1'), ('length', 'name', 'integer', '1'), ('length', 'anyelement', 'integer', '1'),
        ('quote_literal', 'text', 'text', '$1'), ('quote_literal', 'anyelement', 'text', 'NULL'),
        ('quote_ident', 'text', 'text', '$1'),
        ('array_to_string', 'anyarray, text', 'text', 'NULL'), ('array_to_string', 'text[], text', 'text', 'NULL'),
        ('array_remove', 'anyarray, anyelement', 'anyarray', '$1'),
        ('array_length', 'anyarray, integer', 'integer', '1'),
        ('current_setting', 'text', 'text', '$1'), ('current_setting', 'text, boolean', 'text', '$1'),
        ('set_config', 'text, text, boolean', 'text', '$2'),
        ('format_type', 'oid, integer', 'text', 'NULL'), ('format_type', 'oid, bigint', 'text', 'NULL'),
        ('pg_relation_size', 'regclass', 'bigint', '0'), ('pg_relation_size', 'oid', 'bigint', '0'),
        ('pg_has_role', 'name, oid, text', 'boolean', 'true'), ('pg_has_role', 'oid, text', 'boolean', 'true'),
        ('clock_timestamp', '', 'timestamptz', 'NULL'), ('now', '', 'timestamptz', 'NULL'),
        ('floor', 'double precision', 'double precision', '$1'), ('floor', 'numeric', 'numeric', '$1'),
        ('round', 'numeric', 'numeric', '$1'), ('round', 'numeric, integer', 'numeric', '$1'),
        ('round', 'double precision', 'double precision', '$1'),
        ('extract', 'text, interval', 'numeric', '0'), ('extract', 'text, timestamptz', 'numeric', '0'),
        ('date_part', 'text, interval', 'double precision', '0'),
        ('greatest', 'bigint, bigint', 'bigint', '$1'), ('nullif', 'text, text', 'text', '$1'),
        ('coalesce', 'text, text', 'text', '$1'),
        ('concat', 'text, text', 'text', '$1'), ('lower', 'text', 'text', '$1'), ('upper', 'text', 'text', '$1'),
        ('to_regclass', 'text', 'regclass', 'NULL'), ('vector_dims', 'vector', 'integer', '0'),
        ('l2_distance', 'vector, vector', 'double precision', '0'),
        ('vector', 'vector, integer, boolean', 'vector', '$1'),
        ('jsonb_object_field_text', 'jsonb, text', 'text', 'NULL'),
        ('textcat', 'text, text', 'text', '$1'), ('int8eq', 'bigint, bigint', 'boolean', 'true'),
        -- the extension's own functions and pgvector's, which it calls schema-qualified
        ('uhok_embed', 'text', 'vector', 'NULL'), ('uhok_embed', 'text, boolean', 'vector', 'NULL'),
        ('uhok_embed_batch', 'text[]', 'vector[]', 'NULL'), ('uhok_embed_batch', 'text[], boolean', 'vector[]', 'NULL'),
        ('uhok_embed_version', '', 'text', '''evil'''),
        ('uhok_embed_vector_schema', '', 'name', '''evil'''),
        ('uhok_embed_check_column', 'regclass, name, text[]', 'void', NULL),
        ('uhok_embed_row_trigger', '', 'trigger', NULL), ('uhok_embed_statement_trigger', '', 'trigger', NULL),
        ('uhok_embed_backfill_step', 'regclass, name, name, name, integer, jsonb', 'jsonb', 'NULL'),
        ('uhok_search', 'text, regclass, name, name, integer, bigint[], integer', 'TABLE (recipe_id bigint, distance double precision)', NULL)
        ) AS v(name, args, result, ret)
    LOOP
        EXECUTE format('CREATE FUNCTION evil.%I(%s) RETURNS %s LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS %L',
                       f.name, f.args, f.result,
                       format('BEGIN PERFORM evil.called(%L); %s END',
                              format('%s(%s)', f.name, f.args),
                              CASE WHEN f.result = 'trigger' THEN 'RETURN NULL;'
                                   WHEN f.ret IS NULL THEN 'RETURN;' ELSE format('RETURN %s;', f.ret) END));
        n := n + 1;
    END LOOP;
    -- Aggregates.
    CREATE FUNCTION evil.agg_step(state bigint, value anyelement) RETURNS bigint LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$ BEGIN PERFORM evil.called('aggregate'); RETURN 0; END $$;
    CREATE FUNCTION evil.agg_star(state bigint) RETURNS bigint LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$ BEGIN PERFORM evil.called('count(*)'); RETURN 0; END $$;
    CREATE FUNCTION evil.agg_text(state text, value text, sep text) RETURNS text LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$ BEGIN PERFORM evil.called('string_agg(text, text)'); RETURN ''; END $$;
    CREATE FUNCTION evil.agg_array(state anycompatiblearray, value anycompatible) RETURNS anycompatiblearray LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$ BEGIN PERFORM evil.called('array_agg'); RETURN state; END $$;
    CREATE FUNCTION evil.agg_bool(state boolean, value boolean) RETURNS boolean LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$ BEGIN PERFORM evil.called('bool_and'); RETURN true; END $$;
    CREATE AGGREGATE evil.count(*) (SFUNC = evil.agg_star, STYPE = bigint, INITCOND = '0');
    CREATE AGGREGATE evil.count(anyelement) (SFUNC = evil.agg_step, STYPE = bigint, INITCOND = '0');
    CREATE AGGREGATE evil.string_agg(text, text) (SFUNC = evil.agg_text, STYPE = text);
    CREATE AGGREGATE evil.array_agg(anycompatible) (SFUNC = evil.agg_array, STYPE = anycompatiblearray, INITCOND = '{}');
    CREATE AGGREGATE evil.bool_and(boolean) (SFUNC = evil.agg_bool, STYPE = boolean);
    -- Operators, on each type they are likely used with.
    FOR o IN SELECT * FROM (VALUES ('='), ('<>'), ('<'), ('>'), ('<='), ('>=')) AS v(op) LOOP
        FOR t IN SELECT * FROM (VALUES
            ('text', 'text'), ('name', 'name'), ('name', 'text'), ('text', 'name'), ('bigint', 'bigint'),
            ('integer', 'integer'), ('bigint', 'integer'), ('integer', 'bigint'), ('smallint', 'smallint'),
            ('smallint', 'integer'), ('integer', 'smallint'), ('oid', 'oid'), ('regclass', 'regclass'),
            ('regclass', 'oid'), ('oid', 'regclass'), ('boolean', 'boolean'), ('tid', 'tid'), ('"char"', '"char"'),
            ('double precision', 'double precision'), ('numeric', 'numeric'), ('timestamptz', 'timestamptz'),
            ('interval', 'interval'), ('jsonb', 'jsonb'), ('vector', 'vector'), ('anyelement', 'anyelement')) AS v(l, r)
        LOOP
            n := n + 1;
            EXECUTE format('CREATE FUNCTION evil.op_%s(%s, %s) RETURNS boolean LANGUAGE plpgsql
                            SET search_path = pg_catalog, pg_temp AS %L',
                           n, t.l, t.r, format('BEGIN RETURN evil.called(%L); END', format('%s %s %s', t.l, o.op, t.r)));
            EXECUTE format('CREATE OPERATOR evil.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.op_%s)',
                           o.op, t.l, t.r, n);
        END LOOP;
    END LOOP;
    FOR t IN SELECT * FROM (VALUES
        ('||', 'text', 'text', 'text'), ('||', 'jsonb', 'jsonb', 'jsonb'), ('||', 'text[]', 'text[]', 'text[]'),
        ('||', 'text', 'anynonarray', 'text'), ('||', 'anynonarray', 'text', 'text'), ('||', 'name', 'text', 'text'),
        ('+', 'bigint', 'bigint', 'bigint'), ('+', 'bigint', 'integer', 'bigint'), ('+', 'integer', 'integer', 'integer'),
        ('+', 'integer', 'bigint', 'bigint'),
        ('-', 'bigint', 'bigint', 'bigint'), ('-', 'bigint', 'integer', 'bigint'), ('-', 'integer', 'integer', 'integer'),
        ('-', 'timestamptz', 'timestamptz', 'interval'),
        ('*', 'bigint', 'bigint', 'bigint'), ('*', 'bigint', 'integer', 'bigint'), ('*', 'numeric', 'numeric', 'numeric'),
        ('/', 'bigint', 'bigint', 'bigint'), ('/', 'bigint', 'double precision', 'double precision'),
        ('/', 'double precision', 'double precision', 'double precision'), ('/', 'integer', 'double precision', 'double precision'),
        ('/', 'numeric', 'numeric', 'numeric'), ('/', 'numeric', 'double precision', 'double precision'),
        ('->>', 'jsonb', 'text', 'text'), ('->', 'jsonb', 'text', 'jsonb'),
        ('<->', 'vector', 'vector', 'double precision'), ('<=>', 'vector', 'vector', 'double precision'),
        ('<#>', 'vector', 'vector', 'double precision')) AS v(op, l, r, result)
    LOOP
        n := n + 1;
        EXECUTE format('CREATE FUNCTION evil.op_%s(%s, %s) RETURNS %s LANGUAGE plpgsql
                        SET search_path = pg_catalog, pg_temp AS %L',
                       n, t.l, t.r, t.result,
                       format('BEGIN PERFORM evil.called(%L); RETURN NULL; END', format('%s %s %s', t.l, t.op, t.r)));
        EXECUTE format('CREATE OPERATOR evil.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.op_%s)',
                       t.op, t.l, t.r, n);
    END LOOP;
    -- Catalog look-alikes, and the transition table's name.
    FOR t IN SELECT * FROM unnest(ARRAY['pg_trigger', 'pg_index', 'pg_attribute', 'pg_class', 'pg_type', 'pg_namespace',
                                        'pg_extension', 'pg_opclass', 'pg_amop', 'pg_depend', 'pg_proc']) AS v(rel) LOOP
        EXECUTE format('CREATE VIEW evil.%I AS SELECT %s FROM pg_catalog.%I WHERE evil.called(%L)', t.rel,
                       CASE WHEN t.rel = 'pg_attribute' THEN 'attrelid, attname, atttypid, attnum, attnotnull, attisdropped'
                            ELSE '*' END, t.rel, t.rel);
    END LOOP;
    CREATE VIEW evil.uhok_embed_new_rows AS SELECT NULL::bigint AS id WHERE evil.called('uhok_embed_new_rows');
END
$do$;
RESET ROLE;
-- Sanity: the look-alikes record their calls.
SELECT evil.format('x') AS evil_format;
SELECT count(*) AS calls_recorded FROM evil.calls;
DELETE FROM evil.calls;

-- The tables: batch mode (a primary key), row mode (none), and the default search's table.
CREATE TABLE sp_batch (id bigint PRIMARY KEY, body text, v vector(384), ver text);
CREATE TABLE sp_row (body text, v vector(384));
CREATE TABLE "RECIPE_VECTOR_TABLE" ("RECIPE_ID" bigint PRIMARY KEY, "COOKING_NAME" text, "VECTOR_NAME" vector(384));
SELECT uhok_embed_attach('"RECIPE_VECTOR_TABLE"', 'COOKING_NAME', 'VECTOR_NAME');
INSERT INTO "RECIPE_VECTOR_TABLE" VALUES (1, 'chocolate cake'), (2, 'ramen'), (3, 'kimchi stew'), (4, 'beef soup');
-- Every row's vector against uhok_embed(its text), the versions current (checked with a safe path).
CREATE FUNCTION sp_check() RETURNS TABLE (tbl text, total bigint, with_vector bigint, all_equal boolean, versions_current boolean)
LANGUAGE sql AS $$
    SELECT 'sp_batch', count(*), count(v),
           bool_and(CASE WHEN body IS NULL THEN v IS NULL ELSE coalesce(max_abs_diff(v, uhok_embed(body)) <= 1e-5, false) END),
           bool_and(CASE WHEN body IS NULL THEN true ELSE ver = uhok_embed_version() END)
    FROM sp_batch
    UNION ALL
    SELECT 'sp_row', count(*), count(v),
           bool_and(CASE WHEN body IS NULL THEN v IS NULL ELSE coalesce(max_abs_diff(v, uhok_embed(body)) <= 1e-5, false) END),
           NULL
    FROM sp_row
$$;

-- ---- search_path = evil, public
SET search_path = evil, public;
SHOW search_path;
SELECT public.uhok_embed_attach('public.sp_batch', 'body', 'v', 'ver');
SELECT public.uhok_embed_attach('public.sp_row', 'body', 'v');
INSERT INTO public.sp_batch (id, body) VALUES (1, 'chocolate cake');
INSERT INTO public.sp_batch (id, body) VALUES (2, 'ramen'), (3, NULL), (4, 'kimchi stew'), (5, 'beef soup');
COPY public.sp_batch (id, body) FROM STDIN;
6	bibimbap
7	\N
8	japchae
\.
UPDATE public.sp_batch SET body = 'miso ramen' WHERE id OPERATOR(pg_catalog.=) 2;
UPDATE public.sp_batch SET body = 'tteokbokki' WHERE id OPERATOR(pg_catalog.=) 7;
UPDATE public.sp_batch SET body = NULL WHERE id OPERATOR(pg_catalog.=) 8;
INSERT INTO public.sp_batch (id, body) VALUES (6, 'bibimbap with egg') ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body;
INSERT INTO public.sp_row VALUES ('chocolate cake'), (NULL), ('ramen');
COPY public.sp_row FROM STDIN;
japchae	\N
\.
UPDATE public.sp_row SET body = 'miso ramen' WHERE body OPERATOR(pg_catalog.=) 'ramen';
-- Stale rows for the backfill: an old version, a vector without text (triggers off).
UPDATE public.sp_batch SET ver = 'old' WHERE id OPERATOR(pg_catalog.=) 1;
ALTER TABLE public.sp_batch DISABLE TRIGGER USER;
UPDATE public.sp_batch SET v = NULL WHERE id OPERATOR(pg_catalog.=) 4;
ALTER TABLE public.sp_batch ENABLE TRIGGER USER;
SET client_min_messages = warning;
CALL public.uhok_embed_backfill('public.sp_batch', 'body', 'v', 'ver', 2);
CALL public.uhok_embed_backfill('public.sp_batch', 'body', 'v');
RESET client_min_messages;
CREATE TEMP TABLE sp_found AS
SELECT 'default' AS form, recipe_id FROM public.uhok_search('chocolate cake', 3);
INSERT INTO sp_found SELECT 'default excluding', recipe_id FROM public.uhok_search('chocolate cake', 3, '{1,NULL}', 0);
INSERT INTO sp_found SELECT 'table', recipe_id FROM public.uhok_search('chocolate cake', 'public.sp_batch', 'id', 'v', 3);
INSERT INTO sp_found SELECT 'table excluding', recipe_id FROM public.uhok_search('chocolate cake', 'public.sp_batch', 'id', 'v', 5, '{1,NULL}');
INSERT INTO sp_found SELECT 'table page 1', recipe_id FROM public.uhok_search('chocolate cake', 'public.sp_batch', 'id', 'v', 2, '{}', 1);
SELECT public.uhok_embed_detach('public.sp_batch', 'v');
SELECT public.uhok_embed_detach('public.sp_row', 'v');
RESET search_path;
SELECT count(*) AS evil_calls FROM evil.calls;
SELECT * FROM sp_check();
SELECT form, count(*) AS found, bool_or(recipe_id = 1) AS has_1 FROM sp_found GROUP BY form ORDER BY form;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid IN ('sp_batch'::regclass, 'sp_row'::regclass);
DROP TABLE sp_found;
TRUNCATE sp_batch, sp_row;

-- ---- search_path = pg_catalog, evil, public
SET search_path = pg_catalog, evil, public;
SHOW search_path;
SELECT public.uhok_embed_attach('public.sp_batch', 'body', 'v', 'ver');
SELECT public.uhok_embed_attach('public.sp_row', 'body', 'v');
INSERT INTO public.sp_batch (id, body) VALUES (1, 'chocolate cake');
INSERT INTO public.sp_batch (id, body) VALUES (2, 'ramen'), (3, NULL), (4, 'kimchi stew'), (5, 'beef soup');
COPY public.sp_batch (id, body) FROM STDIN;
6	bibimbap
7	\N
8	japchae
\.
UPDATE public.sp_batch SET body = 'miso ramen' WHERE id OPERATOR(pg_catalog.=) 2;
UPDATE public.sp_batch SET body = 'tteokbokki' WHERE id OPERATOR(pg_catalog.=) 7;
UPDATE public.sp_batch SET body = NULL WHERE id OPERATOR(pg_catalog.=) 8;
INSERT INTO public.sp_batch (id, body) VALUES (6, 'bibimbap with egg') ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body;
INSERT INTO public.sp_row VALUES ('chocolate cake'), (NULL), ('ramen');
COPY public.sp_row FROM STDIN;
japchae	\N
\.
UPDATE public.sp_row SET body = 'miso ramen' WHERE body OPERATOR(pg_catalog.=) 'ramen';
-- Stale rows for the backfill: an old version, a vector without text (triggers off).
UPDATE public.sp_batch SET ver = 'old' WHERE id OPERATOR(pg_catalog.=) 1;
ALTER TABLE public.sp_batch DISABLE TRIGGER USER;
UPDATE public.sp_batch SET v = NULL WHERE id OPERATOR(pg_catalog.=) 4;
ALTER TABLE public.sp_batch ENABLE TRIGGER USER;
SET client_min_messages = warning;
CALL public.uhok_embed_backfill('public.sp_batch', 'body', 'v', 'ver', 2);
CALL public.uhok_embed_backfill('public.sp_batch', 'body', 'v');
RESET client_min_messages;
CREATE TEMP TABLE sp_found AS
SELECT 'default' AS form, recipe_id FROM public.uhok_search('chocolate cake', 3);
INSERT INTO sp_found SELECT 'default excluding', recipe_id FROM public.uhok_search('chocolate cake', 3, '{1,NULL}', 0);
INSERT INTO sp_found SELECT 'table', recipe_id FROM public.uhok_search('chocolate cake', 'public.sp_batch', 'id', 'v', 3);
INSERT INTO sp_found SELECT 'table excluding', recipe_id FROM public.uhok_search('chocolate cake', 'public.sp_batch', 'id', 'v', 5, '{1,NULL}');
INSERT INTO sp_found SELECT 'table page 1', recipe_id FROM public.uhok_search('chocolate cake', 'public.sp_batch', 'id', 'v', 2, '{}', 1);
SELECT public.uhok_embed_detach('public.sp_batch', 'v');
SELECT public.uhok_embed_detach('public.sp_row', 'v');
RESET search_path;
SELECT count(*) AS evil_calls FROM evil.calls;
SELECT * FROM sp_check();
SELECT form, count(*) AS found, bool_or(recipe_id = 1) AS has_1 FROM sp_found GROUP BY form ORDER BY form;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid IN ('sp_batch'::regclass, 'sp_row'::regclass);
DROP TABLE sp_found;
TRUNCATE sp_batch, sp_row;

-- ---- search_path = evil, pg_catalog, public
SET search_path = evil, pg_catalog, public;
SHOW search_path;
SELECT public.uhok_embed_attach('public.sp_batch', 'body', 'v', 'ver');
SELECT public.uhok_embed_attach('public.sp_row', 'body', 'v');
INSERT INTO public.sp_batch (id, body) VALUES (1, 'chocolate cake');
INSERT INTO public.sp_batch (id, body) VALUES (2, 'ramen'), (3, NULL), (4, 'kimchi stew'), (5, 'beef soup');
COPY public.sp_batch (id, body) FROM STDIN;
6	bibimbap
7	\N
8	japchae
\.
UPDATE public.sp_batch SET body = 'miso ramen' WHERE id OPERATOR(pg_catalog.=) 2;
UPDATE public.sp_batch SET body = 'tteokbokki' WHERE id OPERATOR(pg_catalog.=) 7;
UPDATE public.sp_batch SET body = NULL WHERE id OPERATOR(pg_catalog.=) 8;
INSERT INTO public.sp_batch (id, body) VALUES (6, 'bibimbap with egg') ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body;
INSERT INTO public.sp_row VALUES ('chocolate cake'), (NULL), ('ramen');
COPY public.sp_row FROM STDIN;
japchae	\N
\.
UPDATE public.sp_row SET body = 'miso ramen' WHERE body OPERATOR(pg_catalog.=) 'ramen';
-- Stale rows for the backfill: an old version, a vector without text (triggers off).
UPDATE public.sp_batch SET ver = 'old' WHERE id OPERATOR(pg_catalog.=) 1;
ALTER TABLE public.sp_batch DISABLE TRIGGER USER;
UPDATE public.sp_batch SET v = NULL WHERE id OPERATOR(pg_catalog.=) 4;
ALTER TABLE public.sp_batch ENABLE TRIGGER USER;
SET client_min_messages = warning;
CALL public.uhok_embed_backfill('public.sp_batch', 'body', 'v', 'ver', 2);
CALL public.uhok_embed_backfill('public.sp_batch', 'body', 'v');
RESET client_min_messages;
CREATE TEMP TABLE sp_found AS
SELECT 'default' AS form, recipe_id FROM public.uhok_search('chocolate cake', 3);
INSERT INTO sp_found SELECT 'default excluding', recipe_id FROM public.uhok_search('chocolate cake', 3, '{1,NULL}', 0);
INSERT INTO sp_found SELECT 'table', recipe_id FROM public.uhok_search('chocolate cake', 'public.sp_batch', 'id', 'v', 3);
INSERT INTO sp_found SELECT 'table excluding', recipe_id FROM public.uhok_search('chocolate cake', 'public.sp_batch', 'id', 'v', 5, '{1,NULL}');
INSERT INTO sp_found SELECT 'table page 1', recipe_id FROM public.uhok_search('chocolate cake', 'public.sp_batch', 'id', 'v', 2, '{}', 1);
SELECT public.uhok_embed_detach('public.sp_batch', 'v');
SELECT public.uhok_embed_detach('public.sp_row', 'v');
RESET search_path;
SELECT count(*) AS evil_calls FROM evil.calls;
SELECT * FROM sp_check();
SELECT form, count(*) AS found, bool_or(recipe_id = 1) AS has_1 FROM sp_found GROUP BY form ORDER BY form;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid IN ('sp_batch'::regclass, 'sp_row'::regclass);
DROP TABLE sp_found;
TRUNCATE sp_batch, sp_row;

-- The pinned functions: every function and procedure of the extension written in SQL or
-- PL/pgSQL has SET search_path, except the two that cannot or must not (see sync.sql, search.sql).
SELECT p.oid::regprocedure AS function, p.proconfig
FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'uhok_embed'
JOIN pg_language l ON l.oid = p.prolang
WHERE l.lanname IN ('sql', 'plpgsql')
ORDER BY p.oid::regprocedure::text;

DROP TABLE sp_batch, sp_row, "RECIPE_VECTOR_TABLE";
DROP FUNCTION sp_check();
SET client_min_messages = warning;
DROP SCHEMA evil CASCADE;
RESET client_min_messages;
DROP ROLE uhok_embed_evil;
