"""The recipe backend's search port, as the seed's services/recommend/ports.py declares it.

The backend keeps its own copy of this class; InDatabaseRecommender is written against this
one, which has the same method, so it fits either (the backend's factory only calls
find_similar_ids).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import List, Optional, Sequence, Tuple

from sqlalchemy.ext.asyncio import AsyncSession


class VectorSearcherPort(ABC):
    @abstractmethod
    async def find_similar_ids(
        self,
        pg_db: AsyncSession,
        query: str,
        top_k: int,
        exclude_ids: Optional[Sequence[Optional[int]]] = None,
    ) -> List[Tuple[int, float]]:
        """The top_k recipes nearest to query, nearest first, as (recipe_id, distance)."""
