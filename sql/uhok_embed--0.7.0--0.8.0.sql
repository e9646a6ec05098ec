-- uhok_embed 0.7.0 -> 0.8.0 (issue 27, first part): backfill at scale.
-- - uhok_embed_backfill walks every leaf partition of a partitioned table (the parent has no
--   pages of its own: it embedded nothing and reported success), measures each table's end
--   again when it gets there, and after the walk counts the rows still needing work (rows that
--   concurrent writes moved to pages already walked) and walks again for them, up to three
--   passes; what is left then is a WARNING. Its progress NOTICE says how many rows are left.
-- (Batch mode on a table without a version column no longer recurses; that fix is in the
-- library's row trigger, not in SQL.)
-- Released: never edit this file (tests/released_scripts.sh); tests/upgrade.sh checks that it
-- gives what a fresh install gives.

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION uhok_embed UPDATE TO '0.8.0'" to load this file. \quit

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

    IF state IS NULL THEN
        EXECUTE format('SELECT count(*) FILTER (WHERE %s), count(*) FROM %s', needs_work, tbl) INTO total, all_rows;
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
                FROM %2$s
                WHERE ctid >= $1 AND ctid < $2 AND (%3$s)),
            e AS (SELECT v, ord AS uhok_ord
                  FROM unnest(uhok_embed_internal.uhok_embed_batch_as('backfill', ARRAY(SELECT uhok_text FROM n ORDER BY uhok_ord)))
                       WITH ORDINALITY AS u(v, ord))
            UPDATE %2$s AS t SET %4$I = e.v %5$s
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
        EXECUTE format('SELECT count(*) FROM %s WHERE %s', tbl, needs_work) INTO left_over;
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
