"""The committed JSON Schema files of the contract match the models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway_analytics.shared.events.schema_files import (
    SCHEMA_DIR,
    SCHEMA_FILES,
    export_schemas,
    rendered_schemas,
)

REGENERATE = "run `gateway-analytics export-schemas` and commit the result"


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_committed_schema_equals_rendered_schema(name: str) -> None:
    """Each committed schema file holds exactly what its model renders."""
    path = SCHEMA_DIR / name
    expected = rendered_schemas()[name]

    committed = path.read_text(encoding="utf-8") if path.exists() else None

    assert committed is not None, f"{name} is missing; {REGENERATE}"
    assert committed == expected, f"{name} differs from its model; {REGENERATE}"


def test_no_stray_schema_file() -> None:
    """Every *.schema.json beside the models is one the models produce."""
    produced = set(rendered_schemas())

    committed = {path.name for path in SCHEMA_DIR.glob("*.schema.json")}

    stray = sorted(committed - produced)
    assert not stray, (
        f"{stray} are not produced by the models; delete them, or add their "
        f"model to SCHEMA_FILES and {REGENERATE}"
    )


def test_rendered_schemas_declare_draft_2020_12() -> None:
    """Every rendered schema is JSON that names the 2020-12 draft."""
    rendered = rendered_schemas()

    drafts = {name: json.loads(text)["$schema"] for name, text in rendered.items()}

    assert set(drafts.values()) == {"https://json-schema.org/draft/2020-12/schema"}


def test_export_schemas_writes_every_rendered_schema(tmp_path: Path) -> None:
    """export_schemas writes one file per schema, with the rendered text."""
    expected = rendered_schemas()

    written = export_schemas(tmp_path)

    assert sorted(path.name for path in written) == sorted(expected)
    assert {path.name: path.read_text(encoding="utf-8") for path in written} == (
        expected
    )
