"""Choosing the searcher by ML_MODE, as the backend's factory does, with in_db beside the old modes.

    searcher = make_vector_searcher({
        "remote_embed": RemoteDBVectorRecommender,      # the backend's own classes
        "remote_store": RemoteVectorStoreRecommender,
    })

ML_MODE=in_db gives InDatabaseRecommender (UHOK_SEARCH_STYLE=function | inline, default
function); any other mode is looked up in the mapping the backend passes; an unknown or unset one
is a ValueError that lists the known modes (a typo in .env, or a line deleted during a rollback,
fails at startup rather than silently choosing a path).
Rolling back is setting ML_MODE to the old mode and restarting, as the seed's plan has it.
"""
from __future__ import annotations

import os
from typing import Callable, Mapping, Optional

from .ports import VectorSearcherPort
from .recommender import InDatabaseRecommender

IN_DB = "in_db"


def make_vector_searcher(
    others: Optional[Mapping[str, Callable[[], VectorSearcherPort]]] = None,
    mode: Optional[str] = None,
) -> VectorSearcherPort:
    others = dict(others or {})
    mode = mode if mode is not None else os.environ.get("ML_MODE")
    if mode == IN_DB:
        return InDatabaseRecommender(style=os.environ.get("UHOK_SEARCH_STYLE", "function"))
    if mode in others:
        return others[mode]()
    known = ", ".join(sorted({IN_DB, *others}))
    if mode is None:
        raise ValueError(f"ML_MODE is not set; set it to one of: {known}")
    raise ValueError(f"ML_MODE={mode!r} is not one of: {known}")
