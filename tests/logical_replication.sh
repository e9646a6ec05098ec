#!/usr/bin/env bash
# Logical replication of attached tables (issue 24): a subscriber receives each row as the
# publisher wrote it. In row mode (the default) that is the row with its vector, one INSERT per
# row and no UPDATE; in batch mode each new row is sent without its vector and then updated
# (the cost row mode removes), and the subscriber ends with the same vectors either way. What
# was sent is read from a second slot with pgoutput, the subscriber's own plugin (built in:
# test_decoding, from contrib, is missing from some builds, such as the PyPI wheel's 18).
#
# On a cluster of its own (wal_level = logical): database "pub" has uhok_embed and publishes two
# tables; database "sub" has pgvector only (no model, no triggers) and subscribes to them.
#
# usage: logical_replication.sh PORT   (uhok_embed and the test models installed)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../scripts/common.sh"
port=${1:?port}
throwaway_cluster replication "$port"
"$here/../scripts/cluster.sh" stop "$cluster"
echo "wal_level = logical" >> "$cluster/data/postgresql.conf"
"$here/../scripts/cluster.sh" start "$cluster" "$port"
sql() {  # sql DB [psql args]
    local db=$1; shift
    psql -X -q -At -v ON_ERROR_STOP=1 -h "$cluster" -p "$port" -U postgres -d "$db" "$@"
}
. "$here/lib.sh"

sql postgres -c "CREATE DATABASE pub" -c "CREATE DATABASE sub"
tables="CREATE TABLE row_mode (id bigint PRIMARY KEY, name text, v vector(384), version text);
        CREATE TABLE batch_mode (id bigint PRIMARY KEY, name text, v vector(384), version text);"
sql pub >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION uhok_embed CASCADE;
SET uhok_embed.model_path = '\$sharedir/uhok_embed/models/all-MiniLM-L6-v2';
$tables
SELECT uhok_embed_attach('row_mode', 'name', 'v', 'version');
SELECT uhok_embed_attach('batch_mode', 'name', 'v', 'version', mode => 'batch');
CREATE PUBLICATION recipes FOR TABLE row_mode, batch_mode;
-- A subscription in the same cluster needs its slot made beforehand (CREATE SUBSCRIPTION
-- would wait for its own transaction to create it).
SELECT pg_create_logical_replication_slot('recipes', 'pgoutput');
-- And a slot whose changes this test reads itself: what the publisher sends, row by row.
SELECT pg_create_logical_replication_slot('audit', 'pgoutput');
SQL
sql sub -c "CREATE EXTENSION vector" -c "$tables" >/dev/null
sql sub -c "CREATE SUBSCRIPTION recipes CONNECTION 'host=$cluster port=$port user=postgres dbname=pub'
            PUBLICATION recipes WITH (create_slot = false, slot_name = 'recipes', copy_data = false)" >/dev/null

for t in row_mode batch_mode; do
    sql pub >/dev/null <<SQL
SET uhok_embed.model_path = '\$sharedir/uhok_embed/models/all-MiniLM-L6-v2';
INSERT INTO $t (id, name) VALUES (1, '갈비탕'), (2, 'chocolate cake'), (3, NULL);
INSERT INTO $t (id, name) SELECT g, 'recipe ' || g FROM generate_series(4, 10) g;
UPDATE $t SET name = '김치찌개' WHERE id = 2;
SQL
done
# Wait until the subscriber has applied everything the publisher wrote.
lsn=$(sql pub -c "SELECT pg_current_wal_lsn()")
for _ in $(seq 1 300); do
    [ "$(sql pub -c "SELECT confirmed_flush_lsn >= '$lsn' FROM pg_replication_slots WHERE slot_name = 'recipes'")" = t ] && break
    sleep 0.1
done

for t in row_mode batch_mode; do
    # The subscriber's copy against the publisher's vectors (pgvector's <-> on both sides).
    published=$(sql pub -c "SELECT string_agg(id || ':' || coalesce(v::text, 'NULL') || ':' || coalesce(version, 'NULL'), ';' ORDER BY id) FROM $t")
    received=$(sql sub -c "SELECT string_agg(id || ':' || coalesce(v::text, 'NULL') || ':' || coalesce(version, 'NULL'), ';' ORDER BY id) FROM $t")
    check "$t: the subscriber has the publisher's rows, vectors and versions" "$published" "$received"
    check "$t: every row with text has a vector there" "9 9" \
        "$(sql sub -c "SELECT count(name) || ' ' || count(v) FROM $t")"
done
# What the publisher sent for each table: pgoutput's messages (protocol 1), one 'I' or 'U'
# per row change, followed by the table's OID (4 bytes, big-endian).
changes() {  # changes TABLE -> "N inserts, M updates"
    sql pub -c "WITH m AS (
                    SELECT chr(get_byte(data, 0)) AS kind,
                           ('x' || encode(substring(data FROM 2 FOR 4), 'hex'))::bit(32)::bigint AS relid
                    FROM pg_logical_slot_peek_binary_changes('audit', NULL, NULL,
                         'proto_version', '1', 'publication_names', 'recipes'))
                SELECT count(*) FILTER (WHERE kind = 'I') || ' inserts, '
                       || count(*) FILTER (WHERE kind = 'U') || ' updates'
                FROM m WHERE relid = 'public.$1'::regclass::oid"
}
check "row mode: each row was sent once, complete (10 inserts, the 1 UPDATE of the text)" \
    "10 inserts, 1 updates" "$(changes row_mode)"
echo "  batch mode sent $(changes batch_mode) (each new row without its vector, then updated)"
sql pub -c "SELECT pg_drop_replication_slot('audit')" >/dev/null

sql sub -c "DROP SUBSCRIPTION recipes" >/dev/null
if [ "$fail" = 0 ]; then echo "ok: tests/logical_replication.sh"; else echo "FAILED: tests/logical_replication.sh"; exit 1; fi
