"""The built-in synthetic task: a fast debug task whose right answer is known by construction.

Instances come from ``num_clusters`` overlapping Gaussian clusters. The true class posterior is a
softmax of a linear rule of the input, and labels are sampled from it (so the task has a Bayes error,
like real data). Teacher k is an *expert* on some clusters: there it outputs the true posterior
(accurate and calibrated). Everywhere else it outputs a sharper posterior from one wrong rule that all
non-experts share (a systematic bias, like a spurious feature every non-expert latched onto). With one
expert among four teachers, equal weighting (Avg-KD) pulls the student towards the wrong rule, while
selecting each instance's experts gives it the true posterior. The oracle ``expert_mask`` says which
teachers are experts for each instance.

Two variants, by ``label_noise``:

- ``0`` (the task's default): clean training labels. The experts know nothing the labels do not
  already say, so hard labels alone do about as well as the oracle: a task for checking that a
  selector finds the experts, not for showing that selection pays.
- ``> 0`` (the ``synthetic`` comparison preset uses 0.4): that share of training labels is flipped;
  dev and test keep clean labels. The experts' clean posterior is then worth more than the labels,
  and selecting them beats both hard labels and Avg-KD (measurements: docs/results.md).

``labels=L`` and ``transfer=U`` (``kd_env.tasks.budget``) keep L labelled and U unlabelled rows of the
``num_train`` generated ones, so tests can exercise a label budget on tiny data. Dev and test stay as
they are without the options.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from scipy.special import log_softmax

from kd_env.errors import UserError
from kd_env.tasks.budget import LabelBudget, budget_rows
from kd_env.tasks.data import SPLITS, DistillationData, SplitData
from kd_env.options import config_from_options


@dataclass(frozen=True)
class SyntheticConfig:
    """Shape and difficulty of the synthetic task (all JSON-friendly, passed as ``task_options``)."""

    num_classes: int = 4
    num_teachers: int = 4
    num_clusters: int = 8
    experts_per_cluster: int = 1
    input_dim: int = 8
    num_train: int = 1024
    num_dev: int = 512
    num_test: int = 2048
    cluster_spread: float = 1.5
    """Standard deviation of cluster centres; larger separates clusters more."""
    rule_sharpness: float = 2.0
    """Scale of the true linear rule; larger makes labels less noisy (a higher Bayes accuracy)."""
    label_noise: float = 0.0
    """Share of training labels replaced by another class, drawn uniformly (annotation noise). Dev and
    test keep the clean labels: the student is judged on the task, not on its annotators. Expert
    teachers still give the clean posterior, so with noise they know more than the labels."""
    seed: int = 0
    """Seed of the data and the teachers (the student and batch order are seeded by ``reset``)."""
    labels: int | None = None
    """Label budget: keep this many labelled training rows (stratified) of the ``num_train`` generated."""
    transfer: int = 0
    """With ``labels``: keep this many further training rows, unlabelled."""

    def __post_init__(self) -> None:
        LabelBudget(self.labels, self.transfer)  # a bad budget fails here, before any data is made
        if self.num_classes < 2:
            raise UserError(f"num_classes must be >= 2, got {self.num_classes}")
        if not 1 <= self.experts_per_cluster < self.num_teachers:
            raise UserError(
                f"experts_per_cluster must be in [1, num_teachers - 1 = {self.num_teachers - 1}], "
                f"got {self.experts_per_cluster}"
            )
        if not 0.0 <= self.label_noise < 1.0:
            raise UserError(f"label_noise must be in [0, 1), got {self.label_noise}")
        for name in ("num_train", "num_dev", "num_test"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)} (an empty split)")

    @classmethod
    def from_options(cls, options: dict | None) -> "SyntheticConfig":
        return config_from_options(cls, options, "synthetic task")


def teacher_names(config: SyntheticConfig) -> tuple[str, ...]:
    return tuple(f"synthetic-teacher-{k}" for k in range(config.num_teachers))


def _flip_labels(labels: np.ndarray, share: float, num_classes: int, seed: int) -> np.ndarray:
    """Replace ``round(share * n)`` labels with a different class each, drawn uniformly.

    Its own random stream, so a noise-free task stays identical to what it was before the option.
    """
    rng = np.random.default_rng([seed, 1])
    flipped = labels.copy()
    chosen = rng.choice(len(labels), size=round(share * len(labels)), replace=False)
    flipped[chosen] = (labels[chosen] + rng.integers(1, num_classes, size=len(chosen))) % num_classes
    return flipped


def build_synthetic_data(teachers: list[str] | None = None, options: dict | None = None) -> DistillationData:
    """Generate the splits and every teacher's outputs; ``teachers`` picks a subset by name."""
    config = SyntheticConfig.from_options(options)
    all_names = teacher_names(config)
    chosen = list(all_names) if teachers is None else list(teachers)
    unknown = [t for t in chosen if t not in all_names]
    if unknown or not chosen:
        raise UserError(f"unknown teachers {unknown or chosen} for the synthetic task; available: {list(all_names)}")
    teacher_index = [all_names.index(t) for t in chosen]

    rng = np.random.default_rng(config.seed)
    k, c, m, d = config.num_teachers, config.num_classes, config.num_clusters, config.input_dim
    centres = rng.normal(0.0, config.cluster_spread, size=(m, d))
    true_rule = rng.normal(0.0, config.rule_sharpness / np.sqrt(d), size=(d, c))
    wrong_rule = rng.normal(0.0, 1.5 * config.rule_sharpness / np.sqrt(d), size=(d, c))
    experts = np.zeros((m, k), dtype=bool)
    for cluster in range(m):
        for e in range(config.experts_per_cluster):
            experts[cluster, (cluster * config.experts_per_cluster + e) % k] = True

    budget = LabelBudget(config.labels, config.transfer)
    splits = {}
    sizes = {"train": config.num_train, "dev": config.num_dev, "test": config.num_test}
    for split in SPLITS:
        n = sizes[split]
        cluster = rng.integers(0, m, size=n)
        x = centres[cluster] + rng.normal(0.0, 1.0, size=(n, d))
        true_logits = x @ true_rule
        wrong_logits = x @ wrong_rule
        true_probs = np.exp(log_softmax(true_logits, axis=-1))
        labels = (rng.random((n, 1)) > np.cumsum(true_probs, axis=1)).sum(axis=1).clip(0, c - 1)
        # Every teacher adds its own small logit noise, so no two teachers are exact copies.
        jitter = rng.normal(0.0, 0.1, size=(n, k, c))
        labelled = None
        if split == "train":
            noisy = _flip_labels(labels, config.label_noise, c, config.seed)
            if budget.active:
                rows, labelled = budget_rows(labels, budget, c, config.seed, f"the synthetic training split (num_train={n})")
                cluster, x, true_logits, wrong_logits, jitter = (a[rows] for a in (cluster, x, true_logits, wrong_logits, jitter))
                # Annotation noise lands on labelled rows only: the others' hidden truth is the clean label.
                labels = np.where(labelled, noisy[rows], labels[rows])
            else:
                labels = noisy
        expert_mask = experts[cluster]
        logits = np.where(expert_mask[:, :, None], true_logits[:, None, :], wrong_logits[:, None, :]) + jitter
        logits = logits[:, teacher_index]
        log_probs = log_softmax(logits, axis=-1)
        ce = -np.take_along_axis(log_probs, labels[:, None, None].repeat(len(chosen), axis=1), axis=2)[..., 0]
        features = torch.tensor(x, dtype=torch.float32)
        splits[split] = SplitData(
            labels=torch.tensor(labels, dtype=torch.long),
            student_inputs={"features": features},
            semantic=features,
            teacher_logits=torch.tensor(logits, dtype=torch.float32),
            raw_teacher_ce=torch.tensor(ce, dtype=torch.float32),
            expert_mask=torch.tensor(expert_mask[:, teacher_index]),
            labelled=None if labelled is None else torch.from_numpy(labelled),
        )
    return DistillationData(
        task="synthetic",
        class_names=tuple(f"class-{i}" for i in range(c)),
        teacher_names=tuple(chosen),
        splits=splits,
    )
