"""JSON-friendly option dicts -> frozen config dataclasses, with unknown names listed, not ignored.

Every option dict the package takes (task, student, teacher-spec and reset options) is checked here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import TypeVar

from kd_env.errors import UserError

Config = TypeVar("Config")


def check_option_names(options: dict | None, known: Iterable[str], what: str, note: str = "") -> dict:
    """A copy of ``options``, raising on names not in ``known`` (``what`` names the options in the error,
    ``note`` is added to it)."""
    if options is not None and not isinstance(options, dict):
        raise UserError(f"{what} options must be a JSON object of names and values, got {options!r}")
    options = dict(options or {})
    known = set(known)
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(f"unknown {what} options {unknown}; available: {sorted(known)}" + (f" {note}" if note else ""))
    return options


def field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def config_from_options(cls: type[Config], options: dict | None, what: str) -> Config:
    """``cls(**options)``, raising on names ``cls`` lacks (``what`` names the options in the error)."""
    return cls(**check_option_names(options, field_names(cls), what))


def configs_from_options(options: dict | None, what: str, *classes: type) -> tuple:
    """One option dict split over several config classes, each built from the names it has."""
    options = check_option_names(options, [name for cls in classes for name in field_names(cls)], what)
    return tuple(cls(**{k: v for k, v in options.items() if k in field_names(cls)}) for cls in classes)
