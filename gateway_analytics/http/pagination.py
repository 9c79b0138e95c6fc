"""LIMIT/OFFSET paging with an exact ``has_more``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Deep pages cost ClickHouse a scan of every row before them; past this the
# client should narrow its question instead of paging further.
MAX_PAGE = 10_000

_Row = TypeVar("_Row")


@dataclass(frozen=True)
class Page:
    """A 1-based page of ``size`` rows."""

    number: int
    size: int

    @property
    def offset(self) -> int:
        """Rows before this page."""
        return (self.number - 1) * self.size

    @property
    def limit(self) -> int:
        """Rows to ask for: one more than the page holds, to learn has_more."""
        return self.size + 1

    def split(self, rows: Sequence[_Row]) -> tuple[Sequence[_Row], bool]:
        """The rows of this page, and whether more rows follow it."""
        return rows[: self.size], len(rows) > self.size
