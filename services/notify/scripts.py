"""Lua scripts of the notifier, kept as `.lua` files beside the store that runs them."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def lua(package: str | None, name: str) -> str:
    """The source of the script `name` shipped in `package` (package data)."""
    if not package:
        raise ValueError("a Lua script is loaded relative to a package")
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")
