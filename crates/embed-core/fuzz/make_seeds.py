"""Seed inputs for the fuzz targets (scripts/fuzz.sh): one valid example of each file, so that
the fuzzer starts from inputs that get past the first checks.  usage: make_seeds.py OUT_DIR"""
import json
import os
import struct
import sys

out = sys.argv[1]
for t in ("weights", "tokenizer_json", "config_file", "tokenize"):
    os.makedirs(os.path.join(out, t), exist_ok=True)


def put(target, name, data):
    with open(os.path.join(out, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# The tiny BERT of embed_core::fuzz_api::TINY_CONFIG: hidden 8, 1 layer, FFN 16, vocab 16.
h, i, v, p = 8, 16, 16, 8
shapes = {
    "embeddings.word_embeddings.weight": [v, h],
    "embeddings.position_embeddings.weight": [p, h],
    "embeddings.token_type_embeddings.weight": [1, h],
    "embeddings.LayerNorm.weight": [h],
    "embeddings.LayerNorm.bias": [h],
}
layer = "encoder.layer.0."
for name, out_dim, in_dim in (("attention.self.query", h, h), ("attention.self.key", h, h),
                              ("attention.self.value", h, h), ("attention.output.dense", h, h),
                              ("intermediate.dense", i, h), ("output.dense", h, i)):
    shapes[layer + name + ".weight"] = [out_dim, in_dim]
    shapes[layer + name + ".bias"] = [out_dim]
for name in ("attention.output.LayerNorm", "output.LayerNorm"):
    shapes[layer + name + ".weight"] = [h]
    shapes[layer + name + ".bias"] = [h]
header, data = {}, b""
for name, shape in shapes.items():
    n = 1
    for d in shape:
        n *= d
    values = struct.pack("<%df" % n, *[((k * 37) % 11 - 5) / 10 for k in range(n)])
    header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(values)]}
    data += values
head = json.dumps(header).encode()
head += b" " * (-len(head) % 8)
put("weights", "tiny.safetensors", struct.pack("<Q", len(head)) + head + data)

unigram = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [{"id": 0, "content": "<s>", "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True}],
    "normalizer": {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
    "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
    "post_processor": None, "decoder": None,
    "model": {"type": "Unigram", "unk_id": 1, "byte_fallback": False,
              "vocab": [["<s>", 0.0], ["<unk>", 0.0], ["\u2581", -2.0], ["\u2581\uac08", -3.0], ["\ube44", -4.0],
                        ["\ud0d5", -4.5], ["a", -5.0], ["\"\\", -6.0]]},
}
put("tokenizer_json", "unigram.json", json.dumps(unigram))
wordpiece = {
    "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
    "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                   "strip_accents": None, "lowercase": True},
    "pre_tokenizer": {"type": "BertPreTokenizer"}, "post_processor": None, "decoder": None,
    "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
              "max_input_chars_per_word": 100, "vocab": {"[UNK]": 0, "a": 1, "##b": 2, "kimchi": 3}},
}
put("tokenizer_json", "wordpiece.json", json.dumps(wordpiece))

tiny_config = {"vocab_size": 16, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
               "intermediate_size": 16, "hidden_act": "gelu", "max_position_embeddings": 8}
files = [json.dumps(tiny_config), '{"max_seq_length": 8, "do_lower_case": true}',
         '[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]',
         '{"word_embedding_dimension": 8, "pooling_mode_cls_token": true}',
         '{"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": "query"}']
for k, content in enumerate(files):
    put("config_file", "file%d.json" % k, bytes([k]) + content.encode())

for k, text in enumerate(["\x00갈비탕 김치찌개", "\x05 a b  c\t\u3000d", "\x01supercalifragilistic",
                          "\x02<s>x</s> \u0301e", "\x00" + "ab " * 300]):
    put("tokenize", "text%d" % k, text.encode())
