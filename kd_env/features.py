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

Features are numpy float32 arrays, because the observation is one: for a batch of 32 x 4 the
per-call overhead of numpy is a fraction of torch's, and this runs every step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from kd_env.errors import UserError


def squash(values: np.ndarray) -> np.ndarray:
    """Map [0, inf) to [0, 1) monotonically."""
    values = np.maximum(values, 0.0)
    return values / (1.0 + values)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))



# ------------------------------------------------------------------------------ the group registry
@dataclass(frozen=True)
class FeatureGroup:
    """A registered feature group: ``compute(inputs)`` gives its (B, K, width) values (broadcastable),
    from ``StaticInputs`` for a static group or ``DynamicInputs`` for a dynamic one; ``names(layout)``
    names its feature indices (one index named after the group when ``None``)."""

    name: str
    dynamic: bool
    compute: Callable[[Any], np.ndarray]
    names: Callable[["FeatureLayout"], list[str]] | None = None


GROUPS: dict[str, FeatureGroup] = {}
STATIC_GROUPS: tuple[str, ...] = ()
DYNAMIC_GROUPS: tuple[str, ...] = ()
FEATURE_GROUPS: tuple[str, ...] = ()


def register(name: str, *, dynamic: bool = False, names: Callable[["FeatureLayout"], list[str]] | None = None):
    """Decorator: register ``compute(inputs) -> (B, K, width) array`` as feature group ``name``.

    Groups keep their registration order, static groups before dynamic ones, in ``FEATURE_GROUPS``.
    """

    def decorate(compute: Callable[[Any], np.ndarray]) -> Callable[[Any], np.ndarray]:
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
    """What a static group is computed from: one batch's (B, K, C) teacher log-probs and their exp,
    the (B,) gold labels and the (B, D) semantic vectors."""

    teacher_log_probs: np.ndarray
    teacher_probs: np.ndarray
    labels: np.ndarray
    semantic: np.ndarray


@dataclass
class DynamicInputs:
    """What a dynamic group is computed from: the static inputs' teacher log-probs and labels, the
    student's (B, C) log-probs and the episode's progress; ``teacher_probs`` is made on first use
    unless the caller has it."""

    teacher_log_probs: np.ndarray
    student_log_probs: np.ndarray
    labels: np.ndarray
    progress: float
    given_teacher_probs: np.ndarray | None = None

    @cached_property
    def teacher_probs(self) -> np.ndarray:
        if self.given_teacher_probs is not None:
            return self.given_teacher_probs
        return np.exp(self.teacher_log_probs)


def _class_names(group: str) -> Callable[["FeatureLayout"], list[str]]:
    return lambda layout: [f"{group}[{c}]" for c in layout.class_names]


@register("teacher_probs", names=_class_names("teacher_probs"))
def _teacher_probs(x: StaticInputs) -> np.ndarray:
    return x.teacher_probs


@register("teacher_ce")
def _teacher_ce(x: StaticInputs) -> np.ndarray:
    b, k, _ = x.teacher_log_probs.shape
    return squash(-np.take_along_axis(x.teacher_log_probs, x.labels.reshape(b, 1, 1).repeat(k, axis=1), axis=2))


@register("teacher_entropy")
def _teacher_entropy(x: StaticInputs) -> np.ndarray:
    c = x.teacher_log_probs.shape[2]
    return np.clip(-(x.teacher_probs * x.teacher_log_probs).sum(axis=-1, keepdims=True) / np.log(c), 0.0, 1.0)


@register("teacher_correct")
def _teacher_correct(x: StaticInputs) -> np.ndarray:
    b = x.teacher_log_probs.shape[0]
    return (x.teacher_log_probs.argmax(axis=-1) == x.labels.reshape(b, 1))[..., None]


@register("teacher_id", names=lambda layout: [f"teacher_id[{t}]" for t in layout.teacher_names])
def _teacher_id(x: StaticInputs) -> np.ndarray:
    b, k, _ = x.teacher_log_probs.shape
    return np.broadcast_to(np.eye(k), (b, k, k))


@register("semantic", names=lambda layout: [f"semantic[{i}]" for i in range(layout.semantic_dim)])
def _semantic(x: StaticInputs) -> np.ndarray:
    b, k, _ = x.teacher_log_probs.shape
    return np.broadcast_to(x.semantic[:, None, :], (b, k, x.semantic.shape[1]))


@register("student_probs", dynamic=True, names=_class_names("student_probs"))
def _student_probs(x: DynamicInputs) -> np.ndarray:
    return np.exp(x.student_log_probs)[:, None, :]


@register("student_ce", dynamic=True)
def _student_ce(x: DynamicInputs) -> np.ndarray:
    b = x.student_log_probs.shape[0]
    return squash(-x.student_log_probs[np.arange(b), x.labels])[:, None, None]


@register("kl_teacher_student", dynamic=True)
def _kl_teacher_student(x: DynamicInputs) -> np.ndarray:
    kl = (x.teacher_probs * (x.teacher_log_probs - x.student_log_probs[:, None, :])).sum(axis=-1)
    return squash(kl)[..., None]


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
            raise ValueError(f"semantic_dim must be >= 1, got {dim}")
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


def static_features(
    layout: FeatureLayout, teacher_log_probs: np.ndarray, labels: np.ndarray, semantic: np.ndarray
) -> np.ndarray:
    """(B, K, F_static) features that depend only on the data and the teachers.

    Computed per batch from the teachers' log-probabilities, so that no full-split copy of anything
    derived from teacher outputs lives in each env process (the outputs themselves are shared).
    """
    b, k, _ = teacher_log_probs.shape
    inputs = StaticInputs(teacher_log_probs, np.exp(teacher_log_probs), labels, semantic)
    parts = [GROUPS[group].compute(inputs) for group in layout.static_groups]
    if not parts:
        return np.zeros((b, k, 0), dtype=np.float32)
    return np.concatenate(parts, axis=-1, dtype=np.float32)


def dynamic_features(
    layout: FeatureLayout,
    teacher_log_probs: np.ndarray,
    student_log_probs: np.ndarray,
    labels: np.ndarray,
    progress: float,
    teacher_probs: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """(B, K, F_dynamic) features that depend on the current student (its (B, C) log-probabilities).

    A caller that keeps ``exp(teacher_log_probs)`` passes it as ``teacher_probs``, and one that
    assembles the observation itself passes its (B, K, F_dynamic) slice as ``out``: the same values,
    fewer passes over the largest arrays.
    """
    b, k, _ = teacher_log_probs.shape
    if out is None:
        out = np.empty((b, k, sum(layout.dynamic_widths)), dtype=np.float32)
    inputs = DynamicInputs(teacher_log_probs, student_log_probs, labels, progress, teacher_probs)
    start = 0
    for group, width in zip(layout.dynamic_groups, layout.dynamic_widths):
        out[:, :, start : start + width] = GROUPS[group].compute(inputs)
        start += width
    return out


class StaticFeatureChunks:
    """The static features (and teacher log-probabilities) of an episode's batches, made in chunks.

    Per batch, the static features are some thirty numpy calls on arrays of a few hundred numbers,
    mostly call overhead. Made for ``chunk_steps`` batches at once, that overhead is paid once per
    chunk, while memory stays bounded by the chunk (not the split), so env processes still share the
    teacher outputs rather than each holding features of all of them.
    """

    def __init__(
        self,
        layout: FeatureLayout,
        teacher_logits: np.ndarray,
        semantic: np.ndarray,
        batch_indices: np.ndarray,
        batch_labels: np.ndarray,
        chunk_steps: int = 64,
    ) -> None:
        self.layout = layout
        self.teacher_logits = teacher_logits
        self.semantic = semantic
        self.batch_indices = batch_indices
        self.batch_labels = batch_labels
        self.chunk_steps = chunk_steps
        self._start = 0
        self._static = self._log_probs = None

    def __call__(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(B, K, F_static) float32 features and (B, K, C) float64 teacher log-probs of batch ``step``."""
        if self._static is None or not self._start <= step < self._start + len(self._static):
            self._make_chunk(step)
        row = step - self._start
        return self._static[row], self._log_probs[row]

    def _make_chunk(self, step: int) -> None:
        rows = self.batch_indices[step : step + self.chunk_steps]
        steps, b = rows.shape
        flat = rows.reshape(-1)
        log_probs = log_softmax(self.teacher_logits[flat].astype(np.float64))
        labels = self.batch_labels[step : step + steps].reshape(-1)
        static = static_features(self.layout, log_probs, labels, self.semantic[flat])
        self._start = step
        self._static = static.reshape(steps, b, *static.shape[1:])
        self._log_probs = log_probs.reshape(steps, b, *log_probs.shape[1:])
