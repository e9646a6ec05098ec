#!/usr/bin/env bash
# No allocation failure aborts the server (issue 23.3): under a shrinking address-space limit per
# process (`ulimit -v`, much as vm.overcommit_memory=2 limits a server), the worst
# inputs either embed or fail with ERROR 53200; no backend dies of a signal and the cluster never
# resets.
#
#   tests/address_space.sh PORT
#
# On a cluster of its own, started again under each limit. The model is all-MiniLM-L6-v2 cut to
# its first layer (config.json's num_hidden_layers = 1), so that 100,000 texts take seconds, not
# minutes; memory per text and per pass is the full model's. The inputs: uhok_embed_batch of
# 100,000 empty texts, of 256 texts of 512+ tokens (batch_size 4096), and uhok_embed of one
# 300 MB text (PostgreSQL's own copies of it may be what runs out first: that is 53200 too).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../scripts/common.sh"
port=${1:?usage: tests/address_space.sh PORT}
models=$PG_SHAREDIR/uhok_embed/models

work=$(mktemp -d /tmp/uhok_embed_address_space.XXXX)
cluster=$work/cluster
trap '"$SCRIPTS/cluster.sh" stop "$cluster"; [ -n "${UHOK_KEEP:-}" ] || rm -rf "$work"' EXIT
m=$work/one-layer
cp -rL "$models/all-MiniLM-L6-v2" "$m"
sed -i 's/"num_hidden_layers": *[0-9]*/"num_hidden_layers": 1/' "$m/config.json"
chmod -R a+rX "$work"
"$SCRIPTS/cluster.sh" start "$cluster" "$port"
echo "uhok_embed.model_path = '$m'" >> "$cluster/data/postgresql.conf"
psql_do() { psql -X -q -At -v ON_ERROR_STOP=0 -v VERBOSITY=sqlstate -h "$cluster" -p "$port" -U postgres -d postgres "$@" 2>&1; }
"$SCRIPTS/cluster.sh" stop "$cluster"
"$SCRIPTS/cluster.sh" start "$cluster" "$port"
psql_do -c "CREATE EXTENSION uhok_embed CASCADE" >/dev/null
# The snapshot store is filled without a limit: copying is not what is tested here.
psql_do -c "SELECT uhok_embed_info()->>'status'" >/dev/null
"$SCRIPTS/cluster.sh" stop "$cluster"

fail=0 started=0 embedded=0
whats=("100,000 empty texts" "256 texts of 512+ tokens, batch_size 4096" "one 300 MB text")
sqls=("SELECT cardinality(uhok_embed_batch(array_fill(''::text, ARRAY[100000])))"
      "SET uhok_embed.batch_size = 4096; SELECT cardinality(uhok_embed_batch(ARRAY(SELECT repeat('kimchi stew ', 300) || g FROM generate_series(1, 256) g)))"
      "SELECT vector_dims(uhok_embed(repeat('kimchi ', 50000000)))")
successes=(100000 256 384)
for mb in ${UHOK_LIMITS_MB:-3072 1024 896 640 448 384 320 256}; do
    # The postmaster and every backend inherit the limit.
    if ! (ulimit -v $((mb * 1024)) && "$SCRIPTS/cluster.sh" start "$cluster" "$port") 2>/dev/null; then
        echo "  $mb MB: the server does not start under this limit (below PostgreSQL's own needs)"
        continue
    fi
    started=$((started + 1))
    line="  $mb MB:"
    for i in 0 1 2; do
        got=$(psql_do -c "${sqls[$i]}" | tail -n 1 || true)
        case "$got" in
            "${successes[$i]}") line+=" ${whats[$i]}: embeds;"; embedded=$((embedded + 1)) ;;
            "ERROR:  53200") line+=" ${whats[$i]}: 53200;" ;;
            *) line+=" ${whats[$i]}: UNEXPECTED '$got';"; fail=1 ;;
        esac
    done
    echo "$line"
    "$SCRIPTS/cluster.sh" stop "$cluster"
done
# Not vacuous: the server started under some limits, and the largest one embeds everything.
if [ "$started" -lt 4 ] || [ "$embedded" -lt 3 ]; then
    echo "  FAILED: only $started limits started the server and $embedded inputs embedded in all"
    fail=1
fi
aborts=$(grep -cE 'terminated by signal|memory allocation of [0-9]+ bytes failed|server process \(PID [0-9]+\) (was terminated|exited)' "$cluster/server.log" || true)
if [ "$aborts" != 0 ]; then
    echo "  FAILED: $aborts backend crashes:"
    grep -E 'terminated by signal|memory allocation of|server process \(PID' "$cluster/server.log" | head -n 5 | sed 's/^/    /'
    fail=1
else
    echo "  ok: every input embedded or failed with 53200 under every limit; no backend crashed"
fi
[ "$fail" = 0 ] && echo "ok: tests/address_space.sh"
exit $fail
