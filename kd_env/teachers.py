"""Teacher outputs as the environment reads them: computed once per (task, teacher), never inside step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True)
class TeacherOutputs:
    """Every teacher's outputs on one split, stacked in teacher order.

    ``logits`` (N, K, C), ``ce`` (N, K): each teacher's cross-entropy against the gold label, and
    ``pooled``: one (N, H_k) array per teacher (hidden sizes differ between teacher families).
    """

    logits: torch.Tensor
    ce: torch.Tensor
    pooled: tuple[torch.Tensor, ...]


class TeacherCache(Protocol):
    """Read access to precomputed teacher outputs."""

    @property
    def teacher_names(self) -> list[str]: ...

    def outputs(self, split: str) -> TeacherOutputs: ...
