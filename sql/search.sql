-- Search: the old service's /v1/search {query, top_k, exclude_ids} as SQL. Part of the
-- extension script (included by src/sync.rs).

CREATE FUNCTION uhok_search(query text, tbl regclass, id_column name, vector_column name,
                            top_k integer DEFAULT 25, exclude_ids bigint[] DEFAULT '{}',
                            page integer DEFAULT 0)
RETURNS TABLE (recipe_id bigint, distance double precision)
LANGUAGE plpgsql STABLE
-- pgvector 0.8's iterative index scan: when exclude_ids filters out rows the HNSW scan would
-- have returned, it keeps scanning instead of returning fewer than top_k rows, and in strict
-- distance order, so page n is exactly rows n*top_k .. n*top_k+top_k-1 of one ordered stream.
SET hnsw.iterative_scan = 'strict_order'
AS $$
BEGIN
    IF query IS NULL THEN
        RAISE EXCEPTION 'query must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF top_k IS NULL OR top_k < 1 OR top_k > 1000 THEN
        RAISE EXCEPTION 'top_k must be between 1 and 1000, not %', coalesce(top_k::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Fetch more rows with page.';
    END IF;
    IF page IS NULL OR page < 0 THEN
        RAISE EXCEPTION 'page must be 0 or more, not %', coalesce(page::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pages are numbered from 0.';
    END IF;
    PERFORM @extschema@.uhok_embed_check_column(tbl, vector_column, ARRAY['vector']);
    RETURN QUERY EXECUTE format(
        'SELECT %1$I::bigint, (%2$I <-> $1)::double precision FROM %3$s
         WHERE %2$I IS NOT NULL AND NOT (%1$I = ANY ($2))
         ORDER BY %2$I <-> $1 LIMIT $3 OFFSET $4',
        id_column, vector_column, tbl)
    USING @extschema@.uhok_embed(query), coalesce(exclude_ids, '{}'), top_k, page::bigint * top_k;
END
$$;

COMMENT ON FUNCTION uhok_search(text, regclass, name, name, integer, bigint[], integer) IS
'The top_k rows of tbl nearest to uhok_embed(query) by L2 distance (<->), skipping exclude_ids, page by page (page 0 first).';

CREATE FUNCTION uhok_search(query text, top_k integer DEFAULT 25, exclude_ids bigint[] DEFAULT '{}',
                            page integer DEFAULT 0)
RETURNS TABLE (recipe_id bigint, distance double precision)
LANGUAGE sql STABLE
AS $$
    SELECT * FROM @extschema@.uhok_search(query, '"RECIPE_VECTOR_TABLE"'::regclass, 'RECIPE_ID', 'VECTOR_NAME',
                                          top_k, exclude_ids, page)
$$;

COMMENT ON FUNCTION uhok_search(text, integer, bigint[], integer) IS
'uhok_search over "RECIPE_VECTOR_TABLE" ("RECIPE_ID", "VECTOR_NAME"), the recipe service''s table.';
