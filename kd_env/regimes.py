"""Named regimes: versioned env settings that make up the benchmark suite.

A regime is one setting in which agents are compared: a task, a teacher pool, a student and task
options (a label budget with a transfer set), under a settings profile (``kd_env.config.PROFILES``)
for a fixed number of student epochs. Scores are comparable only between runs of the same regime, so
its name carries a version, as Gymnasium's ids do: ``biased-specialists-bow-v1``. Change anything that
moves a score (a pool's teachers, an option, the profile's values) and register it as ``-v2``.

A new regime is one call: ``register("name-vN", description=..., task=..., teachers=..., ...)``.
``kd-env suite`` (``experiments.suite``) runs agents over them and normalises their scores.

| regime                      | task              | teachers           | student | labelled + transfer rows |
|-----------------------------|-------------------|--------------------|---------|--------------------------|
| biased-specialists-bow-v1   | twitter-sentiment | biased-specialists | bow     | 2,000 + 0                |
| specialists-bow-v1          | twitter-sentiment | specialists        | bow     | 2,000 + 0                |
| mixed-quality-bow-v1        | twitter-sentiment | mixed-quality      | bow     | 2,000 + 0                |
| zoo-bow-v1                  | twitter-sentiment | zoo                | bow     | 2,000 + 0                |
| zoo-mixed-bow-v1            | twitter-sentiment | zoo-mixed          | bow     | 2,000 + 0                |
| zoo-labels{L}-bow-v1        | twitter-sentiment | zoo                | bow     | L + (2,000 - L), L = 100, 300, 1,000 |
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
    """Whether ``kd-env suite`` runs it by default (False: a regime for tests)."""

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
# Few labels and an unlabelled transfer set: the same 2,000 tweets the teachers never saw (so the
# variants share rows and cache entries), L of them labelled; the student learns the rest from the teachers.
for _labels in (100, 300, 1000):
    register(f"zoo-labels{_labels}-bow-v1", task=TWEETS, teachers="zoo", student="bow",
             task_options={"labels": _labels, "transfer": 2000 - _labels},
             description=f"The zoo with {_labels} labelled tweets and {2000 - _labels} unlabelled ones.")
register("synthetic-tiny-v1", task="synthetic", student="head", epochs=2, benchmark=False,
         task_options={"num_train": 128, "num_dev": 64, "num_test": 128, "label_noise": 0.4}, settings={"batch_size": 16},
         description="Seconds per run: the synthetic task's experts on 128 noisy-label rows, for tests.")
