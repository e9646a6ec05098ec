-- uhok_embed 0.6.0 -> 0.7.0 (issue 14): what the server does with the model, per database, role,
-- model version and function, as pg_stat_statements shows statements.
-- - uhok_embed_stats (view over uhok_embed_stats()): calls, texts, tokens, truncated texts,
--   errors, query-cache hits and misses, forward passes, total/mean/min/max time and p50/p95/p99,
--   model loads and their time. Cluster-wide under shared_preload_libraries, else the session's.
-- - uhok_embed_stats_info (view over uhok_embed_stats_info()): dealloc, stats_reset, scope,
--   entries, max_entries. uhok_embed_stats_reset(), revoked from PUBLIC.
-- - uhok_embed_internal.uhok_embed_as(caller, text) and uhok_embed_batch_as(caller, text[]): the
--   same C code as uhok_embed_internal.uhok_embed(_batch), counted under the caller's name; the
--   triggers, backfill and uhok_search call them now (their bodies otherwise unchanged).
-- Released: never edit this file (tests/released_scripts.sh); tests/upgrade.sh checks that it
-- gives what a fresh install gives.

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION uhok_embed UPDATE TO '0.7.0'" to load this file. \quit

CREATE FUNCTION uhok_embed_internal.uhok_embed_as(caller text, input text) RETURNS vector
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'internal_uhok_embed_as_wrapper';

CREATE FUNCTION uhok_embed_internal.uhok_embed_batch_as(caller text, inputs text[]) RETURNS vector[]
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'internal_uhok_embed_batch_as_wrapper';

CREATE OR REPLACE FUNCTION uhok_embed_internal.uhok_embed_row_trigger() RETURNS trigger
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
                  FROM unnest(uhok_embed_internal.uhok_embed_batch_as('trigger', ARRAY(SELECT uhok_text FROM n ORDER BY uhok_ord)))
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
    started         timestamptz;
    last_notice     timestamptz;
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

    IF state IS NULL THEN
        EXECUTE format('SELECT count(*) FILTER (WHERE %s), count(*) FROM %s', needs_work, tbl) INTO total, all_rows;
        RAISE NOTICE 'uhok_embed_backfill: % rows of % to embed with %', total, tbl, model_version;
        IF total = 0 THEN
            RETURN NULL;
        END IF;
        -- Walk the table once in ranges of pages sized to hold about batch_size rows, committing
        -- after each, so a cancelled run keeps what it did and a second run only revisits rows
        -- that still need work. (Asking "the next batch_size rows needing work" instead would
        -- scan the table from the start for every batch.)
        pages := pg_relation_size(tbl) / current_setting('block_size')::bigint;
        rows_per_page := all_rows::float8 / greatest(pages, 1);
        pages_per_batch := greatest(1, floor(batch_size / greatest(rows_per_page, 1)))::bigint;
        RETURN jsonb_build_object('model_version', model_version, 'total', total, 'done', 0,
                                  'pages', pages, 'pages_per_batch', pages_per_batch, 'first_page', 0,
                                  'started', clock_timestamp(), 'last_notice', clock_timestamp());
    END IF;

    total := (state->>'total')::bigint;
    done := (state->>'done')::bigint;
    pages := (state->>'pages')::bigint;
    pages_per_batch := (state->>'pages_per_batch')::bigint;
    first_page := (state->>'first_page')::bigint;
    started := (state->>'started')::timestamptz;
    last_notice := (state->>'last_notice')::timestamptz;
    IF first_page < pages THEN
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
            text_column, tbl, needs_work, vector_column,
            CASE WHEN version_column IS NULL THEN ''
                 ELSE format(', %I = %L', version_column, model_version) END)
        USING format('(%s,0)', first_page)::tid, format('(%s,0)', first_page + pages_per_batch)::tid;
        GET DIAGNOSTICS updated = ROW_COUNT;
        done := done + updated;
        first_page := first_page + pages_per_batch;
        IF first_page < pages AND clock_timestamp() - last_notice >= interval '5 seconds' THEN
            rate := done / greatest(extract(epoch FROM clock_timestamp() - started), 1e-3);
            RAISE NOTICE 'uhok_embed_backfill: % / % rows (% %%)', done, total, round(100.0 * done / total, 1)
                USING DETAIL = format('%s rows/s, about %s s left.', round(rate::numeric, 1),
                                      round((greatest(total - done, 0) / greatest(rate, 1e-9))::numeric));
            last_notice := clock_timestamp();
        END IF;
    END IF;
    IF first_page < pages THEN
        RETURN state || jsonb_build_object('done', done, 'first_page', first_page, 'last_notice', last_notice);
    END IF;
    rate := done / greatest(extract(epoch FROM clock_timestamp() - started), 1e-3);
    RAISE NOTICE 'uhok_embed_backfill: embedded % rows of %', done, tbl
        USING DETAIL = format('%s s, %s rows/s.', round(extract(epoch FROM clock_timestamp() - started)::numeric, 1),
                              round(rate::numeric, 1));
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION uhok_embed_internal.uhok_search(query text, tbl regclass, id_column name, vector_column name,
                                                top_k integer, exclude_ids bigint[], page integer)
RETURNS TABLE (recipe_id bigint, distance double precision)
LANGUAGE plpgsql STABLE
-- pgvector 0.8's iterative index scan: when exclude_ids filters out rows the HNSW scan would
-- have returned, it keeps scanning instead of returning fewer than top_k rows, and in strict
-- distance order, so page n is exactly rows n*top_k .. n*top_k+top_k-1 of one ordered stream.
SET hnsw.iterative_scan = 'strict_order'
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF query IS NULL OR tbl IS NULL OR id_column IS NULL OR vector_column IS NULL
       OR top_k IS NULL OR page IS NULL THEN
        RAISE EXCEPTION '% must not be NULL',
            CASE WHEN query IS NULL THEN 'query' WHEN tbl IS NULL THEN 'tbl' WHEN id_column IS NULL THEN 'id_column'
                 WHEN vector_column IS NULL THEN 'vector_column' WHEN top_k IS NULL THEN 'top_k' ELSE 'page' END
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Only exclude_ids may be NULL (no exclusions); leave top_k (25) and page (0) out for their defaults.';
    END IF;
    IF top_k < 1 OR top_k > 1000 THEN
        RAISE EXCEPTION 'top_k must be between 1 and 1000, not %', top_k
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Fetch more rows with page.';
    END IF;
    IF page < 0 THEN
        RAISE EXCEPTION 'page must be 0 or more, not %', page
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pages are numbered from 0.';
    END IF;
    PERFORM uhok_embed_internal.uhok_embed_check_column(tbl, vector_column, ARRAY['vector']);
    -- NOT (id = ANY (exclude_ids)) would be NULL, so the row would be dropped, for every id not
    -- in the array as soon as the array holds a NULL: NULL elements are removed first. A row
    -- whose id is NULL is never excluded.
    RETURN QUERY EXECUTE format(
        'SELECT %1$I::bigint, (%2$I OPERATOR(%4$I.<->) $1)::double precision FROM %3$s
         WHERE %2$I IS NOT NULL AND (%1$I::bigint = ANY ($2)) IS NOT TRUE
         ORDER BY %2$I OPERATOR(%4$I.<->) $1 LIMIT $3 OFFSET $4',
        id_column, vector_column, tbl, uhok_embed_internal.uhok_embed_vector_schema())
    USING uhok_embed_internal.uhok_embed_as('search', query),
          ARRAY(SELECT x FROM unnest(exclude_ids) AS x WHERE x IS NOT NULL),
          top_k, page::bigint * top_k;
END
$$;

-- The statistics (src/stats_sql.rs).

CREATE  FUNCTION "uhok_embed_stats"() RETURNS TABLE (
	"userid" oid,  /* pg_sys :: Oid */
	"dbid" oid,  /* pg_sys :: Oid */
	"function" TEXT,  /* String */
	"model_version" TEXT,  /* Option < String > */
	"calls" bigint,  /* i64 */
	"texts" bigint,  /* i64 */
	"tokens" bigint,  /* i64 */
	"truncated" bigint,  /* i64 */
	"errors" bigint,  /* i64 */
	"cache_hits" bigint,  /* i64 */
	"cache_misses" bigint,  /* i64 */
	"forward_passes" bigint,  /* i64 */
	"total_time" double precision,  /* f64 */
	"mean_time" double precision,  /* f64 */
	"min_time" double precision,  /* f64 */
	"max_time" double precision,  /* f64 */
	"p50_time" double precision,  /* f64 */
	"p95_time" double precision,  /* f64 */
	"p99_time" double precision,  /* f64 */
	"model_loads" bigint,  /* i64 */
	"load_time" double precision  /* f64 */
)
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'uhok_embed_stats_wrapper';

CREATE  FUNCTION "uhok_embed_stats_info"() RETURNS TABLE (
	"dealloc" bigint,  /* i64 */
	"stats_reset" timestamp with time zone,  /* pgrx :: datum :: TimestampWithTimeZone */
	"scope" TEXT,  /* String */
	"entries" bigint,  /* i64 */
	"max_entries" bigint  /* i64 */
)
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'uhok_embed_stats_info_wrapper';

CREATE  FUNCTION "uhok_embed_stats_reset"() RETURNS timestamp with time zone /* pgrx :: datum :: TimestampWithTimeZone */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'uhok_embed_stats_reset_wrapper';

CREATE VIEW uhok_embed_stats AS SELECT * FROM uhok_embed_stats();
CREATE VIEW uhok_embed_stats_info AS SELECT * FROM uhok_embed_stats_info();
GRANT SELECT ON uhok_embed_stats, uhok_embed_stats_info TO PUBLIC;
REVOKE ALL ON FUNCTION uhok_embed_stats_reset() FROM PUBLIC;
COMMENT ON VIEW uhok_embed_stats IS
'What the server did with the model, per database, role, model version and function (uhok_embed, uhok_embed_batch, trigger, backfill, search): calls, texts, tokens, truncated texts, errors, cache hits, forward passes, times in ms and their p50/p95/p99. Cluster-wide when uhok_embed is in shared_preload_libraries, else this session''s own.';
COMMENT ON VIEW uhok_embed_stats_info IS
'When uhok_embed_stats was last reset, how many entries gave way to new ones (uhok_embed.stats_max), and whether the figures are the cluster''s or this session''s.';
