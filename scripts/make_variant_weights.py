"""Another version of an fp32 model.safetensors, the same size: layer 0's query weights negated,
so it loads like the original and gives other vectors. For the tests of model changes.

usage: make_variant_weights.py SOURCE_SAFETENSORS DEST_SAFETENSORS   (DEST may be SOURCE)
"""
import json
import struct
import sys

data = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", data[:8])[0]
begin, end = json.loads(data[8:8 + n])["encoder.layer.0.attention.self.query.weight"]["data_offsets"]
for i in range(8 + n + begin + 3, 8 + n + end, 4):
    data[i] ^= 0x80  # the sign bit of each little-endian float
open(sys.argv[2], "wb").write(data)
