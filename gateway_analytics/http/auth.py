"""Optional API keys: one set for ingest, one for queries.

With keys configured for a kind of route, its requests need
``Authorization: Bearer <key>``: no key or an unknown one gets 401, a key of
the other kind 403. Keys are compared in constant time and never logged.
Health, readiness and metrics stay open, for probes and scrapers.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from enum import StrEnum

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway_analytics.http.problems import Handler, RequestError


class Access(StrEnum):
    """What a key lets its holder do."""

    INGEST = "ingest"
    QUERY = "query"


def parse_keys(text: str) -> tuple[str, ...]:
    """The keys of a comma-separated setting; blanks are ignored."""
    return tuple(key.strip() for key in text.split(",") if key.strip())


def auth_middleware(
    *,
    ingest_keys: Sequence[str],
    query_keys: Sequence[str],
    routes: dict[tuple[str, str], Access],
) -> Middleware:
    """A middleware guarding ``routes`` ((method, path) to the access needed)."""
    keys = {Access.INGEST: tuple(ingest_keys), Access.QUERY: tuple(query_keys)}

    @web.middleware
    async def check_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        needed = routes.get((request.method, request.path))
        if needed is not None and keys[needed]:
            presented = _bearer(request)
            if not _known(presented, keys[needed]):
                other = Access.QUERY if needed is Access.INGEST else Access.INGEST
                if _known(presented, keys[other]):
                    raise RequestError(
                        403,
                        "forbidden",
                        f"This key is a {other} key; {needed} needs a {needed} key.",
                    )
                raise RequestError(
                    401,
                    "unauthorized",
                    f"Send a valid {needed} key as 'Authorization: Bearer <key>'.",
                    headers={"WWW-Authenticate": 'Bearer realm="gateway-analytics"'},
                )
        return await handler(request)

    return check_key


def _bearer(request: web.Request) -> str:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def _known(presented: str, keys: Sequence[str]) -> bool:
    # Every key is compared, so the time taken says nothing about which
    # key, or how much of one, matched.
    found = False
    for key in keys:
        found |= hmac.compare_digest(presented.encode(), key.encode())
    return bool(presented) and found
