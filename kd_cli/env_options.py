"""The env's settings as CLI options, derived from ``kd_env.config.EnvConfig``.

Each config field becomes one flag (``--batch-size``, ``--reward``, ``--teacher``...) whose help is
the field's docstring and whose choices come from the registries, so a new field is a new flag with
no CLI code. ``--profile`` picks the settings profile the flags change, and ``--env-kwargs`` takes
the same settings as ``KEY=VALUE`` pairs or a JSON object. A subcommand decorated with
``env_options`` receives them merged into one ``EnvOptions`` argument named ``env``.
"""

from __future__ import annotations

import enum
import functools
import inspect
import types
import typing
from dataclasses import dataclass, fields
from typing import Annotated

import typer

from kd_cli.options import parse_pairs, parse_teachers
from kd_env.config import PROFILES, EnvConfig, field_docs, profile

PANEL = "Env settings (kd_env.config)"
FLAG_NAMES = {"teachers": "teacher", "features": "feature"}
"""Fields whose flag is singular because it repeats (``--teacher a --teacher b``)."""
NOT_FLAGS = {"action_mode": "set by --env-id"}
"""Fields that have no flag of their own, and why (``--env-kwargs`` still takes them)."""
DEFAULT_PROFILE = "recommended"
"""The CLI's profile when none is given: the settings of the published comparisons. ``gym.make``
with no arguments uses the env's defaults, the ``paper`` profile."""


def field_choices() -> dict[str, list[str]]:
    """The registered names a field takes, read from the registries."""
    from kd_env.arguments import INFO_LEVELS, PROBE_SOURCES
    from kd_env.distill import EMPTY_SELECTION_FALLBACKS, aggregation_names
    from kd_env.features import feature_groups
    from kd_env.rewards import reward_names
    from kd_env.students import STUDENT_BUILDERS

    return {"student": sorted(STUDENT_BUILDERS), "reward": reward_names(), "aggregation": aggregation_names(),
            "empty_selection": list(EMPTY_SELECTION_FALLBACKS), "features": list(feature_groups()), "info_level": list(INFO_LEVELS),
            "probe_source": list(PROBE_SOURCES)}


def flag_name(field_name: str) -> str:
    return "--" + FLAG_NAMES.get(field_name, field_name).replace("_", "-")


def help_text(field_name: str) -> str:
    return field_docs()[field_name].replace("``", "")


def default_text(field_name: str) -> str:
    """The value a flag left out takes: the default profile's (the env's own where no profile sets it)."""
    value = getattr(PROFILES[DEFAULT_PROFILE], field_name)
    return "" if value is None or value == {} else f" (default: {value})"


def option_parameter(field, choices: dict[str, list[str]]) -> inspect.Parameter:
    """One config field as a keyword parameter typer reads as an option (None: not given)."""
    kind, name = base_type(field.type), flag_name(field.name)
    docs = help_text(field.name) + default_text(field.name)
    common = {"rich_help_panel": PANEL, "show_default": False}
    value = choice_type(field.name, choices[field.name]) if field.name in choices else str
    if kind is dict:
        annotation = Annotated[list[str] | None, typer.Option(name, metavar="KEY=VALUE", help=docs + " KEY=VALUE or a JSON object; repeatable.", **common)]
    elif kind is list:
        annotation = Annotated[list[value] | None, typer.Option(name, help=docs + " Repeatable.", **common)]
    elif kind is bool:
        annotation = Annotated[bool | None, typer.Option(f"{name}/--no-{name[2:]}", help=docs, **common)]
    else:
        annotation = Annotated[(value if kind is str else kind) | None, typer.Option(name, help=docs, **common)]
    return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def choice_type(name: str, values: list[str]) -> type[enum.Enum]:
    """A str enum of ``values``: typer shows and checks it as a choice (it takes no plain choice list)."""
    return enum.Enum(name, {value: value for value in values}, type=str)


def plain(value):
    """A flag's value with choice enums turned back into their strings."""
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value.value if isinstance(value, enum.Enum) else value


def base_type(annotation) -> type:
    """The flag's value type of a field annotation: dict, list, bool, int, float or str."""
    hint = eval(annotation, vars(typing)) if isinstance(annotation, str) else annotation  # noqa: S307 - our own annotations
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    for candidate in (dict, list, bool, int, float, str):
        if any(option is candidate or typing.get_origin(option) is candidate for option in options):
            return candidate
    raise TypeError(f"no CLI flag type for the config annotation {annotation!r}")


@dataclass(frozen=True)
class EnvOptions:
    """What the env flags of one command said: a profile name (None: not given) and the settings given."""

    profile: str | None
    kwargs: dict

    def resolved(self) -> dict:
        """The env kwargs of the run: the profile's (default ``DEFAULT_PROFILE``) with the given ones over it."""
        return {**profile(self.profile or DEFAULT_PROFILE).kwargs(), **self.kwargs}


def env_options(only: tuple[str, ...] | None = None, exclude: tuple[str, ...] = (), with_profile: bool = True):
    """Add a flag per ``EnvConfig`` field (``only`` those, less ``exclude``), ``--profile`` and
    ``--env-kwargs`` to a typer command, which receives them as ``env: EnvOptions``."""
    names = [f.name for f in fields(EnvConfig) if f.name not in NOT_FLAGS and f.name not in exclude and (only is None or f.name in only)]

    def decorate(command):
        choices = field_choices()
        signature = inspect.signature(command, eval_str=True)
        added = [option_parameter(f, choices) for f in fields(EnvConfig) if f.name in names]
        if only is None:
            added.append(inspect.Parameter("env_kwargs", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[list[str] | None, typer.Option(
                "--env-kwargs", metavar="KEY=VALUE", rich_help_panel=PANEL,
                help="Any env setting as KEY=VALUE (batch_size=16; values read as JSON when they parse) or a JSON object; repeatable. The flags above win.")]))
        if with_profile:
            added.append(inspect.Parameter("profile", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[choice_type("profile", sorted(PROFILES)) | None, typer.Option(
                rich_help_panel=PANEL, show_default=False,
                help=f"The settings profile the env flags change (default: {DEFAULT_PROFILE}, the published comparisons' settings; gym.make's defaults are 'paper').")]))

        @functools.wraps(command)
        def run(*args, **kwargs):
            given = parse_pairs(kwargs.pop("env_kwargs", None), "--env-kwargs")
            for name in names:
                value = kwargs.pop(name)
                if value is not None:
                    given[name] = flag_value(name, value)
            return command(*args, env=EnvOptions(plain(kwargs.pop("profile", None)), given), **kwargs)

        parameters = [p for p in signature.parameters.values() if p.name != "env"]
        run.__signature__ = signature.replace(parameters=parameters + added)
        return run

    return decorate


def flag_value(name: str, value):
    """A flag's value as the env takes it (``KEY=VALUE`` lists -> dicts, ``--teacher`` items -> specs)."""
    if name == "teachers":
        return parse_teachers(value)
    if base_type(next(f.type for f in fields(EnvConfig) if f.name == name)) is dict:
        return parse_pairs(value, flag_name(name))
    return plain(value)
