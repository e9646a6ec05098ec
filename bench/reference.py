#!/usr/bin/env python3
"""The references uhok_embed is compared with, measured in the same run as uhok_embed itself.

  reference.py st MODEL_DIR            sentence-transformers in process: load, one query, batches
  reference.py st-batch MODEL_DIR FILE  sentence-transformers' best batch throughput on FILE's lines
  reference.py http MODEL_DIR PORT     the HTTP service uhok_embed replaces (FastAPI /v1/embed)
  reference.py e2e DSN HTTP_URL N      end to end search from a client: embed over HTTP then SQL,
                                       versus uhok_embed inline; N queries each

Each prints one JSON object. Threads: torch.set_num_threads(1), as uhok_embed.threads = 1.
"""
import json
import statistics
import sys
import time
from pathlib import Path

QUERY = "갈비탕"
NAMES = (Path(__file__).resolve().parent.parent / "demo" / "recipes.txt").read_text().split("\n")
NAMES = [n for n in NAMES if n]


def pct(values, p):
    values = sorted(values)
    return values[round((len(values) - 1) * p)]


def load_model(model_dir):
    import torch
    import transformers
    transformers.logging.set_verbosity_error()  # its load report and progress bars would
    transformers.logging.disable_progress_bar()  # land in the middle of the table
    torch.set_num_threads(1)
    from sentence_transformers import SentenceTransformer
    started = time.perf_counter()
    model = SentenceTransformer(model_dir, device="cpu")
    return model, (time.perf_counter() - started) * 1e3


def st(model_dir):
    model, load_ms = load_model(model_dir)
    model.encode(QUERY)
    times = []
    for _ in range(200):
        t = time.perf_counter()
        model.encode(QUERY, normalize_embeddings=True)
        times.append((time.perf_counter() - t) * 1e3)
    # sentence-transformers' best batch size, not just uhok_embed's default of 32: it sorts by
    # length and pads each batch, so the best size depends on the texts.
    batches = {}
    for size in (8, 16, 32, 64, 128):
        t = time.perf_counter()
        model.encode(NAMES, batch_size=size, normalize_embeddings=True)
        batches[size] = len(NAMES) / (time.perf_counter() - t)
    best = max(batches, key=batches.get)
    print(json.dumps({"load_ms": load_ms, "p50_ms": pct(times, 0.5), "p95_ms": pct(times, 0.95),
                      "batch_per_s": batches[best], "best_batch_size": best,
                      "batch_per_s_by_size": batches, "texts": len(NAMES)}))

def st_batch(model_dir, path):
    model, _ = load_model(model_dir)
    texts = [t for t in Path(path).read_text().split("\n") if t]
    model.encode(texts[:64])
    # The best batch size on the first 2,000 texts, then all of them at that size.
    sample = texts[:2000]
    rates = {}
    for size in (16, 32, 64, 128):
        t = time.perf_counter()
        model.encode(sample, batch_size=size, normalize_embeddings=True)
        rates[size] = len(sample) / (time.perf_counter() - t)
    best = max(rates, key=rates.get)
    t = time.perf_counter()
    model.encode(texts, batch_size=best, normalize_embeddings=True)
    print(json.dumps({"texts": len(texts), "batch_size": best,
                      "per_s": len(texts) / (time.perf_counter() - t)}))


def http(model_dir, port):
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel
    model, _ = load_model(model_dir)
    app = FastAPI()

    class EmbedRequest(BaseModel):
        text: str
        normalize: bool = True

    @app.post("/v1/embed")
    def embed(req: EmbedRequest):
        v = model.encode(req.text, normalize_embeddings=req.normalize)
        return {"embedding": v.tolist(), "dim": len(v), "version": "sbert"}

    @app.get("/health")
    def health():
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")


def e2e(dsn, url, n):
    import urllib.request
    import psycopg2
    n = int(n)
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    queries = [NAMES[i % len(NAMES)] + (" " * (i // len(NAMES))) for i in range(n)]
    sql = 'SELECT id FROM search_bench ORDER BY v <-> %s::vector LIMIT 25'

    def via_http(q):
        body = json.dumps({"text": q, "normalize": True}).encode()
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            vec = json.loads(r.read())["embedding"]
        cur.execute(sql, ("[" + ",".join(map(str, vec)) + "]",))
        return cur.fetchall()

    def inline(q):
        cur.execute('SELECT id FROM search_bench ORDER BY v <-> uhok_embed(%s) LIMIT 25', (q,))
        return cur.fetchall()

    out = {}
    for name, fn in (("http", via_http), ("inline", inline)):
        fn("warm up")
        times = []
        for q in queries:
            t = time.perf_counter()
            fn(q)
            times.append((time.perf_counter() - t) * 1e3)
        out[name] = {"p50_ms": pct(times, 0.5), "p95_ms": pct(times, 0.95), "mean_ms": statistics.mean(times)}
    print(json.dumps(out))


if __name__ == "__main__":
    {"st": st, "st-batch": st_batch, "http": http, "e2e": e2e}[sys.argv[1]](*sys.argv[2:])
