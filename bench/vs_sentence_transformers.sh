#!/usr/bin/env bash
# uhok_embed against the references it replaces, in one run, one compute thread everywhere:
#   - sentence-transformers (torch CPU, from PyPI) in process, on the same model folders:
#     load time, one short Korean query, the demo's 350 names at its best batch size;
#   - uhok_embed's forward pass in process (examples/latency.rs) and inside PostgreSQL, in fp32
#     and, opt-in, in bf16 (with its worst cosine to the fp32 vectors);
#   - end to end from a client over loopback: the old path (FastAPI /v1/embed with
#     sentence-transformers, then the SQL with the vector as a parameter) against uhok_embed
#     inline, both an HNSW top 25 over BENCH_SEARCH_ROWS rows (default 100,000; random vectors,
#     the search cost does not depend on what they mean).
#
# usage: bench/vs_sentence_transformers.sh        (installs torch + sentence-transformers, ~3 GB)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$root/scripts/common.sh"
cd "$root"
rows=${BENCH_SEARCH_ROWS:-100000}
queries=${BENCH_QUERIES:-300}
venv=$UHOK_CACHE/bench-venv
models=$PG_SHAREDIR/uhok_embed/models

"$root/scripts/install-deps.sh" >/dev/null
"$root/scripts/install-models.sh" >/dev/null
"$root/scripts/build-extension.sh" >/dev/null 2>&1
ensure_bench_venv
cargo build -q --release -p embed-core --example latency
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 RAYON_NUM_THREADS=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

port=${UHOK_BENCH_PORT:-54333}
throwaway_cluster bench "$port"
psql=(psql -X -q -At -v ON_ERROR_STOP=1 -h "$cluster" -p "$port" -U postgres -d postgres)
"${psql[@]}" -c "CREATE EXTENSION uhok_embed CASCADE" 2>/dev/null
"${psql[@]}" -c "CREATE TABLE bench_names (name text)" -c "\\copy bench_names FROM 'demo/recipes.txt'"

server_p50() {  # server_p50 MODEL [PRECISION] -> "p50 p95" of uhok_embed('갈비탕') in the server, ms
    PGOPTIONS="-c uhok_embed.model_path=\$sharedir/uhok_embed/models/$1 -c uhok_embed.cache_size=0 -c uhok_embed.precision=${2:-fp32}" \
        "${psql[@]}" -f "$here/query_latency.sql" 2>&1 | sed 's/^.*NOTICE: *//'
}
server_batch() {  # server_batch MODEL [PRECISION] -> names/s of uhok_embed_batch over the 350 names
    PGOPTIONS="-c uhok_embed.model_path=\$sharedir/uhok_embed/models/$1 -c uhok_embed.cache_size=0 -c uhok_embed.precision=${2:-fp32}" \
        "${psql[@]}" -f "$here/batch_throughput.sql" 2>&1 | sed 's/^.*NOTICE: *//'
}
json() { "$venv/bin/python" -c "import json,sys; print(json.loads(sys.argv[1])$2)" "$1"; }

echo "uhok_embed vs sentence-transformers $("$venv/bin/python" -c 'import sentence_transformers as s, torch as t; print(s.__version__, "/ torch", t.__version__)')"
echo "$(machine_line); one thread everywhere"
echo
echo "| model | measure | uhok_embed | sentence-transformers | ratio |"
echo "|---|---|---|---|---|"
for model in all-MiniLM-L6-v2 multilingual-e5-small-fixture; do
    st=$("$venv/bin/python" "$here/reference.py" st "$models/$model")
    latency=$(cargo run -q --release -p embed-core --example latency -- "$models/$model" 200 tsv)
    read -r _ load p50 p95 per_s _ < <(grep -P '^fast\t' <<<"$latency")
    read -r _ _ _ _ _ bf16_cos < <(grep -P '^fast-bf16\t' <<<"$latency")
    read -r sp50 sp95 < <(server_p50 "$model")
    read -r sbatch < <(server_batch "$model")
    read -r bp50 bp95 < <(server_p50 "$model" bf16)
    read -r bbatch < <(server_batch "$model" bf16)
    st_p50=$(json "$st" "['p50_ms']"); st_p95=$(json "$st" "['p95_ms']")
    st_batch=$(json "$st" "['batch_per_s']"); st_load=$(json "$st" "['load_ms']")
    st_size=$(json "$st" "['best_batch_size']")
    awk -v m="$model" -v a="$p50" -v b="$p95" -v s="$sp50" -v t="$sp95" -v c="$st_p50" -v d="$st_p95" \
        -v x="$per_s" -v y="$st_batch" -v l="$load" -v k="$st_load" -v z="$sbatch" -v n="$st_size" \
        -v e="$bp50" -v f="$bp95" -v g="$bbatch" -v h="$bf16_cos" 'BEGIN {
        printf "| %s | one query (\x27갈비탕\x27), p50 / p95 ms, in process | %.2f / %.2f | %.2f / %.2f | %.1fx |\n", m, a, b, c, d, c / a
        printf "| %s | the same inside PostgreSQL (SELECT uhok_embed) | %.2f / %.2f | | %.1fx |\n", m, s, t, c / s
        printf "| %s | 350 names in batches, texts/s (uhok_embed: 32; sentence-transformers: its best of 8-128, %d) | %.0f | %.0f | %.1fx |\n", m, n, x, y, x / y
        printf "| %s | the same inside PostgreSQL (SELECT uhok_embed_batch) | %.0f | | %.1fx |\n", m, z, z / y
        printf "| %s | load, ms | %.0f | %.0f | %.1fx |\n", m, l, k, k / l
        printf "| %s | opt-in uhok_embed.precision = bf16: one query inside PostgreSQL, p50 / p95 ms | %.2f / %.2f | %.2f / %.2f | %.1fx |\n", m, e, f, c, d, c / e
        printf "| %s | bf16: uhok_embed_batch inside PostgreSQL, texts/s | %.0f | %.0f | %.1fx |\n", m, g, y, g / y
        printf "| %s | bf16: worst cosine to the fp32 vectors over the 350 names | %s | | |\n", m, h }'
done

# End to end: the old HTTP path against uhok_embed inline, same SQL, same index.
"${psql[@]}" >/dev/null <<SQL
CREATE TABLE search_bench (id bigint PRIMARY KEY, v vector(384));
INSERT INTO search_bench SELECT g, (SELECT array_agg(random() - 0.5)::vector(384) FROM generate_series(1, 384) WHERE g > 0)
FROM generate_series(1, $rows) g;
SET maintenance_work_mem = '1GB';
CREATE INDEX ON search_bench USING hnsw (v vector_l2_ops);
ANALYZE search_bench;
SQL
http_port=$((port + 1))
"$venv/bin/python" "$here/reference.py" http "$models/multilingual-e5-small-fixture" "$http_port" &
http_pid=$!
trap 'kill $http_pid 2>/dev/null; "$SCRIPTS/cluster.sh" stop "$cluster"; rm -rf "$cluster"' EXIT
for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$http_port/health" >/dev/null 2>&1 && break
    sleep 1
done
e2e=$("$venv/bin/python" "$here/reference.py" e2e \
    "host=$cluster port=$port user=postgres dbname=postgres options='-c uhok_embed.model_path=\$sharedir/uhok_embed/models/multilingual-e5-small-fixture -c uhok_embed.cache_size=0'" \
    "http://127.0.0.1:$http_port/v1/embed" "$queries")
awk -v r="$rows" -v q="$queries" -v a="$(json "$e2e" "['inline']['p50_ms']")" -v b="$(json "$e2e" "['inline']['p95_ms']")" \
    -v c="$(json "$e2e" "['http']['p50_ms']")" -v d="$(json "$e2e" "['http']['p95_ms']")" 'BEGIN {
    printf "| multilingual-e5-small-fixture | search from a client, HNSW top 25 of %d rows, %d queries, p50 / p95 ms | %.2f / %.2f (uhok_embed inline) | %.2f / %.2f (FastAPI /v1/embed, then SQL) | p95 %.1fx |\n", r, q, a, b, c, d, d / b }'
