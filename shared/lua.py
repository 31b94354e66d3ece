"""Lua scripts ship as `.lua` files beside the module that runs them (package data)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def script(package: str, name: str) -> str:
    """The text of the Lua file `name` in `package` (e.g. "shared", "atomic.lua")."""
    return files(package).joinpath(name).read_text(encoding="utf-8")
