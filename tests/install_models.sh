#!/usr/bin/env bash
# scripts/install-models.sh chooses the default model as the README says, and says why (issue 17).
#
#   tests/install_models.sh
#
# Into scratch DESTs, with the two test models already there (copied from the installed ones),
# and a fake Hugging Face hub on loopback (HF_ENDPOINT) that serves all-MiniLM-L6-v2's files under
# the product model's name, so the download runs for real without the hub:
#   - hub unreachable, no default yet: the stand-in becomes the default, and the script says why
#     and how to get the product model; a hub that serves config.json but fails the weights: the
#     same, and no partial download is left;
#   - hub reachable: the product model is downloaded (the files the hub served) and replaces the
#     stand-in the first run chose;
#   - --no-hub (what scripts/test.sh runs) never changes a working default, not even the stand-in
#     where the product model is installed; an unreachable hub keeps the default too;
#   - --from FOLDER copies what uhok_embed reads and makes it the default, and later runs keep it;
#     a hub cache snapshot is named after its model; a folder missing a file, or holding a Git
#     LFS pointer, is refused, naming the file, and changes nothing;
#   - --default NAME switches, and later runs keep it, even the stand-in; --hub-only without
#     the hub fails with the reason;
#   - without DEST (issue 26), into the store ($UHOK_MODEL_STORE) with each major's
#     $sharedir/uhok_embed linked to it, through a fake pg_config per major: a share folder left
#     by an earlier version is moved in, default and choice included; a second major is linked
#     with --link; a model whose name the store already has stays behind, renamed, and is said;
#     a share link to elsewhere is refused and left alone.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../scripts/common.sh"
# The fake hub is on loopback: no proxy in between.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY
export no_proxy=127.0.0.1,localhost
installed=$PG_SHAREDIR/uhok_embed/models
work=$(mktemp -d /tmp/uhok_embed_install_models.XXXX)
hub_pid=
trap '[ -n "$hub_pid" ] && kill "$hub_pid" 2>/dev/null; rm -rf "$work"' EXIT

served=$work/hub/sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2/resolve/main
mkdir -p "$served"
cp -r "$installed/all-MiniLM-L6-v2/." "$served/"
# A second fake hub with config.json alone: reachable, but the download fails (404).
mkdir -p "$work/hub/broken/sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2/resolve/main"
cp "$served/config.json" "$work/hub/broken/sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2/resolve/main/"
hub_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$hub_port" --bind 127.0.0.1 --directory "$work/hub" >"$work/hub.log" 2>&1 &
hub_pid=$!
for _ in $(seq 50); do python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$hub_port/', timeout=1)" 2>/dev/null && break; sleep 0.1; done
hub=http://127.0.0.1:$hub_port
broken_hub=http://127.0.0.1:$hub_port/broken
no_hub=http://127.0.0.1:9   # the discard port: connection refused

. "$here/lib.sh"
contains() {  # contains DESCRIPTION TEXT PATTERN
    if grep -q -- "$3" <<< "$2"; then echo "  ok: $1"; else
        echo "  FAILED: $1: no '$3' in:"; sed 's/^/    /' <<< "$2"; fail=1; fi
}
new_dest() {  # a DEST with the test models and no default
    dest=$work/dest$1
    mkdir -p "$dest/models"
    cp -r "$installed/all-MiniLM-L6-v2" "$installed/multilingual-e5-small-fixture" "$dest/models/"
}
default() { basename "$(readlink "$dest/model")"; }
install() { "$here/../scripts/install-models.sh" "$@" "$dest" 2>&1; }

new_dest 1
out=$(HF_ENDPOINT=$broken_hub install)
check "a failed download: the stand-in is the default" multilingual-e5-small-fixture "$(default)"
contains "... the script says why" "$out" "the download from the hub ($broken_hub) failed: could not download tokenizer.json: HTTP Error 404"
check "... and leaves no partial download" "" "$(ls -A "$dest/models" | grep '^\.' || true)"

new_dest 2
out=$(HF_ENDPOINT=$no_hub install)
check "no hub, no default: the stand-in is the default" multilingual-e5-small-fixture "$(default)"
contains "... and the script says why" "$out" "the hub ($no_hub) is not reachable: .*refused"
contains "... loudly" "$out" "STAND-IN"
contains "... and how to install the product model without the hub" "$out" "install-models.sh --from"

out=$(HF_ENDPOINT=$hub install)
check "hub reachable: the product model replaces the stand-in" paraphrase-multilingual-MiniLM-L12-v2 "$(default)"
check "... its files are what the hub served" "" \
    "$(diff -r "$served" "$dest/models/paraphrase-multilingual-MiniLM-L12-v2" | grep -v "^Only in $served" || true)"
contains "... and the script says so" "$out" "default model: paraphrase-multilingual-MiniLM-L12-v2"

install --no-hub >/dev/null
check "--no-hub (the tests' run) keeps the product model the default" paraphrase-multilingual-MiniLM-L12-v2 "$(default)"
out=$(HF_ENDPOINT=$no_hub install)
check "an unreachable hub keeps it too" paraphrase-multilingual-MiniLM-L12-v2 "$(default)"
contains "... and says it was kept" "$out" "kept: it was the default before this run"

install --default multilingual-e5-small-fixture >/dev/null
check "--default switches, to the stand-in too" multilingual-e5-small-fixture "$(default)"
HF_ENDPOINT=$hub install >/dev/null
check "... and a later run keeps the DBA's choice" multilingual-e5-small-fixture "$(default)"
status=0; install --default no-such-model >/dev/null || status=$?
check "--default of a model that is not installed fails and keeps the default" "1 multilingual-e5-small-fixture" "$status $(default)"

new_dest 3
mkdir -p "$dest/models/paraphrase-multilingual-MiniLM-L12-v2"
cp -r "$installed/all-MiniLM-L6-v2/." "$dest/models/paraphrase-multilingual-MiniLM-L12-v2/"
ln -s models/multilingual-e5-small-fixture "$dest/model"
install --no-hub >/dev/null
check "--no-hub never switches a working default, even the stand-in with the product model there" \
    multilingual-e5-small-fixture "$(default)"
ln -sfn models/gone "$dest/model"
install --no-hub >/dev/null
check "a link that points nowhere is replaced" multilingual-e5-small-fixture "$(default)"

mkdir -p "$work/elsewhere"
cp -r "$installed/all-MiniLM-L6-v2" "$work/elsewhere/my-model"
out=$(install --from "$work/elsewhere/my-model")
check "--from copies the folder and makes it the default" my-model "$(default)"
check "... only the files uhok_embed reads" \
    "1_Pooling config.json config_sentence_transformers.json model.safetensors modules.json sentence_bert_config.json tokenizer.json" \
    "$(ls "$dest/models/my-model" | xargs)"
check "... each as it was" "" "$(cd "$dest/models/my-model" && for f in */* *; do [ -f "$f" ] && cmp -s "$f" "$work/elsewhere/my-model/$f" || [ -d "$f" ] || echo "$f"; done)"
HF_ENDPOINT=$hub install >/dev/null
check "a later run with the hub keeps the DBA's choice" my-model "$(default)"

# A hub cache: snapshots/<revision>/ holds symlinks into blobs/.
cache=$work/hf/models--sentence-transformers--cached-model
mkdir -p "$cache/blobs" "$cache/snapshots/0123456789abcdef0123456789abcdef01234567/1_Pooling"
for f in config.json tokenizer.json model.safetensors sentence_bert_config.json modules.json 1_Pooling/config.json; do
    blob=$cache/blobs/$(sha256sum "$installed/all-MiniLM-L6-v2/$f" | cut -c1-64)
    cp "$installed/all-MiniLM-L6-v2/$f" "$blob"
    ln -s "$blob" "$cache/snapshots/0123456789abcdef0123456789abcdef01234567/$f"
done
install --from "$cache/snapshots/0123456789abcdef0123456789abcdef01234567" >/dev/null
check "--from a hub cache snapshot: named after its model, links followed" "cached-model no" \
    "$(default) $([ -L "$dest/models/cached-model/model.safetensors" ] && echo yes || echo no)"

cp -r "$installed/all-MiniLM-L6-v2" "$work/elsewhere/broken"
rm "$work/elsewhere/broken/tokenizer.json"
status=0; out=$(install --from "$work/elsewhere/broken") || status=$?
check "--from a folder without tokenizer.json fails" 1 "$status"
contains "... naming the file" "$out" "tokenizer.json is missing"
check "... and changes nothing" "cached-model no" "$(default) $([ -e "$dest/models/broken" ] && echo yes || echo no)"
cp -r "$installed/all-MiniLM-L6-v2" "$work/elsewhere/lfs"
printf 'version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 470000000\n' > "$work/elsewhere/lfs/model.safetensors"
status=0; out=$(install --from "$work/elsewhere/lfs") || status=$?
check "--from a git clone without git-lfs fails" "1 cached-model" "$status $(default)"
contains "... saying so" "$out" "model.safetensors is a Git LFS pointer"

new_dest 4
status=0; out=$(HF_ENDPOINT=$no_hub install --hub-only) || status=$?
check "--hub-only without the hub fails" 1 "$status"
contains "... with the reason" "$out" "is not reachable: .*refused"

# --- one store for every major (issue 26) ---
store=$work/store
fake_major() {  # fake_major N: a pg_config whose share directory is $work/share-N
    mkdir -p "$work/share-$1"
    printf '#!/bin/sh\ncase "$1" in --sharedir) echo %s ;; --bindir) echo /nonexistent ;; --version) echo "PostgreSQL %s.0" ;; esac\n' \
        "$work/share-$1" "$1" > "$work/pg_config-$1"
    chmod +x "$work/pg_config-$1"
}
in_store() { PG_CONFIG=$work/pg_config-$1 UHOK_MODEL_STORE=$store "$here/../scripts/install-models.sh" "${@:2}" 2>&1; }
fake_major 15
dest=$work/share-15/uhok_embed   # what an earlier version installed: a folder of its own
mkdir -p "$dest/models"
cp -r "$installed/all-MiniLM-L6-v2" "$installed/multilingual-e5-small-fixture" "$dest/models/"
ln -s models/all-MiniLM-L6-v2 "$dest/model"
touch "$dest/.chosen"
out=$(in_store 15 --no-hub)
check "no DEST: the share folder becomes a link to the store" "$store" "$(readlink "$work/share-15/uhok_embed")"
check "... its models moved in" "all-MiniLM-L6-v2 multilingual-e5-small-fixture" "$(ls "$store/models" | xargs)"
check "... its default and the DBA's choice with them" "models/all-MiniLM-L6-v2 yes" \
    "$(readlink "$store/model") $([ -e "$store/.chosen" ] && echo yes)"
check "... and nothing left behind" "" "$(ls -d "$work/share-15"/uhok_embed.* 2>/dev/null || true)"
check "... the model still found at the default path" "$(cat "$installed/all-MiniLM-L6-v2/config.json")" \
    "$(cat "$work/share-15/uhok_embed/model/config.json")"
fake_major 18
out=$(in_store 18 --link)
check "--link: a second major's share dir is linked to the same store" "$store" "$(readlink "$work/share-18/uhok_embed")"
contains "... and says which default it finds" "$out" "default model: all-MiniLM-L6-v2"
fake_major 16
mkdir -p "$work/share-16/uhok_embed/models/all-MiniLM-L6-v2" "$work/share-16/uhok_embed/models/other"
echo different > "$work/share-16/uhok_embed/models/all-MiniLM-L6-v2/config.json"
echo other > "$work/share-16/uhok_embed/models/other/config.json"
out=$(in_store 16 --link)
check "a share folder whose model name the store has: the store's copy is kept" \
    "$(cat "$installed/all-MiniLM-L6-v2/config.json") other" \
    "$(cat "$store/models/all-MiniLM-L6-v2/config.json") $(cat "$store/models/other/config.json")"
check "... the other one stays behind, renamed" different \
    "$(cat "$work/share-16/uhok_embed.before-store/models/all-MiniLM-L6-v2/config.json")"
contains "... and the script says where" "$out" "left in $work/share-16/uhok_embed.before-store"
fake_major 17
ln -s "$work/elsewhere" "$work/share-17/uhok_embed"
status=0; out=$(in_store 17 --link) || status=$?
check "a share link to another folder is refused and kept" "1 $work/elsewhere" "$status $(readlink "$work/share-17/uhok_embed")"
contains "... saying why" "$out" "is a link to $work/elsewhere, not to $store"

exit $fail
