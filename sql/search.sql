-- Search: the old service's /v1/search {query, top_k, exclude_ids} as SQL. Part of the
-- extension script (included by src/sync.rs).
--
-- search_path: as in sync.sql, the search runs under SET search_path = pg_catalog, pg_temp;
-- tbl comes in as a regclass, so the caller's own search_path resolved its name before the
-- function started, and pgvector's <-> is called as OPERATOR(<pgvector's schema>.<->), the
-- schema injected through %I. The search itself is uhok_embed_internal.uhok_search (a schema
-- nobody else can add an overload to, see sync.sql); both public forms only call it.
--
-- The default form uhok_search(query, ...) searches "RECIPE_VECTOR_TABLE" as the CALLER's
-- search_path finds it (as a plain SELECT ... FROM "RECIPE_VECTOR_TABLE" would): it is a
-- LANGUAGE sql function deliberately WITHOUT a SET clause, whose body does nothing but cast the
-- literal name to pg_catalog.regclass (resolved once, through the caller's search_path, before
-- anything else runs) and call the pinned internal uhok_search by its qualified name,
-- every argument of exactly the declared type (type names are looked up through the
-- search_path too, hence pg_catalog.regclass and pg_catalog.name). A SET search_path on it
-- would resolve the name through pg_catalog, pg_temp instead, where no "RECIPE_VECTOR_TABLE"
-- is. Casts to regclass and name look up no function or operator, so a hostile schema early in
-- the caller's search_path can at most offer its own "RECIPE_VECTOR_TABLE", which is what that
-- search_path asks for anyway. (A SET clause also keeps a SQL function from being inlined;
-- this one, without, can be.)

CREATE FUNCTION uhok_embed_internal.uhok_search(query text, tbl regclass, id_column name, vector_column name,
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

COMMENT ON FUNCTION uhok_embed_internal.uhok_search(text, regclass, name, name, integer, bigint[], integer) IS
'What both forms of uhok_search() run.';

CREATE FUNCTION uhok_search(query text, tbl regclass, id_column name, vector_column name,
                            top_k integer DEFAULT 25, exclude_ids bigint[] DEFAULT '{}',
                            page integer DEFAULT 0)
RETURNS TABLE (recipe_id bigint, distance double precision)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM uhok_embed_internal.uhok_search(query, tbl, id_column, vector_column, top_k, exclude_ids, page)
$$;

COMMENT ON FUNCTION uhok_search(text, regclass, name, name, integer, bigint[], integer) IS
'The top_k rows of tbl nearest to uhok_embed(query) by L2 distance (<->), skipping exclude_ids, page by page (page 0 first). exclude_ids NULL means no exclusions, and its NULL elements are ignored; the other arguments must not be NULL.';

-- No SET clause, on purpose: see the top of this file.
CREATE FUNCTION uhok_search(query text, top_k integer DEFAULT 25, exclude_ids bigint[] DEFAULT '{}',
                            page integer DEFAULT 0)
RETURNS TABLE (recipe_id bigint, distance double precision)
LANGUAGE sql STABLE
AS $$
    SELECT * FROM uhok_embed_internal.uhok_search(query, '"RECIPE_VECTOR_TABLE"'::pg_catalog.regclass,
                                                  'RECIPE_ID'::pg_catalog.name, 'VECTOR_NAME'::pg_catalog.name, top_k, exclude_ids, page)
$$;

COMMENT ON FUNCTION uhok_search(text, integer, bigint[], integer) IS
'uhok_search over "RECIPE_VECTOR_TABLE" ("RECIPE_ID", "VECTOR_NAME"), the recipe service''s table, found through the caller''s search_path. exclude_ids NULL means no exclusions, and its NULL elements are ignored.';
