"""A throwaway PostgreSQL cluster with real pgvector and the real extension, for the client's tests.

It is started with the repository's scripts/cluster.sh (as the SQL tests are), on
$UHOK_CLIENT_TEST_PORT (default 54338), holds sql/recipe_schema.sql's "RECIPE_VECTOR_TABLE" with
the demo's 350 recipes embedded by its trigger, and is stopped and deleted at the end. The
extension must be built and installed, and the test models installed (scripts/test.sh does both
before it runs these tests).
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[3]
CLUSTER_SH = ROOT / "scripts" / "cluster.sh"
STAND_IN = "$sharedir/uhok_embed/models/multilingual-e5-small-fixture"
OTHER_MODEL = "$sharedir/uhok_embed/models/all-MiniLM-L6-v2"


class Cluster:
    def __init__(self, directory: str, port: int) -> None:
        self.dir = directory
        self.port = port

    def start(self) -> None:
        env = dict(os.environ, UHOK_CLUSTER_CONF=f"uhok_embed.model_path = '{STAND_IN}'")
        subprocess.run(["bash", str(CLUSTER_SH), "start", self.dir, str(self.port)], check=True, env=env)

    def stop(self) -> None:
        subprocess.run(["bash", str(CLUSTER_SH), "stop", self.dir], check=True)

    def url(self, driver: str, database: str = "postgres") -> str:
        return f"postgresql+{driver}://postgres@/{database}?host={self.dir}&port={self.port}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(host=self.dir, port=self.port, user="postgres", dbname=database, autocommit=True)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    directory = tempfile.mkdtemp(prefix="uhok_embed_client.")
    c = Cluster(directory, int(os.environ.get("UHOK_CLIENT_TEST_PORT", "54338")))
    c.start()
    try:
        with c.connect() as db:
            db.execute("CREATE EXTENSION uhok_embed CASCADE")
            db.execute((ROOT / "sql" / "recipe_schema.sql").read_text())
            names = (ROOT / "demo" / "recipes.txt").read_text(encoding="utf-8").splitlines()
            with db.cursor() as cur:
                cur.executemany('INSERT INTO "RECIPE_VECTOR_TABLE" ("RECIPE_ID", "COOKING_NAME") VALUES (%s, %s)',
                                list(enumerate(names, start=1)))
            # Another table, in a schema, with names that need quoting (SearchTable).
            db.execute('CREATE SCHEMA "Kitchen"; CREATE TABLE "Kitchen"."Dishes" ("dish id" bigint, "the vector" vector(384));'
                       ' INSERT INTO "Kitchen"."Dishes" SELECT "RECIPE_ID", "VECTOR_NAME" FROM "RECIPE_VECTOR_TABLE";'
                       ' CREATE INDEX ON "Kitchen"."Dishes" USING hnsw ("the vector" vector_l2_ops)')
            # pgvector and the table, but not uhok_embed.
            db.execute("CREATE DATABASE without_extension")
        with c.connect("without_extension") as db:
            db.execute('CREATE EXTENSION vector; CREATE TABLE "RECIPE_VECTOR_TABLE" ("RECIPE_ID" bigint, "VECTOR_NAME" vector(384))')
        yield c
    finally:
        c.stop()
        subprocess.run(["rm", "-rf", directory], check=False)
