#!/usr/bin/env bash
# Installs everything uhok_embed needs to build and test on Debian bookworm (run as root).
# Idempotent: each step is skipped when its result is already there, so the demo, the tests
# and the Dockerfile can all call it.
#
#   PostgreSQL 15 + server headers (unless PG_CONFIG names another server, whose headers must be
#   there), clang (bindgen), pgvector (built from Debian trixie's source package for $PG_CONFIG's
#   server when it has none: bookworm has none), cargo-pgrx 0.18.1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

log() { printf '==> %s\n' "$*" >&2; }

# --- Debian packages ---------------------------------------------------------------------------
pkgs=(libclang-dev clang pkg-config build-essential dpkg-dev xz-utils unzip ca-certificates python3-venv)
# Debian's PostgreSQL 15 only where it is the server to build for (the default): on a server of
# another major (docs/runbooks.md), its own headers are used and no second server is installed.
if [ "$PG_CONFIG" = /usr/lib/postgresql/15/bin/pg_config ]; then
    pkgs+=(postgresql-15 postgresql-server-dev-15)
fi
need_pkgs=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "apt-get install ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
# Debian's postgresql package starts a cluster of its own on 5432; we never use it.
if [ ! -f "$("$PG_CONFIG" --includedir-server 2>/dev/null)/postgres.h" ]; then
    echo "install-deps.sh: $PG_CONFIG has no server headers: install them (Debian and PGDG: postgresql-server-dev-$PG_MAJOR)" >&2
    exit 1
fi

# --- pgvector ----------------------------------------------------------------------------------
if [ ! -f "$("$PG_CONFIG" --pkglibdir)/vector.so" ]; then
    log "building pgvector from Debian trixie's source package"
    work=$(mktemp -d)
    # A private apt configuration: one deb-src line for trixie, same mirror and keyring as the
    # machine's own bookworm entry. The system's sources are not touched.
    uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    key=$(awk '/^Signed-By:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    if [ -z "$uri" ]; then
        uri=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
    fi
    key=${key:-/usr/share/keyrings/debian-archive-keyring.gpg}
    echo "deb-src [signed-by=$key] $uri trixie main" > "$work/trixie.list"
    mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
    apt_opts=(-o "Dir::Etc::sourcelist=$work/trixie.list" -o "Dir::Etc::sourceparts=-"
              -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache")
    apt-get "${apt_opts[@]}" update -qq
    (cd "$work" && apt-get "${apt_opts[@]}" source --download-only pgvector >/dev/null \
        && dpkg-source -x pgvector_*.dsc src >/dev/null \
        && make -C src PG_CONFIG="$PG_CONFIG" -j"$(nproc)" install >/dev/null)
    rm -rf "$work"
fi

# --- cargo-pgrx --------------------------------------------------------------------------------
if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
    log "cargo install cargo-pgrx $PGRX_VERSION"
    # --debug --no-default-features: 1m49s instead of 10m28s on 2 cores, and no libssl; it only
    # drives builds, so its own speed does not matter.
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --debug --no-default-features
fi
# pgrx builds for the majors its config.toml names. `cargo pgrx init --pgNN` rewrites the file
# with only the majors it is given, so a second major is added to it instead.
pgrx_config=${PGRX_HOME:-$HOME/.pgrx}/config.toml
if [ ! -f "$pgrx_config" ]; then
    cargo pgrx init "--pg$PG_MAJOR" "$PG_CONFIG" >/dev/null
elif ! grep -q "^pg$PG_MAJOR = \"$PG_CONFIG\"" "$pgrx_config"; then
    sed -i "/^pg$PG_MAJOR = /d" "$pgrx_config"
    sed -i "/^\[configs\]/a pg$PG_MAJOR = \"$PG_CONFIG\"" "$pgrx_config"
fi

# --- OS user that owns throwaway clusters (PostgreSQL refuses to run as root) ------------------
if [ "$(id -u)" = 0 ] && ! id "$PG_OS_USER" >/dev/null 2>&1; then
    useradd -m "$PG_OS_USER"
fi

log "dependencies ready"
