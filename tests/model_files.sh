#!/usr/bin/env bash
# File operations on the model folder of a running server never crash a backend (issue 11.1).
#
#   tests/model_files.sh PORT
#
# On a cluster of its own (a crash here cannot hide in another test), with a copy of
# all-MiniLM-L6-v2 as uhok_embed.model_path, once loaded on first use and once preloaded
# (shared_preload_libraries): one session embeds while the script, from psql's \!, overwrites the
# weights in place (cp), truncates them, leaves them half-copied, chmods them 000, deletes them,
# replaces the folder's files with cp -r, truncates tokenizer.json; then two sessions embed in a
# loop while a third process copies two different weight files over each other for 5 s.
# Expected: each statement either embeds (with the model the files hold at its transaction's
# start) or fails with a clear SQLSTATE; no backend dies; no backend maps the user's files.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../scripts/common.sh"
port=${1:?usage: tests/model_files.sh PORT}
models=$PG_SHAREDIR/uhok_embed/models

throwaway_cluster model_files "$port"
work=$(mktemp -d /tmp/uhok_embed_model_files.XXXX)
trap '"$SCRIPTS/cluster.sh" stop "$cluster"; rm -rf "$cluster" "$work"' EXIT
m=$work/model
cp -rL "$models/all-MiniLM-L6-v2" "$m"
cp "$m/model.safetensors" "$work/good.safetensors"
cp "$m/tokenizer.json" "$work/good-tokenizer.json"
# The same model with layer 0's query weights negated: another version, other vectors.
python3 "$here/../scripts/make_variant_weights.py" "$m/model.safetensors" "$work/variant.safetensors"
cp -r "$m" "$work/copy-of-model"
chmod -R a+rX "$work"
# Old enough that the snapshot index trusts their stat data (snapshot.rs RACY_WINDOW).
touch -d '-1 min' "$m"/* "$work"/*.safetensors "$work/good-tokenizer.json"

. "$here/lib.sh"
psql_as() { PGOPTIONS="-c uhok_embed.model_path=$m" psql -X -q -At -h "$cluster" -p "$port" -U postgres -d postgres "$@"; }
psql_as -c "CREATE EXTENSION uhok_embed CASCADE"

# One session, the file operations between its statements (psql's \! runs them from the client).
session_script=$(cat <<SQL
\\set VERBOSITY sqlstate
\\echo loaded
SELECT vector_dims(uhok_embed('kimchi stew'));
SELECT uhok_embed_version() AS v0 \\gset
SELECT count(*) >= 2 FROM pg_catalog.pg_ls_dir('uhok_embed') f WHERE f LIKE 'pgsql_tmp.%';
\\! ls -i $cluster/data/uhok_embed | grep pgsql_tmp > $work/copies.before
\\! chmod a+r $m/model.safetensors $m/tokenizer.json
\\echo chmod to the same mode: the same version, hashed again, not copied
SELECT vector_dims(uhok_embed('kimchi stew')), uhok_embed_version() = :'v0';
\\! ls -i $cluster/data/uhok_embed | grep pgsql_tmp | cmp -s - $work/copies.before && echo same copies
\\! cp $work/variant.safetensors $m/model.safetensors
\\echo cp over the weights in place: a new version
SELECT vector_dims(uhok_embed('kimchi stew')), uhok_embed_version() <> :'v0';
\\! : > $m/model.safetensors
\\echo truncated to 0
SELECT vector_dims(uhok_embed('kimchi stew'));
\\! head -c 1000000 $work/good.safetensors > $m/model.safetensors
\\echo half-copied
SELECT vector_dims(uhok_embed('kimchi stew'));
\\! cp $work/good.safetensors $m/model.safetensors
\\echo copied back: the first version again
SELECT vector_dims(uhok_embed('kimchi stew')), uhok_embed_version() = :'v0';
\\! chmod 000 $m/model.safetensors
\\echo chmod 000
SELECT vector_dims(uhok_embed('kimchi stew'));
\\! chmod 644 $m/model.safetensors && rm $m/model.safetensors
\\echo deleted
SELECT vector_dims(uhok_embed('kimchi stew'));
\\! cp -r $work/copy-of-model/. $m/
\\echo cp -r of a folder over it
SELECT vector_dims(uhok_embed('kimchi stew')), uhok_embed_version() = :'v0';
\\! : > $m/tokenizer.json
\\echo tokenizer.json truncated
SELECT vector_dims(uhok_embed('kimchi stew'));
\\! cp $work/good-tokenizer.json $m/tokenizer.json
\\echo a transaction keeps the model it started with
BEGIN;
SELECT vector_dims(uhok_embed('kimchi stew')), uhok_embed_version() = :'v0';
\\! cp $work/variant.safetensors $m/model.safetensors
SELECT vector_dims(uhok_embed('beef soup')), uhok_embed_version() = :'v0';
COMMIT;
SELECT uhok_embed_version() = :'v0';
\\! cp $work/good.safetensors $m/model.safetensors
\\echo the backend maps snapshots, never the files of the folder
SELECT pg_backend_pid() AS pid \\gset
\\setenv UHOK_PID :pid
\\! grep -c "$m/" /proc/\$UHOK_PID/maps || true
\\! grep -q "uhok_embed/pgsql_tmp" /proc/\$UHOK_PID/maps && echo snapshots mapped
SQL
)
expected=$(cat <<'OUT'
loaded
384
t
chmod to the same mode: the same version, hashed again, not copied
384|t
same copies
cp over the weights in place: a new version
384|t
truncated to 0
ERROR:  F0000
half-copied
ERROR:  F0000
copied back: the first version again
384|t
chmod 000
ERROR:  58030
deleted
ERROR:  58P01
cp -r of a folder over it
384|t
tokenizer.json truncated
ERROR:  F0000
a transaction keeps the model it started with
384|t
384|t
f
the backend maps snapshots, never the files of the folder
0
snapshots mapped
OUT
)

concurrent_copies() {  # two sessions embed while the weights are copied over each other for 5 s
    local pids=() i
    for i in 1 2; do
        ( for _ in $(seq 20); do
              psql_as -v VERBOSITY=sqlstate -c "SELECT count(uhok_embed('dish ' || g)) FROM generate_series(1, 200) g" 2>&1 || true
          done ) > "$work/loop$i.out" &
        pids+=($!)
    done
    local end=$((SECONDS + 5))
    while [ $SECONDS -lt $end ]; do
        cp "$work/variant.safetensors" "$m/model.safetensors"
        cp "$work/good.safetensors" "$m/model.safetensors"
    done
    wait "${pids[@]}"
    # Every statement embedded its 200 texts or failed with a model-file SQLSTATE.
    cat "$work"/loop*.out | grep -Ev '^(200|ERROR:  (F0000|55000|58030|58P01))$' || true
}

backfill_across_a_change() {  # a backfill stops when the weights change under it, and no row's
    # version names another model than the one that made its vector
    psql_as -c "DROP TABLE IF EXISTS dishes" \
            -c "CREATE TABLE dishes (id int PRIMARY KEY, name text, v vector(384), version text)" \
            -c "INSERT INTO dishes SELECT g, 'dish number ' || g, NULL, NULL FROM generate_series(1, 3000) g" >/dev/null 2>&1
    local v0; v0=$(psql_as -c "SELECT uhok_embed_version()")
    ( sleep 2; cp "$work/variant.safetensors" "$m/model.safetensors" ) &
    local out; out=$(psql_as -v VERBOSITY=sqlstate -c "CALL uhok_embed_backfill('dishes', 'name', 'v', 'version', 20)" 2>&1 | grep ERROR || true)
    wait
    cp "$work/good.safetensors" "$m/model.safetensors"
    echo "$out"
    # Batches and single texts sum in different orders (<= 1e-5 apart); models differ by far more.
    psql_as -c "SELECT count(*) FILTER (WHERE version = '$v0' AND (v <-> uhok_embed(name)) > 1e-4) FROM dishes"
}

crashes() { grep -cE 'terminated by signal|was terminated|server process .* exited' "$cluster/server.log" || true; }

run_round() {  # run_round NAME
    echo "$1:"
    local started; started=$(psql_as -c "SELECT pg_postmaster_start_time()")
    check "$1: one session, every file operation" "$expected" \
        "$(printf '%s\n' "$session_script" | psql_as -v ON_ERROR_STOP=0 2>&1)"
    check "$1: concurrent copies over the weights: only embeddings and model-file errors" "" "$(concurrent_copies)"
    check "$1: a backfill stops when the weights change under it; every version names its vector's model" \
        "$(printf 'ERROR:  55000\n0')" "$(backfill_across_a_change)"
    check "$1: no backend crashed" 0 "$(crashes)"
    check "$1: the postmaster never restarted" "$started" "$(psql_as -c "SELECT pg_postmaster_start_time()")"
}

run_round "loaded on first use"

"$SCRIPTS/cluster.sh" stop "$cluster"
cat >> "$cluster/data/postgresql.conf" <<CONF
shared_preload_libraries = 'uhok_embed'
uhok_embed.model_path = '$m'
CONF
"$SCRIPTS/cluster.sh" start "$cluster" "$port"
check "preloaded: the postmaster loaded the model" 1 "$(grep -c 'uhok_embed: preloaded' "$cluster/server.log")"
run_round "preloaded"
exit $fail
