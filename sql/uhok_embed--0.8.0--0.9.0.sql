-- uhok_embed 0.8.0 -> 0.9.0 (issue 27): batch mode's statement trigger in time linear in the
-- statement's rows. It reads the pending rows once from the transition table, 4,096 at a time
-- (their keys as text in a jsonb array, printed the way pg_dump prints them and cast back to
-- the key columns' own types), finds each row by an index probe of its primary key and fills
-- the group with one UPDATE by ctid; 0.8.0 numbered the whole transition table again for every
-- group (row_number() OVER () over all pending rows), quadratic for a COPY of millions of rows,
-- and joined each group with the whole table as the planner saw fit (a hash join over a
-- sequential scan, for instance).
-- Backfill walks each table's own pages (ONLY): a plain table's rows without those of tables
-- inheriting from it, whose ctids mixed into the walk's page ranges.
-- Released: never edit this file (tests/released_scripts.sh); tests/upgrade.sh checks that it
-- gives what a fresh install gives.

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION uhok_embed UPDATE TO '0.9.0'" to load this file. \quit

CREATE OR REPLACE FUNCTION uhok_embed_internal.uhok_embed_statement_trigger() RETURNS trigger
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

CREATE OR REPLACE FUNCTION uhok_embed_internal.uhok_embed_backfill_step(tbl regclass, text_column name, vector_column name,
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
