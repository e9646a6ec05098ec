"""A copy of a sentence-transformers model folder whose fp32 weights are stored as fp16 (the
dtype many checkpoints ship in), for the tests and benchmarks of non-fp32 weights.

usage: make_fp16_model.py SOURCE_FOLDER DEST_FOLDER   (needs numpy; the project's venv has it)
"""
import json
import shutil
import struct
import sys

import numpy as np

src, dst = sys.argv[1], sys.argv[2]
shutil.copytree(src, dst, symlinks=False, dirs_exist_ok=True)
with open(f"{src}/model.safetensors", "rb") as f:
    data = f.read()
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
body = memoryview(data)[8 + n:]
out_header, chunks, offset = {}, [], 0
for name, t in sorted((k, v) for k, v in header.items() if k != "__metadata__"):
    begin, end = t["data_offsets"]
    raw = body[begin:end]
    dtype = t["dtype"]
    if dtype == "F32":
        raw = np.frombuffer(raw, dtype="<f4").astype("<f2").tobytes()
        dtype = "F16"
    else:
        raw = bytes(raw)
    out_header[name] = {"dtype": dtype, "shape": t["shape"], "data_offsets": [offset, offset + len(raw)]}
    chunks.append(raw)
    offset += len(raw)
encoded = json.dumps(out_header).encode()
encoded += b" " * (-len(encoded) % 8)
with open(f"{dst}/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(encoded)))
    f.write(encoded)
    for raw in chunks:
        f.write(raw)
