"""Progress output: a bar on a terminal, plain lines for logs."""

from __future__ import annotations

import io

from gateway_analytics.shared.progress import Progress


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_redrawn_in_place_with_an_eta() -> None:
    """On a terminal the line is redrawn with records, rate, share and ETA."""
    stream = Terminal()
    progress = Progress("replay", total=200, stream=stream)

    progress.advance(50)
    progress.finish()

    text = stream.getvalue()
    assert text.startswith("\r[")
    assert "replay: 50 records" in text
    assert "records/s" in text
    assert "25% of 200, ETA" in text
    assert text.endswith("\n")


def test_other_streams_get_whole_lines_without_control_characters() -> None:
    """Off a terminal every report is a plain line a log can keep."""
    stream = io.StringIO()
    progress = Progress("backfill", stream=stream)

    progress.advance(3)
    progress.advance(4)
    progress.finish()

    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("backfill: 7 records, ")
    assert "ETA" not in lines[-1]
    assert "\r" not in stream.getvalue()
