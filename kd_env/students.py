"""Student builders: the model the environment trains, one optimizer step per env step.

A student is an ``nn.Module`` whose ``forward(inputs)`` takes the dict of tensors of a batch (the
``student_inputs`` of a split, indexed by the batch) and returns (B, C) logits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from kd_env.data import DistillationData


class HeadStudent(nn.Module):
    """A small MLP over fixed instance vectors (``features``): the fast student.

    Inputs are standardised with the training split's statistics, kept as buffers so a saved student
    carries them.
    """

    def __init__(self, train_features: torch.Tensor, num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.register_buffer("mean", train_features.mean(dim=0))
        self.register_buffer("std", train_features.std(dim=0).clamp_min(1e-6))
        self.net = nn.Sequential(
            nn.Linear(train_features.shape[1], hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net((inputs["features"] - self.mean) / self.std)


def _build_head(data: DistillationData, **options) -> nn.Module:
    train_inputs = data.splits["train"].student_inputs
    if "features" not in train_inputs:
        raise ValueError(f"the head student needs 'features' inputs; task {data.task!r} provides {sorted(train_inputs)}")
    return HeadStudent(train_inputs["features"], data.num_classes, **options)


STUDENT_BUILDERS: dict[str, Callable[..., nn.Module]] = {"head": _build_head}
DEFAULT_LEARNING_RATES = {"head": 3e-3}


def default_learning_rate(name: str) -> float:
    """The AdamW learning rate a student uses unless told otherwise (heads and transformers differ 100x)."""
    if name not in DEFAULT_LEARNING_RATES:
        raise ValueError(f"unknown student {name!r}; available: {sorted(STUDENT_BUILDERS)}")
    return DEFAULT_LEARNING_RATES[name]


def build_student(name: str, data: DistillationData, seed: int, options: dict | None = None) -> nn.Module:
    """Build a freshly initialised student, seeded without touching torch's global RNG state."""
    if name not in STUDENT_BUILDERS:
        raise ValueError(f"unknown student {name!r}; available: {sorted(STUDENT_BUILDERS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return STUDENT_BUILDERS[name](data, **(options or {}))
