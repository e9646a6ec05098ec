-- ORDER BY "VECTOR_NAME" <-> uhok_embed(...) uses the HNSW index.
SET uhok_embed.model_path = '$sharedir/uhok_embed/models/multilingual-e5-small-fixture';
CREATE TABLE "RECIPE_VECTOR_TABLE" (
    "RECIPE_ID" bigint PRIMARY KEY,
    "COOKING_NAME" text NOT NULL,
    "VECTOR_NAME" vector(384)
);
INSERT INTO "RECIPE_VECTOR_TABLE"
SELECT i, name, uhok_embed(name)
FROM unnest(ARRAY['소갈비탕', '갈비찜', '김치찌개', '된장찌개', '비빔밥', '떡볶이', '잡채',
                  '불고기', '삼계탕', '냉면', 'chocolate cake', 'spicy noodles'])
     WITH ORDINALITY AS t(name, i);
CREATE INDEX ON "RECIPE_VECTOR_TABLE" USING hnsw ("VECTOR_NAME" vector_l2_ops);
ANALYZE "RECIPE_VECTOR_TABLE";
-- The plan, with the folded query vector's 384 numbers elided.
CREATE FUNCTION plan(query text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE line text;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
        RETURN NEXT regexp_replace(line, '\[[^]]*\]', '[...]');
    END LOOP;
END $$;
-- A table this small would be scanned sequentially; the point is that the index can be used.
SET enable_seqscan = off;
SELECT plan($$SELECT "RECIPE_ID" FROM "RECIPE_VECTOR_TABLE"
              ORDER BY "VECTOR_NAME" <-> uhok_embed('갈비탕') LIMIT 25$$);
-- The same with the query as a parameter, as a backend sends it.
PREPARE find_similar(text) AS
SELECT "COOKING_NAME" FROM "RECIPE_VECTOR_TABLE" ORDER BY "VECTOR_NAME" <-> uhok_embed($1) LIMIT 3;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE find_similar('갈비탕');
RESET plan_cache_mode;
EXECUTE find_similar('갈비탕');
RESET enable_seqscan;
-- Usable in a generated column (needs IMMUTABLE).
CREATE TABLE generated_embedding (
    name text,
    embedding vector(384) GENERATED ALWAYS AS (uhok_embed(name)) STORED
);
INSERT INTO generated_embedding VALUES ('갈비탕'), (NULL);
SELECT name, vector_dims(embedding) FROM generated_embedding ORDER BY name;
DROP TABLE generated_embedding;
DROP TABLE "RECIPE_VECTOR_TABLE";
DROP FUNCTION plan(text);
