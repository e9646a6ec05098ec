-- uhok_embed_backfill: re-embeds rows with no vector or another model's vector, committing
-- every batch, so it can be cancelled and run again.
SET uhok_embed.model_path = '$sharedir/uhok_embed/models/all-MiniLM-L6-v2';
CREATE TABLE "RECIPE_VECTOR_TABLE" (
    "RECIPE_ID" bigint PRIMARY KEY,
    "COOKING_NAME" text,
    "VECTOR_NAME" vector(384),
    "EMBEDDING_VERSION" text
);
-- Rows that existed before the trigger: no vectors.
INSERT INTO "RECIPE_VECTOR_TABLE" ("RECIPE_ID", "COOKING_NAME")
SELECT g, (ARRAY['김치', '된장', '순두부', '부대', '고추장'])[1 + g % 5] || (ARRAY['찌개', '볶음밥', '전', '국수'])[1 + g % 4] || ' ' || g
FROM generate_series(1, 300) g;
INSERT INTO "RECIPE_VECTOR_TABLE" ("RECIPE_ID", "COOKING_NAME") VALUES (301, NULL);
SELECT uhok_embed_attach('"RECIPE_VECTOR_TABLE"', 'COOKING_NAME', 'VECTOR_NAME', 'EMBEDDING_VERSION');

CREATE FUNCTION stale_rows() RETURNS TABLE (total bigint, missing_vector bigint, other_version bigint, not_equal bigint)
LANGUAGE sql AS $$
    SELECT count(*),
           count(*) FILTER (WHERE "COOKING_NAME" IS NOT NULL AND "VECTOR_NAME" IS NULL),
           count(*) FILTER (WHERE "EMBEDDING_VERSION" IS DISTINCT FROM uhok_embed_version()),
           count(*) FILTER (WHERE "COOKING_NAME" IS NOT NULL AND NOT coalesce(
               max_abs_diff("VECTOR_NAME", uhok_embed("COOKING_NAME")) <= 1e-5, false))
    FROM "RECIPE_VECTOR_TABLE"
$$;
SELECT * FROM stale_rows();
-- Progress and the summary are NOTICEs; their timings are in the DETAIL, which terse hides.
\set VERBOSITY terse
CALL uhok_embed_backfill('"RECIPE_VECTOR_TABLE"', 'COOKING_NAME', 'VECTOR_NAME', 'EMBEDDING_VERSION', 128);
SELECT * FROM stale_rows();
-- Nothing left to do: a second run only says so.
CALL uhok_embed_backfill('"RECIPE_VECTOR_TABLE"', 'COOKING_NAME', 'VECTOR_NAME', 'EMBEDDING_VERSION');

\set VERBOSITY default
-- Switch models: every row is now stale.
SET uhok_embed.model_path = '$sharedir/uhok_embed/models/multilingual-e5-small-fixture';
SELECT uhok_embed_version();
SELECT * FROM stale_rows();
-- Cancel mid-way (statement_timeout): batches already committed stay done. A table big enough
-- that 2 s is not enough on any machine this runs on.
CREATE TABLE cancel_me (id bigint PRIMARY KEY, name text, v vector(384), version text);
INSERT INTO cancel_me SELECT g, '부대찌개 ' || g FROM generate_series(1, 20000) g;
SELECT uhok_embed_version() IS NOT NULL AS model_loaded;
SET statement_timeout = '2s';
\set VERBOSITY terse
CALL uhok_embed_backfill('cancel_me', 'name', 'v', 'version', 64);
\set VERBOSITY default
RESET statement_timeout;
SELECT count(*) FILTER (WHERE version IS NOT NULL) BETWEEN 1 AND 19999 AS partly_done,
       count(*) FILTER (WHERE (v IS NULL) <> (version IS NULL)) AS vector_without_version
FROM cancel_me;
-- ...and never a vector from one model beside the other model's version.
SELECT bool_and(coalesce(max_abs_diff(v, uhok_embed(name)) <= 1e-5, false)) AS vectors_from_named_model
FROM cancel_me WHERE version = uhok_embed_version() AND id % 20 = 0;
DROP TABLE cancel_me;
-- Cancel the real table's backfill right away (whether its first NOTICE comes out first depends
-- on timing: hidden), then run it again.
SET statement_timeout = '1ms';
SET client_min_messages = warning;
\set VERBOSITY terse
CALL uhok_embed_backfill('"RECIPE_VECTOR_TABLE"', 'COOKING_NAME', 'VECTOR_NAME', 'EMBEDDING_VERSION', 16);
\set VERBOSITY default
RESET client_min_messages;
RESET statement_timeout;
-- Run again: it continues and leaves no stale row. (Progress NOTICEs come every 5 s, so how
-- many a run prints depends on the machine: hide them here.)
SET client_min_messages = warning;
CALL uhok_embed_backfill('"RECIPE_VECTOR_TABLE"', 'COOKING_NAME', 'VECTOR_NAME', 'EMBEDDING_VERSION', 128);
RESET client_min_messages;
SELECT * FROM stale_rows();
-- An UPDATE that leaves a row with text but no vector has it re-embedded by the trigger.
UPDATE "RECIPE_VECTOR_TABLE" SET "VECTOR_NAME" = NULL WHERE "RECIPE_ID" <= 10;
SELECT * FROM stale_rows();
-- Without the triggers nothing does; without a version column backfill fills missing vectors.
ALTER TABLE "RECIPE_VECTOR_TABLE" DISABLE TRIGGER USER;
UPDATE "RECIPE_VECTOR_TABLE" SET "VECTOR_NAME" = NULL WHERE "RECIPE_ID" <= 10;
ALTER TABLE "RECIPE_VECTOR_TABLE" ENABLE TRIGGER USER;
SELECT * FROM stale_rows();
\set VERBOSITY terse
CALL uhok_embed_backfill('"RECIPE_VECTOR_TABLE"', 'COOKING_NAME', 'VECTOR_NAME');
\set VERBOSITY default
SELECT * FROM stale_rows();

-- Mistakes get clear errors.
CALL uhok_embed_backfill('"RECIPE_VECTOR_TABLE"', 'COOKING_NAME', 'VECTOR_NAME', NULL, 0);
CALL uhok_embed_backfill('"RECIPE_VECTOR_TABLE"', 'COOKING_NAME', 'NO_SUCH_COLUMN');
-- It commits as it goes, so it cannot run inside a transaction block.
-- (A stale version written with the triggers off: with them on, the row would be embedded again.)
ALTER TABLE "RECIPE_VECTOR_TABLE" DISABLE TRIGGER USER;
UPDATE "RECIPE_VECTOR_TABLE" SET "EMBEDDING_VERSION" = 'old' WHERE "RECIPE_ID" = 1;
ALTER TABLE "RECIPE_VECTOR_TABLE" ENABLE TRIGGER USER;
BEGIN;
CALL uhok_embed_backfill('"RECIPE_VECTOR_TABLE"', 'COOKING_NAME', 'VECTOR_NAME', 'EMBEDDING_VERSION');
ROLLBACK;
DROP TABLE "RECIPE_VECTOR_TABLE";
DROP FUNCTION stale_rows();

-- A partitioned table: the parent has no pages of its own; every leaf partition is walked
-- (a sub-partitioned one too), and a second run finds nothing left.
CREATE TABLE menu (id bigint, kind text, name text, v vector(384), version text) PARTITION BY LIST (kind);
CREATE TABLE menu_soup PARTITION OF menu FOR VALUES IN ('soup');
CREATE TABLE menu_rice PARTITION OF menu FOR VALUES IN ('rice') PARTITION BY RANGE (id);
CREATE TABLE menu_rice_low PARTITION OF menu_rice FOR VALUES FROM (0) TO (100);
CREATE TABLE menu_rice_high PARTITION OF menu_rice FOR VALUES FROM (100) TO (1000);
CREATE TABLE menu_other PARTITION OF menu DEFAULT;
INSERT INTO menu (id, kind, name)
SELECT g, (ARRAY['soup', 'rice', 'noodles'])[1 + g % 3], 'menu item ' || g FROM generate_series(1, 300) g;
\set VERBOSITY terse
CALL uhok_embed_backfill('menu', 'name', 'v', 'version', 16);
CALL uhok_embed_backfill('menu', 'name', 'v', 'version', 16);
\set VERBOSITY default
SELECT tableoid::regclass AS partition, count(*) AS rows,
       bool_and(version = uhok_embed_version() AND max_abs_diff(v, uhok_embed(name)) <= 1e-5) AS all_embedded
FROM menu GROUP BY 1 ORDER BY 1;
DROP TABLE menu;
