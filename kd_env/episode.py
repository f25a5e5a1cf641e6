"""The batches of one episode of N envs, gathered once at reset so that ``step`` only takes views.

Fancy-indexing the training split costs a few microseconds per array and step, which is a sizeable
share of a distillation step of a small student; gathering the episode's batch order at once turns
the per-step reads of labels and student inputs into basic slices. Teacher outputs are *not*
gathered: they stay in the (memory-mapped, shared between env processes) cache and are read per
batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


def episode_order(rng: np.random.Generator, num_train: int, batch_size: int, episode_steps: int) -> np.ndarray:
    """(episode_steps + 1, B) training indices: shuffled passes, enough for the episode and one batch
    past its end (the pending batch of the last step), each pass dropping its last partial batch."""
    usable = (num_train // batch_size) * batch_size
    needed = (episode_steps + 1) * batch_size
    passes = [rng.permutation(num_train)[:usable] for _ in range(math.ceil(needed / usable))]
    return np.concatenate(passes)[:needed].reshape(episode_steps + 1, batch_size)


@dataclass(frozen=True)
class EpisodeBatches:
    """Row t of every tensor belongs to the batches of step t; shapes are (steps + 1, N, B, ...).

    ``indices`` is the same order as a numpy array, for callers outside the env (``batch_indices``).
    """

    indices: np.ndarray
    rows: torch.Tensor
    labels: torch.Tensor
    labelled: torch.Tensor
    labelled_counts: torch.Tensor
    """(steps + 1, N) labelled instances per batch, at least 1 (the denominator of batch accuracy)."""
    student_inputs: dict[str, torch.Tensor]
    oracle: torch.Tensor | None

    @classmethod
    def gather(
        cls,
        order: np.ndarray,
        labels: torch.Tensor,
        labelled: torch.Tensor,
        student_inputs: dict[str, torch.Tensor],
        oracle: torch.Tensor | None,
    ) -> "EpisodeBatches":
        """``order`` (steps + 1, N, B) indexes the training split; tensors stay on their device."""
        rows = torch.from_numpy(order).to(labels.device)
        batch_labelled = labelled[rows]
        return cls(
            indices=order,
            rows=rows,
            labels=labels[rows],
            labelled=batch_labelled,
            labelled_counts=batch_labelled.sum(dim=-1).clamp_min(1),
            student_inputs={name: t[rows] for name, t in student_inputs.items()},
            oracle=None if oracle is None else oracle[rows],
        )

    def inputs(self, step: int) -> dict[str, torch.Tensor]:
        """(N, B, ...) student inputs of the batches of ``step``."""
        return {name: t[step] for name, t in self.student_inputs.items()}

    def pair_inputs(self, step: int) -> dict[str, torch.Tensor]:
        """(N, 2B, ...) inputs: each env's batches ``step`` and ``step + 1``, one after the other."""
        return {name: t[step : step + 2].transpose(0, 1).flatten(1, 2) for name, t in self.student_inputs.items()}
