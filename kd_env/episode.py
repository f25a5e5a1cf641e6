"""The batches of one episode, gathered once at reset so that ``step`` only takes views.

Fancy-indexing the training split costs a few microseconds per array and step, which is a sizeable
share of a distillation step of a small student; gathering the episode's whole batch order at once
turns every per-step read into a basic slice. Memory: one copy of the per-instance arrays per
episode row (one pass over the training split by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class EpisodeBatches:
    """Row t of every array belongs to the batch of step t; shapes are (steps + 1, B, ...)."""

    indices: np.ndarray
    labels: torch.Tensor
    teacher_logits: torch.Tensor
    student_inputs: dict[str, torch.Tensor]
    labels_np: np.ndarray
    static_features: np.ndarray
    teacher_log_probs: np.ndarray
    oracle: np.ndarray | None

    @classmethod
    def gather(
        cls,
        order: np.ndarray,
        labels: torch.Tensor,
        teacher_logits: torch.Tensor,
        student_inputs: dict[str, torch.Tensor],
        static_features: np.ndarray,
        teacher_log_probs: np.ndarray,
        oracle: np.ndarray | None,
    ) -> "EpisodeBatches":
        """``order`` (steps + 1, B) indexes the training split; torch arrays stay on their device."""
        order_t = torch.from_numpy(order).to(labels.device)
        return cls(
            indices=order,
            labels=labels[order_t],
            teacher_logits=teacher_logits[order_t],
            student_inputs={name: t[order_t] for name, t in student_inputs.items()},
            labels_np=labels.cpu().numpy()[order],
            static_features=static_features[order],
            teacher_log_probs=teacher_log_probs[order],
            oracle=None if oracle is None else oracle[order],
        )

    def inputs(self, step: int) -> dict[str, torch.Tensor]:
        return {name: t[step] for name, t in self.student_inputs.items()}
