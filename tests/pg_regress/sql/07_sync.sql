-- uhok_embed_attach: triggers keep a vector column equal to the embedding of a text column.
SET uhok_embed.model_path = '$sharedir/uhok_embed/models/all-MiniLM-L6-v2';
CREATE TABLE recipes (
    id      bigint PRIMARY KEY,
    name    text,
    note    text,
    embedding vector(384),
    model_version text
);
-- Batch mode here (bulk statements are counted below); row mode, the default, is 16_row_mode.
SELECT uhok_embed_attach('recipes', 'name', 'embedding', 'model_version', mode => 'batch');
SELECT tgname, pg_get_triggerdef(oid) LIKE '%FOR EACH STATEMENT%' AS per_statement
FROM pg_trigger WHERE tgrelid = 'recipes'::regclass ORDER BY tgname;

-- Every row's vector against uhok_embed(its text) (NULL text: NULL vector), and its version.
CREATE FUNCTION check_recipes() RETURNS TABLE (total bigint, with_text bigint, with_vector bigint,
                                               all_equal boolean, versions_current boolean)
LANGUAGE sql AS $$
    SELECT count(*), count(name), count(embedding),
           coalesce(bool_and(CASE WHEN name IS NULL THEN embedding IS NULL
                                  ELSE coalesce(max_abs_diff(embedding, uhok_embed(name)) <= 1e-5, false) END), true),
           coalesce(bool_and(model_version = uhok_embed_version()), true)
    FROM recipes
$$;
-- The same for big tables: one uhok_embed() per row takes ~20 ms, so compare with
-- uhok_embed_batch() over the whole table (06_batch shows each of its elements equals
-- uhok_embed() of that element), and with uhok_embed() itself on every 50th row.
CREATE FUNCTION check_recipes_batched() RETURNS TABLE (total bigint, with_text bigint, with_vector bigint,
                                                       all_equal boolean, sample_equal boolean, versions_current boolean)
LANGUAGE sql AS $$
    WITH expected AS (
        SELECT u.id, u.v
        FROM (SELECT array_agg(id ORDER BY id) AS ids, uhok_embed_batch(array_agg(name ORDER BY id)) AS vs FROM recipes) a,
             unnest(a.ids, a.vs) AS u(id, v))
    SELECT count(*), count(name), count(embedding),
           bool_and(CASE WHEN name IS NULL THEN embedding IS NULL
                         ELSE coalesce(max_abs_diff(embedding, e.v) <= 1e-5, false) END),
           bool_and(id % 50 <> 0 OR name IS NULL OR coalesce(max_abs_diff(embedding, uhok_embed(name)) <= 1e-5, false)),
           bool_and(model_version = uhok_embed_version())
    FROM recipes JOIN expected e USING (id)
$$;
CREATE FUNCTION passes() RETURNS bigint LANGUAGE sql AS $$ SELECT (uhok_embed_info()->>'forward_passes')::bigint $$;

-- Single row, multi-row, NULL text.
INSERT INTO recipes (id, name) VALUES (1, 'chocolate cake');
INSERT INTO recipes (id, name) VALUES (2, 'beef short rib soup'), (3, 'kimchi stew'), (4, NULL);
SELECT id, name, embedding IS NULL AS no_vector, model_version IS NOT NULL AS has_version FROM recipes ORDER BY id;
SELECT * FROM check_recipes();
-- A vector given on INSERT is replaced by the text's embedding.
INSERT INTO recipes (id, name, embedding) VALUES (5, 'apple pie', (SELECT array_agg(0)::vector(384) FROM generate_series(1, 384)));
SELECT * FROM check_recipes();

-- UPDATE of another column, or of the text to the same value, does not run the model.
SELECT passes() AS before \gset
UPDATE recipes SET note = 'family favourite' WHERE id = 1;
UPDATE recipes SET name = name;
UPDATE recipes SET name = 'kimchi stew' WHERE id = 3;
SELECT passes() - :before AS forward_passes_for_noop_updates;
-- A real change re-embeds, a NULL text clears the vector, and back again.
UPDATE recipes SET name = 'spicy kimchi stew' WHERE id = 3;
UPDATE recipes SET name = NULL WHERE id = 2;
UPDATE recipes SET name = 'bibimbap' WHERE id = 4;
SELECT id, name, embedding IS NULL AS no_vector FROM recipes ORDER BY id;
SELECT * FROM check_recipes();

-- ON CONFLICT DO UPDATE, COPY, INSERT ... SELECT, UPDATE ... FROM, DELETE.
INSERT INTO recipes (id, name) VALUES (1, 'dark chocolate cake'), (6, 'ramen')
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name;
INSERT INTO recipes (id, name) VALUES (6, 'ramen') ON CONFLICT (id) DO UPDATE SET note = 'seen twice';
COPY recipes (id, name) FROM STDIN;
7	tteokbokki
8	japchae
9	\N
\.
INSERT INTO recipes (id, name) SELECT 100 + g, 'recipe ' || g FROM generate_series(1, 50) g;
UPDATE recipes r SET name = r.name || ' with rice' FROM generate_series(101, 110) g WHERE r.id = g;
DELETE FROM recipes WHERE id = 150;
SELECT * FROM check_recipes();

-- Bulk: 10,000 rows in one INSERT ... SELECT are batched (10,000 / 32 forward passes), and
-- afterwards every row's vector equals uhok_embed(its text).
SELECT passes() AS before \gset
INSERT INTO recipes (id, name)
SELECT 10000 + g, (ARRAY['spicy', 'mild', 'sweet', 'crispy', 'braised'])[1 + g % 5] || ' ' ||
                  (ARRAY['pork', 'beef', 'tofu', 'chicken', 'squid', 'mushroom', 'kimchi'])[1 + g % 7] || ' ' ||
                  (ARRAY['stew', 'soup', 'stir-fry', 'pancake', 'rice bowl', 'noodles'])[1 + g % 6] || ' no. ' || g
FROM generate_series(1, 10000) g;
SELECT passes() - :before BETWEEN 313 AND 320 AS batched, passes() - :before < 10000 AS not_one_per_row;
SELECT * FROM check_recipes_batched();
-- And after more of every kind of statement on the big table.
UPDATE recipes SET name = upper(name) WHERE id % 7 = 0;
UPDATE recipes SET note = 'x' WHERE id % 3 = 0;
INSERT INTO recipes (id, name) SELECT id + 100000, name FROM recipes WHERE id % 11 = 0
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name || '!';
INSERT INTO recipes (id, name) SELECT id, name || ' again' FROM recipes WHERE id % 13 = 0
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name;
SELECT * FROM check_recipes_batched();

-- Without a primary key the row trigger embeds each row itself (one pass per row).
CREATE TABLE notes (body text, v vector(384));
SELECT uhok_embed_attach('notes', 'body', 'v');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'notes'::regclass ORDER BY tgname;
INSERT INTO notes VALUES ('chocolate cake'), (NULL), ('ramen');
UPDATE notes SET body = 'miso ramen' WHERE body = 'ramen';
SELECT body, v IS NULL AS no_vector, v <-> uhok_embed(body) < 1e-4 AS equal FROM notes ORDER BY body;

-- Mistakes get clear errors.
SELECT uhok_embed_attach('recipes', 'name', 'embedding');
SELECT uhok_embed_attach('recipes', 'title', 'embedding2');
SELECT uhok_embed_attach('recipes', 'id', 'embedding2');
SELECT uhok_embed_attach('recipes', 'name', 'note');
SELECT uhok_embed_attach('no_such_table', 'name', 'embedding');
SELECT uhok_embed_detach('notes', 'embedding');

-- Detach removes the triggers and keeps the vectors.
SELECT uhok_embed_detach('notes', 'v');
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'notes'::regclass;
INSERT INTO notes VALUES ('not embedded');
SELECT body, v IS NULL AS no_vector FROM notes ORDER BY body;
DROP TABLE notes;
DROP TABLE recipes;
DROP FUNCTION check_recipes();
DROP FUNCTION check_recipes_batched();
DROP FUNCTION passes();
