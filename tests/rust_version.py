#!/usr/bin/env python3
"""Cargo.toml's rust-version is at least every resolved dependency's (issue 26), so the declared
minimum cannot fall behind Cargo.lock. Run from the repository's root (scripts/test.sh)."""
import json
import re
import subprocess
import sys


def version(text):
    return tuple(int(x) for x in text.split("."))


meta = json.loads(subprocess.run(["cargo", "metadata", "--format-version", "1"],
                                 capture_output=True, text=True, check=True).stdout)
members = set(meta["workspace_members"])
declared = {p["name"]: p.get("rust_version") for p in meta["packages"] if p["id"] in members}
needed = max(((p["rust_version"], p["name"]) for p in meta["packages"]
              if p["id"] not in members and p.get("rust_version")), key=lambda v: version(v[0]))
ok = True
for name, rv in sorted(declared.items()):
    if rv is None or version(rv) < version(needed[0]):
        print(f"FAILED: {name} declares rust-version {rv}, but {needed[1]} needs {needed[0]}")
        ok = False
    else:
        print(f"ok: {name} declares rust-version {rv} (the highest a dependency needs: {needed[0]}, {needed[1]})")
toolchain = re.search(r'default-toolchain (\d+\.\d+)', open("Dockerfile").read())
if toolchain and version(toolchain.group(1)) < version(needed[0]):
    print(f"FAILED: the Dockerfile installs Rust {toolchain.group(1)}")
    ok = False
sys.exit(0 if ok else 1)
