"""Database errors from uhok_embed, as exceptions the backend can handle by kind.

Each keeps the SQLSTATE (`sqlstate`) and the server's message, hint and the SQLAlchemy error it
came from (`__cause__`). The kinds follow the SQLSTATEs uhok_embed raises (README,
"Troubleshooting"; src/error.rs):

  InvalidSearchError      22004, 22023
                                 a bad argument: top_k outside 1..1000, page < 0, a NULL query
                                 (but a 22023 about uhok_embed.model_path is the server's)
  ModelUnavailableError   58xxx, F0000, 55000, 53100, 53200, 54000
                                 no usable model: the folder is missing or unreadable (58P01,
                                 58030), broken (F0000), being replaced (55000), no disk or memory
                                 for it (53100, 53200), or model_path unusable (22023)
  ExtensionMissingError   42883, 3F000
                                 uhok_embed (or pgvector) is not installed in this database
  SearchTableMissingError 42P01, 42703
                                 the table or a column the search names does not exist
  UhokEmbedError          anything else from the database (the base class of all four), such
                                 as pgvector's 22000 "different vector dimensions" when the table's
                                 vectors are not the loaded model's size
"""
from __future__ import annotations

from typing import Iterator, Optional

from sqlalchemy.exc import DBAPIError


class UhokEmbedError(Exception):
    """A database error during an in-database search, with its SQLSTATE."""

    def __init__(self, message: str, sqlstate: Optional[str], hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.hint = hint


class InvalidSearchError(UhokEmbedError, ValueError):
    """The search's arguments were refused (SQLSTATE class 22)."""


class ModelUnavailableError(UhokEmbedError):
    """The server has no usable model: check uhok_embed_info() and the model folder."""


class ExtensionMissingError(UhokEmbedError):
    """uhok_embed is not installed in this database: CREATE EXTENSION uhok_embed CASCADE."""


class SearchTableMissingError(UhokEmbedError):
    """The table or a column the search reads does not exist."""


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and what it wraps: SQLAlchemy's DBAPIError, its .orig (psycopg's error, or
    SQLAlchemy's adapter for asyncpg's), and the driver's own error under that."""
    seen: Optional[BaseException] = error
    for _ in range(4):
        if seen is None:
            return
        yield seen
        seen = getattr(seen, "orig", None) or seen.__cause__


def sqlstate_of(error: BaseException) -> Optional[str]:
    """The SQLSTATE of a driver error: psycopg's .sqlstate, asyncpg's (under SQLAlchemy's
    adapter, on the error it wraps)."""
    for seen in _chain(error):
        code = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if isinstance(code, str) and code:
            return code
    return None


def _detail(error: BaseException, name: str) -> Optional[str]:
    for seen in _chain(error):
        diag = getattr(seen, "diag", None)  # psycopg
        value = getattr(diag, f"message_{name}", None) if diag is not None else getattr(seen, name, None)
        if isinstance(value, str) and value:
            return value
    return None


def translate(error: DBAPIError) -> UhokEmbedError:
    """The exception for a database error, by its SQLSTATE."""
    code = sqlstate_of(error)
    message = _detail(error, "primary") or _detail(error, "message") or str(error.orig)
    hint = _detail(error, "hint")
    kind: type[UhokEmbedError] = UhokEmbedError
    if code is None:
        pass
    elif code == "22023" and "model_path" in message:
        kind = ModelUnavailableError
    elif code in ("22004", "22023"):
        kind = InvalidSearchError
    elif code.startswith("58") or code in ("F0000", "55000", "53100", "53200", "54000"):
        kind = ModelUnavailableError
    elif code in ("42883", "3F000"):
        kind = ExtensionMissingError
    elif code in ("42P01", "42703"):
        kind = SearchTableMissingError
    return kind(f"{message} (SQLSTATE {code})" if code else message, code, hint)
