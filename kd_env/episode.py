"""The batches of one episode, gathered once at reset so that ``step`` only takes views.

Fancy-indexing the training split costs a few microseconds per array and step, which is a sizeable
share of a distillation step of a small student; gathering the episode's batch order at once turns
the per-step reads of labels and student inputs into basic slices. Teacher outputs are *not*
gathered: they stay in the (memory-mapped, shared between env processes) cache and are read per
batch, so N envs do not hold N copies of them.
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
    """Row t of every array belongs to the batch of step t; shapes are (steps + 1, B, ...)."""

    indices: np.ndarray
    device_indices: torch.Tensor
    labels: torch.Tensor
    student_inputs: dict[str, torch.Tensor]
    labels_np: np.ndarray
    oracle: np.ndarray | None

    @classmethod
    def gather(
        cls,
        order: np.ndarray,
        labels: torch.Tensor,
        student_inputs: dict[str, torch.Tensor],
        oracle: np.ndarray | None,
    ) -> "EpisodeBatches":
        """``order`` (steps + 1, B) indexes the training split; torch arrays stay on their device."""
        order_t = torch.from_numpy(order).to(labels.device)
        return cls(
            indices=order,
            device_indices=order_t,
            labels=labels[order_t],
            student_inputs={name: t[order_t] for name, t in student_inputs.items()},
            labels_np=labels.cpu().numpy()[order],
            oracle=None if oracle is None else oracle[order],
        )

    def inputs(self, step: int) -> dict[str, torch.Tensor]:
        return {name: t[step] for name, t in self.student_inputs.items()}

    def pair_inputs(self, step: int) -> dict[str, torch.Tensor]:
        """The inputs of batches ``step`` and ``step + 1`` as one batch of 2B rows (a view, no copy)."""
        return {name: t[step : step + 2].flatten(0, 1) for name, t in self.student_inputs.items()}
