"""JSON-friendly option dicts -> frozen config dataclasses, with unknown names listed, not ignored."""

from __future__ import annotations

from dataclasses import fields
from typing import TypeVar

Config = TypeVar("Config")


def config_from_options(cls: type[Config], options: dict | None, what: str) -> Config:
    """``cls(**options)``, raising on names ``cls`` lacks (``what`` names the options in the error)."""
    options = dict(options or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown {what} options {unknown}; available: {sorted(known)}")
    return cls(**options)
