"""Soak test: a steady load on ``gateway-analytics run`` for a bounded time.

Starts the pipeline in a scratch folder, posts events at a fixed rate over
loopback, and every interval prints what was sent, the errors (non-202
answers and failed connections; the target is 0) and the resident memory of
the process (the target is flat after warm-up). At the end it waits for the
sink to store everything and checks the stored count equals what was sent.

    python -m bench.soak --minutes 10 --rate 2000

Writes its figures to bench/results/soak-<time>.json. Exits 1 when there
were errors, events went missing, or memory grew by more than 20% between
the first and the last sample after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from gateway_analytics.shared.local_kafka import free_port
from tests.e2e.running import RunProcess, count_rows

RESULTS_DIR = Path(__file__).with_name("results")
EVENTS_PER_REQUEST = 100


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MiB, read from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def stored_total(http: aiohttp.ClientSession, base_url: str) -> int:
    """All events counted by the pods endpoint."""
    rows = await count_rows(http, base_url, window="week")
    return sum(row["total"] for row in rows)


async def soak(*, minutes: float, rate: int, report_s: float) -> dict[str, Any]:
    """Run the load and return the figures."""
    with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        service = RunProcess(data_dir=Path(scratch), port=free_port(), settings={})
        await asyncio.to_thread(service.start)
        assert service.process is not None
        pid = service.process.pid
        sent = errors = 0
        samples: list[dict[str, float]] = []
        interval_s = EVENTS_PER_REQUEST / rate
        url = service.base_url + "/api/analytics/events"
        pods = [str(uuid.uuid4()) for _ in range(500)]
        async with aiohttp.ClientSession() as http:
            started = time.monotonic()
            next_report = started + report_s
            request_number = 0
            while (now := time.monotonic()) < started + minutes * 60:
                batch = [
                    {"type": "pod_entered", "pod_id": pods[(request_number + n) % 500]}
                    for n in range(EVENTS_PER_REQUEST)
                ]
                try:
                    async with http.post(url, json={"events": batch}) as response:
                        if response.status == 202:
                            sent += EVENTS_PER_REQUEST
                        else:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1
                request_number += 1
                if now >= next_report:
                    sample = {
                        "elapsed_s": round(now - started, 1),
                        "sent": sent,
                        "errors": errors,
                        "rss_mb": round(rss_mb(pid), 1),
                    }
                    samples.append(sample)
                    print(json.dumps(sample), flush=True)
                    next_report += report_s
                # Fixed rate: each request starts on its own tick.
                await asyncio.sleep(
                    max(0.0, started + request_number * interval_s - time.monotonic())
                )

            deadline = time.monotonic() + 120
            stored = await stored_total(http, service.base_url)
            while stored < sent and time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                stored = await stored_total(http, service.base_url)
        exit_status = await asyncio.to_thread(service.stop)
    after_warm_up = [s["rss_mb"] for s in samples[len(samples) // 5 :]] or [0.0]
    return {
        "finished_at": datetime.now(UTC).isoformat(),
        "minutes": minutes,
        "rate_events_per_s": rate,
        "sent": sent,
        "stored": stored,
        "errors": errors,
        "exit_status": exit_status,
        "rss_mb_after_warm_up_first": after_warm_up[0],
        "rss_mb_last": after_warm_up[-1],
        "rss_mb_max": max(after_warm_up),
        "samples": samples,
    }


def main() -> int:
    """Parse the arguments, soak, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=2000, help="events per second")
    parser.add_argument("--report-s", type=float, default=30.0)
    arguments = parser.parse_args()
    figures = asyncio.run(
        soak(
            minutes=arguments.minutes, rate=arguments.rate, report_s=arguments.report_s
        )
    )
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS_DIR / f"soak-{stamp}.json").write_text(json.dumps(figures, indent=2))
    growth = figures["rss_mb_last"] / max(figures["rss_mb_after_warm_up_first"], 1e-9)
    print(
        f"sent {figures['sent']} events, stored {figures['stored']}, "
        f"{figures['errors']} errors; RSS {figures['rss_mb_after_warm_up_first']} MB "
        f"after warm-up, {figures['rss_mb_last']} MB at the end ({growth:.2f}x)"
    )
    healthy = (
        figures["errors"] == 0
        and figures["stored"] == figures["sent"]
        and growth <= 1.2
        and figures["exit_status"] == 0
    )
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
