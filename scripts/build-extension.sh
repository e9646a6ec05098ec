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
# Another major than 15 builds pgrx for its headers: in a target directory of its own, so that
# switching majors does not rebuild the other's (about 9 minutes cold on 2 cores).
if [ "$PG_MAJOR" != 15 ]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}-pg$PG_MAJOR
fi
cargo pgrx install --pg-config "$PG_CONFIG" --no-default-features --features "pg$PG_MAJOR" "$@"
cp sql/uhok_embed--*.sql "$("$PG_CONFIG" --sharedir)/extension/"
# The models live in one folder for every major (install-models.sh): a major installed next to
# one that has them (before pg_upgrade, say) finds them at its default path at once.
if [ -L "$UHOK_MODEL_STORE/model" ] && [ ! -e "$PG_SHAREDIR/uhok_embed" ]; then
    "$here/install-models.sh" --link
fi
