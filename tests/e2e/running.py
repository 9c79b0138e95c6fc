"""``gateway-analytics run`` as a child process, the way a user starts it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import KAFKA_CACHE_DIR

START_TIMEOUT_S = 120


class RunProcess:
    """One ``run`` over a data folder that outlives the process.

    Args:
        data_dir: Kafka's log, the embedded ClickHouse and the run log.
        port: the API port, kept across restarts.
        settings: extra ``ANALYTICS_`` variables.
    """

    def __init__(self, *, data_dir: Path, port: int, settings: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = data_dir / "run.log"
        self.env = {
            **os.environ,
            "ANALYTICS_DATA_DIR": str(data_dir),
            "ANALYTICS_HTTP_PORT": str(port),
            "ANALYTICS_KAFKA_CACHE_DIR": str(KAFKA_CACHE_DIR),
            **settings,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process and return once the API answers."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway_analytics", "run"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"run exited early:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(
                    self.base_url + "/api/analytics/pods", timeout=2
                ):
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"run did not answer within {START_TIMEOUT_S} s")

    def kill(self) -> None:
        """SIGKILL the process; its broker dies with it."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        # The broker ends when its parent dies; give the kernel a moment to
        # reap it and release the log directory's lock.
        time.sleep(1.0)

    def stop(self) -> int:
        """SIGTERM the process and return its exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


async def count_rows(
    http: aiohttp.ClientSession, base_url: str, *, window: str
) -> list[dict[str, Any]]:
    """Every row of the pods endpoint for ``window``, across all its pages."""
    rows: list[dict[str, Any]] = []
    page = 1
    while True:
        async with http.get(
            base_url + "/api/analytics/pods",
            params={"window": window, "page": page, "page_size": 200},
        ) as response:
            body: dict[str, Any] = await response.json()
        rows += body["data"]
        if not body["has_more"]:
            return rows
        page += 1
