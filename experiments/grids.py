"""Ad-hoc comparison grids: the user's task, teachers, student and agents, from flags or a YAML/JSON file.

A named preset fixes everything; a practitioner comparing agents on their own data needs to say only
what differs. ``GridSpec`` holds that, checks it before anything is computed (agent names, seeds,
epochs), and becomes a ``Preset``. Agents named like a preset entry (``reinforce``, ``ppo``, ``ca_mkd``,
``reinforce:episode``...) run with that entry's recipe: its env, stage lengths and hyperparameters.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import agents
from experiments.compare import SELECT_ENV, GridEntry, Preset
from experiments.presets import PRESETS, PROFILE
from kd_env.config import profile
from kd_env.errors import UserError

GRID_ENV_KEYS = ("student", "student_options", "teachers", "task_options")
"""Env settings a grid names as keys of its own (the rest go in its ``env_kwargs``)."""
_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


def parse_seeds(text: str | int | list) -> tuple[int, ...]:
    """``"0-4"``, ``"0,2,5"``, ``"0-2,7"``, an int or a list of ints -> sorted unique seeds."""
    if isinstance(text, bool):
        raise UserError(f"malformed seeds {text!r}")
    if isinstance(text, int):
        return (text,)
    if isinstance(text, list):
        return parse_seeds(",".join(str(seed) for seed in text))
    seeds = set()
    for part in str(text).replace(" ", "").split(","):
        match = _RANGE.fullmatch(part)
        if not match:
            raise UserError(f"malformed seeds {text!r}: expected numbers and ranges such as 0-4 or 0,2,5")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if last < first:
            raise UserError(f"malformed seeds {text!r}: the range {part} runs backwards")
        seeds.update(range(first, last + 1))
    return tuple(sorted(seeds))


def known_entries() -> dict[str, GridEntry]:
    """Every preset entry by label (the first preset that defines a label wins)."""
    entries: dict[str, GridEntry] = {}
    for preset in PRESETS.values():
        for entry in preset.entries:
            entries.setdefault(entry.label, entry)
    return entries


def grid_entry(name: str) -> GridEntry:
    """The recipe of an agent: a preset entry of that label, else the registered agent with defaults."""
    entries = known_entries()
    if name in entries:
        return entries[name]
    if name in agents.agent_names():
        return GridEntry(label=name, agent=name, env_id=SELECT_ENV)
    raise UserError(f"unknown agent {name!r}; agents: {agents.agent_names()}; recipes: {sorted(set(entries) - set(agents.agent_names()))}")


def check_stages(entry: GridEntry, epochs: int) -> None:
    """Refuse a recipe whose Avg-KD pre-training takes the whole budget: its student would be Avg-KD's."""
    stage = entry.epoch_kwargs.get("pretrain_student_steps", 0)
    if stage >= epochs:
        raise UserError(f"{entry.label}'s recipe pre-trains the student with Avg-KD for {stage} epoch(s), so with {epochs} epoch(s) "
                         f"the agent never trains it and the student would be Avg-KD's; give at least {stage + 1} epochs")


def require_known_keys(spec_class, values: dict, what: str, also: tuple[str, ...] = ()) -> None:
    """Refuse keys of a spec file or mapping that are no field of ``spec_class`` (nor in ``also``)."""
    known = {f.name for f in fields(spec_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"unknown {what} keys {unknown}; available: {sorted(known | set(also))}")


def read_mapping(path: str | Path, what: str) -> dict:
    """A YAML (``.yaml``/``.yml``) or JSON file holding one mapping of keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        values = yaml.safe_load(text)
    else:
        values = json.loads(text)
    if not isinstance(values, dict):
        raise UserError(f"{what} file {path}: expected a mapping of {what} keys, got {type(values).__name__}")
    return values


def split_names(value: str | list) -> tuple[str, ...]:
    """``"a,b,c"`` or a list -> names, empty ones dropped."""
    parts = value if isinstance(value, list) else str(value).split(",")
    return tuple(str(part).strip() for part in parts if str(part).strip())


@dataclass(frozen=True)
class GridSpec:
    """An ad-hoc comparison: every agent on every task and seed, sharing one env setting."""

    tasks: tuple[str, ...]
    agents: tuple[str, ...] = ("no_kd", "avg_kd", "ca_mkd", "reinforce", "ppo")
    seeds: tuple[int, ...] = (0, 1, 2)
    student: str | None = None
    """None: the profile's student."""
    student_options: dict = field(default_factory=dict)
    teachers: tuple | str = ()
    """Teacher names, checkpoint folders or spec dicts, or a pool name (``kd_env.teachers.pools``);
    empty = the task's defaults."""
    epochs: int = 10
    """Student epochs of every run (selector pre-training comes on top)."""
    env_kwargs: dict = field(default_factory=dict)
    """Env arguments shared by every run, over the settings profile's."""
    profile: str = PROFILE
    """The settings profile every run starts from (``kd_env.config.PROFILES``)."""
    task_options: dict = field(default_factory=dict)
    single_teachers: bool = False
    """Also distil from each teacher alone (one ``single:<teacher>`` row each)."""
    name: str = "custom"

    def __post_init__(self) -> None:
        if not self.tasks:
            raise UserError("a grid needs at least one task")
        if not self.agents or not self.seeds:
            raise UserError("a grid needs at least one agent and one seed")
        if self.epochs < 1:
            raise UserError(f"epochs must be >= 1, got {self.epochs}")
        profile(self.profile)
        for agent in self.agents:
            check_stages(grid_entry(agent), self.epochs)

    @classmethod
    def from_mapping(cls, values: dict) -> "GridSpec":
        """From a YAML/JSON mapping; ``task`` may stand for ``tasks``, seeds may be ``"0-4"``,
        agents and tasks comma-separated."""
        values = dict(values)
        if "task" in values:
            values["tasks"] = [*split_names(values.pop("task")), *split_names(values.pop("tasks", []))]
        require_known_keys(cls, values, "grid", also=("task",))
        for key in ("tasks", "agents"):
            if key in values:
                values[key] = split_names(values[key])
        if "seeds" in values:
            values["seeds"] = parse_seeds(values["seeds"])
        if isinstance(values.get("teachers"), list):
            values["teachers"] = tuple(values["teachers"])
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path, overrides: dict | None = None) -> "GridSpec":
        """A YAML (``.yaml``/``.yml``) or JSON file of ``GridSpec`` keys; ``overrides`` win."""
        values = read_mapping(path, "grid")
        overrides = dict(overrides or {})
        if "tasks" in overrides or "task" in overrides:
            values = {k: v for k, v in values.items() if k not in ("task", "tasks")}
        return cls.from_mapping({**values, **overrides})

    def to_preset(self) -> Preset:
        common = {**profile(self.profile).kwargs(), **self.env_kwargs}
        if self.student:
            common["student"] = self.student
        if self.student_options:
            common["student_options"] = dict(self.student_options)
        if self.teachers:
            common["teachers"] = self.teachers if isinstance(self.teachers, str) else list(self.teachers)
        if self.task_options:
            common["task_options"] = dict(self.task_options)
        return Preset(name=self.name, tasks=self.tasks, seeds=self.seeds, epochs=self.epochs, common_env_kwargs=common,
                      entries=tuple(grid_entry(agent) for agent in self.agents), single_teachers=self.single_teachers)
