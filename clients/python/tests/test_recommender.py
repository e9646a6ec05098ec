"""InDatabaseRecommender against a real cluster (conftest.py): the rows the SQL gives, the
backend's edge cases, errors by kind with their SQLSTATE, a pool under 50 concurrent searches, a
model switch under a pooled connection, and a server restart behind pool_pre_ping."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, List, Tuple

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from uhok_embed_client import (
    ExtensionMissingError,
    InDatabaseRecommender,
    InvalidSearchError,
    ModelUnavailableError,
    SearchTable,
    SearchTableMissingError,
    SyncInDatabaseRecommender,
    UhokEmbedError,
    VectorSearcherPort,
    make_vector_searcher,
)

from conftest import OTHER_MODEL, STAND_IN, Cluster

STYLES = ["function", "inline"]
QUERIES = ["갈비탕", "김치찌개", "매운 국물 요리", "spicy noodles", ""]


@pytest.fixture(scope="session")
async def engine(cluster: Cluster) -> AsyncIterator[AsyncEngine]:
    e = create_async_engine(cluster.url("asyncpg"), pool_size=5, max_overflow=50, pool_pre_ping=True)
    yield e
    await e.dispose()


def sql_search(cluster: Cluster, query: str, top_k: int, exclude: Any = "{}", page: int = 0) -> List[Tuple[int, float]]:
    """What the extension itself answers, through another driver and connection."""
    with cluster.connect() as db:
        rows = db.execute("SELECT recipe_id, distance FROM uhok_search(%s, %s, %s::bigint[], %s)",
                          (query, top_k, exclude, page)).fetchall()
    return [(int(r), float(d)) for r, d in rows]


def same(a: List[Tuple[int, float]], b: List[Tuple[int, float]]) -> bool:
    return [r for r, _ in a] == [r for r, _ in b] and all(abs(x - y) <= 1e-9 for (_, x), (_, y) in zip(a, b))


@pytest.mark.parametrize("style", STYLES)
async def test_results_equal_the_sql(engine: AsyncEngine, cluster: Cluster, style: str) -> None:
    searcher = InDatabaseRecommender(style=style)
    assert isinstance(searcher, VectorSearcherPort)
    async with AsyncSession(engine) as s:
        for q in QUERIES:
            got = await searcher.find_similar_ids(s, q, 25)
            assert len(got) == 25
            assert same(got, sql_search(cluster, q, 25)), q
            assert [d for _, d in got] == sorted(d for _, d in got)


@pytest.mark.parametrize("style", STYLES)
async def test_exclude_ids_with_nulls_and_duplicates(engine: AsyncEngine, cluster: Cluster, style: str) -> None:
    searcher = InDatabaseRecommender(style=style)
    async with AsyncSession(engine) as s:
        top = await searcher.find_similar_ids(s, "갈비탕", 10)
        excluded = [top[0][0], None, top[2][0], top[0][0], None]
        got = await searcher.find_similar_ids(s, "갈비탕", 10, exclude_ids=excluded)
    ids = [r for r, _ in got]
    assert len(got) == 10 and top[0][0] not in ids and top[2][0] not in ids
    assert same(got, sql_search(cluster, "갈비탕", 10, [top[0][0], top[2][0]]))
    assert same(got, sql_search(cluster, "갈비탕", 10, excluded))  # uhok_search ignores NULLs too


@pytest.mark.parametrize("style", STYLES)
async def test_pages_are_one_ordered_stream(engine: AsyncEngine, cluster: Cluster, style: str) -> None:
    searcher = InDatabaseRecommender(style=style)
    async with AsyncSession(engine) as s:
        nearest = [r for r, _ in await searcher.find_similar_ids(s, "김치찌개", 5)]
        excluded = [nearest[0], nearest[3]]
        whole = await searcher.find_similar_ids(s, "김치찌개", 30, exclude_ids=excluded)
        pages = [await searcher.find_similar_ids(s, "김치찌개", 10, exclude_ids=excluded, page=p) for p in range(3)]
        beyond = await searcher.find_similar_ids(s, "김치찌개", 10, page=35)
    assert len(whole) == 30 and not set(excluded) & {r for r, _ in whole}
    assert same(whole, sql_search(cluster, "김치찌개", 30, excluded))
    assert same(whole, [row for page in pages for row in page])
    assert beyond == []  # 350 rows: page 35 starts past the end


@pytest.mark.parametrize("style", STYLES)
async def test_more_rows_than_an_hnsw_scan_holds(engine: AsyncEngine, cluster: Cluster, style: str) -> None:
    # hnsw.ef_search is 40: without the iterative scan an index scan stops there.
    async with AsyncSession(engine) as s:
        got = await InDatabaseRecommender(style=style).find_similar_ids(s, "갈비탕", 100, exclude_ids=[1, 2, 3])
    assert len(got) == 100
    assert same(got, sql_search(cluster, "갈비탕", 100, [1, 2, 3]))


@pytest.mark.parametrize("style", STYLES)
async def test_another_table_in_a_schema(engine: AsyncEngine, cluster: Cluster, style: str) -> None:
    table = SearchTable("Dishes", id_column="dish id", vector_column="the vector", schema="Kitchen")
    async with AsyncSession(engine) as s:
        got = await InDatabaseRecommender(style=style, table=table).find_similar_ids(s, "갈비탕", 10, exclude_ids=[2])
    assert same(got, sql_search(cluster, "갈비탕", 10, [2]))  # the same rows as the recipe table


@pytest.mark.parametrize("style", STYLES)
async def test_long_and_other_language_queries(engine: AsyncEngine, style: str) -> None:
    searcher = InDatabaseRecommender(style=style)
    async with AsyncSession(engine) as s:
        long = await searcher.find_similar_ids(s, "갈비탕 " * 200_000, 5)  # 1.4 MB: the model keeps its first 512 tokens
        assert len(long) == 5
        for q in ["chocolate dessert", "ramen épicé", "牛肉面", "🍜"]:
            assert len(await searcher.find_similar_ids(s, q, 5)) == 5


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(
    "query, top_k, page, sqlstate",
    [(None, 5, 0, "22004"), ("갈비탕", None, 0, "22004"), ("갈비탕", 5, None, "22004"),
     ("갈비탕", 0, 0, "22023"), ("갈비탕", 1001, 0, "22023"), ("갈비탕", 5, -1, "22023")],
)
async def test_bad_arguments(engine: AsyncEngine, style: str, query: Any, top_k: int, page: int, sqlstate: str) -> None:
    searcher = InDatabaseRecommender(style=style)
    async with AsyncSession(engine) as s:
        with pytest.raises(InvalidSearchError) as e:
            await searcher.find_similar_ids(s, query, top_k, page=page)
        assert e.value.sqlstate == sqlstate
        assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("style", STYLES)
async def test_no_model(engine: AsyncEngine, style: str) -> None:
    async with AsyncSession(engine) as s:
        await s.execute(text("SET LOCAL uhok_embed.model_path = '/nonexistent/model'"))
        with pytest.raises(ModelUnavailableError) as e:
            await InDatabaseRecommender(style=style).find_similar_ids(s, "갈비탕", 5)
        assert e.value.sqlstate == "58P01"
        assert e.value.hint and "install-models.sh" in e.value.hint
        await s.rollback()
        assert len(await InDatabaseRecommender(style=style).find_similar_ids(s, "갈비탕", 5)) == 5


@pytest.mark.parametrize("style", STYLES)
async def test_extension_and_table_missing(cluster: Cluster, engine: AsyncEngine, style: str) -> None:
    other = create_async_engine(cluster.url("asyncpg", "without_extension"))
    try:
        async with AsyncSession(other) as s:
            with pytest.raises(ExtensionMissingError) as e:
                await InDatabaseRecommender(style=style).find_similar_ids(s, "갈비탕", 5)
            assert e.value.sqlstate == "42883"  # uhok_search or uhok_embed does not exist
    finally:
        await other.dispose()
    async with AsyncSession(engine) as s:
        with pytest.raises(SearchTableMissingError) as e2:
            await InDatabaseRecommender(style=style, table=SearchTable("no_such_table")).find_similar_ids(s, "x", 5)
        assert e2.value.sqlstate == "42P01"


async def test_fifty_concurrent_searches_through_one_pool(engine: AsyncEngine, cluster: Cluster) -> None:
    searcher = InDatabaseRecommender()
    queries = [QUERIES[i % 4] for i in range(50)]

    async def one(q: str) -> List[Tuple[int, float]]:
        async with AsyncSession(engine) as s:
            return await searcher.find_similar_ids(s, q, 10)

    results = await asyncio.gather(*(one(q) for q in queries))
    expected = {q: sql_search(cluster, q, 10) for q in set(queries)}
    assert all(same(r, expected[q]) for q, r in zip(queries, results))


def test_sync_style_with_psycopg(cluster: Cluster) -> None:
    engine = create_engine(cluster.url("psycopg"))
    try:
        with Session(engine) as s:
            for style in STYLES:
                got = SyncInDatabaseRecommender(style=style).find_similar_ids(s, "갈비탕", 10, exclude_ids=[1, None])
                assert same(got, sql_search(cluster, "갈비탕", 10, [1]))
            with pytest.raises(InvalidSearchError) as e:
                SyncInDatabaseRecommender().find_similar_ids(s, "갈비탕", 0)
            assert e.value.sqlstate == "22023"
    finally:
        engine.dispose()


async def test_a_pooled_connection_follows_a_model_switch(cluster: Cluster) -> None:
    # One pooled connection, so the same backend serves before and after the switch.
    engine = create_async_engine(cluster.url("asyncpg"), pool_size=1, max_overflow=0)
    searcher = InDatabaseRecommender(style="inline")
    try:
        async with AsyncSession(engine) as s:
            pid = (await s.execute(text("SELECT pg_backend_pid()"))).scalar()
            before = await searcher.find_similar_ids(s, "갈비탕", 10)
            assert (await s.execute(text("SELECT uhok_embed_version()"))).scalar().startswith("multilingual-e5-small-fixture@")
        with cluster.connect() as db:
            db.execute(f"ALTER SYSTEM SET uhok_embed.model_path = '{OTHER_MODEL}'")
            db.execute("SELECT pg_reload_conf()")
        await asyncio.sleep(0.5)  # the backend reads the reloaded file at its next command
        async with AsyncSession(engine) as s:
            assert (await s.execute(text("SELECT pg_backend_pid()"))).scalar() == pid
            assert (await s.execute(text("SELECT uhok_embed_version()"))).scalar().startswith("all-MiniLM-L6-v2@")
            after = await searcher.find_similar_ids(s, "갈비탕", 10)
        # Its query vector is the new model's (not a cached or planned one from before): a
        # new connection, which can only have the new model, gives the same rows.
        assert same(after, sql_search(cluster, "갈비탕", 10))
        assert not same(after, before)
    finally:
        with cluster.connect() as db:
            db.execute("ALTER SYSTEM RESET uhok_embed.model_path")
            db.execute("SELECT pg_reload_conf()")
        await engine.dispose()


async def test_pre_ping_survives_a_server_restart(cluster: Cluster) -> None:
    engine = create_async_engine(cluster.url("asyncpg"), pool_size=2, pool_pre_ping=True)
    searcher = InDatabaseRecommender()
    try:
        async with AsyncSession(engine) as s:
            first = await searcher.find_similar_ids(s, "갈비탕", 5)
        cluster.stop()
        cluster.start()
        async with AsyncSession(engine) as s:  # the pooled connection is dead: pre-ping replaces it
            assert same(await searcher.find_similar_ids(s, "갈비탕", 5), first)
    finally:
        await engine.dispose()


def test_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    class Remote(VectorSearcherPort):
        async def find_similar_ids(self, pg_db: Any, query: str, top_k: int, exclude_ids: Any = None) -> Any:
            return []

    monkeypatch.setenv("ML_MODE", "in_db")
    monkeypatch.setenv("UHOK_SEARCH_STYLE", "inline")
    chosen = make_vector_searcher({"remote_embed": Remote})
    assert isinstance(chosen, InDatabaseRecommender) and chosen.style == "inline"
    monkeypatch.setenv("ML_MODE", "remote_embed")
    assert isinstance(make_vector_searcher({"remote_embed": Remote}), Remote)
    monkeypatch.setenv("ML_MODE", "remote_emebd")
    with pytest.raises(ValueError, match="in_db, remote_embed"):
        make_vector_searcher({"remote_embed": Remote})
    monkeypatch.delenv("ML_MODE")
    with pytest.raises(ValueError, match="ML_MODE is not set"):
        make_vector_searcher({"remote_embed": Remote})
