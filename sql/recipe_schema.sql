-- Example schema for the uhok recipe service: the table the backend searches with
--   SELECT "RECIPE_ID" FROM "RECIPE_VECTOR_TABLE" ORDER BY "VECTOR_NAME" <-> uhok_embed($1) LIMIT 25
-- Run after CREATE EXTENSION uhok_embed CASCADE. scripts/demo.sh uses it.
CREATE TABLE IF NOT EXISTS "RECIPE_VECTOR_TABLE" (
    "RECIPE_ID"    bigint PRIMARY KEY,
    "COOKING_NAME" text NOT NULL,
    "VECTOR_NAME"  vector(384)
);

-- HNSW over L2 distance, the operator (<->) the backend orders by. Build it after a bulk load:
-- inserting into an existing HNSW index is slower than building it once.
CREATE INDEX IF NOT EXISTS "RECIPE_VECTOR_TABLE_VECTOR_NAME_hnsw"
    ON "RECIPE_VECTOR_TABLE" USING hnsw ("VECTOR_NAME" vector_l2_ops);
