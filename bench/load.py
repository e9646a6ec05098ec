#!/usr/bin/env python3
"""The seed's load test: N clients for T seconds of searches with a share of inserts and updates,
through uhok_embed in the database, and the same load through the HTTP path it replaces.

  load.py DSN HTTP_URL CLIENTS SECONDS WRITE_SHARE

bench/load.sh starts the cluster, the tables and the HTTP service, then runs this (in the
benchmark venv: psycopg2). Each client is a thread with its own connection, looping until the
time is up: with probability WRITE_SHARE a write (half INSERT of a new recipe, half UPDATE of an
existing one's name), else a search for a random recipe name (top 25, 10 random ids excluded).

  in_db  search: SELECT recipe_id, distance FROM uhok_search(name, 25, exclude_ids)
         write:  INSERT / UPDATE "RECIPE_VECTOR_TABLE" ... (the row's trigger embeds the name)
  http   search: POST /v1/embed (FastAPI, sentence-transformers), then
                 SELECT ... ORDER BY "VECTOR_NAME" <-> $vector LIMIT 25 (the seed's RemoteDBVectorRecommender)
         write:  POST /v1/embed, then INSERT / UPDATE the row with its vector (a table with no triggers)

The two run alternately, twice each for SECONDS/2 (in_db, http, in_db, http), so that a change in
the machine's load hits both. Prints one JSON object: per path, operations/s, the searches' and
writes' p50/p95/p99 in ms, and the error rate.
"""
import json
import random
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psycopg2

NAMES = [n for n in (Path(__file__).resolve().parent.parent / "demo" / "recipes.txt").read_text().split("\n") if n]
MODIFIERS = ["엄마표", "초간단", "매콤한", "집밥", "자취생", "백종원", "얼큰한", "바삭한"]


def pct(values, p):
    values = sorted(values)
    return values[round((len(values) - 1) * p)] if values else None


def embed(url, text):
    body = json.dumps({"text": text, "normalize": True}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        vec = json.loads(r.read())["embedding"]
    return "[" + ",".join(map(str, vec)) + "]"


class Client(threading.Thread):
    def __init__(self, path, dsn, url, deadline, write_share, seed, next_id):
        super().__init__(daemon=True)
        self.path, self.url, self.deadline, self.write_share = path, url, deadline, write_share
        self.rng = random.Random(seed)
        self.next_id = next_id
        self.conn = psycopg2.connect(dsn)
        self.conn.autocommit = True
        if path == "http":
            # What uhok_search sets for its call: the same scan on both paths.
            self.conn.cursor().execute("SET hnsw.iterative_scan = strict_order")
        self.search_ms, self.write_ms, self.errors = [], [], 0
        self.table = '"RECIPE_VECTOR_TABLE"' if path == "in_db" else '"RECIPE_VECTOR_TABLE_HTTP"'

    def search(self, cur, name, excluded):
        if self.path == "in_db":
            cur.execute("SELECT recipe_id, distance FROM uhok_search(%s, 25, %s::bigint[])", (name, excluded))
        else:
            # uhok_search's query, with the service's vector as its parameter.
            cur.execute('SELECT "RECIPE_ID", ("VECTOR_NAME" <-> %(v)s::vector)::float8 AS distance'
                        ' FROM "RECIPE_VECTOR_TABLE_HTTP" WHERE "VECTOR_NAME" IS NOT NULL'
                        ' AND ("RECIPE_ID" = ANY (%(ex)s::bigint[])) IS NOT TRUE'
                        ' ORDER BY "VECTOR_NAME" <-> %(v)s::vector LIMIT 25',
                        {"v": embed(self.url, name), "ex": excluded})
        cur.fetchall()

    def write(self, cur, name):
        if self.rng.random() < 0.5:
            rid = self.next_id()
            if self.path == "in_db":
                cur.execute(f'INSERT INTO {self.table} ("RECIPE_ID", "COOKING_NAME") VALUES (%s, %s)', (rid, name))
            else:
                cur.execute(f'INSERT INTO {self.table} ("RECIPE_ID", "COOKING_NAME", "VECTOR_NAME") VALUES (%s, %s, %s::vector)',
                            (rid, name, embed(self.url, name)))
        else:
            rid = self.rng.randint(1, len(NAMES))
            if self.path == "in_db":
                cur.execute(f'UPDATE {self.table} SET "COOKING_NAME" = %s WHERE "RECIPE_ID" = %s', (name, rid))
            else:
                cur.execute(f'UPDATE {self.table} SET "COOKING_NAME" = %s, "VECTOR_NAME" = %s::vector WHERE "RECIPE_ID" = %s',
                            (name, embed(self.url, name), rid))

    def run(self):
        cur = self.conn.cursor()
        while time.monotonic() < self.deadline:
            name = self.rng.choice(NAMES)
            writing = self.rng.random() < self.write_share
            started = time.perf_counter()
            try:
                if writing:
                    self.write(cur, f"{self.rng.choice(MODIFIERS)} {name}")
                else:
                    self.search(cur, name, self.rng.sample(range(1, len(NAMES) + 1), 10))
                (self.write_ms if writing else self.search_ms).append((time.perf_counter() - started) * 1e3)
            except Exception:  # counted, not raised: the error rate is a result
                self.errors += 1
        self.conn.close()


def run(path, dsn, url, clients, seconds, write_share, round_no, next_id):
    deadline = time.monotonic() + seconds
    # Seeded by the round pair: both paths get the same sequence of queries and writes.
    threads = [Client(path, dsn, url, deadline, write_share, 1000 * (round_no // 2) + i, next_id) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - started, threads


def main():
    dsn, url, clients, seconds, write_share = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
    ids = iter(range(1_000_000, 10_000_000))
    lock = threading.Lock()

    def next_id():
        with lock:
            return next(ids)

    out = {}
    for round_no, path in enumerate(["in_db", "http", "in_db", "http"]):
        elapsed, threads = run(path, dsn, url, clients, seconds / 2, write_share, round_no, next_id)
        acc = out.setdefault(path, {"elapsed": 0.0, "search": [], "write": [], "errors": 0})
        acc["elapsed"] += elapsed
        for t in threads:
            acc["search"] += t.search_ms
            acc["write"] += t.write_ms
            acc["errors"] += t.errors
    result = {}
    for path, acc in out.items():
        done = len(acc["search"]) + len(acc["write"])
        result[path] = {
            "ops_per_s": done / acc["elapsed"],
            "searches": len(acc["search"]), "writes": len(acc["write"]), "errors": acc["errors"],
            "error_rate": acc["errors"] / max(1, done + acc["errors"]),
            "search_ms": [pct(acc["search"], p) for p in (0.5, 0.95, 0.99)],
            "write_ms": [pct(acc["write"], p) for p in (0.5, 0.95, 0.99)],
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
