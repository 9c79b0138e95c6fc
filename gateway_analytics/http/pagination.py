"""``page`` and ``page_size``: LIMIT/OFFSET paging with an exact ``has_more``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from gateway_analytics.http.problems import RequestError

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


def parse_page(query: Mapping[str, str]) -> Page:
    """The page asked for; a ``page_size`` above the maximum is reduced to it.

    Raises:
        RequestError: 400 when ``page`` or ``page_size`` is not a positive
            integer, or ``page`` is beyond :data:`MAX_PAGE`.
    """
    number = _positive_int(query, "page", default=1)
    if number > MAX_PAGE:
        raise RequestError(
            400,
            "invalid_parameter",
            f"page must be at most {MAX_PAGE}; narrow the query instead.",
        )
    size = _positive_int(query, "page_size", default=DEFAULT_PAGE_SIZE)
    return Page(number=number, size=min(size, MAX_PAGE_SIZE))


def _positive_int(query: Mapping[str, str], name: str, *, default: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    digits = text.lstrip("0")
    if not (text.isascii() and text.isdigit() and digits):
        raise RequestError(
            400,
            "invalid_parameter",
            f"{name} must be a positive integer, got {text[:20]!r}.",
        )
    # Past 18 digits the exact value no longer matters, and int() would trip
    # Python's conversion limit on very long strings.
    return int(digits) if len(digits) <= 18 else 10**18
