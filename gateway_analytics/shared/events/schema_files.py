"""The contract's JSON Schema files, exported beside the models.

Gateways in other languages validate against these files; a test keeps them
equal to what the models produce.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gateway_analytics.shared.events.models import (
    ArtifactViewed,
    CheckoutStarted,
    EventBatch,
    EventRecord,
    PodEntered,
    SaleCompleted,
)

SCHEMA_DIR = Path(__file__).parent


SCHEMA_FILES: dict[str, type[BaseModel]] = {
    "pod_entered.schema.json": PodEntered,
    "artifact_viewed.schema.json": ArtifactViewed,
    "checkout_started.schema.json": CheckoutStarted,
    "sale_completed.schema.json": SaleCompleted,
    "event_batch.schema.json": EventBatch,
    "event_record.schema.json": EventRecord,
}


def rendered_schemas() -> dict[str, str]:
    """File name to JSON text of every schema of the contract."""
    return {
        name: _render(model.model_json_schema()) for name, model in SCHEMA_FILES.items()
    }


def _render(schema: dict[str, Any]) -> str:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def export_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema file into ``directory`` and return their paths."""
    written = []
    for name, text in rendered_schemas().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
