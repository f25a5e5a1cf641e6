"""Head-tuned teachers: a frozen pretrained encoder's cached sentence vectors -> a trained MLP head.

Fine-tuning a whole encoder costs minutes per teacher on a CPU; a head over vectors that are computed
once per (task, encoder) and shared by every teacher on that encoder costs seconds. Pools of many
teachers (specialists, biased or noisy teachers) stay cheap this way. The head is trained by the same
``fine_tune`` loop as a full teacher: ``VectorRows`` stands in for tokenised text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

HEAD_HIDDEN = 256


@dataclass(frozen=True)
class VectorRows:
    """Precomputed instance vectors with the batching interface of ``text_models.Encoded``."""

    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.vectors)

    def lengths(self) -> np.ndarray:
        return np.ones(len(self.vectors), dtype=np.int64)

    def subset(self, indices) -> "VectorRows":
        return VectorRows(self.vectors[np.asarray(indices, dtype=np.int64)])

    def batch(self, indices, device: torch.device) -> dict[str, torch.Tensor]:
        rows = torch.from_numpy(np.ascontiguousarray(self.vectors[np.asarray(indices, dtype=np.int64)], dtype=np.float32))
        return {"vectors": rows.to(device)}


class HeadClassifier(nn.Module):
    """Vector -> ReLU MLP -> logits; ``forward`` returns (logits, hidden) like ``TextClassifier``."""

    def __init__(self, input_dim: int, num_classes: int, hidden: int = HEAD_HIDDEN, dropout: float = 0.1) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(input_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.hidden(batch["vectors"])
        return self.out(hidden), hidden
