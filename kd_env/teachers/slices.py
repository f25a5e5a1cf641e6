"""Slices of a task's instances, and the training labels a teacher sees: how teacher pools are made.

A slice names a subset of instances in a JSON-friendly string:

| slice          | instances                                                                    |
|----------------|------------------------------------------------------------------------------|
| ``cluster:M:i``| cluster i of M k-means clusters of the frozen semantic vectors (by topic/style)|
| ``classes:a,b``| instances whose gold class is one of the listed class indices                 |

A teacher trained honestly on its slice and with corrupted labels elsewhere is a *specialist*;
``outside_slice`` says what it learns outside: nothing (``drop``), a systematic bias (``shift``: gold
class + 1, the confidently-wrong rule that averaging cannot wash out) or random labels (``random``).
Cluster centres come from the training split only, so dev/test instances are assigned to the nearest
training centre and nothing of the evaluation splits leaks into the teachers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kd_env.errors import UserError

OUTSIDE_SLICE_MODES = ("drop", "shift", "random")
KMEANS_SEED = 0


@dataclass(frozen=True)
class SliceSpec:
    """A parsed slice string."""

    kind: str
    num_clusters: int = 0
    cluster: int = 0
    classes: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "SliceSpec":
        kind, _, rest = text.partition(":")
        try:
            if kind == "cluster":
                num, index = (int(part) for part in rest.split(":"))
                if num < 2 or not 0 <= index < num:
                    raise ValueError
                return cls(kind, num_clusters=num, cluster=index)
            if kind == "classes":
                classes = tuple(sorted({int(part) for part in rest.split(",")}))
                if not classes or min(classes) < 0:
                    raise ValueError
                return cls(kind, classes=classes)
        except ValueError:
            pass
        raise UserError(f"bad slice {text!r}: expected 'cluster:M:i' (M >= 2, 0 <= i < M) or 'classes:a,b,...'")

    def validate_classes(self, num_classes: int) -> None:
        if self.kind == "classes" and max(self.classes) >= num_classes:
            raise UserError(f"slice classes {list(self.classes)} outside the task's {num_classes} classes")
        if self.kind == "classes" and len(self.classes) == num_classes:
            raise UserError(f"slice classes {list(self.classes)} cover every class: that is no slice")


def kmeans_centres(train_vectors: np.ndarray, num_clusters: int) -> np.ndarray:
    """Seeded k-means++ centres of the training vectors (deterministic for the same data)."""
    from scipy.cluster.vq import kmeans2

    centres, _ = kmeans2(train_vectors.astype(np.float64), num_clusters, minit="++", seed=np.random.default_rng(KMEANS_SEED))
    return centres


def nearest_centre(vectors: np.ndarray, centres: np.ndarray) -> np.ndarray:
    distances = ((vectors[:, None, :].astype(np.float64) - centres[None, :, :]) ** 2).sum(axis=-1)
    return distances.argmin(axis=1)


def cluster_assignments(vectors: dict[str, np.ndarray], num_clusters: int, fit_on: str = "train") -> dict[str, np.ndarray]:
    """Per split, each instance's cluster: k-means fitted on the ``fit_on`` split, the others assigned to
    the nearest centre. Every ``cluster:M:i`` slice of one M shares these."""
    centres = kmeans_centres(vectors[fit_on], num_clusters)
    return {split: nearest_centre(split_vectors, centres) for split, split_vectors in vectors.items()}


def slice_masks(spec: SliceSpec, labels: dict[str, np.ndarray], clusters: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """Per split, a boolean mask of the slice's instances (``clusters``: ``cluster_assignments`` for
    the slice's number of clusters; unused by class slices)."""
    if spec.kind == "classes":
        return {split: np.isin(split_labels, spec.classes) for split, split_labels in labels.items()}
    return {split: ids == spec.cluster for split, ids in clusters.items()}


def teacher_training_labels(
    labels: np.ndarray, in_slice: np.ndarray | None, outside: str, label_noise: float, num_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The (instance ids, labels) a teacher is fine-tuned on: its slice's gold labels, what ``outside``
    says elsewhere, then a ``label_noise`` share of all of them replaced by a different random class."""
    if outside not in OUTSIDE_SLICE_MODES:
        raise UserError(f"unknown outside_slice {outside!r}; expected one of {list(OUTSIDE_SLICE_MODES)}")
    rng = np.random.default_rng(seed)
    ids = np.arange(len(labels))
    taught = labels.astype(np.int64).copy()
    if in_slice is not None:
        outside_ids = ids[~in_slice]
        if outside == "drop":
            ids = ids[in_slice]
        elif outside == "shift":
            taught[outside_ids] = (taught[outside_ids] + 1) % num_classes
        else:
            taught[outside_ids] = rng.integers(0, num_classes, size=len(outside_ids))
    taught = taught[ids]
    if label_noise > 0:
        flip = rng.random(len(ids)) < label_noise
        offsets = rng.integers(1, num_classes, size=int(flip.sum()))
        taught[flip] = (taught[flip] + offsets) % num_classes
    return ids, taught
