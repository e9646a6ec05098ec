#!/usr/bin/env python3
"""Random statements cannot break the sync invariant (issue 27).

    tests/invariant.py --host DIR --port PORT [--seed N] [--batches 20] [--statements 100]

On a running cluster with uhok_embed installed: four attached tables (row mode, plain and
partitioned; batch mode, with and without a version column) take random single and multi-row
INSERTs, INSERT ... SELECT, COPY, UPDATEs of the text, of other columns and of the key, DELETEs,
INSERT ... ON CONFLICT DO UPDATE / DO NOTHING, moves between partitions, and savepoints rolled
back, while a second connection runs uhok_embed_backfill on them over and over. After every
batch of statements it checks, on every table: each row with text has a vector equal to
uhok_embed(text) (max |d| <= 1e-5) and the loaded model's version; a row without text has none.

The seed (27 unless --seed or UHOK_INVARIANT_SEED says otherwise) is printed so that a failure
can be replayed: the same seed makes the same statements (the backfills' timing beside them
varies). Statements may
fail the ways concurrent writers do (a unique key taken, a deadlock with the backfill); any
other SQLSTATE fails the test.
"""
import argparse
import os
import random
import subprocess
import sys
import threading
import time

TABLES = {
    # name: (mode, has version column, partitioned)
    "inv_row": ("row", True, False),
    "inv_part": ("row", True, True),
    "inv_batch": ("batch", True, False),
    "inv_batch_nover": ("batch", False, False),
}
SETUP = """
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS uhok_embed CASCADE;
CREATE TABLE inv_row (id bigint PRIMARY KEY, name text, price integer, v vector(384), version text);
CREATE INDEX ON inv_row (price);
SELECT uhok_embed_attach('inv_row', 'name', 'v', 'version');
CREATE TABLE inv_part (id bigint, kind text, name text, price integer, v vector(384), version text,
                       PRIMARY KEY (id, kind)) PARTITION BY LIST (kind);
CREATE TABLE inv_part_soup PARTITION OF inv_part FOR VALUES IN ('soup');
CREATE TABLE inv_part_rice PARTITION OF inv_part FOR VALUES IN ('rice');
CREATE TABLE inv_part_other PARTITION OF inv_part DEFAULT;
SELECT uhok_embed_attach('inv_part', 'name', 'v', 'version');
CREATE TABLE inv_batch (id bigint PRIMARY KEY, name text, price integer, v vector(384), version text);
SELECT uhok_embed_attach('inv_batch', 'name', 'v', 'version', mode => 'batch');
CREATE TABLE inv_batch_nover (id bigint PRIMARY KEY, name text, price integer, v vector(384));
SELECT uhok_embed_attach('inv_batch_nover', 'name', 'v', mode => 'batch');
"""
# SQLSTATEs a random writer may meet beside a backfill: a key taken, a deadlock, a
# serialization failure, and the rest of a transaction block after one of them. Anything else
# is a failure of the extension.
EXPECTED = {"23505", "40P01", "40001", "25P02"}
DISHES = ["김치찌개", "된장찌개", "갈비탕", "비빔밥", "불고기", "잡채", "떡볶이", "냉면", "삼계탕", "순두부찌개",
          "kimchi stew", "beef soup", "fried rice", "cold noodles", "spicy rice cakes"]


def text(rng):
    if rng.random() < 0.08:
        return None
    return f"{rng.choice(DISHES)} {rng.randrange(40)}"


def lit(value):
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def statement(rng, table, next_id):
    """One random statement (or a short transaction) on `table`."""
    mode, versioned, partitioned = TABLES[table]
    kinds = ["soup", "rice", "noodles"]
    cols = "id, kind, name, price" if partitioned else "id, name, price"

    def row():
        i = next_id()
        if partitioned:
            return f"({i}, '{rng.choice(kinds)}', {lit(text(rng))}, {rng.randrange(100)})"
        return f"({i}, {lit(text(rng))}, {rng.randrange(100)})"

    some = f"(SELECT id FROM {table} ORDER BY random() LIMIT {rng.randint(1, 4)})"
    conflict = "(id, kind)" if partitioned else "(id)"
    choice = rng.randrange(13)
    if choice == 0:
        return f"INSERT INTO {table} ({cols}) VALUES {row()};"
    if choice == 1:
        return f"INSERT INTO {table} ({cols}) VALUES {', '.join(row() for _ in range(rng.randint(2, 6)))};"
    if choice == 2:
        n = rng.randint(5, 40)
        first = next_id(n)
        kind = f"'{rng.choice(kinds)}', " if partitioned else ""
        return (f"INSERT INTO {table} ({cols}) SELECT g, {kind}"
                f"CASE WHEN g % 11 = 0 THEN NULL ELSE '{rng.choice(DISHES)} ' || (g % 40) END, g % 100 "
                f"FROM generate_series({first}, {first + n - 1}) g;")
    if choice == 3:
        lines = []
        for _ in range(rng.randint(2, 12)):
            t = text(rng)
            values = [str(next_id())] + ([rng.choice(kinds)] if partitioned else []) + \
                     ["\\N" if t is None else t, str(rng.randrange(100))]
            lines.append("\t".join(values))
        return f"COPY {table} ({cols}) FROM STDIN;\n" + "\n".join(lines) + "\n\\."
    if choice in (4, 5):
        return f"UPDATE {table} SET name = {lit(text(rng))} WHERE id IN {some};"
    if choice == 6:
        return f"UPDATE {table} SET price = price + 1 WHERE id IN {some};"
    if choice == 7:
        return f"UPDATE {table} SET id = id + 1000000 WHERE id IN (SELECT id FROM {table} WHERE id < 1000000 ORDER BY random() LIMIT 1);"
    if choice == 8:
        return f"DELETE FROM {table} WHERE id IN {some};"
    if choice == 9:
        existing = f"coalesce((SELECT max(id) FROM {table} WHERE id < 1000000), 0)"
        if partitioned:
            target = f"SELECT id, kind, {lit(text(rng))}, 1 FROM {table} ORDER BY random() LIMIT 2"
        else:
            target = f"SELECT {existing} - g, {lit(text(rng))}, 1 FROM generate_series(0, 2) g"
        action = "DO NOTHING" if rng.random() < 0.3 else "DO UPDATE SET name = EXCLUDED.name"
        return f"INSERT INTO {table} ({cols}) {target} ON CONFLICT {conflict} {action};"
    if choice == 10 and partitioned:
        return f"UPDATE {table} SET kind = '{rng.choice(kinds)}' WHERE id IN {some};"
    if choice == 11:
        return ("BEGIN;\n"
                f"UPDATE {table} SET name = {lit(text(rng))} WHERE id IN {some};\n"
                "SAVEPOINT s;\n"
                f"INSERT INTO {table} ({cols}) VALUES {row()};\n"
                f"UPDATE {table} SET name = {lit(text(rng))} WHERE id IN {some};\n"
                "ROLLBACK TO SAVEPOINT s;\n"
                f"INSERT INTO {table} ({cols}) VALUES {row()};\n"
                "COMMIT;")
    return f"UPDATE {table} SET name = NULL WHERE id IN {some};"


CHECK = """
SELECT '{t}', count(*),
       count(*) FILTER (WHERE name IS NOT NULL AND (v IS NULL OR max_abs(v, uhok_embed(name)) > 1e-5 {version_bad})),
       count(*) FILTER (WHERE name IS NULL AND v IS NOT NULL)
FROM {t};"""


def psql(args, sql, *extra):
    return subprocess.run(["psql", "-X", "-q", "-h", args.host, "-p", str(args.port), "-U", "postgres",
                           "-d", args.db, *extra], input=sql, capture_output=True, text=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", required=True)
    # A fixed seed by default, so every run makes the same statements; UHOK_INVARIANT_SEED (or
    # --seed) picks others.
    parser.add_argument("--seed", type=int, default=int(os.environ.get("UHOK_INVARIANT_SEED", "27")))
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--statements", type=int, default=100)
    parser.add_argument("--db", default="uhok_embed_invariant")
    args = parser.parse_args()
    print(f"tests/invariant.py: seed {args.seed} (replay: --seed {args.seed}), "
          f"{args.batches} batches of {args.statements} statements", flush=True)
    rng = random.Random(args.seed)
    admin = argparse.Namespace(**{**vars(args), "db": "postgres"})
    psql(admin, f"DROP DATABASE IF EXISTS {args.db}")
    r = psql(admin, f"CREATE DATABASE {args.db}")
    if r.returncode:
        sys.exit(f"FAILED: create database: {r.stderr}")
    r = psql(args, SETUP + """
CREATE FUNCTION max_abs(a vector, b vector) RETURNS real LANGUAGE sql IMMUTABLE AS
$$ SELECT max(abs(x - y)) FROM unnest(a::real[], b::real[]) AS p(x, y) $$;""", "-v", "ON_ERROR_STOP=1")
    if r.returncode:
        sys.exit(f"FAILED: setup: {r.stderr}")

    # The second connection: backfills, one table after another, until told to stop.
    stop = threading.Event()
    backfills = {"runs": 0, "errors": []}

    def backfill_loop():
        while not stop.is_set():
            for t, (_, versioned, _) in TABLES.items():
                version = "'version'" if versioned else "NULL"
                r = psql(args, f"CALL uhok_embed_backfill('{t}', 'name', 'v', {version}, 16);",
                         "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=sqlstate")
                backfills["runs"] += 1
                if r.returncode:
                    code = r.stderr.strip().split()[-1] if r.stderr.strip() else "?"
                    if code not in EXPECTED:
                        backfills["errors"].append(r.stderr.strip())
                if stop.is_set():
                    return
    worker = threading.Thread(target=backfill_loop)
    worker.start()

    ids = {"n": 0}

    def next_id(n=1):
        first = ids["n"] + 1
        ids["n"] += n
        return first

    failures, statements, errors, rows = [], 0, {}, 0
    started = time.time()
    try:
        for b in range(args.batches):
            script = []
            for _ in range(args.statements):
                script.append(statement(rng, rng.choice(list(TABLES)), next_id))
            statements += len(script)
            r = psql(args, "\\set VERBOSITY sqlstate\n" + "\n".join(script) + "\n")
            # psql goes on after an ERROR (exit 0) but not after losing the server (exit 2): a
            # crashed backend, or any FATAL or PANIC, fails the test, whatever the check says.
            lost = [l for l in r.stderr.splitlines()
                    if l.startswith(("FATAL:", "PANIC:")) or "server closed the connection" in l
                    or "connection to server" in l]
            if r.returncode or lost:
                failures.append(f"batch {b + 1}: psql exited {r.returncode}: {'; '.join(lost) or r.stderr.strip()[-300:]}")
                break
            for line in r.stderr.splitlines():
                if line.startswith("ERROR:"):
                    code = line.split()[-1]
                    errors[code] = errors.get(code, 0) + 1
                    if code not in EXPECTED:
                        failures.append(f"batch {b + 1}: {line}")
            check = "\n".join(CHECK.format(t=t, version_bad="OR version IS DISTINCT FROM uhok_embed_version()" if versioned else "")
                              for t, (_, versioned, _) in TABLES.items())
            r = psql(args, check, "-At", "-F", " ", "-v", "ON_ERROR_STOP=1")
            if r.returncode:
                failures.append(f"batch {b + 1}: the check failed: {r.stderr.strip()}")
                break
            rows = 0
            for line in r.stdout.strip().splitlines():
                t, total, bad, stray = line.split()
                rows += int(total)
                if bad != "0" or stray != "0":
                    failures.append(f"batch {b + 1}: {t}: {bad} rows with text but not its vector and version, "
                                    f"{stray} without text but with a vector (of {total})")
            if failures:
                break
    finally:
        stop.set()
        worker.join()
    failures += [f"backfill: {e}" for e in backfills["errors"]]
    if backfills["runs"] == 0:
        failures.append("no backfill ran beside the statements")
    print(f"  {statements} statements in {time.time() - started:.0f} s ({', '.join(f'{n} x {c}' for c, n in sorted(errors.items())) or 'no errors'}), "
          f"{backfills['runs']} backfills beside them; {rows} rows at the last check")
    for f in failures:
        print(f"  FAILED: {f}")
    if not failures:
        psql(admin, f"DROP DATABASE {args.db}")
        print(f"ok: the invariant held after each of {args.batches} batches (seed {args.seed})")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
