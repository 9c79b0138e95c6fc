"""SIGTERM under load: in-flight requests finish, nothing acknowledged is lost.

Every request carries the events of one pod of its own, so after the restart
each request's pod count shows whether its events are stored: all of them
for every request answered 202, and for a request cut off by the shutdown
either all or none, never a part and never twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import pytest

from gateway_analytics.shared.local_kafka import free_port
from tests.e2e.running import RunProcess, count_rows

pytestmark = pytest.mark.e2e

EVENTS_PER_REQUEST = 200
CLIENTS = 4
SHUTDOWN_BOUND_S = 45.0


async def _load(
    http: aiohttp.ClientSession, url: str, outcomes: dict[str, bool]
) -> None:
    """Post one pod's batch after another until the service goes away."""
    while True:
        pod = str(uuid.uuid4())
        events = [
            {"type": "pod_entered", "pod_id": pod} for _ in range(EVENTS_PER_REQUEST)
        ]
        outcomes[pod] = False
        try:
            async with http.post(url, json={"events": events}) as response:
                outcomes[pod] = response.status == 202
                if response.status != 202:
                    return
        except aiohttp.ClientError:
            return


async def _pod_totals(http: aiohttp.ClientSession, base_url: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for row in await count_rows(http, base_url, window="week"):
        totals[row["pod_id"]] = totals.get(row["pod_id"], 0) + row["total"]
    return totals


async def test_sigterm_mid_load_loses_nothing_acknowledged(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """After SIGTERM and a restart, every 202's events are counted, once."""
    service = RunProcess(
        data_dir=tmp_path_factory.mktemp("shutdown"),
        port=free_port(),
        settings={"ANALYTICS_SINK_FLUSH_INTERVAL_S": "0.5"},
    )
    await asyncio.to_thread(service.start)
    outcomes: dict[str, bool] = {}
    async with aiohttp.ClientSession() as http:
        url = service.base_url + "/api/analytics/events"
        clients = [
            asyncio.create_task(_load(http, url, outcomes)) for _ in range(CLIENTS)
        ]
        await asyncio.sleep(3.0)

        started = time.monotonic()
        exit_status = await asyncio.to_thread(service.stop)
        stopped_in_s = time.monotonic() - started
        await asyncio.gather(*clients)

        await asyncio.to_thread(service.start)
        acknowledged = {pod for pod, ok in outcomes.items() if ok}
        deadline = time.monotonic() + 60
        totals = await _pod_totals(http, service.base_url)
        while time.monotonic() < deadline and any(
            totals.get(pod) != EVENTS_PER_REQUEST for pod in acknowledged
        ):
            await asyncio.sleep(0.5)
            totals = await _pod_totals(http, service.base_url)
        assert await asyncio.to_thread(service.stop) == 0

    print(
        f"\n{len(acknowledged)} requests acknowledged before SIGTERM, "
        f"{len(outcomes) - len(acknowledged)} cut off; stopped in {stopped_in_s:.1f} s"
    )
    assert exit_status == 0
    assert stopped_in_s < SHUTDOWN_BOUND_S
    assert len(acknowledged) > 10
    stored = {pod: totals.get(pod) for pod in acknowledged}
    assert all(total == EVENTS_PER_REQUEST for total in stored.values()), stored
    assert all(totals.get(pod, 0) in (0, EVENTS_PER_REQUEST) for pod in outcomes)
    assert set(totals) <= set(outcomes)
