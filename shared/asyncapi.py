"""Generate the AsyncAPI document of all four services from their code.

`python -m shared.asyncapi docs/asyncapi.json` writes it; a contract test fails when the
committed document is stale.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

from faststream.specification import AsyncAPI

from shared.settings import Settings

SERVICES = ("questions", "answers", "votes", "notify")


def build() -> dict[str, Any]:
    """The AsyncAPI 3.0 document as a JSON-able dict (builds apps, connects to nothing)."""
    brokers = []
    for name in SERVICES:
        module = importlib.import_module(f"services.{name}.app")
        # Pinned values, so the document does not depend on the environment it is built in.
        settings = _settings_class(name)(
            redis_url="redis://localhost:6379/0", jwt_secret="x" * 32, consumer_name="<replica>"
        )
        app = module.create_app(settings)
        brokers.append(app.state.runtime.broker)
    spec = AsyncAPI(
        *brokers,
        title="askdoc events",
        version="1.0.0",
        description=(
            "Integration events of askdoc on Redis Streams. Every entry has one field, "
            "`__data__`, holding the event as plain JSON (readable with XRANGE by any "
            "Redis client). Each service reads through its own consumer group."
        ),
    )
    doc: dict[str, Any] = spec.to_specification().to_jsonable()
    return doc


def _settings_class(service: str) -> type[Settings]:
    """The service's own Settings subclass, if it has one."""
    try:
        module = importlib.import_module(f"services.{service}.settings")
    except ModuleNotFoundError:
        return Settings
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, Settings) and value is not Settings:
            return value
    return Settings


def render() -> str:
    """The document as stable, pretty JSON."""
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/asyncapi.json")
    target.write_text(render())
    print(f"wrote {target}")
