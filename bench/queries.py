"""The count endpoints' latency over a year of events.

    python -m bench.queries                    # 10,000,000 events, 10,000 pods
    python -m bench.queries --events 1000000   # a thinner year
    python -m bench.queries --data-dir D --reuse   # load once into D, then reuse

Loads a year of generated events into a fresh embedded ClickHouse through the
sink's own insert (``insert_records``, in batches of the sink's batch size,
with each record's Kafka partition and offset), so the materialized views
fill the rollups as they do in production. Then it serves the API from this
same process, since chDB runs one engine per process, and times sequential
GETs over keep-alive HTTP from a client thread. The load runs once; each
query figure is a percentile over ``--requests`` requests of one kind, after
a few warm-ups. Every run loads afresh unless ``--reuse`` is given, and a
reused load is announced as such, with the figures of the load that made it.

Prints a table, then one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from bench.year import Year, load, settle, table_figures
from gateway_analytics.clickhouse.client import ClickHouse, connect
from gateway_analytics.clickhouse.counts import Entity, fetch_counts
from gateway_analytics.clickhouse.migrations import MIGRATIONS_DIR, migrate
from gateway_analytics.http.app import create_app
from gateway_analytics.http.count_parameters import PARAMETERS_OF, parse_parameters
from gateway_analytics.shared.events import EncodedEvent
from gateway_analytics.shared.local_kafka import free_port
from gateway_analytics.shared.settings import Settings

WARM_UPS = 5
DATABASE = "bench"
TARGETS_MS = {"day": 50.0, "one_pod": 20.0}
LOADED_MARK = "loaded.json"


@dataclass(frozen=True)
class QueryKind:
    """One kind of count request; ``pick`` names an id drawn anew each time."""

    name: str
    entity: Entity
    parameters: dict[str, str]
    pick: str = ""

    @property
    def path(self) -> str:
        """The endpoint's path."""
        return f"/api/analytics/{'pods' if self.entity is Entity.POD else 'artifacts'}"


KINDS = (
    QueryKind("day", Entity.POD, {"window": "day"}),
    QueryKind("day_page_2", Entity.POD, {"window": "day", "page": "2"}),
    QueryKind("day_page_50", Entity.POD, {"window": "day", "page": "50"}),
    QueryKind("hour", Entity.POD, {"window": "hour"}),
    QueryKind("week", Entity.POD, {"window": "week"}),
    QueryKind("day_kolkata", Entity.POD, {"window": "day", "tz": "Asia/Kolkata"}),
    QueryKind("day_sales", Entity.POD, {"window": "day", "type": "sale_completed"}),
    QueryKind("one_pod", Entity.POD, {"window": "day"}, pick="pod_id"),
    QueryKind("artifacts_day", Entity.ARTIFACT, {"window": "day"}),
    QueryKind("one_artifact", Entity.ARTIFACT, {"window": "day"}, pick="artifact_id"),
)


@dataclass
class Requests:
    """The parameters of each request; the ids asked about come from a seeded draw."""

    count: int
    ids: dict[str, list[str]]
    seed: int
    _random: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def of(self, kind: QueryKind) -> list[dict[str, str]]:
        """``WARM_UPS`` plus ``count`` parameter sets of ``kind``."""
        drawn = []
        for _ in range(WARM_UPS + self.count):
            parameters = dict(kind.parameters)
            if kind.pick:
                parameters[kind.pick] = self._random.choice(self.ids[kind.pick])
            drawn.append(parameters)
        return drawn


class _NoPublisher:
    """The count endpoints never publish."""

    async def publish(self, events: Sequence[EncodedEvent]) -> None:
        raise RuntimeError("a count request published events")


@asynccontextmanager
async def serving(clickhouse: ClickHouse) -> AsyncIterator[str]:
    """The API over ``clickhouse`` on a free loopback port; yields its base URL."""
    # Keys set in the environment would turn every request into a 401.
    settings = Settings(query_api_keys=SecretStr(""))
    app = create_app(settings=settings, clickhouse=clickhouse, publisher=_NoPublisher())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _time_over_http(
    base_url: str, kinds: Sequence[QueryKind], requests: Requests
) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {}
    async with aiohttp.ClientSession(base_url) as http:
        for kind in kinds:
            elapsed_ms = []
            for parameters in requests.of(kind):
                started = time.perf_counter()
                async with http.get(kind.path, params=parameters) as response:
                    body = await response.read()
                elapsed_ms.append((time.perf_counter() - started) * 1000)
                if response.status != 200:
                    raise RuntimeError(
                        f"{kind.path} answered {response.status}: {body[:500]!r}"
                    )
            timings[kind.name] = elapsed_ms[WARM_UPS:]
    return timings


async def _time_directly(
    clickhouse: ClickHouse, kinds: Sequence[QueryKind], requests: Requests
) -> dict[str, list[float]]:
    """The same requests through ``fetch_counts`` alone, without HTTP."""
    timings: dict[str, list[float]] = {}
    for kind in kinds:
        elapsed_ms = []
        for raw in requests.of(kind):
            parameters = parse_parameters(PARAMETERS_OF[kind.entity], raw)
            page = parameters.as_page()
            started = time.perf_counter()
            await fetch_counts(
                clickhouse,
                parameters.count_query(kind.entity),
                limit=page.limit,
                offset=page.offset,
            )
            elapsed_ms.append((time.perf_counter() - started) * 1000)
        timings[f"{kind.name}_direct"] = elapsed_ms[WARM_UPS:]
    return timings


def percentile(ordered: Sequence[float], share: float) -> float:
    """The nearest-rank percentile of sorted values; ``share`` 0.95 for p95."""
    return ordered[max(math.ceil(len(ordered) * share), 1) - 1]


def summarize(timings: dict[str, list[float]]) -> dict[str, float]:
    """p50, p95 and p99 in ms of every kind, keyed ``query_<kind>_p95_ms``."""
    figures = {}
    for name, values in timings.items():
        ordered = sorted(values)
        figures[f"query_{name}_p50_ms"] = statistics.median(ordered)
        figures[f"query_{name}_p95_ms"] = percentile(ordered, 0.95)
        figures[f"query_{name}_p99_ms"] = percentile(ordered, 0.99)
    return figures


def schema_key() -> str:
    """A short digest of the migrations, so reused data matches the schema."""
    digest = hashlib.sha256()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


async def prepare(clickhouse: ClickHouse, year: Year, folder: Path) -> dict[str, float]:
    """Load ``year`` unless ``folder`` already holds it; the load's figures."""
    mark = folder / LOADED_MARK
    if mark.exists():
        loaded: dict[str, Any] = json.loads(mark.read_text())
        print(
            f"REUSING the events loaded at {loaded['loaded_at']} in {folder}; "
            "the load figures are from then.",
            file=sys.stderr,
        )
        return {**loaded["figures"], "query_data_reused": 1.0}
    await migrate(clickhouse)
    load_s = await load(clickhouse, year)
    figures = {
        "query_events": float(year.events),
        "query_pods": float(len(year.pods)),
        "query_load_s": load_s,
        "query_load_events_per_s": year.events / load_s,
        "query_settle_s": await settle(clickhouse),
    }
    mark.write_text(
        json.dumps({"loaded_at": datetime.now(UTC).isoformat(), "figures": figures})
    )
    return figures


async def measure(folder: Path, options: argparse.Namespace) -> dict[str, float]:
    """Load (or reuse) the year in ``folder``, then time every kind of query."""
    year = Year(
        events=options.events,
        pods=options.pods,
        artifacts=options.artifacts,
        until=datetime.now(UTC),
        seed=options.seed,
    )
    url = f"chdb://{(folder / 'clickhouse').resolve()}"
    clickhouse = connect(url=url, database=DATABASE)
    try:
        figures = await prepare(clickhouse, year, folder)
        figures |= await table_figures(clickhouse)
        requests = Requests(
            count=options.requests,
            ids={
                "pod_id": [str(pod) for pod in year.pods],
                "artifact_id": [str(artifact) for artifact in year.artifacts],
            },
            seed=options.seed,
        )
        # Others' work on the machine shows in the tail of every percentile.
        figures["query_loadavg_1m_before"] = os.getloadavg()[0]
        async with serving(clickhouse) as base_url:
            # The client gets a thread and a loop of its own, so the server's
            # loop only serves; requests go one at a time, so the two seldom
            # need the interpreter at once.
            timings = await asyncio.to_thread(
                asyncio.run, _time_over_http(base_url, KINDS, requests)
            )
        if options.direct:
            timings |= await _time_directly(clickhouse, KINDS, requests)
        figures["query_loadavg_1m_after"] = os.getloadavg()[0]
    finally:
        await clickhouse.close()
    figures["query_requests_per_kind"] = float(options.requests)
    return figures | summarize(timings)


@contextmanager
def data_folder(options: argparse.Namespace) -> Iterator[Path]:
    """Where the embedded ClickHouse keeps the year: fresh unless ``--reuse``."""
    if options.data_dir is None:
        with tempfile.TemporaryDirectory(prefix="bench-queries-") as scratch:
            yield Path(scratch)
        return
    if not options.reuse:
        if options.data_dir.exists() and any(options.data_dir.iterdir()):
            raise SystemExit(
                f"--data-dir {options.data_dir} is not empty: name an empty or new "
                "folder, or add --reuse to keep loaded years in it"
            )
        options.data_dir.mkdir(parents=True, exist_ok=True)
        yield options.data_dir
        return
    folder = options.data_dir / (
        f"events-{options.events}-pods-{options.pods}-artifacts-{options.artifacts}"
        f"-seed-{options.seed}-schema-{schema_key()}"
    )
    if folder.exists() and not (folder / LOADED_MARK).exists():
        # A load that did not finish; its rows cannot be told apart.
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    yield folder


def print_table(figures: dict[str, float]) -> None:
    """The load figures, then one row per kind of query."""
    print(
        f"{figures['query_events']:,.0f} events, {figures['query_pods']:,.0f} pods: "
        f"loaded in {figures['query_load_s']:,.1f} s "
        f"({figures['query_load_events_per_s']:,.0f} events/s), merges settled "
        f"after {figures['query_settle_s']:,.1f} s"
    )
    if figures.get("query_data_reused"):
        print("REUSED data: the load figures are those of the run that loaded it")
    for table in ("analytics_events", "pod_counts", "artifact_counts"):
        rows = figures.get(f"query_{table}_rows", 0.0)
        parts = figures.get(f"query_{table}_parts", 0.0)
        print(f"{table}: {rows:,.0f} rows in {parts:,.0f} parts")
    print(
        f"\n{figures['query_requests_per_kind']:,.0f} sequential requests of each "
        f"kind; load average (1 min) {figures['query_loadavg_1m_before']:.1f} "
        f"before, {figures['query_loadavg_1m_after']:.1f} after, "
        f"on {os.cpu_count()} cores"
        "\n\n| query | p50 ms | p95 ms | p99 ms | target p95 |\n"
        "| --- | --- | --- | --- | --- |"
    )
    names = [key[6:-7] for key in figures if key.endswith("_p50_ms")]
    for name in names:
        target = TARGETS_MS.get(name)
        print(
            f"| {name} | {figures[f'query_{name}_p50_ms']:,.1f} "
            f"| {figures[f'query_{name}_p95_ms']:,.1f} "
            f"| {figures[f'query_{name}_p99_ms']:,.1f} "
            f"| {f'< {target:.0f} ms' if target else ''} |"
        )


def main() -> int:
    """Load the year, time the queries, print the table and the JSON figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--artifacts", type=int, default=50_000)
    parser.add_argument(
        "--requests", type=int, default=200, help="timed requests per kind"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="keep the data here (an empty folder); a removed scratch folder "
        "when absent",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --data-dir: load each (events, pods, artifacts, seed, schema) "
        "once into a subfolder and reuse it in later runs",
    )
    parser.add_argument(
        "--direct",
        action="store_true",
        help="also time fetch_counts alone, without HTTP",
    )
    options = parser.parse_args()
    if options.reuse and options.data_dir is None:
        parser.error("--reuse needs --data-dir")

    with data_folder(options) as folder:
        figures = asyncio.run(measure(folder, options))
    print_table(figures)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
