#!/usr/bin/env bash
# shared_preload_libraries = 'uhok_embed': the postmaster loads the model once and every new
# connection starts with it loaded; a model that cannot be loaded, or a panic while loading it
# (a fault injected through UHOK_EMBED_FAULT), only warns, and the server still starts and serves.
#
# usage: preload.sh PORT   (uhok_embed and the test models installed)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../scripts/common.sh"
port=${1:?port}
throwaway_cluster preload "$port"
psql=(psql -X -q -At -v ON_ERROR_STOP=1 -h "$cluster" -p "$port" -U postgres -d postgres)
"${psql[@]}" -c "CREATE EXTENSION uhok_embed CASCADE" 2>/dev/null
"$here/../scripts/cluster.sh" stop "$cluster"
echo "shared_preload_libraries = 'uhok_embed'" >> "$cluster/data/postgresql.conf"
"$here/../scripts/cluster.sh" start "$cluster" "$port"

. "$here/lib.sh"
check "the postmaster logged the preload" 1 "$(grep -c 'uhok_embed: preloaded' "$cluster/server.log")"
check "a new connection has the model before its first call" "ok true" \
    "$("${psql[@]}" -c "SELECT (uhok_embed_info(load => false)->>'status') || ' ' || (uhok_embed_info(load => false)->>'loaded')")"
check "and embeds" 384 "$("${psql[@]}" -c "SELECT vector_dims(uhok_embed('갈비탕'))")"
check "a session can still switch models" "all-MiniLM-L6-v2" \
    "$("${psql[@]}" -c "SET uhok_embed.model_path = '\$sharedir/uhok_embed/models/all-MiniLM-L6-v2'" -c "SELECT uhok_embed_info()->>'model'")"

"$here/../scripts/cluster.sh" stop "$cluster"
echo "uhok_embed.model_path = '/nonexistent'" >> "$cluster/data/postgresql.conf"
"$here/../scripts/cluster.sh" start "$cluster" "$port"
check "a bad model path only warns at startup" 1 "$(grep -c 'could not preload the model' "$cluster/server.log")"
check "the server serves, and uhok_embed() gives the usual ERROR" 58P01 \
    "$("${psql[@]}" -v ON_ERROR_STOP=0 -c "\\set VERBOSITY sqlstate" -c "SELECT uhok_embed('x')" 2>&1 | grep -o '58P01' | head -n1)"

"$here/../scripts/cluster.sh" stop "$cluster"
echo "uhok_embed.model_path = '\$sharedir/uhok_embed/models/multilingual-e5-small-fixture'" >> "$cluster/data/postgresql.conf"
started=yes
UHOK_EMBED_FAULT=preload_panic "$here/../scripts/cluster.sh" start "$cluster" "$port" || started=no
check "a panic while preloading only warns: the server starts" "yes 1" \
    "$started $(grep -c 'could not preload the model: it panicked while loading' "$cluster/server.log")"
check "and backends load the model on first use" 384 \
    "$("${psql[@]}" -c "SELECT vector_dims(uhok_embed('갈비탕'))" 2>&1)"
exit $fail
