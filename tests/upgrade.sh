#!/usr/bin/env bash
# ALTER EXTENSION uhok_embed UPDATE from 0.1.0 (or $UHOK_UPGRADE_FROM) gives exactly what a fresh
# CREATE EXTENSION gives, and tables attached under the old version keep working.
#
#   tests/upgrade.sh PORT
#
# On a throwaway cluster of its own: database "upgraded" creates uhok_embed VERSION '0.1.0',
# attaches two tables (batch and row mode), then updates to the default version (or to
# $UHOK_UPGRADE_TO); database "fresh" creates that version directly. For every member object of
# the extension (pg_depend deptype 'e') it compares identity, pg_get_functiondef, proconfig and
# the other pg_proc flags, ACLs and comments, and fails on any difference, printing the diff.
# Needs the extension installed (scripts/build-extension.sh, which also installs the released
# scripts sql/uhok_embed--*.sql).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../scripts/common.sh"
port=${1:?usage: tests/upgrade.sh PORT}
from=${UHOK_UPGRADE_FROM:-0.1.0}
to=${UHOK_UPGRADE_TO:-}

throwaway_cluster upgrade "$port"
work=$(mktemp -d)
trap '"$SCRIPTS/cluster.sh" stop "$cluster"; rm -rf "$cluster" "$work"' EXIT
sql() {  # sql DB [psql args]: runs as the superuser, stops at the first error
    local db=$1; shift
    "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$cluster" -p "$port" -U postgres -d "$db" "$@"
}
fail() { echo "FAILED: tests/upgrade.sh: $*" >&2; exit 1; }

sql postgres -c 'CREATE DATABASE upgraded' -c 'CREATE DATABASE fresh'

# 0.1.0, with two attached tables holding rows.
sql upgraded >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION uhok_embed VERSION '$from' CASCADE;
CREATE TABLE recipes (id bigint PRIMARY KEY, name text, v vector, version text);
SELECT uhok_embed_attach('recipes', 'name', 'v', 'version');
CREATE TABLE notes (body text, v vector);
SELECT uhok_embed_attach('notes', 'body', 'v');
INSERT INTO recipes (id, name) VALUES (1, '갈비탕'), (2, 'chocolate cake'), (3, NULL);
INSERT INTO notes VALUES ('김치찌개'), (NULL);
SQL

if [ -n "$to" ]; then
    sql upgraded -c "ALTER EXTENSION uhok_embed UPDATE TO '$to'"
    sql fresh -c 'SET client_min_messages = warning' -c "CREATE EXTENSION uhok_embed VERSION '$to' CASCADE"
else
    sql upgraded -c 'ALTER EXTENSION uhok_embed UPDATE'
    sql fresh -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION uhok_embed CASCADE'
fi
v_upgraded=$(sql upgraded -Atc "SELECT extversion FROM pg_extension WHERE extname = 'uhok_embed'")
v_fresh=$(sql fresh -Atc "SELECT extversion FROM pg_extension WHERE extname = 'uhok_embed'")
echo "upgrade: $from -> $v_upgraded (fresh install: $v_fresh)"
[ "$v_upgraded" = "$v_fresh" ] || fail "updated to $v_upgraded, but a fresh install is $v_fresh"
[ "$v_upgraded" != "$from" ] || fail "the default version is $from itself: there is no update to test"

# Every member object, one block per object, in a stable order.
describe='
SELECT format(E"=== %s\nidentity: %s\ncomment: %s\n%s",
              pg_describe_object(d.classid, d.objid, d.objsubid),
              (SELECT format("%s %s %s", i.type, i.object_names, i.object_args)
               FROM pg_identify_object_as_address(d.classid, d.objid, d.objsubid) AS i),
              coalesce(obj_description(d.objid, d.classid::regclass::text), "(none)"),
              CASE WHEN d.classid = "pg_proc"::regclass THEN
                  (SELECT format(E"kind: %s volatile: %s strict: %s parallel: %s secdef: %s leakproof: %s cost: %s rows: %s\nproconfig: %s\nacl: %s\n%s",
                                 p.prokind, p.provolatile, p.proisstrict, p.proparallel, p.prosecdef, p.proleakproof,
                                 p.procost, p.prorows, coalesce(p.proconfig::text, "(none)"), coalesce(p.proacl::text, "(default)"),
                                 CASE WHEN p.prokind IN ("f", "p") THEN pg_get_functiondef(p.oid) ELSE "(aggregate or window function)" END)
                   FROM pg_proc p WHERE p.oid = d.objid)
              END)
FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
WHERE d.refclassid = "pg_extension"::regclass AND d.deptype = "e" AND e.extname = "uhok_embed"
ORDER BY pg_describe_object(d.classid, d.objid, d.objsubid)'
# (Written with " for readability; turned into SQL quotes here.)
describe=$(printf '%s' "$describe" | tr '"' "'")
sql upgraded -At -c "$describe" > "$work/upgraded.txt"
sql fresh -At -c "$describe" > "$work/fresh.txt"
objects=$(grep -c '^=== ' "$work/fresh.txt" || true)
[ "$objects" -gt 0 ] || fail "no member objects found in the fresh install"
if ! diff -u "$work/fresh.txt" "$work/upgraded.txt" > "$work/diff.txt"; then
    echo "--- fresh $v_fresh install / +++ updated from $from"
    cat "$work/diff.txt"
    fail "the updated extension differs from a fresh install"
fi
echo "upgrade: $objects member objects identical"

# Tables attached under 0.1.0 keep working: the triggers call the replaced functions (same OIDs).
check=$(sql upgraded -At <<'SQL'
INSERT INTO recipes (id, name) VALUES (4, '소갈비탕'), (5, 'ramen');
UPDATE recipes SET name = 'dark chocolate cake' WHERE id = 2;
INSERT INTO notes VALUES ('된장찌개');
UPDATE recipes SET version = 'old' WHERE id = 1;
SET client_min_messages = warning;
CALL uhok_embed_backfill('recipes', 'name', 'v', 'version');
RESET client_min_messages;
SELECT 'recipes ' || count(*) || ' rows, ' || count(v) || ' vectors, '
       || count(*) FILTER (WHERE name IS NOT NULL AND v IS NOT NULL
                           AND v <-> uhok_embed(name) < 1e-4 AND version = uhok_embed_version()) || ' current'
FROM recipes;
SELECT 'notes ' || count(*) || ' rows, ' || count(v) || ' vectors, '
       || count(*) FILTER (WHERE v <-> uhok_embed(body) < 1e-4) || ' current'
FROM notes;
SELECT 'search ' || string_agg(recipe_id::text, ',' ORDER BY distance)
FROM uhok_search('갈비탕', 'recipes', 'id', 'v', 2, '{2,NULL}');
-- A table attached after the update gets the new default.
CREATE TABLE later (id bigint PRIMARY KEY, name text, v vector, version text);
SELECT uhok_embed_attach('later', 'name', 'v', 'version') \g /dev/null
INSERT INTO later VALUES (1, '비빔밥');
SELECT 'later ' || count(*) FILTER (WHERE v <-> uhok_embed(name) < 1e-4 AND version = uhok_embed_version())
       || ' current, ' || (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'later'::regclass) || ' trigger'
FROM later;
SQL
)
echo "$check" | sed 's/^/upgrade: /'
expected='recipes 5 rows, 4 vectors, 4 current
notes 3 rows, 2 vectors, 2 current
search 1,4
later 1 current, 1 trigger'
[ "$check" = "$expected" ] || fail "attached tables after the update: expected
$expected"
# A schema uhok_embed_internal that someone else made beforehand is never adopted: CREATE
# EXTENSION (and so the update) fails instead of putting the extension's functions in it.
sql postgres -c 'CREATE DATABASE squatted' -c 'CREATE ROLE squatter' \
    -c 'GRANT CREATE ON DATABASE squatted TO squatter'
sql squatted -c 'SET ROLE squatter' -c 'CREATE SCHEMA uhok_embed_internal'
if out=$(sql squatted -c 'CREATE EXTENSION uhok_embed CASCADE' 2>&1); then
    fail "CREATE EXTENSION adopted a schema uhok_embed_internal owned by another role"
fi
echo "$out" | grep -q 'schema "uhok_embed_internal" already exists' || fail "unexpected error: $out"
echo "upgrade: a squatted uhok_embed_internal is refused: $(echo "$out" | grep ^ERROR)"
echo "ok: tests/upgrade.sh"
