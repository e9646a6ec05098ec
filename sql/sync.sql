-- Keeping a vector column equal to the embedding of a text column: triggers, attach/detach,
-- and backfill. Part of the extension script (included by src/sync.rs).
--
-- How a table is kept in sync (uhok_embed_attach creates these):
--
-- Mode 'row', the default (issue 24):
--   uhok_embed_<vector>_row     BEFORE INSERT OR UPDATE OF <text>, <vector> [, <version>] FOR EACH ROW
--                               -> uhok_embed_internal.uhok_embed_row_embed()  (Rust, src/sync_trigger.rs)
-- embeds each row before it is stored, so the row is written once, complete, by the writing
-- role: right for partitions, INSERT-only roles, row-level security, RETURNING, other AFTER ROW
-- triggers and logical replication. One forward pass per row whose text is new (the query
-- cache serves repeated texts). Its columns are the trigger's column list, not names: renames
-- keep working, and PostgreSQL maps the list to each partition's own columns.
--
-- Mode 'batch', opt-in for bulk loads into plain tables with a primary key and a nullable
-- vector column:
--   uhok_embed_<vector>_row     BEFORE INSERT OR UPDATE OF <text>, <vector> [, <version>] FOR EACH ROW
--                               -> uhok_embed_internal.uhok_embed_row_embed('batch')
--   uhok_embed_<vector>_insert  AFTER INSERT FOR EACH STATEMENT, transition table new rows
--   uhok_embed_<vector>_update  AFTER UPDATE FOR EACH STATEMENT, transition table new rows
--                               -> uhok_embed_internal.uhok_embed_statement_trigger('attnums', <text>, <vector>, <version or 0>)
-- the row trigger makes the row trigger's decisions but marks a row that needs a vector as
-- pending (vector NULL), and the statement trigger embeds all pending rows of the statement in
-- batches of uhok_embed.batch_size (an INSERT ... SELECT or COPY of 10,000 rows is
-- ~10,000/batch_size forward passes, not 10,000) and UPDATEs each row whose key, pending vector
-- and text are still the ones it embedded; it finds the columns' names and the primary key at
-- each call, so renames keep working. Refused on partitioned tables, tables with row-level
-- security and tables a role may INSERT into but not UPDATE, where that UPDATE would miss rows
-- or fail. Tables attached before 0.5.0 keep their triggers: the PL/pgSQL row trigger
-- uhok_embed_row_trigger(<text>, <vector>, <version>, 'batch' | 'row') and the statement
-- trigger with column names as arguments.
--
-- In both modes an UPDATE that leaves the text as it was does not run the model, a NULL text
-- gives a NULL vector, and the version column is set from the same model that made the vector.
--
-- search_path (CVE-2018-1058): these functions run in other users' sessions, inside their
-- triggers, whatever search_path those sessions have. So every function here has
-- SET search_path = pg_catalog, pg_temp: each unqualified name (functions, operators, types,
-- relations) resolves to pg_catalog, never to a schema an untrusted role can create objects in
-- (pg_temp comes last, and functions and operators are never looked up there). What is not in
-- pg_catalog is qualified: pgvector's operators as OPERATOR(<its schema>.<->), the schema found
-- at run time by uhok_embed_vector_schema() (pgvector is relocatable, and PostgreSQL 15 has no
-- @extschema:vector@) and injected only through format's %I; and the extension's own functions
-- as uhok_embed_internal.name.
--
-- Why uhok_embed_internal and not @extschema@ (issue 23.2): a qualified name still chooses among
-- all the overloads in its schema. The extension's schema is often public, where other roles
-- may be allowed to create functions, and one public.uhok_embed_version(x integer DEFAULT 0)
-- would make every @extschema@.uhok_embed_version() call ambiguous (ERROR 42725: no trigger,
-- backfill or search would work any more), a better-matching overload would run instead.
-- uhok_embed_internal is created by the extension, without IF NOT EXISTS, and only its owner
-- may create objects there. It holds the helpers nobody else calls, and uhok_embed(),
-- uhok_embed_batch() and uhok_embed_version() once more (src/internal.rs); the public
-- functions in @extschema@ are for users, and none of the extension's code calls them.
-- tests/pg_regress/sql/14_own_schema.sql squats every name. Dynamic SQL takes the caller's
-- identifiers only through %I or as a regclass, which, printed under this search_path, comes
-- out schema-qualified. The one exception is the procedure uhok_embed_backfill: a procedure
-- with a SET clause cannot COMMIT, so it has none, and holds nothing but a loop that calls the
-- pinned function uhok_embed_backfill_step and commits (see there).
--
-- NULL arguments: a NULL table, column name or batch_size is a mistake, not "nothing to do",
-- and gives ERROR null_value_not_allowed (only version_column may be NULL: no version column).

-- The schema pgvector's objects live in (its type vector, its operators).
CREATE FUNCTION uhok_embed_internal.uhok_embed_vector_schema() RETURNS name
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'vector'
$$;

COMMENT ON FUNCTION uhok_embed_internal.uhok_embed_vector_schema() IS
'The schema of pgvector (extension vector), which uhok_embed''s SQL qualifies pgvector''s operators with.';

CREATE FUNCTION uhok_embed_internal.uhok_embed_row_trigger() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    text_column    text := TG_ARGV[0];
    vector_column  text := TG_ARGV[1];
    version_column text := nullif(TG_ARGV[2], '');
    batch_mode     boolean := TG_ARGV[3] IS NOT DISTINCT FROM 'batch';
    new_text       text;
    old_text       text;
    changes        jsonb;
BEGIN
    EXECUTE format('SELECT ($1).%I::text', text_column) INTO new_text USING NEW;
    IF TG_OP = 'UPDATE' THEN
        EXECUTE format('SELECT ($1).%I::text', text_column) INTO old_text USING OLD;
        IF new_text IS NOT DISTINCT FROM old_text THEN
            RETURN NEW;  -- the text did not change: keep the vector, do not run the model
        END IF;
    END IF;
    -- In batch mode the vector stays NULL until the statement trigger fills it, before the
    -- statement ends; nobody else ever sees the pending row.
    changes := jsonb_build_object(vector_column,
        CASE WHEN batch_mode OR new_text IS NULL THEN NULL ELSE uhok_embed_internal.uhok_embed_as('trigger', new_text)::text END);
    IF version_column IS NOT NULL THEN
        changes := changes || jsonb_build_object(version_column, uhok_embed_internal.uhok_embed_version());
    END IF;
    RETURN jsonb_populate_record(NEW, changes);
END
$$;

COMMENT ON FUNCTION uhok_embed_internal.uhok_embed_row_trigger() IS
'BEFORE INSERT OR UPDATE OF <text> row trigger. Arguments: text column, vector column, version column (or ''''), mode (''batch'' or ''row''). See uhok_embed_attach().';

CREATE FUNCTION uhok_embed_internal.uhok_embed_statement_trigger() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- The keys travel as text (below): printed the way pg_dump prints them, whatever the session's
-- settings (exact floats; ISO dates and times, whose zone is a numeric offset, never an
-- abbreviation another zone list could read otherwise).
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = postgres
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
    pending        boolean;
    key_list       text;
    key_match      text;
    fill           text;
    r              record;
    keys           jsonb[] := '{}';
    texts          text[] := '{}';
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
    -- Nothing pending (the fill's own UPDATE fires this trigger too): done, before any lookup.
    EXECUTE format('SELECT EXISTS (SELECT FROM uhok_embed_new_rows WHERE %I IS NULL AND %I IS NOT NULL)',
                   vector_column, text_column) INTO pending;
    IF NOT pending THEN
        RETURN NULL;
    END IF;
    -- Each key column is matched with the equality operator of its primary key index's operator
    -- class, qualified (a regoper printed under this search_path names its schema), so a key of a
    -- type from another schema (citext, say) is compared by its own operator, found by OID. The
    -- keys travel as their text output in a jsonb array and are cast back to their own type
    -- (format_type qualifies a type outside pg_catalog), exact as pg_dump relies on (the
    -- function sets what pg_dump sets for it: extra_float_digits, DateStyle, IntervalStyle).
    SELECT string_agg(format('%I::text', k.col), ', ' ORDER BY k.ord),
           string_agg(format('t.%1$I OPERATOR(%2$s) (n.uhok_key->>%3$s)::%4$s', k.col,
                             coalesce(eq.oprid::regoper::text, 'pg_catalog.='), k.ord - 1,
                             pg_catalog.format_type(a.atttypid, a.atttypmod)), ' AND ' ORDER BY k.ord)
      INTO key_list, key_match
    FROM unnest(key_columns) WITH ORDINALITY AS k(col, ord)
    JOIN pg_catalog.pg_attribute a ON a.attrelid = TG_RELID AND a.attname = k.col
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
    -- Each row is found through the primary key (LATERAL ... LIMIT 1: an index probe per key,
    -- whatever the planner would make of a join with the whole table) and updated by its ctid.
    -- The rows are this statement's own, locked by this transaction, so no other can have moved
    -- them in between.
    fill := format($q$
        WITH n AS (SELECT uhok_key, uhok_text, ord FROM unnest($1, $2) WITH ORDINALITY AS u(uhok_key, uhok_text, ord)),
        e AS (SELECT v, ord FROM unnest(uhok_embed_internal.uhok_embed_batch_as('trigger', $2)) WITH ORDINALITY AS u(v, ord)),
        r AS (SELECT l.uhok_tid, e.v
              FROM n JOIN e USING (ord)
              CROSS JOIN LATERAL (SELECT t.ctid AS uhok_tid FROM %1$s AS t
                                  WHERE %4$s AND t.%2$I IS NULL AND t.%5$I::text IS NOT DISTINCT FROM n.uhok_text
                                  LIMIT 1) AS l)
        UPDATE %1$s AS t SET %2$I = r.v %3$s
        FROM r WHERE t.ctid = r.uhok_tid
        $q$,
        TG_RELID::regclass, vector_column,
        CASE WHEN version_column IS NULL THEN ''
             ELSE format(', %I = uhok_embed_internal.uhok_embed_version()', version_column) END,
        key_match, text_column);
    -- The pending rows, read once from the transition table, rows_per_update at a time: each
    -- group is one UPDATE (its texts embedded together, uhok_embed.batch_size per pass). The
    -- time grows with the statement's rows: 0.8.0 numbered all of them again for every group
    -- (row_number() over the whole transition table), quadratic for a large COPY.
    FOR r IN EXECUTE format('SELECT pg_catalog.jsonb_build_array(%s) AS k, %I::text AS t
                             FROM uhok_embed_new_rows WHERE %I IS NULL AND %I IS NOT NULL',
                            key_list, text_column, vector_column, text_column) LOOP
        keys := keys || r.k;
        texts := texts || r.t;
        IF cardinality(texts) >= rows_per_update THEN
            EXECUTE fill USING keys, texts;
            keys := '{}';
            texts := '{}';
        END IF;
    END LOOP;
    IF cardinality(texts) > 0 THEN
        EXECUTE fill USING keys, texts;
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION uhok_embed_internal.uhok_embed_statement_trigger() IS
'AFTER INSERT / AFTER UPDATE statement trigger with transition table uhok_embed_new_rows. Arguments: ''attnums'' and the text, vector and version (0: none) columns'' attribute numbers; or (attached before 0.5.0) the text, vector and version (or '''') columns'' names, then the primary key columns. Embeds the statement''s pending rows in batches. See uhok_embed_attach().';

-- The triggers uhok_embed_attach() made on tbl for vector_column: by their names, and by their
-- function and the vector column's attribute number (the row trigger's column list, the
-- statement triggers' arguments), so a renamed column is still found. A partition's clones are
-- its parent's to drop.
CREATE FUNCTION uhok_embed_internal.uhok_embed_triggers(tbl regclass, vector_column name)
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

CREATE FUNCTION uhok_embed_attach(tbl regclass, text_column name, vector_column name,
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

CREATE FUNCTION uhok_embed_detach(tbl regclass, vector_column name) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    trigger_name name;
    dropped integer := 0;
BEGIN
    IF tbl IS NULL OR vector_column IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', CASE WHEN tbl IS NULL THEN 'tbl' ELSE 'vector_column' END
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'uhok_embed_detach(tbl, vector_column) needs the table and the vector column given to uhok_embed_attach().';
    END IF;
    IF NOT pg_has_role(current_user, (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = tbl), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', tbl
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Only the table''s owner (or a member of the owning role) can detach uhok_embed from it.';
    END IF;
    FOR trigger_name IN SELECT t.tgname FROM uhok_embed_internal.uhok_embed_triggers(tbl, vector_column) AS t
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trigger_name, tbl);
        dropped := dropped + 1;
    END LOOP;
    IF dropped = 0 THEN
        RAISE EXCEPTION 'uhok_embed is not attached to column "%" of %', vector_column, tbl
            USING ERRCODE = 'undefined_object',
                  HINT = CASE WHEN (SELECT c.relispartition FROM pg_catalog.pg_class c WHERE c.oid = tbl)
                              THEN 'A partition''s triggers come from its partitioned table: detach from that table.'
                              ELSE 'uhok_embed_attach() creates them; a column renamed since is found by its new name.' END;
    END IF;
END
$$;

COMMENT ON FUNCTION uhok_embed_detach(regclass, name) IS
'Removes the triggers uhok_embed_attach() created for vector_column. The vectors stay. Only the table''s owner may call it.';

-- Raises a clear error unless tbl has a column named col whose type is one of types ('vector'
-- meaning pgvector's vector, whatever its schema).
CREATE FUNCTION uhok_embed_internal.uhok_embed_check_column(tbl regclass, col name, types text[]) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    col_type text;
BEGIN
    IF tbl IS NULL OR col IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', CASE WHEN tbl IS NULL THEN 'tbl' ELSE 'column name' END
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT CASE WHEN t.typname = 'vector' AND n.nspname = uhok_embed_internal.uhok_embed_vector_schema() THEN 'vector'
                ELSE format_type(a.atttypid, NULL) END
      INTO col_type
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
    JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
    WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
    IF col_type IS NULL THEN
        RAISE EXCEPTION 'column "%" of relation % does not exist', col, tbl
            USING ERRCODE = 'undefined_column';
    END IF;
    IF (col_type = ANY (types)) IS NOT TRUE THEN
        RAISE EXCEPTION 'column "%" of relation % has type %, not %', col, tbl, col_type, array_to_string(types, ' or ')
            USING ERRCODE = 'datatype_mismatch';
    END IF;
END
$$;

-- One step of uhok_embed_backfill, which has no SET clause (a procedure with one cannot
-- COMMIT) and so only calls this and commits. state NULL: check the arguments, count the work
-- and return the state of the walk, or NULL if there is nothing to do. Otherwise: embed the
-- next range of pages and return the next state, or NULL after the last range. The state only
-- carries numbers and the model version, which are used as such (never spliced into SQL
-- unquoted), so a hand-made state can do no more than the arguments allow.
--
-- The walk: each leaf of tbl (a plain table is its own only leaf; a partitioned table's
-- partitions, found again at each step from tbl, so the state holds only their position) in
-- ranges of pages, each range one batch and one transaction. A leaf's end is measured when the
-- walk reaches it, and again when it gets there, so rows added meanwhile are walked too. Rows
-- that concurrent writes move to pages already walked (an UPDATE of another column writes a
-- new row version anywhere) would be missed, so after the last leaf the rows still needing
-- work are counted, and while there are some the walk starts again, up to three passes; what
-- is left then (rows rewritten as fast as the walk goes) is said, and a second CALL does it.
CREATE FUNCTION uhok_embed_internal.uhok_embed_backfill_step(tbl regclass, text_column name, vector_column name,
                                         version_column name, batch_size integer, state jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    model_version   text;
    needs_work      text;
    total           bigint;
    all_rows        bigint;
    done            bigint;
    updated         bigint;
    left_over       bigint;
    started         timestamptz;
    last_notice     timestamptz;
    leaves          regclass[];
    rows_of_tbl     text;
    leaf            integer;
    pass            integer;
    pages           bigint;
    rows_per_page   float8;
    pages_per_batch bigint;
    first_page      bigint;
    rate            float8;
BEGIN
    IF tbl IS NULL OR text_column IS NULL OR vector_column IS NULL OR batch_size IS NULL THEN
        RAISE EXCEPTION '% must not be NULL',
            CASE WHEN tbl IS NULL THEN 'tbl' WHEN text_column IS NULL THEN 'text_column'
                 WHEN vector_column IS NULL THEN 'vector_column' ELSE 'batch_size' END
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'uhok_embed_backfill(tbl, text_column, vector_column [, version_column [, batch_size]]) needs a table and two column names; only version_column may be NULL (no version column), and batch_size left out is 256.';
    END IF;
    IF state IS NULL THEN
        IF batch_size < 1 OR batch_size > 100000 THEN
            RAISE EXCEPTION 'batch_size must be between 1 and 100000, not %', batch_size
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM uhok_embed_internal.uhok_embed_check_column(tbl, text_column, ARRAY['text', 'character varying', 'character']);
        PERFORM uhok_embed_internal.uhok_embed_check_column(tbl, vector_column, ARRAY['vector']);
        IF version_column IS NOT NULL THEN
            PERFORM uhok_embed_internal.uhok_embed_check_column(tbl, version_column, ARRAY['text', 'character varying']);
        END IF;
        model_version := uhok_embed_internal.uhok_embed_version();
    ELSE
        model_version := state->>'model_version';
        -- Each step is a transaction of its own, and a transaction can load another model than
        -- the last (uhok_embed.model_path changed, or the folder's files did): never stamp this
        -- run's version on another model's vectors.
        IF uhok_embed_internal.uhok_embed_version() IS DISTINCT FROM model_version THEN
            RAISE EXCEPTION 'the model changed while uhok_embed_backfill ran: it started with %, % is loaded now',
                model_version, uhok_embed_internal.uhok_embed_version()
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'The rows done so far keep their vectors and versions. CALL uhok_embed_backfill again to continue with the model now loaded.';
        END IF;
    END IF;
    -- A row needs work when its vector is missing (text but no vector), left over (a vector but
    -- no text), or from another model (its version is not this model's).
    needs_work := format('(%1$I IS NOT NULL) <> (%2$I IS NOT NULL)%3$s', text_column, vector_column,
        CASE WHEN version_column IS NULL THEN ''
             ELSE format(' OR %I IS DISTINCT FROM %L', version_column, model_version) END);
    -- The tables that hold the rows: tbl itself, or its leaf partitions (pg_partition_tree
    -- lists nothing for a table that is not partitioned; foreign partitions have no pages to
    -- walk, and their rows are left to the server that holds them).
    leaves := ARRAY(SELECT c.oid FROM pg_catalog.pg_class c
                    WHERE c.oid IN (SELECT p.relid FROM pg_catalog.pg_partition_tree(tbl) AS p WHERE p.isleaf
                                    UNION ALL SELECT tbl)
                      AND c.relkind = 'r' ORDER BY c.oid);
    -- The rows those hold: a partitioned table's, or a plain table's own (ONLY: not those of
    -- tables that inherit from it, which are tables of their own to backfill).
    rows_of_tbl := CASE WHEN (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = tbl) = 'p'
                        THEN tbl::text ELSE 'ONLY ' || tbl::text END;

    IF state IS NULL THEN
        EXECUTE format('SELECT count(*) FILTER (WHERE %s), count(*) FROM %s', needs_work, rows_of_tbl) INTO total, all_rows;
        RAISE NOTICE 'uhok_embed_backfill: % rows of % to embed with %', total, tbl, model_version;
        IF total = 0 OR cardinality(leaves) = 0 THEN
            RETURN NULL;
        END IF;
        -- Walk the tables once in ranges of pages sized to hold about batch_size rows,
        -- committing after each, so a cancelled run keeps what it did and a second run only
        -- revisits rows that still need work. (Asking "the next batch_size rows needing work"
        -- instead would scan the table from the start for every batch.)
        pages := (SELECT sum(pg_catalog.pg_relation_size(l)) FROM unnest(leaves) AS l) / current_setting('block_size')::bigint;
        rows_per_page := all_rows::float8 / greatest(pages, 1);
        pages_per_batch := greatest(1, floor(batch_size / greatest(rows_per_page, 1)))::bigint;
        RETURN jsonb_build_object('model_version', model_version, 'total', total, 'done', 0,
                                  'leaf', 0, 'pass', 1,
                                  'pages', pg_catalog.pg_relation_size(leaves[1]) / current_setting('block_size')::bigint,
                                  'pages_per_batch', pages_per_batch, 'first_page', 0,
                                  'started', clock_timestamp(), 'last_notice', clock_timestamp());
    END IF;

    total := (state->>'total')::bigint;
    done := (state->>'done')::bigint;
    leaf := (state->>'leaf')::integer;
    pass := (state->>'pass')::integer;
    pages := (state->>'pages')::bigint;
    pages_per_batch := (state->>'pages_per_batch')::bigint;
    first_page := (state->>'first_page')::bigint;
    started := (state->>'started')::timestamptz;
    last_notice := (state->>'last_notice')::timestamptz;
    IF leaf < cardinality(leaves) AND first_page < pages THEN
        -- A row whose text changed since it was read is skipped (t.text = n.text): the trigger
        -- that changed it embeds it. Vector and version are written together, from one model.
        EXECUTE format($q$
            WITH n AS MATERIALIZED (
                SELECT ctid AS uhok_tid, %1$I::text AS uhok_text, row_number() OVER () AS uhok_ord
                FROM ONLY %2$s
                WHERE ctid >= $1 AND ctid < $2 AND (%3$s)),
            e AS (SELECT v, ord AS uhok_ord
                  FROM unnest(uhok_embed_internal.uhok_embed_batch_as('backfill', ARRAY(SELECT uhok_text FROM n ORDER BY uhok_ord)))
                       WITH ORDINALITY AS u(v, ord))
            UPDATE ONLY %2$s AS t SET %4$I = e.v %5$s
            FROM n JOIN e USING (uhok_ord)
            WHERE t.ctid = n.uhok_tid AND t.%1$I::text IS NOT DISTINCT FROM n.uhok_text
            $q$,
            text_column, leaves[leaf + 1], needs_work, vector_column,
            CASE WHEN version_column IS NULL THEN ''
                 ELSE format(', %I = %L', version_column, model_version) END)
        USING format('(%s,0)', first_page)::tid, format('(%s,0)', first_page + pages_per_batch)::tid;
        GET DIAGNOSTICS updated = ROW_COUNT;
        done := done + updated;
        first_page := first_page + pages_per_batch;
        IF clock_timestamp() - last_notice >= interval '5 seconds' THEN
            rate := done / greatest(extract(epoch FROM clock_timestamp() - started), 1e-3);
            RAISE NOTICE 'uhok_embed_backfill: % / % rows (% %%), about % left', done, total,
                round(100.0 * done / greatest(total, 1), 1), greatest(total - done, 0)
                USING DETAIL = format('%s rows/s, about %s s left.', round(rate::numeric, 1),
                                      round((greatest(total - done, 0) / greatest(rate, 1e-9))::numeric));
            last_notice := clock_timestamp();
        END IF;
    END IF;
    IF leaf < cardinality(leaves) AND first_page >= pages THEN
        -- The end of this leaf as measured: walk on if it grew meanwhile, else the next leaf.
        pages := pg_catalog.pg_relation_size(leaves[leaf + 1]) / current_setting('block_size')::bigint;
        IF first_page >= pages THEN
            leaf := leaf + 1;
            first_page := 0;
            pages := coalesce(pg_catalog.pg_relation_size(leaves[leaf + 1]) / current_setting('block_size')::bigint, 0);
        END IF;
    END IF;
    IF leaf >= cardinality(leaves) THEN
        EXECUTE format('SELECT count(*) FROM %s WHERE %s', rows_of_tbl, needs_work) INTO left_over;
        IF left_over > 0 AND pass < 3 THEN
            -- Rows written while the walk went by (see above): walk again for them.
            RAISE NOTICE 'uhok_embed_backfill: % rows of % written during the walk still need work: walking again', left_over, tbl;
            total := done + left_over;
            leaf := 0;
            pass := pass + 1;
            first_page := 0;
            pages := pg_catalog.pg_relation_size(leaves[1]) / current_setting('block_size')::bigint;
        ELSE
            rate := done / greatest(extract(epoch FROM clock_timestamp() - started), 1e-3);
            RAISE NOTICE 'uhok_embed_backfill: embedded % rows of %', done, tbl
                USING DETAIL = format('%s s, %s rows/s.', round(extract(epoch FROM clock_timestamp() - started)::numeric, 1),
                                      round(rate::numeric, 1));
            IF left_over > 0 THEN
                RAISE WARNING 'uhok_embed_backfill: % rows of % still need work: they were rewritten during each of 3 walks', left_over, tbl
                    USING HINT = 'CALL uhok_embed_backfill again once the writes slow down.';
            END IF;
            RETURN NULL;
        END IF;
    END IF;
    RETURN state || jsonb_build_object('total', total, 'done', done, 'leaf', leaf, 'pass', pass, 'pages', pages,
                                       'first_page', first_page, 'last_notice', last_notice);
END
$$;

COMMENT ON FUNCTION uhok_embed_internal.uhok_embed_backfill_step(regclass, name, name, name, integer, jsonb) IS
'One step of CALL uhok_embed_backfill() (which commits between steps); not meant to be called by itself.';

-- No SET clause: a procedure with one cannot COMMIT. Everything it does is calling the
-- pinned uhok_embed_backfill_step (schema-qualified, its argument types matched exactly) and
-- testing its result with IS NOT NULL, so it resolves no name through the caller's search_path
-- but its own variable's type, written pg_catalog.jsonb.
CREATE PROCEDURE uhok_embed_backfill(tbl regclass, text_column name, vector_column name,
                                     version_column name DEFAULT NULL, batch_size integer DEFAULT 256)
LANGUAGE plpgsql AS $$
DECLARE
    state pg_catalog.jsonb;
BEGIN
    state := uhok_embed_internal.uhok_embed_backfill_step(tbl, text_column, vector_column, version_column, batch_size,
                                                  NULL::pg_catalog.jsonb);
    WHILE state IS NOT NULL LOOP
        COMMIT;
        state := uhok_embed_internal.uhok_embed_backfill_step(tbl, text_column, vector_column, version_column, batch_size,
                                                      state);
    END LOOP;
END
$$;

COMMENT ON PROCEDURE uhok_embed_backfill(regclass, name, name, name, integer) IS
'Embeds rows whose vector is NULL or whose version is not the loaded model''s, committing every batch: cancel it any time and CALL it again to continue. tbl, text_column, vector_column and batch_size must not be NULL; version_column NULL means none.';
