#!/usr/bin/env bash
# Fuzzes embed-core's model-folder readers and tokenizer with cargo fuzz (libFuzzer), each target
# for a set time, and reports executions and findings:
#   weights         model.safetensors: header, shapes, alignment, then a forward pass (tiny model)
#   tokenizer_json  tokenizer.json: the compact Unigram reader and tokenizers' own (WordPiece...)
#   config_file     config.json, sentence_bert_config.json, modules.json, 1_Pooling, prompts
#   tokenize        any text: the prefix tokenization equals tokenizing the whole text (both models)
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET [TARGET...]]   (default 1800 s each, all targets)
#
# Inputs that made a target fail are kept in crates/embed-core/fuzz/artifacts/TARGET/; copy them
# to crates/embed-core/tests/fuzz_regressions/TARGET/ so that `cargo test` replays them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/common.sh"
seconds=${1:-1800}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(weights tokenizer_json config_file tokenize)
fuzz=$root/crates/embed-core/fuzz
export UHOK_EMBED_TEST_MODELS=${UHOK_EMBED_TEST_MODELS:-$PG_SHAREDIR/uhok_embed/models}
# cargo fuzz needs nightly flags (-Z sanitizer); the stable toolchain accepts them with this.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-/var/tmp/uhok_embed-fuzz-target}

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.1 --locked
python3 "$fuzz/make_seeds.py" "$fuzz/seeds"
(cd "$root/crates/embed-core" && cargo fuzz build -O >/dev/null 2>&1 || cargo fuzz build -O)

echo "| target | seconds | executions | findings |"
echo "|---|---|---|---|"
status=0
for t in "${targets[@]}"; do
    mkdir -p "$fuzz/corpus/$t" "$fuzz/artifacts/$t"
    log=$(mktemp)
    (cd "$root/crates/embed-core" && cargo fuzz run -O "$t" "$fuzz/corpus/$t" "$fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=65536 -timeout=30 \
        -artifact_prefix="$fuzz/artifacts/$t/" -print_final_stats=1) > "$log" 2>&1 || status=1
    runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
    found=$(find "$fuzz/artifacts/$t" -type f | wc -l)
    echo "| $t | $seconds | $runs | $found |"
    [ "$found" = 0 ] || { status=1; grep -E 'ERROR|panicked' "$log" | head -n 5 >&2; }
    rm -f "$log"
done
exit $status
