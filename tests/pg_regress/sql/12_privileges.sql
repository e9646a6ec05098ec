-- The privilege model: an application role with only table privileges (and EXECUTE, which
-- PUBLIC has on every function) embeds, searches and writes through the triggers; it cannot
-- point the server at files, nor attach to or detach from a table it does not own.
SET uhok_embed.model_path = '$sharedir/uhok_embed/models/all-MiniLM-L6-v2';
CREATE ROLE uhok_embed_app;
CREATE TABLE app_recipes (id bigint PRIMARY KEY, name text, v vector(384), version text);
SELECT uhok_embed_attach('app_recipes', 'name', 'v', 'version');
CREATE TABLE app_notes (body text, v vector(384));
SELECT uhok_embed_attach('app_notes', 'body', 'v');
GRANT SELECT, INSERT, UPDATE ON app_recipes, app_notes TO uhok_embed_app;
-- INSERT without UPDATE: on a row-mode table (the default) and a batch-mode one (see below).
CREATE TABLE app_insert_only (id bigint PRIMARY KEY, name text, v vector(384));
SELECT uhok_embed_attach('app_insert_only', 'name', 'v');
CREATE TABLE app_insert_only_batch (id bigint PRIMARY KEY, name text, v vector(384));
SELECT uhok_embed_attach('app_insert_only_batch', 'name', 'v', mode => 'batch');
GRANT SELECT, INSERT ON app_insert_only_batch TO uhok_embed_app;
GRANT SELECT, INSERT ON app_insert_only TO uhok_embed_app;
-- A row from before the triggers, for the backfill below.
ALTER TABLE app_insert_only DISABLE TRIGGER USER;
INSERT INTO app_insert_only (id, name) VALUES (100, 'ramen');
ALTER TABLE app_insert_only ENABLE TRIGGER USER;
-- Not attached, not owned, but with the TRIGGER privilege (enough for CREATE TRIGGER itself).
CREATE TABLE app_unowned (id bigint PRIMARY KEY, name text, v vector(384));
GRANT SELECT, INSERT, UPDATE, TRIGGER ON app_unowned TO uhok_embed_app;
-- No function of the extension runs with its owner's rights.
SELECT count(*) AS security_definer_functions
FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'uhok_embed'
WHERE p.prosecdef;

SET ROLE uhok_embed_app;
SELECT vector_dims(uhok_embed('chocolate cake')) AS dims;
INSERT INTO app_recipes (id, name) VALUES (1, 'chocolate cake'), (2, 'ramen'), (3, 'kimchi stew');
UPDATE app_recipes SET name = 'miso ramen' WHERE id = 2;
INSERT INTO app_recipes (id, name) VALUES (3, 'spicy kimchi stew') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name;
INSERT INTO app_notes VALUES ('beef soup'), (NULL);
UPDATE app_notes SET body = 'beef short rib soup' WHERE body = 'beef soup';
SELECT count(*) AS rows, count(v) AS vectors,
       bool_and(max_abs_diff(v, uhok_embed(name)) <= 1e-5) AS all_equal,
       bool_and(version = uhok_embed_version()) AS versions_current
FROM app_recipes;
SELECT count(*) AS rows, count(v) AS vectors FROM app_notes;
SELECT recipe_id FROM uhok_search('chocolate cake', 'app_recipes', 'id', 'v', 1);
-- Row mode: the row is written with its vector by the INSERT itself, so INSERT alone suffices.
INSERT INTO app_insert_only (id, name) VALUES (1, 'chocolate cake') RETURNING id, v IS NOT NULL AS has_vector;
-- Batch mode fills the vectors with an UPDATE, run as the inserting role, so INSERT without
-- UPDATE fails there (the reason row mode is the default).
INSERT INTO app_insert_only_batch (id, name) VALUES (1, 'chocolate cake');
-- Backfill writes with the caller's rights too (progress NOTICEs hidden).
SET client_min_messages = warning;
CALL uhok_embed_backfill('app_insert_only', 'name', 'v');
RESET client_min_messages;

-- The settings that choose files are superuser-only, however they are set.
SET uhok_embed.model_path = '/etc';
BEGIN;
SET LOCAL uhok_embed.model_path = '/etc';
ROLLBACK;
SELECT set_config('uhok_embed.model_path', '/etc', false);
BEGIN;
SELECT set_config('uhok_embed.model_path', '/etc', true);
ROLLBACK;
ALTER ROLE uhok_embed_app SET uhok_embed.model_path = '/etc';
SET uhok_embed.precision = 'bf16';
CREATE FUNCTION pg_temp.app_reads_etc() RETURNS int LANGUAGE sql SET uhok_embed.model_path = '/etc' AS 'SELECT 1';
SHOW uhok_embed.model_path;

-- Attach and detach are the owner's.
SELECT uhok_embed_attach('app_unowned', 'name', 'v');
SELECT uhok_embed_detach('app_recipes', 'v');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid IN ('app_unowned'::regclass, 'app_recipes'::regclass);
RESET ROLE;

-- A member of the owning role may attach and detach.
ALTER TABLE app_unowned OWNER TO uhok_embed_app;
CREATE ROLE uhok_embed_app_admin IN ROLE uhok_embed_app;
SET ROLE uhok_embed_app_admin;
SELECT uhok_embed_attach('app_unowned', 'name', 'v');
INSERT INTO app_unowned (id, name) VALUES (1, 'chocolate cake');
SELECT count(v) AS vectors FROM app_unowned;
SELECT uhok_embed_detach('app_unowned', 'v');
RESET ROLE;

DROP TABLE app_recipes, app_notes, app_insert_only, app_insert_only_batch, app_unowned;
DROP ROLE uhok_embed_app_admin;
DROP ROLE uhok_embed_app;
