-- uhok_embed 0.4.0 -> 0.5.0 (issue 24, part 2): batch mode on attribute numbers.
-- - uhok_embed_attach(..., mode => 'batch') creates the Rust row trigger with the argument
--   'batch' (it marks rows pending; a vector supplied with the loaded model's version is kept)
--   and statement triggers whose arguments are attribute numbers, resolved at each call with
--   the primary key: renames keep working. It refuses batch mode where a role may INSERT but
--   not UPDATE.
-- - uhok_embed_internal.uhok_embed_statement_trigger() reads both argument forms (tables
--   attached before keep their triggers and arguments).
-- - uhok_embed_internal.uhok_embed_triggers() also finds batch mode's statement triggers by
--   their function and the vector column's attribute number.
-- Released: never edit this file (tests/released_scripts.sh); tests/upgrade.sh checks that it
-- gives what a fresh install gives.

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION uhok_embed UPDATE TO '0.5.0'" to load this file. \quit

COMMENT ON FUNCTION uhok_embed_internal.uhok_embed_row_embed() IS
'uhok_embed_attach()''s row trigger (src/sync_trigger.rs): BEFORE INSERT OR UPDATE OF <text>, <vector> [, <version>] FOR EACH ROW, the columns taken from that list; with the argument ''batch'' it marks rows pending for batch mode''s statement trigger.';

-- The triggers uhok_embed_attach() made on tbl for vector_column: by their names, and by their
-- function and the vector column's attribute number (the row trigger's column list, the
-- statement triggers' arguments), so a renamed column is still found. A partition's clones are
-- its parent's to drop.
CREATE OR REPLACE FUNCTION uhok_embed_internal.uhok_embed_triggers(tbl regclass, vector_column name)
RETURNS TABLE (tgname name)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.tgname FROM pg_catalog.pg_trigger t
    WHERE t.tgrelid = tbl AND t.tgparentid OPERATOR(pg_catalog.=) 0
      AND (t.tgname IN ('uhok_embed_' || vector_column || '_row', 'uhok_embed_' || vector_column || '_insert',
                        'uhok_embed_' || vector_column || '_update')
           OR (t.tgfoid = 'uhok_embed_internal.uhok_embed_row_embed()'::pg_catalog.regprocedure
               AND t.tgattr[1] = (SELECT a.attnum FROM pg_catalog.pg_attribute a
                                  WHERE a.attrelid = tbl AND a.attname = vector_column AND NOT a.attisdropped))
           OR (t.tgfoid = 'uhok_embed_internal.uhok_embed_statement_trigger()'::pg_catalog.regprocedure
               AND (pg_catalog.string_to_array(pg_catalog.encode(t.tgargs, 'escape'), '\000'))[1] = 'attnums'
               AND (pg_catalog.string_to_array(pg_catalog.encode(t.tgargs, 'escape'), '\000'))[3]
                   = (SELECT a.attnum::text FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = tbl AND a.attname = vector_column AND NOT a.attisdropped)))
    ORDER BY t.tgname
$$;


CREATE OR REPLACE FUNCTION uhok_embed_attach(tbl regclass, text_column name, vector_column name,
                                  version_column name DEFAULT NULL, mode text DEFAULT 'row')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key_columns    text[];
    vector_notnull boolean;
    prefix         text := 'uhok_embed_' || vector_column;
    missing        bigint;
    rel            record;
    insert_only    text;
    statement_args text;
BEGIN
    IF tbl IS NULL OR text_column IS NULL OR vector_column IS NULL OR mode IS NULL THEN
        RAISE EXCEPTION '% must not be NULL',
            CASE WHEN tbl IS NULL THEN 'tbl' WHEN text_column IS NULL THEN 'text_column'
                 WHEN vector_column IS NULL THEN 'vector_column' ELSE 'mode' END
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'uhok_embed_attach(tbl, text_column, vector_column [, version_column [, mode]]) needs a table and two column names; only version_column may be NULL (no version column), and mode left out is ''row''.';
    END IF;
    IF mode NOT IN ('row', 'batch') THEN
        RAISE EXCEPTION 'mode must be ''row'' or ''batch'', not %', quote_literal(mode)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = '''row'' (the default) embeds each row as it is written; ''batch'' embeds a statement''s rows together after it, for bulk loads into plain tables.';
    END IF;
    -- CREATE TRIGGER only asks for the TRIGGER privilege; attaching (and detaching) is the
    -- owner's decision, as for DROP TRIGGER.
    IF NOT pg_has_role(current_user, (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = tbl), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', tbl
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Only the table''s owner (or a member of the owning role) can attach uhok_embed to it.';
    END IF;
    PERFORM uhok_embed_internal.uhok_embed_check_column(tbl, text_column, ARRAY['text', 'character varying', 'character']);
    PERFORM uhok_embed_internal.uhok_embed_check_column(tbl, vector_column, ARRAY['vector']);
    IF version_column IS NOT NULL THEN
        PERFORM uhok_embed_internal.uhok_embed_check_column(tbl, version_column, ARRAY['text', 'character varying']);
        IF version_column = text_column THEN
            RAISE EXCEPTION 'the version column must not be the text column'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Give the version its own text column, or leave version_column out.';
        END IF;
    END IF;
    -- Counted in bytes: a name over 63 bytes would be cut, and two columns' triggers could meet.
    IF octet_length(prefix) > 56 THEN
        RAISE EXCEPTION 'vector column name "%" is too long for uhok_embed''s trigger names', vector_column
            USING ERRCODE = 'name_too_long', HINT = 'Use a vector column name of at most 45 bytes.';
    END IF;
    IF EXISTS (SELECT FROM uhok_embed_internal.uhok_embed_triggers(tbl, vector_column)) THEN
        RAISE EXCEPTION 'uhok_embed is already attached to column "%" of %', vector_column, tbl
            USING ERRCODE = 'duplicate_object',
                  HINT = format('Call uhok_embed_detach(%L, %L) first.', tbl, vector_column);
    END IF;

    IF mode = 'row' THEN
        -- The row's own trigger embeds it before it is stored (src/sync_trigger.rs); it takes its
        -- columns from the trigger's column list, which renames and partitions keep right.
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OF %I, %I%s ON %s FOR EACH ROW
                        EXECUTE FUNCTION uhok_embed_internal.uhok_embed_row_embed()',
                       prefix || '_row', text_column, vector_column,
                       CASE WHEN version_column IS NULL THEN '' ELSE format(', %I', version_column) END, tbl);
    ELSE
        -- Batch mode: the row trigger marks the row pending (vector NULL) and the statement's
        -- AFTER trigger embeds the pending rows together and UPDATEs them. Refused where that
        -- UPDATE cannot be relied on.
        SELECT c.relkind, c.relispartition, c.relrowsecurity INTO rel FROM pg_catalog.pg_class c WHERE c.oid = tbl;
        IF rel.relkind = 'p' OR rel.relispartition THEN
            RAISE EXCEPTION 'mode ''batch'' cannot keep % in sync: it is partitioned or a partition', tbl
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'Rows written to a partition do not fire the partitioned table''s statement triggers. Use mode ''row'' (the default).';
        END IF;
        IF rel.relrowsecurity THEN
            RAISE EXCEPTION 'mode ''batch'' cannot keep % in sync: it has row-level security', tbl
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'A policy can hide a row from the statement trigger''s UPDATE and leave it without a vector. Use mode ''row'' (the default).';
        END IF;
        SELECT array_agg(a.attname::text ORDER BY k.ord) INTO key_columns
        FROM pg_catalog.pg_index i
        CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = tbl AND i.indisprimary;
        SELECT attnotnull INTO vector_notnull FROM pg_catalog.pg_attribute WHERE attrelid = tbl AND attname = vector_column;
        IF key_columns IS NULL OR vector_notnull THEN
            RAISE EXCEPTION 'mode ''batch'' needs a primary key on % and a vector column that allows NULL', tbl
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'The statement trigger finds its rows by primary key, and marks them pending with a NULL vector. Use mode ''row'' (the default).';
        END IF;
        -- Roles that may INSERT but not UPDATE would get "permission denied" on every INSERT
        -- (the statement trigger's UPDATE runs with their rights).
        SELECT string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END, ', ' ORDER BY r.rolname)
          INTO insert_only
        FROM pg_catalog.pg_class c
        CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) AS a
        LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
        WHERE c.oid = tbl AND a.privilege_type = 'INSERT'
          AND NOT (CASE WHEN a.grantee = 0 THEN EXISTS (SELECT FROM pg_catalog.aclexplode(c.relacl) AS u
                                                       WHERE u.grantee = 0 AND u.privilege_type = 'UPDATE')
                        ELSE pg_catalog.has_table_privilege(a.grantee, tbl, 'UPDATE') END);
        IF insert_only IS NOT NULL THEN
            RAISE EXCEPTION 'mode ''batch'' cannot keep % in sync: % may INSERT but not UPDATE it', tbl, insert_only
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'Batch mode fills the vectors with an UPDATE run with the inserting role''s rights. Grant UPDATE too, or use mode ''row'' (the default).';
        END IF;
        -- The row trigger (Rust, argument 'batch') marks rows pending; the statement triggers
        -- get attribute numbers, resolved to names at each call, so renames keep working.
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OF %I, %I%s ON %s FOR EACH ROW
                        EXECUTE FUNCTION uhok_embed_internal.uhok_embed_row_embed(''batch'')',
                       prefix || '_row', text_column, vector_column,
                       CASE WHEN version_column IS NULL THEN '' ELSE format(', %I', version_column) END, tbl);
        SELECT format('''attnums'', %L, %L, %L',
                      max(a.attnum) FILTER (WHERE a.attname = text_column),
                      max(a.attnum) FILTER (WHERE a.attname = vector_column),
                      coalesce(max(a.attnum) FILTER (WHERE a.attname = version_column), 0))
          INTO statement_args
        FROM pg_catalog.pg_attribute a WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped;
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS uhok_embed_new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION uhok_embed_internal.uhok_embed_statement_trigger(%s)',
                       prefix || '_insert', tbl, statement_args);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s REFERENCING NEW TABLE AS uhok_embed_new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION uhok_embed_internal.uhok_embed_statement_trigger(%s)',
                       prefix || '_update', tbl, statement_args);
    END IF;

    EXECUTE format('SELECT count(*) FROM %s WHERE %I IS NOT NULL AND %I IS NULL', tbl, text_column, vector_column)
        INTO missing;
    IF missing > 0 THEN
        RAISE NOTICE '% existing rows of % have no vector yet', missing, tbl
            USING HINT = format('CALL uhok_embed_backfill(%L, %L, %L%s);', tbl, text_column, vector_column,
                                CASE WHEN version_column IS NULL THEN '' ELSE format(', %L', version_column) END);
    END IF;
END
$$;

COMMENT ON FUNCTION uhok_embed_attach(regclass, name, name, name, text) IS
'Keeps vector_column equal to uhok_embed(text_column) on every INSERT and every UPDATE that changes the text, and version_column (if given) equal to uhok_embed_version(). mode ''row'' (the default) embeds each row before it is stored; ''batch'' embeds a statement''s rows together after it (plain tables with a primary key only). Only the table''s owner may call it; tbl, text_column, vector_column and mode must not be NULL, version_column NULL means none.';


CREATE OR REPLACE FUNCTION uhok_embed_internal.uhok_embed_statement_trigger() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- Arguments: 'attnums', then the text, vector and version (0: none) columns' attribute
    -- numbers, resolved to names at each call, with the primary key (attach since 0.5.0:
    -- renames keep working); or, attached before, the text, vector and version ('' none)
    -- columns' names, then the primary key columns.
    by_number      boolean := TG_ARGV[0] = 'attnums';
    text_column    text;
    vector_column  text;
    version_column text;
    key_columns    text[];
    -- Rows per UPDATE: bounds the vector[] of one statement (4096 x 384 floats = 6 MB).
    rows_per_update constant integer := 4096;
    pending        bigint;
    key_list       text;
    key_match      text;
BEGIN
    IF by_number THEN
        SELECT max(a.attname::text) FILTER (WHERE a.attnum = TG_ARGV[1]::smallint),
               max(a.attname::text) FILTER (WHERE a.attnum = TG_ARGV[2]::smallint),
               max(a.attname::text) FILTER (WHERE a.attnum = TG_ARGV[3]::smallint)
          INTO text_column, vector_column, version_column
        FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped;
        SELECT array_agg(a.attname::text ORDER BY k.ord) INTO key_columns
        FROM pg_catalog.pg_index i
        CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = TG_RELID AND i.indisprimary;
        IF text_column IS NULL OR vector_column IS NULL OR (TG_ARGV[3] <> '0' AND version_column IS NULL)
           OR key_columns IS NULL THEN
            RAISE EXCEPTION 'uhok_embed cannot keep % in sync in batch mode: a column it uses, or its primary key, is gone', TG_RELID::regclass
                USING ERRCODE = 'undefined_column',
                      HINT = 'uhok_embed_detach() the vector column, then uhok_embed_attach() again (mode ''row'' needs no primary key).';
        END IF;
    ELSE
        text_column := TG_ARGV[0];
        vector_column := TG_ARGV[1];
        version_column := nullif(TG_ARGV[2], '');
        key_columns := TG_ARGV[3:];
    END IF;
    EXECUTE format('SELECT count(*) FROM uhok_embed_new_rows WHERE %I IS NULL AND %I IS NOT NULL',
                   vector_column, text_column) INTO pending;
    IF pending = 0 THEN
        RETURN NULL;
    END IF;
    -- Each key column is matched with the equality operator of its primary key index's operator
    -- class, qualified (a regoper printed under this search_path names its schema), so a key of a
    -- type from another schema (citext, say) is compared by its own operator, found by OID.
    SELECT string_agg(format('%I', k.col), ', ' ORDER BY k.ord),
           string_agg(format('t.%1$I OPERATOR(%2$s) n.%1$I', k.col,
                             coalesce(eq.oprid::regoper::text, 'pg_catalog.=')), ' AND ' ORDER BY k.ord)
      INTO key_list, key_match
    FROM unnest(key_columns) WITH ORDINALITY AS k(col, ord)
    LEFT JOIN LATERAL (
        SELECT o.amopopr AS oprid
        FROM pg_catalog.pg_index i
        CROSS JOIN LATERAL unnest(i.indkey::smallint[], i.indclass::oid[]) AS ik(attnum, opclass)
        JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ik.attnum
        JOIN pg_catalog.pg_opclass c ON c.oid = ik.opclass
        JOIN pg_catalog.pg_amop o ON o.amopfamily = c.opcfamily AND o.amoplefttype = c.opcintype
                                 AND o.amoprighttype = c.opcintype AND o.amopstrategy = 3
        WHERE i.indrelid = TG_RELID AND i.indisprimary AND a.attname = k.col
        LIMIT 1) AS eq ON true;
    FOR chunk_start IN 0 .. pending - 1 BY rows_per_update LOOP
        EXECUTE format($q$
            WITH n AS MATERIALIZED (
                SELECT *
                FROM (SELECT %1$s, %2$I::text AS uhok_text, row_number() OVER () AS uhok_ord
                      FROM uhok_embed_new_rows WHERE %3$I IS NULL AND %2$I IS NOT NULL) AS all_pending
                WHERE uhok_ord > $1 AND uhok_ord <= $1 + $2),
            e AS (SELECT v, ord + $1 AS uhok_ord
                  FROM unnest(uhok_embed_internal.uhok_embed_batch(ARRAY(SELECT uhok_text FROM n ORDER BY uhok_ord)))
                       WITH ORDINALITY AS u(v, ord))
            UPDATE %4$s AS t SET %3$I = e.v %5$s
            FROM n JOIN e USING (uhok_ord)
            WHERE %6$s AND t.%3$I IS NULL AND t.%2$I::text IS NOT DISTINCT FROM n.uhok_text
            $q$,
            key_list, text_column, vector_column, TG_RELID::regclass,
            CASE WHEN version_column IS NULL THEN ''
                 ELSE format(', %I = uhok_embed_internal.uhok_embed_version()', version_column) END,
            key_match)
        USING chunk_start, rows_per_update;
    END LOOP;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION uhok_embed_internal.uhok_embed_statement_trigger() IS
'AFTER INSERT / AFTER UPDATE statement trigger with transition table uhok_embed_new_rows. Arguments: ''attnums'' and the text, vector and version (0: none) columns'' attribute numbers; or (attached before 0.5.0) the text, vector and version (or '''') columns'' names, then the primary key columns. Embeds the statement''s pending rows in batches. See uhok_embed_attach().';
