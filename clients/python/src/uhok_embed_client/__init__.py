"""The uhok recipe backend's side of uhok_embed: VectorSearcherPort answered inside PostgreSQL."""
from .errors import (
    ExtensionMissingError,
    InvalidSearchError,
    ModelUnavailableError,
    SearchTableMissingError,
    UhokEmbedError,
)
from .factory import IN_DB, make_vector_searcher
from .ports import VectorSearcherPort
from .recommender import RECIPE_TABLE, InDatabaseRecommender, SearchTable, SyncInDatabaseRecommender

__all__ = [
    "IN_DB",
    "RECIPE_TABLE",
    "ExtensionMissingError",
    "InDatabaseRecommender",
    "InvalidSearchError",
    "ModelUnavailableError",
    "SearchTable",
    "SearchTableMissingError",
    "SyncInDatabaseRecommender",
    "UhokEmbedError",
    "VectorSearcherPort",
    "make_vector_searcher",
]
