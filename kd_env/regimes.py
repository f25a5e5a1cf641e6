"""Named regimes: versioned env settings that make up the benchmark suite.

A regime is one setting in which agents are compared: a task, a teacher pool, a student and task
options (a label budget with a transfer set), under a settings profile (``kd_env.config.PROFILES``)
for a fixed number of student epochs. Scores are comparable only between runs of the same regime, so
its name carries a version, as Gymnasium's ids do: ``biased-specialists-bow-v1``. Change anything that
moves a score (a pool's teachers, an option, the profile's values) and register it as ``-v2``.

The headroom map (``map_regimes()``, ``kd-env suite --regimes map``) is 48 of them: six pools x four label
budgets x two students. Of those, only ``zoo-labels{L}-bow-v1`` with L < 2,000 run in a suite by default.

A new regime is one call: ``register("name-vN", description=..., task=..., teachers=..., ...)``.
``kd-env suite`` (``experiments.suite``) runs agents over them and normalises their scores.

Measured headroom (test accuracy, the privileged reference minus the best of no_kd, Avg-KD and the
best single teacher, paired over seeds 0-4, in points; docs/results.md; the map's 48 cells are there):

| regime                      | task              | teachers           | student | labelled + transfer rows | headroom (pt) |
|-----------------------------|-------------------|--------------------|---------|--------------------------|---------------|
| biased-specialists-bow-v1   | twitter-sentiment | biased-specialists | bow     | 2,000 + 0                | +0.6 ± 1.0    |
| specialists-bow-v1          | twitter-sentiment | specialists        | bow     | 2,000 + 0                | -1.8 ± 0.5    |
| mixed-quality-bow-v1        | twitter-sentiment | mixed-quality      | bow     | 2,000 + 0                | -2.0 ± 0.6    |
| zoo-bow-v1                  | twitter-sentiment | zoo                | bow     | 2,000 + 0                | -0.4 ± 1.0    |
| zoo-mixed-bow-v1            | twitter-sentiment | zoo-mixed          | bow     | 2,000 + 0                | +0.0 ± 0.7    |
| zoo-labels100-bow-v1        | twitter-sentiment | zoo                | bow     | 100 + 1,900              | +6.1 ± 1.4    |
| zoo-labels300-bow-v1        | twitter-sentiment | zoo                | bow     | 300 + 1,700              | +6.0 ± 2.5    |
| zoo-labels1000-bow-v1       | twitter-sentiment | zoo                | bow     | 1,000 + 1,000            | +2.1 ± 2.2    |
| {pool}-labels{L}-{student}-v1 (the headroom map, ``map_regimes()``) | twitter-sentiment | {pool}: each of ``MAP_POOLS`` | bow, head | L + (2,000 - L), L = 100, 300, 1,000, 2,000 | -2.5 to +7.3 |
| synthetic-tiny-v1 (tests)   | synthetic, 40% label noise, 128 rows | its experts | head | 128 + 0   |
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from kd_env.config import EnvConfig
from kd_env.config import profile as settings_profile
from kd_env.errors import UserError

_VERSIONED = re.compile(r"[a-z0-9][a-z0-9-]*-v(\d+)")


@dataclass(frozen=True)
class Regime:
    """A registered regime: what ``env_kwargs()`` builds, and how long a run trains in it."""

    name: str
    """The versioned name, ``<what>-v<N>``."""
    description: str
    task: str
    teachers: str | list | None
    """A pool name, or teachers as ``EnvConfig.teachers`` takes them; None = the task's default."""
    student: str
    task_options: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    """Env settings over the profile's (``batch_size``...)."""
    profile: str = "recommended"
    epochs: int = 10
    """Student epochs of every run: part of the regime, since scores depend on it."""
    benchmark: bool = True
    """Whether ``kd-env suite`` runs it by default (False: a regime for tests, or one run on request)."""

    @property
    def version(self) -> int:
        return int(_VERSIONED.fullmatch(self.name).group(1))

    @property
    def known_answer(self) -> bool:
        """Whether the task marks each instance's experts (``info["oracle"]``): only ``synthetic`` does."""
        return self.task == "synthetic"

    def env_kwargs(self) -> dict:
        """The env's keyword arguments (a fresh copy each call)."""
        own = {"task": self.task, "teachers": self.teachers, "student": self.student, "task_options": self.task_options}
        return copy.deepcopy({**settings_profile(self.profile).kwargs(), **self.settings, **{k: v for k, v in own.items() if v}})


_REGISTRY: dict[str, Regime] = {}


def register(name: str, *, description: str, task: str, teachers: str | list | None = None, student: str = "head",
             task_options: dict | None = None, settings: dict | None = None, profile: str = "recommended", epochs: int = 10,
             benchmark: bool = True) -> Regime:
    """Add a regime under ``name`` (``<what>-v<N>``); its env kwargs' names are checked here, nothing is built."""
    if not _VERSIONED.fullmatch(name):
        raise ValueError(f"regime name {name!r} must be lower-case and end in a version, such as -v1")
    if name in _REGISTRY:
        raise ValueError(f"regime name {name!r} is already registered")
    if epochs < 1:
        raise ValueError(f"regime {name!r}: epochs must be >= 1, got {epochs}")
    regime = Regime(name, description, task, teachers, student, dict(task_options or {}), dict(settings or {}), profile, epochs, benchmark)
    EnvConfig.from_kwargs(regime.env_kwargs(), f"regime {name!r} env")
    _REGISTRY[name] = regime
    return regime


def regime_names() -> list[str]:
    return list(_REGISTRY)


def expand_regimes(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Regime names in which ``map`` stands for the headroom map's regimes (``map_regimes()``)."""
    expanded: dict[str, None] = {}
    for name in names:
        expanded.update(dict.fromkeys(map_regimes() if name == "map" else (name,)))
    return tuple(expanded)


def get_regime(name: str) -> Regime:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise UserError(f"unknown regime {name!r}; available: {regime_names()}")
    return _REGISTRY[name]


# ------------------------------------------------------------------------------ the built-in regimes
TWEETS = "twitter-sentiment"

register("biased-specialists-bow-v1", task=TWEETS, teachers="biased-specialists", student="bow",
         description="The demo: three cluster specialists taught gold + 1 outside their cluster, so most teachers are "
                     "confidently wrong on each tweet; built for selection to win.")
register("specialists-bow-v1", task=TWEETS, teachers="specialists", student="bow",
         description="Three cluster specialists that never saw the other clusters' tweets (drop).")
register("mixed-quality-bow-v1", task=TWEETS, teachers="mixed-quality", student="bow",
         description="A clean teacher, one trained on 40% flipped labels and one on 5% of the data.")
register("zoo-bow-v1", task=TWEETS, teachers="zoo", student="bow",
         description="Six domain teachers on MiniLM-L6, MiniLM-L3 and MPNet vectors, each in-domain on one of four "
                     "k-means domains; nothing shifted by construction.")
register("zoo-mixed-bow-v1", task=TWEETS, teachers="zoo-mixed", student="bow",
         description="Six domain teachers, strong (MPNet) and weak (MiniLM-L3 on a fifth of the data).")
# The headroom map: every pool x label budget x student, on the same 2,000 tweets the teachers never saw
# (so the cells share rows and cache entries), L of them labelled; the student learns the rest from the
# teachers (L = 2,000: every row labelled). Only the zoo's bow cells of L < 2,000 run by default.
MAP_POOLS = ("zoo", "zoo-mixed", "specialists", "mixed-quality", "biased-specialists", "diverse-encoders")
MAP_LABELS = (100, 300, 1000, 2000)
MAP_ROWS = 2000
MAP_STUDENTS = ("bow", "head")
_MAP: list[str] = []
for _student in MAP_STUDENTS:
    for _pool in MAP_POOLS:
        for _labels in MAP_LABELS:
            _MAP.append(register(
                f"{_pool}-labels{_labels}-{_student}-v1", task=TWEETS, teachers=_pool, student=_student,
                task_options={"labels": _labels, "transfer": MAP_ROWS - _labels},
                benchmark=(_pool, _student) == ("zoo", "bow") and _labels < MAP_ROWS,
                description=f"The {_pool} pool with {_labels} labelled tweets and {MAP_ROWS - _labels} unlabelled ones; "
                            f"{_student} student.").name)


def map_regimes() -> tuple[str, ...]:
    """The headroom map's regimes (``MAP_POOLS`` x ``MAP_LABELS`` x ``MAP_STUDENTS``), bow first."""
    return tuple(_MAP)


register("synthetic-tiny-v1", task="synthetic", student="head", epochs=2, benchmark=False,
         task_options={"num_train": 128, "num_dev": 64, "num_test": 128, "label_noise": 0.4}, settings={"batch_size": 16},
         description="Seconds per run: the synthetic task's experts on 128 noisy-label rows, for tests.")
