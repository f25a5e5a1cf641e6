"""One option syntax for every subcommand: ``KEY=VALUE`` flags (repeatable) or a JSON object.

Values are read as JSON when they parse (numbers, booleans, lists, objects, null), else kept as text,
so ``--env-kwargs batch_size=16 --env-kwargs reward=ce_gain`` and ``--env-kwargs '{"batch_size": 16}'``
say the same thing.
"""

from __future__ import annotations

import json

import typer


def json_or_text(value: str):
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def parse_pairs(items: list[str] | None, flag: str) -> dict:
    """Repeated ``KEY=VALUE`` / JSON-object flags -> one dict (later keys win)."""
    merged: dict = {}
    for item in items or []:
        if item.lstrip().startswith("{"):
            try:
                value = json.loads(item)
            except json.JSONDecodeError as error:
                raise typer.BadParameter(f"{item!r} is not a JSON object ({error})", param_hint=flag) from error
            merged.update(value)
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE or a JSON object, got {item!r}", param_hint=flag)
        merged[key.strip()] = json_or_text(value)
    return merged


def parse_grid(items: list[str] | None, flag: str) -> dict:
    """``KEY=[v1, v2]`` flags: every value must be a JSON list (the values a sweep tries)."""
    grid = parse_pairs(items, flag)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise typer.BadParameter(f"{key}: expected a non-empty JSON list such as {key}=[1,2], got {values!r}", param_hint=flag)
    return grid


def parse_teachers(items: list[str] | None) -> list | None:
    """``--teacher`` values: a built-in name, a checkpoint folder, or a JSON spec object."""
    if not items:
        return None
    return [json.loads(item) if item.lstrip().startswith("{") else item for item in items]
