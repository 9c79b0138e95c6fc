"""Async access to ClickHouse through clickhouse-connect.

One URL selects the engine: ``chdb:///dir`` runs ClickHouse embedded in this
process (chDB), ``http(s)://host:8123`` talks to a server. The SQL is the
same for both. clickhouse-connect is synchronous, so statements run on a
thread pool; the embedded engine gets a single thread, since one chDB
connection runs one statement at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from gateway_analytics.shared.errors import StorageError

logger = logging.getLogger(__name__)

_SERVER_THREADS = 4


class ClickHouse:
    """One database of one ClickHouse, with async statements.

    Build it with :func:`connect`.
    """

    def __init__(self, *, client: Client, threads: int) -> None:
        self._client = client
        self._executor = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="clickhouse"
        )

    async def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run a SELECT with bound parameters and return its rows."""
        result = await self._run(self._client.query, sql, parameters=parameters)
        return [tuple(row) for row in result.result_rows]

    async def command(
        self, sql: str, parameters: Mapping[str, Any] | None = None
    ) -> None:
        """Run a statement that returns no rows (DDL, INSERT ... SELECT)."""
        await self._run(self._client.command, sql, parameters=parameters)

    async def insert_raw(
        self,
        table: str,
        data: bytes,
        *,
        data_format: str,
        settings: Mapping[str, Any],
        deduplication_token: str | None = None,
    ) -> None:
        """Insert ``data``, text in ClickHouse's ``data_format``, in one insert.

        ClickHouse parses the data itself, which costs this process nothing
        per row.

        Args:
            deduplication_token: when given, a repeat of this insert with the
                same token is dropped by ClickHouse (the table must keep a
                deduplication window), so an insert whose outcome is unknown
                can be retried safely.
        """
        chosen = dict(settings)
        if deduplication_token is not None:
            chosen["insert_deduplication_token"] = deduplication_token
        await self._run(
            self._client.raw_insert,
            table,
            insert_block=data,
            fmt=data_format,
            settings=chosen,
        )

    async def close(self) -> None:
        """Wait for running statements, then close the connection."""
        await asyncio.get_running_loop().run_in_executor(
            self._executor, self._client.close
        )
        self._executor.shutdown(wait=True)

    async def _run(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor, partial(function, *args, **kwargs)
            )
        except (ClickHouseError, OSError) as error:
            raise StorageError(f"ClickHouse failed: {error}") from error


def connect(*, url: str, database: str) -> ClickHouse:
    """Connect to ``database`` at ``url``, creating the database when missing.

    Args:
        url: ``chdb:///absolute/dir`` (embedded) or ``http(s)://...``.
        database: a plain identifier; it is placed in SQL as a name.

    Raises:
        StorageError: ClickHouse could not be reached or refused the database.
    """
    embedded = url.startswith("chdb:")
    try:
        bootstrap = _client(url)
        bootstrap.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        bootstrap.close()
        client = _client(url, database=database)
    except (ClickHouseError, OSError) as error:
        hint = (
            " (the embedded engine allows one process per folder: is another "
            "one, such as `make run`, using it?)"
            if embedded
            else ""
        )
        raise StorageError(
            f"could not open ClickHouse database {database!r} at "
            f"{_without_password(url)}{hint}: {error}"
        ) from error
    return ClickHouse(client=client, threads=1 if embedded else _SERVER_THREADS)


def _client(url: str, database: str | None = None) -> Client:
    if url.startswith("chdb:"):
        return clickhouse_connect.get_client(dsn=url, database=database)
    # Without a session id the HTTP client may run statements from several
    # threads at once; sessions would serialize (and reject) them.
    return clickhouse_connect.get_client(
        dsn=url, database=database, autogenerate_session_id=False
    )


def _without_password(url: str) -> str:
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}://{user}:***@{host}"
