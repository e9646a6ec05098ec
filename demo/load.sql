-- The demo's data: the 350 Korean recipe names of demo/recipes.txt, written into
-- "RECIPE_VECTOR_TABLE" (sql/recipe_schema.sql), whose trigger embeds each row as it is written.
-- Run from the repository's root (\copy reads the file relative to psql's directory).
CREATE TEMP TABLE names (name text);
\copy names FROM 'demo/recipes.txt'
INSERT INTO "RECIPE_VECTOR_TABLE" ("RECIPE_ID", "COOKING_NAME") SELECT row_number() OVER (), name FROM names;
