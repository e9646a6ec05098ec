#!/usr/bin/env bash
# The seed's load test (its step 9): N clients for T seconds of searches plus a share of inserts
# and updates, through uhok_embed in the database and through the HTTP path it replaces (the
# FastAPI /v1/embed service with sentence-transformers, started here on loopback, then pgvector),
# in the same run, alternating (bench/load.py says how). Prints throughput, the searches' and
# writes' p50/p95/p99 and the error rate of each, with the conditions.
#
# usage: bench/load.sh [CLIENTS [SECONDS [WRITE_SHARE]]]   (default 8 clients, 60 s, 0.1)
# BENCH_CACHE_SIZE=N sets uhok_embed.cache_size (default 0: off, as the HTTP service has no cache).
# The model is the default one (the product model where installed, else the stand-in) in the
# database and in the HTTP service alike; one compute thread each (uhok_embed.threads = 1,
# torch.set_num_threads(1)).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$root/scripts/common.sh"
cd "$root"
clients=${1:-8}
seconds=${2:-60}
write_share=${3:-0.1}

"$root/scripts/install-deps.sh" >/dev/null
"$root/scripts/install-models.sh" >/dev/null 2>&1
"$root/scripts/build-extension.sh" >/dev/null 2>&1
ensure_bench_venv
venv=$BENCH_VENV
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

port=${UHOK_BENCH_PORT:-54339}
# Room for the clients of both paths and the maintenance connections, set before the start
# (scripts/cluster.sh appends UHOK_CLUSTER_CONF to a new cluster's postgresql.conf).
UHOK_CLUSTER_CONF="max_connections = $((clients * 2 + 20))" throwaway_cluster load "$port"
psql=(psql -X -q -At -v ON_ERROR_STOP=1 -h "$cluster" -p "$port" -U postgres -d postgres)
"${psql[@]}" >/dev/null <<'SQL'
CREATE EXTENSION uhok_embed CASCADE;
ALTER SYSTEM SET uhok_embed.threads = 1;  -- (known once the extension's library is loaded)
SELECT pg_reload_conf();
\i sql/recipe_schema.sql
\i demo/load.sql
-- The HTTP path's table: the same rows, vectors and index, no triggers (its writes bring the
-- service's vectors).
CREATE TABLE "RECIPE_VECTOR_TABLE_HTTP" (LIKE "RECIPE_VECTOR_TABLE" INCLUDING ALL);
INSERT INTO "RECIPE_VECTOR_TABLE_HTTP" SELECT * FROM "RECIPE_VECTOR_TABLE";
VACUUM ANALYZE;
SQL
# The query cache off unless asked: the HTTP service has none, and the load repeats 350 names,
# so with it most searches would skip the model.
"${psql[@]}" -c "LOAD 'uhok_embed'" -c "ALTER SYSTEM SET uhok_embed.cache_size = ${BENCH_CACHE_SIZE:-0}" -c "SELECT pg_reload_conf()" >/dev/null
model_dir=$("${psql[@]}" -c "SELECT uhok_embed_info()->>'model_dir'")

http_port=$((port + 1))
"$venv/bin/python" "$here/reference.py" http "$model_dir" "$http_port" &
http_pid=$!
trap 'kill $http_pid 2>/dev/null; "$SCRIPTS/cluster.sh" stop "$cluster"; rm -rf "$cluster"' EXIT
for _ in $(seq 300); do
    "$venv/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$http_port/health', timeout=1)" 2>/dev/null && break
    sleep 0.2
done

result=$("$venv/bin/python" "$here/load.py" "host=$cluster port=$port user=postgres dbname=postgres" \
    "http://127.0.0.1:$http_port/v1/embed" "$clients" "$seconds" "$write_share")
info=$("${psql[@]}" -c "SELECT (i->>'model') || ' (' || (i->>'layers') || ' layers), threads ' || (i->>'threads') || ', query cache ' || (i->'cache'->>'size') FROM uhok_embed_info() i")
echo "uhok_embed under load: $clients clients, ${seconds} s per path (two rounds each, alternating), ${write_share} of operations writes"
echo "model: $info; the HTTP service: the same folder in sentence-transformers $("$venv/bin/python" -c 'import sentence_transformers as s; print(s.__version__)'), torch 1 thread, uvicorn 1 worker"
machine_line
echo "server: $("$PG_BINDIR/postgres" --version), 350 recipes + the writes, HNSW index"
echo
"$venv/bin/python" - "$result" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
fmt = lambda v: "-" if v is None else f"{v:.1f}"
print(f"| {'path':<40} | {'ops/s':>7} | {'search p50 / p95 / p99 ms':>27} | {'write p50 / p95 / p99 ms':>27} | {'errors':>8} |")
print(f"|{'-' * 42}|{'-' * 9}|{'-' * 29}|{'-' * 29}|{'-' * 10}|")
for path, label in (("in_db", "uhok_embed in the database"), ("http", "HTTP /v1/embed + pgvector (the old path)")):
    x = r[path]
    s = " / ".join(fmt(v) for v in x["search_ms"]); w = " / ".join(fmt(v) for v in x["write_ms"])
    print(f"| {label:<40} | {x['ops_per_s']:>7.1f} | {s:>27} | {w:>27} | {x['error_rate'] * 100:>7.2f}% |")
a, b = r["in_db"], r["http"]
print()
print(f"throughput: {a['ops_per_s'] / b['ops_per_s']:.2f}x the HTTP path's; search p95: {b['search_ms'][1] / a['search_ms'][1]:.2f}x lower"
      f" ({a['searches']} and {b['searches']} searches, {a['writes']} and {b['writes']} writes, {a['errors']} and {b['errors']} errors)")
PY
