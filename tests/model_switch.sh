#!/usr/bin/env bash
# Switching the model by symlink is noticed by every backend at its next transaction (issue 23.1).
#
#   tests/model_switch.sh PORT
#
# On a cluster of its own, uhok_embed.model_path names a symlink, `model -> models/a`, as
# $sharedir/uhok_embed/model is after scripts/install-models.sh; models/a and models/b are
# all-MiniLM-L6-v2 with different weights. The link is switched the way install-models.sh does
# it (a new link renamed over the old one). Once loaded on first use and once preloaded
# (shared_preload_libraries):
#   - one session embeds, the link is switched from psql's \!, and the session's next statement
#     embeds with models/b and reports b's version; a transaction keeps the model it started with;
#   - eight sessions embed in a loop while the link is switched back and forth for 5 s: every
#     statement embeds with one model and reports it, none fails, no backend dies; afterwards
#     each of them reports the model the link names.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../scripts/common.sh"
port=${1:?usage: tests/model_switch.sh PORT}
models=$PG_SHAREDIR/uhok_embed/models

throwaway_cluster model_switch "$port"
work=$(mktemp -d /tmp/uhok_embed_model_switch.XXXX)
trap '"$SCRIPTS/cluster.sh" stop "$cluster"; rm -rf "$cluster" "$work"' EXIT
mkdir "$work/models"
cp -rL "$models/all-MiniLM-L6-v2" "$work/models/a"
cp -rL "$models/all-MiniLM-L6-v2" "$work/models/b"
# b: layer 0's query weights negated, so its vectors differ from a's.
python3 "$here/../scripts/make_variant_weights.py" "$work/models/b/model.safetensors" "$work/models/b/model.safetensors"
chmod -R a+rX "$work"
# Old enough that the snapshot index trusts their stat data (snapshot.rs RACY_WINDOW).
touch -d '-1 min' "$work"/models/*/*
link=$work/model
switch_to() {  # switch_to a|b, atomically, as scripts/install-models.sh does
    ln -sfn "models/$1" "$link.new"
    mv -Tf "$link.new" "$link"
}
switch_to a

. "$here/lib.sh"
psql_as() { psql -X -q -At -h "$cluster" -p "$port" -U postgres -d postgres "$@"; }
echo "uhok_embed.model_path = '$link'" >> "$cluster/data/postgresql.conf"
psql_as -c "SELECT pg_reload_conf()" >/dev/null
psql_as -c "CREATE EXTENSION uhok_embed CASCADE"

session_script=$(cat <<SQL
\\set VERBOSITY sqlstate
CREATE TEMP TABLE seen (model text, v vector(384));
INSERT INTO seen SELECT split_part(uhok_embed_version(), '@', 1), uhok_embed('kimchi stew');
SELECT model FROM seen;
\\! ln -sfn models/b $link.new && mv -Tf $link.new $link
\\echo switched to b: the next statement uses it
INSERT INTO seen SELECT split_part(uhok_embed_version(), '@', 1), uhok_embed('kimchi stew');
SELECT string_agg(model, ' ' ORDER BY model) FROM seen;
SELECT (SELECT v FROM seen WHERE model = 'a') <-> (SELECT v FROM seen WHERE model = 'b') > 0.01;
SELECT uhok_embed_info()->>'model';
\\echo a transaction keeps the model it started with
BEGIN;
SELECT split_part(uhok_embed_version(), '@', 1);
\\! ln -sfn models/a $link.new && mv -Tf $link.new $link
SELECT split_part(uhok_embed_version(), '@', 1), uhok_embed('kimchi stew') = (SELECT v FROM seen WHERE model = 'b');
COMMIT;
SELECT split_part(uhok_embed_version(), '@', 1), uhok_embed('kimchi stew') = (SELECT v FROM seen WHERE model = 'a');
SQL
)
expected=$(cat <<'OUT'
a
switched to b: the next statement uses it
a b
t
b
a transaction keeps the model it started with
b
b|t
a|t
OUT
)

concurrent_switches() {  # eight sessions embed while the link is switched for 5 s
    local pids=() i
    for i in $(seq 8); do
        # One connection each, 30 statements: its model (from the version) and whether its
        # 20 vectors are that model's (the vectors fresh sessions of each model gave).
        for _ in $(seq 30); do echo "
            SELECT split_part(uhok_embed_version(), '@', 1) || ' ' || coalesce(bool_and(uhok_embed('dish ' || r.g) = r.v)::text, 'none')
            FROM reference r WHERE r.model = split_part(uhok_embed_version(), '@', 1);"
        done | psql_as -v VERBOSITY=sqlstate > "$work/loop$i.out" 2>&1 &
        pids+=($!)
    done
    local end=$((SECONDS + 5)) switches=0
    while [ $SECONDS -lt $end ]; do
        switch_to b; sleep 0.05; switch_to a; sleep 0.05
        switches=$((switches + 2))
    done
    wait "${pids[@]}"
    echo "switches: $switches" >&2
    # Every statement embedded with one model and said which, and both models served (else
    # the switches were not noticed).
    cat "$work"/loop*.out | grep -Ev '^(a|b) true$' || true
    grep -q '^a true$' "$work"/loop*.out || echo "no statement used model a"
    grep -q '^b true$' "$work"/loop*.out || echo "no statement used model b"
    echo "statements by model: $(cat "$work"/loop*.out | sort | uniq -c | tr -s ' \n' ' ')" >&2
}

crashes() { grep -cE 'terminated by signal|was terminated|server process .* exited' "$cluster/server.log" || true; }

run_round() {  # run_round NAME
    echo "$1:"
    local started; started=$(psql_as -c "SELECT pg_postmaster_start_time()")
    switch_to a
    check "$1: a session's next statement after a switch uses the new model" "$expected" \
        "$(printf '%s\n' "$session_script" | psql_as -v ON_ERROR_STOP=0 2>&1)"
    # The vectors each model gives, from sessions that load it fresh.
    psql_as -c "DROP TABLE IF EXISTS reference" -c "CREATE TABLE reference (model text, g int, v vector(384))"
    local m
    for m in a b; do
        switch_to "$m"
        psql_as -c "INSERT INTO reference SELECT '$m', g, uhok_embed('dish ' || g) FROM generate_series(1, 20) g"
    done
    check "$1: eight sessions while the link switches: every statement uses one model, none fails" "" \
        "$(concurrent_switches)"
    switch_to b
    local i out=""
    for i in $(seq 8); do out+="$(psql_as -c "SELECT split_part(uhok_embed_version(), '@', 1)")"; done
    check "$1: after the switches, new sessions use the model the link names" bbbbbbbb "$out"
    check "$1: no backend crashed" 0 "$(crashes)"
    check "$1: the postmaster never restarted" "$started" "$(psql_as -c "SELECT pg_postmaster_start_time()")"
}

run_round "loaded on first use"

"$SCRIPTS/cluster.sh" stop "$cluster"
switch_to a
echo "shared_preload_libraries = 'uhok_embed'" >> "$cluster/data/postgresql.conf"
"$SCRIPTS/cluster.sh" start "$cluster" "$port"
check "preloaded: the postmaster loaded the model" 1 "$(grep -c 'uhok_embed: preloaded' "$cluster/server.log")"
run_round "preloaded"
exit $fail
