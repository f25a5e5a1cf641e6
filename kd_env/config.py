"""The environment's settings: one frozen dataclass, the one place each default lives.

``TeacherSelectionEnv(**kwargs)``, the vector env and the distillation core all build an ``EnvConfig``
from JSON-friendly keyword arguments (so ``env.spec.to_json()`` round-trips) and read nothing else.
Named profiles are ``EnvConfig`` values: ``paper`` (the paper's set-up, the env's defaults) and
``recommended`` (the settings behind the published comparisons).

Field docstrings are the reference text for every option; tools that show settings (the CLI's help,
the env docstring) read them from here rather than repeating them.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from dataclasses import dataclass
from functools import cache

from kd_env.errors import UserError
from kd_env.options import check_option_names, field_names


@dataclass(frozen=True)
class EnvConfig:
    """Every argument of ``TeacherSelectionEnv`` (the vector env adds only its own)."""

    task: str = "twitter-sentiment"
    """``twitter-sentiment``, ``bbc-news``, ``synthetic``, ``glue:NAME``, ``csv:PATH``, ``tsv:PATH``,
    ``json:PATH`` or ``jsonl:PATH`` (``kd_env.tasks``)."""
    teachers: list | str | None = None
    """Teacher names, spec dicts, checkpoint folders or pool names (``kd_env.teachers.pools``: a pool
    stands for its teachers); None = the ``default`` pool (head-tuned, ready in about a minute)."""
    task_options: dict | None = None
    """Options of the task (sizes, seed, columns...)."""
    student: str = "head"
    """``head`` (an MLP over frozen sentence vectors), ``bow`` (trainable word-piece embeddings) or
    ``transformer`` (the first layers of an encoder)."""
    student_options: dict | None = None
    """Options of the student (``kd_env.students``)."""
    action_mode: str = "select"
    """``select`` (0/1 per (instance, teacher)) or ``weights`` (scores in [0, 1]); set by the env id."""
    batch_size: int = 32
    """B, the training instances per step."""
    episode_steps: int | None = None
    """Steps per episode; None = one pass over the training split."""
    alpha: float = 0.5
    """Share of the KD term in the student's loss; 1 - alpha goes to the hard label."""
    temperature: float = 2.0
    """Softmax temperature of the KD term."""
    tau_squared: bool = False
    """Multiply the KD term by temperature^2."""
    aggregation: str = "weighted_ce"
    """How the weighted teachers make the KD term (``kd_env.distill``)."""
    empty_selection: str = "hard_label"
    """What an instance with no teacher learns from: ``hard_label`` or ``all_teachers``."""
    reward: str = "student_ce"
    """A reward registered in ``kd_env.rewards``."""
    terminal_bonus: float = 0.0
    """Weight of the final dev accuracy added to the last step's rewards."""
    features: list[str] | None = None
    """Observed feature groups (``kd_env.features``); None = all."""
    semantic_dim: int = 8
    """Size of the instance's reduced semantic vector."""
    learning_rate: float | None = None
    """The student's AdamW learning rate; None = the student's default."""
    weight_decay: float = 0.0
    """The student's AdamW weight decay."""
    probe_size: int = 256
    """Instances of the probe set that probe rewards (``dev_gain``, ``probe_alignment``) read."""
    probe_source: str = "dev"
    """Where the probe set comes from: ``dev`` (held-out labelled instances, beyond the training
    budget) or ``labelled`` (the training split's labelled instances: no label beyond the budget)."""
    info_level: str = "full"
    """``full``: ``info`` holds the step's diagnostics (losses, batch accuracy, selection rates) as
    well as what agents use; ``basic``: only the latter (instance rewards, the oracle, the episode's
    dev metrics), the fastest."""
    device: str = "cpu"
    """Where the students train and the observation is made: ``cpu``, ``cuda``, ``auto``."""

    @classmethod
    def from_kwargs(cls, kwargs: dict, what: str = "environment") -> "EnvConfig":
        """The config of these keyword arguments, naming any unknown one in the error (their values are
        checked by ``kd_env.arguments.validate_env_arguments`` and the parts they configure)."""
        return cls(**check_option_names(kwargs, field_names(cls), what))

    def replace(self, **changes) -> "EnvConfig":
        return dataclasses.replace(self, **changes)

    def kwargs(self) -> dict:
        """The fields that differ from the defaults, as JSON-friendly keyword arguments."""
        default = EnvConfig()
        return {name: getattr(self, name) for name in field_names(self) if getattr(self, name) != getattr(default, name)}


PROFILES: dict[str, EnvConfig] = {
    "paper": EnvConfig(),
    # ce_gain: an instance's CE drop across the step, so its own difficulty cancels; all_teachers: a
    # selector cannot escape to "hard labels only", which a training-CE reward favours.
    "recommended": EnvConfig(reward="ce_gain", empty_selection="all_teachers", temperature=1.0),
}


def profile(name: str) -> EnvConfig:
    if name not in PROFILES:
        raise UserError(f"unknown settings profile {name!r}; available: {sorted(PROFILES)}")
    return PROFILES[name]


@cache
def field_docs(cls: type = EnvConfig) -> dict[str, str]:
    """Each field's docstring (the string literal after it), for help texts."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    docs = {}
    for statement, following in zip(body, body[1:]):
        if isinstance(statement, ast.AnnAssign) and isinstance(following, ast.Expr):
            value = following.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                docs[statement.target.id] = " ".join(value.value.split())
    return docs


def closest_profile(kwargs: dict) -> tuple[str, dict]:
    """The profile nearest to these env kwargs and the settings that differ from it (only the fields
    some profile sets: the task, teachers and student are not settings a profile names)."""
    profiled = sorted({name for config in PROFILES.values() for name in config.kwargs()})
    values = {name: kwargs.get(name, getattr(EnvConfig(), name)) for name in profiled}

    def differences(name: str) -> dict:
        return {key: value for key, value in values.items() if getattr(PROFILES[name], key) != value}

    name = min(PROFILES, key=lambda name: len(differences(name)))
    return name, differences(name)
