"""Every count query the README shows is answered, with the parameters it names."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiohttp.test_utils import TestClient

from gateway_analytics.clickhouse.client import ClickHouse
from tests.conftest import REPO_ROOT
from tests.integration.count_reference import api_client

EXAMPLES = re.findall(
    r"^GET (/api/analytics/\S+)$",
    (REPO_ROOT / "README.md").read_text(encoding="utf-8"),
    flags=re.MULTILINE,
)


@pytest.fixture
async def client(clickhouse: ClickHouse) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    """The API on a test server, reading from a fresh database."""
    async with api_client(clickhouse) as test_client:
        yield test_client


def test_the_readme_shows_count_examples() -> None:
    """The README has examples for both count endpoints."""
    paths = {urlsplit(example).path for example in EXAMPLES}

    assert paths == {"/api/analytics/pods", "/api/analytics/artifacts"}


@pytest.mark.parametrize("example", EXAMPLES)
async def test_each_example_is_answered_as_asked(
    client: TestClient,  # type: ignore[type-arg]
    example: str,
) -> None:
    """Each example gets a 200 that echoes its window, page and page size."""
    asked = dict(parse_qsl(urlsplit(example).query))

    response = await client.get(example)

    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["window"] == asked.get("window", "day")
    assert body["page"] == int(asked.get("page", "1"))
    assert body["page_size"] == int(asked.get("page_size", "50"))
