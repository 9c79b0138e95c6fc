"""``page`` and ``page_size``: parsing, limits and LIMIT/OFFSET arithmetic."""

from __future__ import annotations

import json

import pytest

from gateway_analytics.http.count_parameters import CountParameters, parse_parameters
from gateway_analytics.http.pagination import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    Page,
)
from gateway_analytics.http.problems import RequestError


def parse_page(query: dict[str, str]) -> Page:
    return parse_parameters(CountParameters, query).as_page()


def test_defaults_are_page_1_of_50() -> None:
    """Without parameters the first page of 50 rows is asked for."""
    query: dict[str, str] = {}

    page = parse_page(query)

    assert page == Page(number=1, size=50)
    assert DEFAULT_PAGE_SIZE == 50


def test_given_page_and_page_size_are_used() -> None:
    """Valid page and page_size are taken as given."""
    query = {"page": "3", "page_size": "20"}

    page = parse_page(query)

    assert page == Page(number=3, size=20)


@pytest.mark.parametrize("text", ["201", "1000", "99999999999999999999"])
def test_page_size_above_maximum_is_reduced(text: str) -> None:
    """A page_size above 200 is reduced to 200 rather than refused."""
    query = {"page_size": text}

    page = parse_page(query)

    assert page.size == MAX_PAGE_SIZE == 200


def test_page_size_at_maximum_is_kept() -> None:
    """A page_size of exactly 200 is kept."""
    query = {"page_size": "200"}

    page = parse_page(query)

    assert page.size == 200


@pytest.mark.parametrize("name", ["page", "page_size"])
@pytest.mark.parametrize(
    "text", ["0", "-1", "-0", "abc", "", " 1", "1.5", "1e3", "+2", "٣", "²"]
)
def test_non_positive_integer_is_refused_with_400(name: str, text: str) -> None:
    """Anything but a positive ASCII integer is answered with 400."""
    query = {name: text}

    with pytest.raises(RequestError) as raised:
        parse_page(query)

    response = raised.value.response
    assert response.status == 400
    assert isinstance(response.body, bytes)
    body = json.loads(response.body)
    assert body["error"] == "invalid_parameter"
    assert name in body["message"]


def test_last_allowed_page_is_accepted() -> None:
    """page equal to MAX_PAGE is accepted."""
    query = {"page": str(MAX_PAGE)}

    page = parse_page(query)

    assert page.number == MAX_PAGE


def test_page_beyond_maximum_is_refused_with_400() -> None:
    """page above MAX_PAGE is answered with 400 telling to narrow the query."""
    query = {"page": str(MAX_PAGE + 1)}

    with pytest.raises(RequestError) as raised:
        parse_page(query)

    response = raised.value.response
    assert response.status == 400
    assert isinstance(response.body, bytes)
    assert str(MAX_PAGE) in json.loads(response.body)["message"]


@pytest.mark.parametrize(
    ("number", "size", "offset"),
    [(1, 50, 0), (2, 50, 50), (3, 20, 40), (MAX_PAGE, 200, (MAX_PAGE - 1) * 200)],
)
def test_offset_skips_the_rows_of_earlier_pages(
    number: int, size: int, offset: int
) -> None:
    """offset is the number of rows on the pages before this one."""
    page = Page(number=number, size=size)

    actual = page.offset

    assert actual == offset


@pytest.mark.parametrize("size", [1, 50, 200])
def test_limit_asks_for_one_row_more_than_the_page(size: int) -> None:
    """limit is the page size plus one, so has_more can be known exactly."""
    page = Page(number=4, size=size)

    limit = page.limit

    assert limit == size + 1


@pytest.mark.parametrize(
    ("fetched", "rows", "has_more"),
    [(0, 0, False), (2, 2, False), (3, 3, False), (4, 3, True)],
)
def test_split_reports_has_more_exactly(
    fetched: int, rows: int, has_more: bool
) -> None:
    """split keeps at most size rows and has_more only when a row is left over."""
    page = Page(number=1, size=3)
    fetched_rows = [f"row-{index}" for index in range(fetched)]

    kept, more = page.split(fetched_rows)

    assert list(kept) == fetched_rows[:rows]
    assert more is has_more
