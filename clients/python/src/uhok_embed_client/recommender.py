"""InDatabaseRecommender: the backend's VectorSearcherPort, answered by uhok_embed in PostgreSQL.

The query is embedded by the database itself (uhok_embed(text) in the statement), so a search
is one round trip and there is no ML server to call, time out or retry. Two styles, the same
rows:

  "function" (default)  SELECT recipe_id, distance FROM uhok_search(:query, :top_k, :exclude_ids, :page)
                        the extension validates the arguments, skips exclude_ids and pages with
                        pgvector's iterative index scan (hnsw.iterative_scan, set for the call)
  "inline"              the backend's own SQL, the old RemoteDBVectorRecommender's query with
                        uhok_embed(:query) in place of the HTTP call, the query embedded once (a
                        MATERIALIZED CTE read by the ORDER BY as an InitPlan, so the HNSW index
                        orders the scan and no plan computes the vector per row):
                        WITH q AS MATERIALIZED (SELECT uhok_embed(:query) AS v)
                        SELECT "RECIPE_ID", "VECTOR_NAME" <-> (SELECT v FROM q) ... ORDER BY ... LIMIT
                        It first sets hnsw.iterative_scan = strict_order for the rest of the
                        caller's transaction, as the function does for its call (without it an
                        HNSW scan stops at hnsw.ef_search rows: exclusions, pages and a top_k over
                        40 would come back short). So it needs a transaction, SQLAlchemy's default;
                        under AUTOCOMMIT use the function style.

Errors come out as the exceptions of uhok_embed_client.errors, SQLSTATE kept. As with any
database error, the session's transaction is then aborted: roll it back before reusing it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

from .errors import InvalidSearchError, translate
from .ports import VectorSearcherPort

# uhok_search's own bounds, checked before the inline query runs so both styles refuse alike.
MAX_TOP_K = 1000
STYLES = ("function", "inline")


def quote_ident(name: str) -> str:
    """An SQL identifier, quoted as PostgreSQL's quote_ident does (always)."""
    if "\x00" in name:
        raise ValueError("an identifier cannot contain NUL")
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class SearchTable:
    """The table searched: by default the recipe service's "RECIPE_VECTOR_TABLE"."""

    table: str = "RECIPE_VECTOR_TABLE"
    id_column: str = "RECIPE_ID"
    vector_column: str = "VECTOR_NAME"
    schema: Optional[str] = None  # None: the session's search_path finds the table

    def qualified(self) -> str:
        name = quote_ident(self.table)
        return f"{quote_ident(self.schema)}.{name}" if self.schema else name


RECIPE_TABLE = SearchTable()


class _Search:
    """The statement for one search and its parameters, whichever the driver."""

    def __init__(self, style: str, table: SearchTable) -> None:
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, not {style!r}")
        self.style = style
        self.table = table
        if style == "function":
            if table == RECIPE_TABLE:
                self.sql = text(
                    "SELECT recipe_id, distance FROM uhok_search(CAST(:query AS text), CAST(:top_k AS integer),"
                    " CAST(:exclude_ids AS bigint[]), CAST(:page AS integer))"
                )
            else:
                self.sql = text(
                    "SELECT recipe_id, distance FROM uhok_search(CAST(:query AS text), CAST(:tbl AS regclass),"
                    " CAST(:id_column AS name), CAST(:vector_column AS name), CAST(:top_k AS integer),"
                    " CAST(:exclude_ids AS bigint[]), CAST(:page AS integer))"
                )
        else:
            rid, vec = quote_ident(table.id_column), quote_ident(table.vector_column)
            self.sql = text(
                "WITH q AS MATERIALIZED (SELECT uhok_embed(CAST(:query AS text)) AS v)"
                f" SELECT {rid}::bigint AS recipe_id, ({vec} <-> (SELECT v FROM q))::float8 AS distance"
                f" FROM {table.qualified()}"
                f" WHERE {vec} IS NOT NULL AND ({rid}::bigint = ANY (CAST(:exclude_ids AS bigint[]))) IS NOT TRUE"
                f" ORDER BY {vec} <-> (SELECT v FROM q)"
                " LIMIT CAST(:top_k AS integer) OFFSET CAST(:skip AS bigint)"
            )

    def params(self, query: Optional[str], top_k: int, exclude_ids: Optional[Sequence[Optional[int]]],
               page: int) -> Dict[str, Any]:
        # NULL elements and duplicates are dropped (uhok_search ignores NULL elements too;
        # in the inline query one NULL would exclude every row).
        excluded = sorted({int(x) for x in exclude_ids or () if x is not None})
        params: Dict[str, Any] = {"query": query, "top_k": top_k, "exclude_ids": excluded, "page": page}
        if self.style == "inline":
            # The function's checks, with its SQLSTATEs.
            for name, value in (("query", query), ("top_k", top_k), ("page", page)):
                if value is None:
                    raise InvalidSearchError(f"{name} must not be NULL", "22004")
            if not 1 <= top_k <= MAX_TOP_K:
                raise InvalidSearchError(f"top_k must be between 1 and {MAX_TOP_K}, not {top_k}", "22023",
                                         "Fetch more rows with page.")
            if page < 0:
                raise InvalidSearchError(f"page must be 0 or more, not {page}", "22023", "Pages are numbered from 0.")
            params["skip"] = page * top_k
            del params["page"]
        elif self.table != RECIPE_TABLE:
            params.update(tbl=self.table.qualified(), id_column=self.table.id_column,
                          vector_column=self.table.vector_column)
        return params

    def needs_iterative_scan(self) -> bool:
        return self.style == "inline"


ITERATIVE_SCAN: TextClause = text("SELECT set_config('hnsw.iterative_scan', 'strict_order', true)")


def _rows(result: Any) -> List[Tuple[int, float]]:
    return [(int(recipe_id), float(distance)) for recipe_id, distance in result]


class InDatabaseRecommender(VectorSearcherPort):
    """find_similar_ids over SQLAlchemy's AsyncSession (asyncpg or psycopg's async driver)."""

    def __init__(self, style: str = "function", table: SearchTable = RECIPE_TABLE) -> None:
        self._search = _Search(style, table)

    @property
    def style(self) -> str:
        return self._search.style

    async def find_similar_ids(
        self,
        pg_db: Union[AsyncSession, AsyncConnection],
        query: str,
        top_k: int,
        exclude_ids: Optional[Sequence[Optional[int]]] = None,
        page: int = 0,
    ) -> List[Tuple[int, float]]:
        """The top_k recipes nearest to query, nearest first, as (recipe_id, distance), skipping
        exclude_ids; page n gives the next top_k (page 0 first)."""
        params = self._search.params(query, top_k, exclude_ids, page)
        try:
            if self._search.needs_iterative_scan():
                await pg_db.execute(ITERATIVE_SCAN)
            return _rows(await pg_db.execute(self._search.sql, params))
        except DBAPIError as e:
            raise translate(e) from e


class SyncInDatabaseRecommender:
    """The same over a synchronous Session or Connection (psycopg 3, psycopg2)."""

    def __init__(self, style: str = "function", table: SearchTable = RECIPE_TABLE) -> None:
        self._search = _Search(style, table)

    @property
    def style(self) -> str:
        return self._search.style

    def find_similar_ids(
        self,
        pg_db: Union[Session, Connection],
        query: str,
        top_k: int,
        exclude_ids: Optional[Sequence[Optional[int]]] = None,
        page: int = 0,
    ) -> List[Tuple[int, float]]:
        params = self._search.params(query, top_k, exclude_ids, page)
        try:
            if self._search.needs_iterative_scan():
                pg_db.execute(ITERATIVE_SCAN)
            return _rows(pg_db.execute(self._search.sql, params))
        except DBAPIError as e:
            raise translate(e) from e
