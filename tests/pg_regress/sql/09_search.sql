-- uhok_search: the old /v1/search {query, top_k, exclude_ids} with paging, over the HNSW index.
SET uhok_embed.model_path = '$sharedir/uhok_embed/models/multilingual-e5-small-fixture';
CREATE TABLE "RECIPE_VECTOR_TABLE" (
    "RECIPE_ID" bigint PRIMARY KEY,
    "COOKING_NAME" text NOT NULL,
    "VECTOR_NAME" vector(384)
);
CREATE INDEX "RECIPE_VECTOR_TABLE_hnsw" ON "RECIPE_VECTOR_TABLE" USING hnsw ("VECTOR_NAME" vector_l2_ops);
SELECT uhok_embed_attach('"RECIPE_VECTOR_TABLE"', 'COOKING_NAME', 'VECTOR_NAME');
INSERT INTO "RECIPE_VECTOR_TABLE" ("RECIPE_ID", "COOKING_NAME")
SELECT i, name FROM unnest(ARRAY['갈비탕', '소갈비탕', '왕갈비탕', '갈비찜', '김치찌개', '된장찌개', '순두부찌개',
    '비빔밥', '떡볶이', '잡채', '불고기', '삼계탕', '냉면', '칼국수', '김밥', '제육볶음', '닭갈비', '해물파전',
    'chocolate cake', 'spicy noodles', 'beef short rib soup', 'kimchi fried rice']) WITH ORDINALITY AS t(name, i);

SELECT recipe_id, round(distance::numeric, 4) AS distance FROM uhok_search('갈비탕', 5);

-- The same as a brute-force ORDER BY (no index), for every page, with and without exclusions.
CREATE FUNCTION brute_force(q text, k int, excl bigint[], p int) RETURNS bigint[] LANGUAGE sql AS $$
    SELECT array_agg(id ORDER BY d, id) FROM (
        SELECT "RECIPE_ID" AS id, "VECTOR_NAME" <-> query.v AS d
        FROM "RECIPE_VECTOR_TABLE", (SELECT uhok_embed(q) AS v OFFSET 0) AS query
        WHERE NOT ("RECIPE_ID" = ANY (excl)) ORDER BY d, id LIMIT k OFFSET p * k) s
$$;
CREATE FUNCTION searched(q text, k int, excl bigint[], p int) RETURNS bigint[] LANGUAGE sql AS $$
    SELECT array_agg(recipe_id ORDER BY distance, recipe_id) FROM uhok_search(q, k, excl, p)
$$;
SELECT q, k, excl, count(*) AS pages,
       bool_and(searched(q, k, excl, p) IS NOT DISTINCT FROM brute_force(q, k, excl, p)) AS same_as_brute_force
FROM unnest(ARRAY['갈비탕', '김치찌개', 'spicy noodles']) AS q,
     unnest(ARRAY[3, 5]) AS k,
     unnest(ARRAY['{}', '{1,2,3}', '{5,6,7,8,9,10}']::text[]) AS excl_text,
     LATERAL (SELECT excl_text::bigint[] AS excl) e,
     generate_series(0, 5) AS p
GROUP BY q, k, excl ORDER BY q, k, excl;
-- Pages fit together without gaps or repeats: pages of 5 are the top 20.
SELECT (SELECT array_agg(id ORDER BY page, rank) FROM generate_series(0, 3) AS page,
               LATERAL (SELECT recipe_id AS id, row_number() OVER (ORDER BY distance) AS rank FROM uhok_search('갈비탕', 5, '{}', page)) s)
     = (SELECT array_agg(recipe_id ORDER BY distance) FROM uhok_search('갈비탕', 20)) AS pages_match;
-- exclude_ids that cover the whole natural top 5 still give 5 rows.
SELECT count(*) AS rows, bool_and(NOT recipe_id = ANY (top5)) AS none_excluded
FROM (SELECT array_agg(recipe_id) AS top5 FROM uhok_search('갈비탕', 5)) t, uhok_search('갈비탕', 5, top5);
-- Past the end: fewer rows, then none.
SELECT count(*) FROM uhok_search('갈비탕', 10, '{}', 2);
SELECT count(*) FROM uhok_search('갈비탕', 10, '{}', 3);

-- Bad arguments.
SELECT * FROM uhok_search('갈비탕', 0);
SELECT * FROM uhok_search('갈비탕', 1001);
SELECT * FROM uhok_search('갈비탕', 5, '{}', -1);
SELECT * FROM uhok_search(NULL);
SELECT recipe_id, round(distance::numeric, 4) AS distance FROM uhok_search('갈비탕', 5, NULL);

-- Any table, id column and vector column.
CREATE TABLE dishes (dish_id int PRIMARY KEY, title text, emb vector(384));
INSERT INTO dishes SELECT "RECIPE_ID", "COOKING_NAME", "VECTOR_NAME" FROM "RECIPE_VECTOR_TABLE";
SELECT recipe_id FROM uhok_search('갈비탕', 'dishes', 'dish_id', 'emb', 3);
SELECT recipe_id FROM uhok_search('갈비탕', 'dishes', 'dish_id', 'title', 3);

-- On a larger table the HNSW index is used: by the plain SQL a backend writes...
CREATE TABLE big (id bigint PRIMARY KEY, v vector(384));
INSERT INTO big SELECT g, (SELECT array_agg(random() - 0.5)::vector(384) FROM generate_series(1, 384) WHERE g > 0)
FROM generate_series(1, 3000) g;
CREATE INDEX big_hnsw ON big USING hnsw (v vector_l2_ops);
ANALYZE big;
PREPARE backend_query(text) AS SELECT id FROM big ORDER BY v <-> uhok_embed($1) LIMIT 25;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE backend_query('갈비탕');
RESET plan_cache_mode;
-- ...and by uhok_search itself (the index's scan counter moves, the table's sequential one does not).
SELECT pg_stat_force_next_flush();
SELECT idx_scan AS idx_before, seq_scan AS seq_before FROM pg_stat_user_tables WHERE relname = 'big' \gset
SELECT count(*) FROM uhok_search('갈비탕', 'big', 'id', 'v', 25, '{1,2,3}');
SELECT pg_stat_force_next_flush();
SELECT idx_scan > :idx_before AS index_used, seq_scan = :seq_before AS no_seq_scan
FROM pg_stat_user_tables WHERE relname = 'big';

DROP TABLE big, dishes, "RECIPE_VECTOR_TABLE";
DROP FUNCTION brute_force(text, int, bigint[], int);
DROP FUNCTION searched(text, int, bigint[], int);
