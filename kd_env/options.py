"""JSON-friendly option dicts -> frozen config dataclasses, with unknown names listed, not ignored.

Every option dict the package takes (task, student, teacher-spec and reset options) is checked here.
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from dataclasses import fields
from functools import cache
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

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


@cache
def _field_types(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _matches(value, hint) -> bool:
    """Whether a JSON-like value fits a field's annotation; containers are checked as containers
    only, and annotations other than these plain ones are left to the config's own checks."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, option) for option in get_args(hint))
    base = origin or hint
    if hint is type(None):
        return value is None
    if base is bool:
        return isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if base is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if base is str:
        return isinstance(value, str)
    if base in (list, tuple):
        return isinstance(value, (list, tuple))
    if base is dict:
        return isinstance(value, dict)
    return True


TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
              tuple: "a list", dict: "a JSON object", type(None): "None"}


def _describe(hint) -> str:
    """An annotation in words: ``int | None`` -> "an integer or None"."""
    options = get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)
    return " or ".join(TYPE_WORDS.get(get_origin(option) or option, str(option)) for option in options)


def check_option_types(cls: type, options: dict, what: str) -> dict:
    """``options``, raising in one line on a value whose type the field's annotation refuses (a
    string where a number belongs, as a command line gives it), before ``cls`` compares it."""
    hints = _field_types(cls)
    for name, value in options.items():
        if name in hints and not _matches(value, hints[name]):
            raise UserError(f"{what}: {name} must be {_describe(hints[name])}, got {value!r} ({type(value).__name__})")
    return options


def config_from_options(cls: type[Config], options: dict | None, what: str) -> Config:
    """``cls(**options)``, raising on names ``cls`` lacks and on values of the wrong type (``what``
    names the options in the error)."""
    return cls(**check_option_types(cls, check_option_names(options, field_names(cls), what), what))


def configs_from_options(options: dict | None, what: str, *classes: type) -> tuple:
    """One option dict split over several config classes, each built from the names it has."""
    options = check_option_names(options, [name for cls in classes for name in field_names(cls)], what)
    return tuple(config_from_options(cls, {k: v for k, v in options.items() if k in field_names(cls)}, what) for cls in classes)
