#!/usr/bin/env bash
# Builds uhok_embed and installs it into the PostgreSQL that $PG_CONFIG names.
#   build-extension.sh           dev profile (dependencies optimised; what tests and the demo use)
#   build-extension.sh --release release profile (the Docker image)
# pgrx generates only the current version's install script; the released scripts in sql/
# (older versions' install scripts, frozen, and the update scripts) are installed beside it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
cd "$(dirname "$here")"
cargo pgrx install --pg-config "$PG_CONFIG" "$@"
cp sql/uhok_embed--*.sql "$("$PG_CONFIG" --sharedir)/extension/"
