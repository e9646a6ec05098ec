-- Row mode, uhok_embed_attach's default (issue 24): the row's own BEFORE trigger embeds it, so
-- it is written once, complete, by the writing role. Every shape of table, role and statement
-- where the older batch mode left rows without vectors: partitions, an INSERT-only role,
-- row-level security, RETURNING and AFTER ROW triggers; renamed columns, Korean names, vectors
-- supplied by the statement, a dropped column.
SET uhok_embed.model_path = '$sharedir/uhok_embed/models/all-MiniLM-L6-v2';
-- Forward passes are counted below: no query cache, so every embedding is a pass.
SET uhok_embed.cache_size = 0;
CREATE FUNCTION passes() RETURNS bigint LANGUAGE sql AS $$ SELECT (uhok_embed_info()->>'forward_passes')::bigint $$;
-- The invariant: every row with text has uhok_embed(text) and the loaded model's version; a row
-- without text has no vector.
CREATE FUNCTION check_sync(tbl regclass, text_column name DEFAULT 'name', vector_column name DEFAULT 'v',
                           version_column name DEFAULT 'version')
RETURNS TABLE (total bigint, with_text bigint, with_vector bigint, all_equal boolean, versions_current boolean)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT count(*), count(%1$I), count(%2$I),
                coalesce(bool_and(CASE WHEN %1$I IS NULL THEN %2$I IS NULL
                                       ELSE coalesce(max_abs_diff(%2$I, uhok_embed(%1$I)) <= 1e-5, false) END), true),
                coalesce(bool_and(%3$I = uhok_embed_version()), true)
         FROM %4$s', text_column, vector_column, version_column, tbl);
END
$$;

-- 1. A partitioned table: the row trigger is cloned to every partition, also to one created or
-- attached after the attach (even with its columns in another order), and fires whatever the
-- statement names.
CREATE TABLE dishes (id bigint, region text, name text, v vector(384), version text, PRIMARY KEY (id, region))
    PARTITION BY LIST (region);
CREATE TABLE dishes_kr PARTITION OF dishes FOR VALUES IN ('kr');
CREATE TABLE dishes_jp PARTITION OF dishes FOR VALUES IN ('jp');
SELECT uhok_embed_attach('dishes', 'name', 'v', 'version');
SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'dishes'::regclass;
CREATE TABLE dishes_other PARTITION OF dishes DEFAULT;
-- Columns in another order, one dropped: other attribute numbers than the parent's.
CREATE TABLE dishes_it (junk int, version text, v vector(384), name text, region text NOT NULL, id bigint NOT NULL);
ALTER TABLE dishes_it DROP COLUMN junk;
ALTER TABLE dishes ATTACH PARTITION dishes_it FOR VALUES IN ('it');
INSERT INTO dishes (id, region, name) VALUES (1, 'kr', 'kimchi stew'), (2, 'jp', 'ramen'), (3, 'fr', 'onion soup');
INSERT INTO dishes_kr (id, region, name) VALUES (4, 'kr', 'bibimbap');
INSERT INTO dishes_other (id, region, name) VALUES (5, 'es', 'paella');
INSERT INTO dishes_it (id, region, name) VALUES (9, 'it', 'risotto');
INSERT INTO dishes (id, region, name) VALUES (10, 'it', 'lasagna');
COPY dishes_jp (id, region, name) FROM STDIN;
6	jp	sushi
7	jp	\N
\.
COPY dishes (id, region, name) FROM STDIN;
11	kr	japchae
12	it	tiramisu
\.
UPDATE dishes_kr SET name = 'spicy bibimbap' WHERE id = 4;
UPDATE dishes_it SET name = 'mushroom risotto' WHERE id = 9;
-- Moved to another partition (a DELETE and an INSERT), with a new text and without.
UPDATE dishes SET region = 'jp', name = 'kimchi ramen' WHERE id = 1;
UPDATE dishes SET region = 'kr' WHERE id = 5;
-- RETURNING sees the vector the row was written with.
INSERT INTO dishes_jp (id, region, name) VALUES (8, 'jp', 'udon')
RETURNING id, v IS NOT NULL AS has_vector, version = uhok_embed_version() AS current;
SELECT tableoid::regclass AS part, id, name, v IS NOT NULL AS has_vector FROM dishes ORDER BY id;
SELECT * FROM check_sync('dishes');
-- Batch mode is refused on partitioned tables and partitions; detach from a partition points
-- at its parent; detach from the parent removes every clone.
ALTER TABLE dishes ADD COLUMN v2 vector(384);
SELECT uhok_embed_attach('dishes', 'name', 'v2', mode => 'batch');
SELECT uhok_embed_attach('dishes_kr', 'name', 'v2', mode => 'batch');
SELECT uhok_embed_detach('dishes_kr', 'v');
SELECT uhok_embed_detach('dishes', 'v');
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid IN (SELECT relid FROM pg_partition_tree('dishes'));
DROP TABLE dishes;

-- 2. Roles and policies. A role with INSERT only (no UPDATE, no SELECT):
CREATE ROLE uhok_embed_writer;
CREATE TABLE inbox (id bigint PRIMARY KEY, name text, v vector(384), version text);
SELECT uhok_embed_attach('inbox', 'name', 'v', 'version');
GRANT INSERT ON inbox TO uhok_embed_writer;
SET ROLE uhok_embed_writer;
INSERT INTO inbox (id, name) VALUES (1, 'chocolate cake'), (2, 'ramen');
COPY inbox (id, name) FROM STDIN;
3	tteokbokki
\.
RESET ROLE;
SELECT * FROM check_sync('inbox');
-- Row-level security whose UPDATE policy hides every row: nothing needs an UPDATE.
CREATE TABLE private_notes (id bigint PRIMARY KEY, author name DEFAULT current_user, name text, v vector(384), version text);
ALTER TABLE private_notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY insert_any ON private_notes FOR INSERT WITH CHECK (true);
CREATE POLICY read_own ON private_notes FOR SELECT USING (author = current_user);
CREATE POLICY update_none ON private_notes FOR UPDATE USING (false);
SELECT uhok_embed_attach('private_notes', 'name', 'v', 'version');
-- Batch mode would leave these rows without vectors: refused.
ALTER TABLE private_notes ADD COLUMN v2 vector(384);
SELECT uhok_embed_attach('private_notes', 'name', 'v2', mode => 'batch');
GRANT SELECT, INSERT, UPDATE ON private_notes TO uhok_embed_writer;
SET ROLE uhok_embed_writer;
INSERT INTO private_notes (id, name) VALUES (1, 'kimchi stew'), (2, 'beef soup');
INSERT INTO private_notes (id, name) SELECT g, 'note ' || g FROM generate_series(3, 6) g;
RESET ROLE;
SELECT * FROM check_sync('private_notes');

-- 3. AFTER ROW triggers of other code see the vector; one pass per row.
CREATE TABLE audited (id bigint PRIMARY KEY, name text, v vector(384), version text);
CREATE TABLE audit_log (id bigint, had_vector boolean);
CREATE FUNCTION log_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit_log VALUES (NEW.id, NEW.v IS NOT NULL); RETURN NULL; END $$;
CREATE TRIGGER log_row AFTER INSERT ON audited FOR EACH ROW EXECUTE FUNCTION log_row();
SELECT uhok_embed_attach('audited', 'name', 'v', 'version');
SELECT passes() AS before \gset
INSERT INTO audited (id, name) VALUES (1, 'apple pie'), (2, 'ramen'), (3, NULL);
SELECT passes() - :before AS passes_for_two_texts;
SELECT * FROM audit_log ORDER BY id;
-- An UPDATE of other columns, or of the text to the same text, runs no model; one that sets the
-- vector to NULL, or marks the version stale, has the row embedded again.
ALTER TABLE audited ADD COLUMN note text;
SELECT passes() AS before \gset
UPDATE audited SET note = 'x';
UPDATE audited SET name = name;
SELECT passes() - :before AS passes_for_unchanged_texts;
UPDATE audited SET v = NULL WHERE id = 1;
UPDATE audited SET version = 'old' WHERE id = 2;
SELECT passes() - :before AS passes_after_two_stale_rows;
SELECT * FROM check_sync('audited');

-- 4. Renamed columns: the trigger follows them (its column list is attribute numbers), and
-- detach finds it by the vector column's new name. A column in use cannot be dropped alone.
CREATE TABLE menu (id bigint PRIMARY KEY, name text, v vector(384), version text);
SELECT uhok_embed_attach('menu', 'name', 'v', 'version');
INSERT INTO menu (id, name) VALUES (1, 'apple pie');
ALTER TABLE menu RENAME COLUMN name TO title;
ALTER TABLE menu RENAME COLUMN v TO embedding;
ALTER TABLE menu RENAME COLUMN version TO model_version;
INSERT INTO menu (id, title) VALUES (2, 'ramen'), (3, 'kimchi stew');
UPDATE menu SET title = 'miso ramen' WHERE id = 2;
SELECT * FROM check_sync('menu', 'title', 'embedding', 'model_version');
SELECT uhok_embed_attach('menu', 'title', 'embedding');
ALTER TABLE menu DROP COLUMN embedding;
SELECT uhok_embed_detach('menu', 'embedding');
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'menu'::regclass;

-- 5. Korean column names: trigger names are counted in bytes (63 at most).
CREATE TABLE 레시피 (번호 bigint PRIMARY KEY, 요리이름 text, 임베딩 vector(384), 버전 text);
SELECT uhok_embed_attach('레시피', '요리이름', '임베딩', '버전');
SELECT tgname, octet_length(tgname) AS bytes FROM pg_trigger WHERE tgrelid = '레시피'::regclass ORDER BY tgname;
INSERT INTO 레시피 (번호, 요리이름) VALUES (1, '김치찌개'), (2, '갈비탕');
UPDATE 레시피 SET 요리이름 = '왕갈비탕' WHERE 번호 = 2;
SELECT * FROM check_sync('레시피', '요리이름', '임베딩', '버전');
-- 15 syllables (45 bytes) fit, 16 (48 bytes) do not.
ALTER TABLE 레시피 ADD COLUMN 가나다라마바사아자차카타파하가 vector(384), ADD COLUMN 가나다라마바사아자차카타파하가나 vector(384);
SELECT uhok_embed_attach('레시피', '요리이름', '가나다라마바사아자차카타파하가');
SELECT uhok_embed_attach('레시피', '요리이름', '가나다라마바사아자차카타파하가나');
SELECT uhok_embed_detach('레시피', '임베딩');
SELECT uhok_embed_detach('레시피', '가나다라마바사아자차카타파하가');
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = '레시피'::regclass;

-- 6. A vector the statement supplies with the loaded model's version is kept, not recomputed
-- (a data-only restore, a copy between tables); with another version, or none, it is.
CREATE TABLE restored (id bigint PRIMARY KEY, name text, v vector(384), version text);
SELECT uhok_embed_attach('restored', 'name', 'v', 'version');
INSERT INTO restored (id, name) VALUES (1, 'apple pie'), (2, 'ramen');
CREATE TABLE restored_copy (LIKE restored);
SELECT uhok_embed_attach('restored_copy', 'name', 'v', 'version');
SELECT passes() AS before \gset
INSERT INTO restored_copy SELECT * FROM restored;
SELECT passes() - :before AS passes_for_a_copy;
-- A wrong vector with the current version is the writer's word (kept); with an old version or
-- none it is replaced.
INSERT INTO restored_copy (id, name, v, version)
SELECT 3, 'kimchi stew', v, 'old' FROM restored WHERE id = 1
UNION ALL SELECT 4, 'beef soup', v, NULL FROM restored WHERE id = 1;
SELECT * FROM check_sync('restored_copy');
-- A table without a version column: every supplied vector is replaced.
CREATE TABLE unversioned (name text, v vector(384));
SELECT uhok_embed_attach('unversioned', 'name', 'v');
INSERT INTO unversioned SELECT 'kimchi stew', v FROM restored WHERE id = 1;
SELECT max_abs_diff(v, uhok_embed(name)) <= 1e-5 AS replaced FROM unversioned;

-- 7. Batch mode (opt-in) on the same footing: its triggers find their columns by attribute
-- number (renames keep working, detach by the new name), a vector supplied with the loaded
-- model's version is kept, and a table a role may INSERT into but not UPDATE is refused.
CREATE TABLE bulk (id bigint PRIMARY KEY, name text, v vector(384), version text);
SELECT uhok_embed_attach('bulk', 'name', 'v', 'version', mode => 'batch');
SELECT tgname, pg_get_triggerdef(oid) ~ 'uhok_embed_(row_embed\(''batch''\)|statement_trigger\(''attnums'')' AS new_form
FROM pg_trigger WHERE tgrelid = 'bulk'::regclass ORDER BY tgname;
SELECT passes() AS before \gset
INSERT INTO bulk (id, name) SELECT g, 'dish ' || g FROM generate_series(1, 40) g;
SELECT passes() - :before AS passes_for_40_rows;
ALTER TABLE bulk RENAME COLUMN name TO title;
ALTER TABLE bulk RENAME COLUMN v TO embedding;
ALTER TABLE bulk RENAME COLUMN version TO model_version;
ALTER TABLE bulk RENAME COLUMN id TO bulk_id;
INSERT INTO bulk (bulk_id, title) VALUES (41, 'ramen'), (42, NULL);
UPDATE bulk SET title = 'miso ' || title WHERE bulk_id IN (1, 41);
-- A copy of a row with its vector and the current version: kept, no pass.
SELECT passes() AS before \gset
INSERT INTO bulk (bulk_id, title, embedding, model_version)
SELECT 43, title, embedding, model_version FROM bulk WHERE bulk_id = 2;
SELECT passes() - :before AS passes_for_a_copied_row;
SELECT * FROM check_sync('bulk', 'title', 'embedding', 'model_version');
SELECT uhok_embed_detach('bulk', 'embedding');
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'bulk'::regclass;
GRANT SELECT, INSERT ON bulk TO uhok_embed_writer;
SELECT uhok_embed_attach('bulk', 'title', 'embedding', 'model_version', mode => 'batch');
GRANT UPDATE ON bulk TO uhok_embed_writer;
SELECT uhok_embed_attach('bulk', 'title', 'embedding', 'model_version', mode => 'batch');
REVOKE ALL ON bulk FROM uhok_embed_writer;
-- Without a version column too: the statement trigger's own UPDATE is told apart by trigger
-- depth, so each row is filled once (it was marked pending again, and the statement trigger
-- recursed until "stack depth limit exceeded"). A vector cleared or overwritten by hand is
-- embedded again.
CREATE TABLE bulk_unversioned (id bigint PRIMARY KEY, name text, v vector(384));
SELECT uhok_embed_attach('bulk_unversioned', 'name', 'v', mode => 'batch');
SELECT passes() AS before \gset
INSERT INTO bulk_unversioned SELECT g, 'soup ' || g FROM generate_series(1, 40) g;
SELECT passes() - :before AS passes_for_40_rows;
UPDATE bulk_unversioned SET name = 'hot ' || name WHERE id <= 3;
UPDATE bulk_unversioned SET v = NULL WHERE id = 4;
UPDATE bulk_unversioned SET v = (SELECT v FROM bulk_unversioned WHERE id = 5) WHERE id = 6;
SELECT count(*) AS total, count(v) AS with_vector, bool_and(max_abs_diff(v, uhok_embed(name)) <= 1e-5) AS all_equal
FROM bulk_unversioned;
-- A key whose text depends on a setting (a float8 under extra_float_digits = 0 prints 0.3 for
-- 0.1 + 0.2) still finds its row: the keys travel as exact text.
CREATE TABLE bulk_float (id float8 PRIMARY KEY, name text, v vector(384), version text);
SELECT uhok_embed_attach('bulk_float', 'name', 'v', 'version', mode => 'batch');
SET extra_float_digits = 0;
INSERT INTO bulk_float (id, name) VALUES (0.1::float8 + 0.2::float8, 'float soup'), (1.0::float8 / 3, 'third rice');
RESET extra_float_digits;
SELECT count(*) AS total, count(v) AS with_vector FROM bulk_float;

-- 8. A vector column narrower than the model's vectors: a clear error, not a bad row.
CREATE TABLE narrow (name text, v vector(3));
SELECT uhok_embed_attach('narrow', 'name', 'v');
INSERT INTO narrow VALUES ('ramen');
-- The trigger function refuses to run any other way than attach made it.
CREATE TABLE misused (name text, v vector(384));
CREATE TRIGGER misused BEFORE INSERT ON misused FOR EACH ROW EXECUTE FUNCTION uhok_embed_internal.uhok_embed_row_embed();
INSERT INTO misused VALUES ('ramen');
SELECT uhok_embed_attach('misused', 'name', 'v', mode => 'sideways');

DROP TABLE inbox, private_notes, audited, audit_log, menu, 레시피, restored, restored_copy, unversioned, bulk, bulk_unversioned, bulk_float, narrow, misused;
DROP FUNCTION log_row();
DROP FUNCTION check_sync(regclass, name, name, name);
DROP FUNCTION passes();
DROP ROLE uhok_embed_writer;
