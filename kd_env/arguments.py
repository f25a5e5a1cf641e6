"""Checks of the environment's arguments that need no data, run before any data is prepared.

Preparing a text task fine-tunes teachers for minutes; an argument that is wrong on its face (a
negative learning rate, a batch size of 2.5) must fail in milliseconds with a message naming it, not
after that work or as a TypeError from deep inside.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

from kd_env.errors import UserError

ACTION_MODES = ("select", "weights")
INFO_LEVELS = ("basic", "full")
PROBE_SOURCES = ("dev", "labelled")
EMPTY_SELECTION_FALLBACKS = ("hard_label", "all_teachers")


def require_int(name: str, value, minimum: int) -> int:
    """``value`` as an int >= ``minimum``; bools and floats (even 3.0) are refused, JSON keeps ints apart."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise UserError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise UserError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def require_finite(name: str, value, minimum: float | None = None, strict: bool = False) -> float:
    """``value`` as a finite float, > ``minimum`` when ``strict`` else >= it (no bound when None)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise UserError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise UserError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value}")
    return float(value)


def require_bool(name: str, value) -> bool:
    """JSON's true/false only: the text "false" from a command line is not a bool."""
    if not isinstance(value, bool):
        raise UserError(f"{name} must be true or false, got {value!r} ({type(value).__name__})")
    return value


def require_choice(name: str, value, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise UserError(f"unknown {name} {value!r}; expected one of {list(choices)}")
    return value


def require_classes(task: str, class_names) -> None:
    """One class gives teachers nothing to learn and rewards of 0 / 0 (they are scaled by 1 / log C)."""
    if len(class_names) < 2:
        raise UserError(f"task {task!r} has {len(class_names)} class(es) {list(class_names)}; a classification task needs at least 2")


def require_teachers(teachers) -> None:
    """Teachers are a list (names, folders, spec dicts), one pool name, or None (the task's own)."""
    if teachers is not None and not isinstance(teachers, (str, list, tuple)):
        raise UserError(f"teachers must be a list of teachers, a pool name or None, got {teachers!r}")


def require_train_size(num_train: int, batch_size: int) -> None:
    """A batch is drawn from the training split: it must hold at least one batch."""
    if batch_size > num_train:
        raise UserError(f"batch_size {batch_size} is larger than the training split ({num_train} instances)")


def validate_env_arguments(
    *,
    action_mode: str,
    empty_selection: str,
    batch_size,
    episode_steps,
    learning_rate,
    weight_decay,
    probe_size,
    probe_source,
    probe_needed: bool,
    terminal_bonus,
    semantic_dim,
    info_level,
) -> None:
    """Raise ``UserError`` on the first argument of ``TeacherSelectionEnv`` that no task could accept."""
    require_choice("action_mode", action_mode, ACTION_MODES)
    require_choice("empty_selection", empty_selection, EMPTY_SELECTION_FALLBACKS)
    require_int("batch_size", batch_size, 1)
    if episode_steps is not None:
        require_int("episode_steps", episode_steps, 1)
    if learning_rate is not None:
        require_finite("learning_rate", learning_rate, 0.0, strict=True)
    require_finite("weight_decay", weight_decay, 0.0)
    # A dev_gain reward averages the CE over the probe set: an empty one makes every reward NaN.
    require_int("probe_size", probe_size, 1 if probe_needed else 0)
    require_choice("probe_source", probe_source, PROBE_SOURCES)
    require_finite("terminal_bonus", terminal_bonus)
    require_int("semantic_dim", semantic_dim, 1)
    require_choice("info_level", info_level, INFO_LEVELS)
