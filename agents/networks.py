"""A scorer shared over (instance, teacher) pairs, so its size never depends on the batch size B."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def shared_mlp(in_features: int, hidden_sizes: Sequence[int], out_features: int) -> nn.Sequential:
    """An MLP applied to the last dimension; ``hidden_sizes=()`` is a single linear layer."""
    layers: list[nn.Module] = []
    width = in_features
    for hidden in hidden_sizes:
        layers += [nn.Linear(width, hidden), nn.Tanh()]
        width = hidden
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class PairScorer(nn.Module):
    """(..., B, K, F) features -> (..., B, K) logits, the same weights for every (instance, teacher).

    With no hidden layer this is the paper's logistic policy ``sigmoid(W F(s) + b)``. The output
    layer starts near zero, so the first policy selects each teacher with probability ~0.5.
    """

    def __init__(self, num_features: int, hidden_sizes: Sequence[int] = ()) -> None:
        super().__init__()
        self.net = shared_mlp(num_features, hidden_sizes, 1)
        last = self.net[-1]
        nn.init.normal_(last.weight, std=0.01)
        nn.init.zeros_(last.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)
