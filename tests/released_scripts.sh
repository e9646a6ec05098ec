#!/usr/bin/env bash
# A released extension script is never edited: a database that ran it must end up the same as
# one that runs it later. Fails if any script listed in tests/released-scripts.sha256 is missing
# or differs from the hash recorded when it was released.
#
#   tests/released_scripts.sh
#
# Releasing a version: add its install script, if frozen, and the update script to it with
#   sha256sum sql/uhok_embed--X--Y.sql >> tests/released-scripts.sha256
set -euo pipefail
cd "$(dirname "$0")/.."
list=tests/released-scripts.sha256
if sha256sum --check --strict "$list"; then
    echo "ok: tests/released_scripts.sh ($(grep -c . "$list") released scripts unchanged)"
else
    echo "FAILED: tests/released_scripts.sh: a released script was edited (or is missing); add a new update script instead" >&2
    exit 1
fi
