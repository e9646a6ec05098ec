#!/usr/bin/env bash
# Builds broken model folders for the error tests, each one defect away from a good model.
# Files are symlinks to the good model where they are not the defect. The folder is fixed
# (/tmp/uhok_embed_fixtures by default) because the expected output names its paths.
#
# usage: make-bad-models.sh GOOD_MODEL_DIR OUT_DIR
set -euo pipefail
good=${1:?good model folder}
out=${2:?output folder}
rm -rf "$out"
mkdir -p "$out"

clone() {  # clone NAME: a folder of symlinks to the good model
    local d=$out/$1
    mkdir -p "$d/1_Pooling"
    for f in config.json tokenizer.json model.safetensors sentence_bert_config.json modules.json; do
        ln -s "$good/$f" "$d/$f"
    done
    ln -s "$good/1_Pooling/config.json" "$d/1_Pooling/config.json"
    echo "$d"
}

d=$(clone no-tokenizer); rm "$d/tokenizer.json"
d=$(clone no-weights); rm "$d/model.safetensors"
d=$(clone no-pooling); rm "$d/1_Pooling/config.json"
d=$(clone truncated-weights); rm "$d/model.safetensors"
head -c 1000000 "$good/model.safetensors" > "$d/model.safetensors"
# Every tensor of the encoder's feed-forward block now has the wrong shape.
d=$(clone wrong-shapes); rm "$d/config.json"
sed 's/"intermediate_size": *1536/"intermediate_size": 1024/' "$good/config.json" > "$d/config.json"
d=$(clone bad-tokenizer); rm "$d/tokenizer.json"
printf '{"version": "1.0", "model": {"type": "WordPiece", ' > "$d/tokenizer.json"
d=$(clone bad-config); rm "$d/config.json"
printf '{"hidden_size": 384,' > "$d/config.json"
d=$(clone unreadable-config); rm "$d/config.json"
cp "$good/config.json" "$d/config.json"
chmod -R a+rX "$out"
chmod 000 "$d/config.json"
