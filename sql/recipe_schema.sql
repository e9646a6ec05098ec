-- Example schema for the uhok recipe service (scripts/demo.sh uses it). Run after
-- CREATE EXTENSION uhok_embed CASCADE.
--
-- The backend searches it with either
--   SELECT * FROM uhok_search($1, 25, $2)                        -- (recipe_id, distance)
-- or its own SQL:
--   SELECT "RECIPE_ID", "VECTOR_NAME" <-> uhok_embed($1) AS distance
--   FROM "RECIPE_VECTOR_TABLE" WHERE NOT ("RECIPE_ID" = ANY ($2))
--   ORDER BY "VECTOR_NAME" <-> uhok_embed($1) LIMIT 25;
CREATE TABLE "RECIPE_VECTOR_TABLE" (
    "RECIPE_ID"         bigint PRIMARY KEY,
    "COOKING_NAME"      text NOT NULL,
    "VECTOR_NAME"       vector(384),      -- kept equal to uhok_embed("COOKING_NAME") by the triggers
    "EMBEDDING_VERSION" text              -- uhok_embed_version() of the model that made the vector
);

-- HNSW over L2 distance, the operator (<->) the backend orders by.
CREATE INDEX "RECIPE_VECTOR_TABLE_VECTOR_NAME_hnsw"
    ON "RECIPE_VECTOR_TABLE" USING hnsw ("VECTOR_NAME" vector_l2_ops);

-- Every INSERT, and every UPDATE that changes "COOKING_NAME", sets "VECTOR_NAME" and
-- "EMBEDDING_VERSION", in the row as it is written (row mode, the default; for bulk loads
-- into this plain table, mode => 'batch' embeds a statement's rows together).
SELECT uhok_embed_attach('"RECIPE_VECTOR_TABLE"', 'COOKING_NAME', 'VECTOR_NAME', 'EMBEDDING_VERSION');

-- After switching models (uhok_embed.model_path), re-embed the rows the old model made:
--   CALL uhok_embed_backfill('"RECIPE_VECTOR_TABLE"', 'COOKING_NAME', 'VECTOR_NAME', 'EMBEDDING_VERSION');
