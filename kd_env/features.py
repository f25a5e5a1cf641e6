"""Per-(instance, teacher) observation features: bounded, float32, with a name for every index.

The feature vector of (instance j, teacher k) is the concatenation of the chosen groups, always in the
order of ``FEATURE_GROUPS``: registration order, static groups first. A new group is one function
decorated with ``register(name, dynamic=..., names=...)``. Static groups depend only on the data and the teachers and are computed
once per split; dynamic groups depend on the student and are computed each step.

| group               | width | range   | meaning                                                       |
|---------------------|-------|---------|---------------------------------------------------------------|
| teacher_probs       | C     | [0, 1]  | teacher k's class probabilities (temperature 1)               |
| teacher_ce          | 1     | [0, 1)  | squash(CE of teacher k vs the gold label)                     |
| teacher_entropy     | 1     | [0, 1]  | entropy of teacher k / log C                                  |
| teacher_correct     | 1     | {0, 1}  | teacher k's argmax equals the gold label                      |
| teacher_id          | K     | {0, 1}  | one-hot of k, so a policy shared over teachers can tell them apart |
| semantic            | D     | [-1, 1] | the instance's frozen-encoder vector, PCA-reduced to D dims   |
| student_probs       | C     | [0, 1]  | the student's class probabilities before the step             |
| student_ce          | 1     | [0, 1)  | squash(CE of the student vs the gold label)                   |
| kl_teacher_student  | 1     | [0, 1)  | squash(KL(teacher k || student))                              |
| progress            | 1     | [0, 1]  | fraction of the episode done                                  |

``squash(x) = x / (1 + x)`` maps unbounded non-negative losses into [0, 1) monotonically.

Features are torch tensors on the env's device: the distillation core computes them for N envs at
once, and the static groups once per split (``FeatureTable``), so a step makes only the dynamic ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch


from kd_env.errors import UserError


def squash(values: torch.Tensor) -> torch.Tensor:
    """Map [0, inf) to [0, 1) monotonically."""
    values = values.clamp_min(0.0)
    return values / (1.0 + values)


# ------------------------------------------------------------------------------ the group registry
@dataclass(frozen=True)
class FeatureGroup:
    """A registered feature group: ``compute(inputs)`` gives its (R, K, width) tensor (broadcastable),
    from ``StaticInputs`` for a static group or ``DynamicInputs`` for a dynamic one; ``names(layout)``
    names its feature indices (one index named after the group when ``None``)."""

    name: str
    dynamic: bool
    compute: Callable[[Any], torch.Tensor]
    names: Callable[["FeatureLayout"], list[str]] | None = None


GROUPS: dict[str, FeatureGroup] = {}
STATIC_GROUPS: tuple[str, ...] = ()
DYNAMIC_GROUPS: tuple[str, ...] = ()
FEATURE_GROUPS: tuple[str, ...] = ()


def register(name: str, *, dynamic: bool = False, names: Callable[["FeatureLayout"], list[str]] | None = None):
    """Decorator: register ``compute(inputs) -> (R, K, width) tensor`` as feature group ``name``.

    Groups keep their registration order, static groups before dynamic ones, in ``FEATURE_GROUPS``.
    """

    def decorate(compute: Callable[[Any], torch.Tensor]) -> Callable[[Any], torch.Tensor]:
        global STATIC_GROUPS, DYNAMIC_GROUPS, FEATURE_GROUPS
        if name in GROUPS:
            raise ValueError(f"feature group {name!r} is already registered")
        GROUPS[name] = FeatureGroup(name, dynamic, compute, names)
        STATIC_GROUPS = tuple(g for g, group in GROUPS.items() if not group.dynamic)
        DYNAMIC_GROUPS = tuple(g for g, group in GROUPS.items() if group.dynamic)
        FEATURE_GROUPS = STATIC_GROUPS + DYNAMIC_GROUPS
        return compute

    return decorate


def feature_groups() -> tuple[str, ...]:
    """Every registered group, in canonical order (the env's default ``features``)."""
    return FEATURE_GROUPS


@dataclass
class StaticInputs:
    """What a static group is computed from: (R, K, C) teacher log-probs and their exp, the (R,) gold
    labels, the (R,) mask of rows whose label may be read, and the (R, D) semantic vectors."""

    teacher_log_probs: torch.Tensor
    teacher_probs: torch.Tensor
    labels: torch.Tensor
    labelled: torch.Tensor
    semantic: torch.Tensor


@dataclass
class DynamicInputs:
    """What a dynamic group is computed from: the rows' (R, K, C) teacher probabilities, (R, K)
    teacher negative entropies, (R,) labels and label mask, the student's (R, C) log-probabilities
    and the episode's progress."""

    teacher_probs: torch.Tensor
    teacher_negative_entropy: torch.Tensor
    labels: torch.Tensor
    labelled: torch.Tensor
    student_log_probs: torch.Tensor
    progress: float


def _class_names(group: str) -> Callable[["FeatureLayout"], list[str]]:
    return lambda layout: [f"{group}[{c}]" for c in layout.class_names]


def _gold(log_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Log-probabilities (R, ..., C) at each row's label (R,): (R, ...)."""
    index = labels.view(-1, *([1] * (log_probs.dim() - 1))).expand(*log_probs.shape[:-1], 1)
    return log_probs.gather(-1, index).squeeze(-1)


def _where_labelled(values: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Label-reading features are 0 on rows whose label may not be read (the transfer set)."""
    return values * labelled.view(-1, *([1] * (values.dim() - 1)))


@register("teacher_probs", names=_class_names("teacher_probs"))
def _teacher_probs(x: StaticInputs) -> torch.Tensor:
    return x.teacher_probs


@register("teacher_ce")
def _teacher_ce(x: StaticInputs) -> torch.Tensor:
    return _where_labelled(squash(-_gold(x.teacher_log_probs, x.labels)), x.labelled).unsqueeze(-1)


@register("teacher_entropy")
def _teacher_entropy(x: StaticInputs) -> torch.Tensor:
    c = x.teacher_log_probs.shape[2]
    return (-(x.teacher_probs * x.teacher_log_probs).sum(dim=-1, keepdim=True) / np.log(c)).clamp(0.0, 1.0)


@register("teacher_correct")
def _teacher_correct(x: StaticInputs) -> torch.Tensor:
    correct = (x.teacher_log_probs.argmax(dim=-1) == x.labels.unsqueeze(1)).float()
    return _where_labelled(correct, x.labelled).unsqueeze(-1)


@register("teacher_id", names=lambda layout: [f"teacher_id[{t}]" for t in layout.teacher_names])
def _teacher_id(x: StaticInputs) -> torch.Tensor:
    r, k, _ = x.teacher_log_probs.shape
    return torch.eye(k, device=x.teacher_log_probs.device).expand(r, k, k)


@register("semantic", names=lambda layout: [f"semantic[{i}]" for i in range(layout.semantic_dim)])
def _semantic(x: StaticInputs) -> torch.Tensor:
    r, k, _ = x.teacher_log_probs.shape
    return x.semantic.unsqueeze(1).expand(r, k, x.semantic.shape[1])


@register("student_probs", dynamic=True, names=_class_names("student_probs"))
def _student_probs(x: DynamicInputs) -> torch.Tensor:
    return x.student_log_probs.exp().unsqueeze(1)


@register("student_ce", dynamic=True)
def _student_ce(x: DynamicInputs) -> torch.Tensor:
    return _where_labelled(squash(-_gold(x.student_log_probs, x.labels)), x.labelled).view(-1, 1, 1)


@register("kl_teacher_student", dynamic=True)
def _kl_teacher_student(x: DynamicInputs) -> torch.Tensor:
    # KL(p_T || p_S) = sum p_T log p_T - sum p_T log p_S: the first term is the teacher's alone.
    cross = torch.bmm(x.teacher_probs, x.student_log_probs.unsqueeze(-1)).squeeze(-1)
    return squash(x.teacher_negative_entropy - cross).unsqueeze(-1)


@register("progress", dynamic=True)
def _progress(x: DynamicInputs) -> float:
    return min(max(x.progress, 0.0), 1.0)


def validate_groups(groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Return the groups in canonical order, or raise on unknown or missing names."""
    unknown = sorted(set(groups) - set(FEATURE_GROUPS))
    if unknown:
        raise UserError(f"unknown feature groups {unknown}; available: {list(FEATURE_GROUPS)}")
    if not groups:
        raise UserError(f"at least one feature group is needed; available: {list(FEATURE_GROUPS)}")
    return tuple(g for g in FEATURE_GROUPS if g in groups)


@dataclass(frozen=True)
class FeatureLayout:
    """Which groups are observed, and the names and bounds of every feature index."""

    groups: tuple[str, ...]
    class_names: tuple[str, ...]
    teacher_names: tuple[str, ...]
    semantic_dim: int

    def group_names(self, group: str) -> list[str]:
        names = GROUPS[group].names
        return [group] if names is None else names(self)

    @property
    def names(self) -> list[str]:
        return [name for g in self.groups for name in self.group_names(g)]

    @property
    def static_groups(self) -> tuple[str, ...]:
        return tuple(g for g in self.groups if g in STATIC_GROUPS)

    @property
    def dynamic_groups(self) -> tuple[str, ...]:
        return tuple(g for g in self.groups if g in DYNAMIC_GROUPS)

    @cached_property
    def dynamic_widths(self) -> tuple[int, ...]:
        return tuple(len(self.group_names(g)) for g in self.dynamic_groups)

    @property
    def size(self) -> int:
        return len(self.names)

    def lower_bounds(self) -> np.ndarray:
        """-1 for semantic features, 0 for every other feature."""
        return np.array([-1.0 if n.startswith("semantic[") else 0.0 for n in self.names], dtype=np.float32)


@dataclass(frozen=True)
class SemanticProjection:
    """PCA fitted on the training split, so every split is reduced the same way."""

    mean: np.ndarray
    components: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, train_vectors: np.ndarray, dim: int) -> "SemanticProjection":
        if dim < 1:
            raise UserError(f"semantic_dim must be >= 1, got {dim}")
        vectors = np.asarray(train_vectors, dtype=np.float64)
        mean = vectors.mean(axis=0)
        _, _, vh = np.linalg.svd(vectors - mean, full_matrices=False)
        components = vh[:dim].T
        # SVD signs are arbitrary: fix them so the largest loading of each component is positive.
        largest = components[np.abs(components).argmax(axis=0), np.arange(components.shape[1])]
        components = components * np.where(largest < 0, -1.0, 1.0)
        if components.shape[1] < dim:  # fewer input dims than asked: pad with zero components
            components = np.pad(components, ((0, 0), (0, dim - components.shape[1])))
        scale = 3.0 * np.maximum(((vectors - mean) @ components).std(axis=0), 1e-6)
        return cls(mean=mean, components=components, scale=scale)

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        projected = ((np.asarray(vectors, dtype=np.float64) - self.mean) @ self.components) / self.scale
        return np.clip(projected, -1.0, 1.0).astype(np.float32)


class FeatureTable:
    """The static features of every training instance, in rows as wide as the observation, and what
    the dynamic groups need of the teachers; made once per split. ``for_episode`` gathers what the
    dynamic groups read for a whole episode, so that a step gathers only the static rows."""

    def __init__(self, layout: FeatureLayout, teacher_logits: torch.Tensor, labels: torch.Tensor,
                 labelled: torch.Tensor, semantic: torch.Tensor) -> None:
        self.layout = layout
        log_probs = torch.log_softmax(teacher_logits.double(), dim=-1)
        probs = log_probs.exp()
        self.labels, self.labelled = labels, labelled.float()
        self.teacher_probs = probs.float()
        self.teacher_negative_entropy = (probs * log_probs).sum(dim=-1).float()
        inputs = StaticInputs(log_probs, probs, labels, self.labelled, semantic)
        rows, k = teacher_logits.shape[:2]
        self.table = torch.zeros((rows, k, layout.size), dtype=torch.float32, device=teacher_logits.device)
        start = 0
        for group in layout.static_groups:
            width = len(layout.group_names(group))
            self.table[..., start : start + width] = GROUPS[group].compute(inputs)
            start += width
        self.static_width = start

    def for_episode(self, rows: torch.Tensor) -> "EpisodeFeatures":
        """The features of an episode whose step t reads training rows ``rows[t]`` (any shape after
        the first axis): what the dynamic groups read of those rows is gathered now, once."""
        return EpisodeFeatures(self, rows.flatten(1))


class EpisodeFeatures:
    """An episode's rows and what the dynamic groups read of them, as (steps, R, ...) tensors."""

    def __init__(self, table: FeatureTable, rows: torch.Tensor) -> None:
        self.table, self.rows = table, rows
        if table.layout.dynamic_groups:
            self.teacher_probs = table.teacher_probs[rows]
            self.teacher_negative_entropy = table.teacher_negative_entropy[rows]
            self.labels, self.labelled = table.labels[rows], table.labelled[rows]

    def observation(self, step: int, student_log_probs: torch.Tensor | None, progress: float) -> torch.Tensor:
        """(R, K, F) features of step ``step``'s rows, given the student's (R, C) log-probs there: one
        gather of the static table, then the dynamic columns written in place."""
        layout = self.table.layout
        features = self.table.table.index_select(0, self.rows[step])
        if not layout.dynamic_groups:
            return features
        inputs = DynamicInputs(self.teacher_probs[step], self.teacher_negative_entropy[step], self.labels[step],
                               self.labelled[step], student_log_probs, progress)
        start = self.table.static_width
        for group, width in zip(layout.dynamic_groups, layout.dynamic_widths):
            features[..., start : start + width] = GROUPS[group].compute(inputs)
            start += width
        return features
