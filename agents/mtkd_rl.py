"""An MTKD-RL-style agent (AAAI 2025) for ``TeacherWeighting-v1``: continuous weights from a policy.

The shared pair network gives a Gaussian over a pre-sigmoid score z per (instance, teacher); the
policy's weight is sigmoid(z). As in MTKD-RL, the weight sent to the env is the mean of the policy's
weight, the CA-MKD confidence weight and softmax_m(KL(p_Tm || p_S)); the env normalises each row.
Trained by the REINFORCE machinery of ``agents.reinforce`` with per-instance credit by default; use
the env's ``reward="student_loss"`` for MTKD-RL's reward (minus the per-sample student loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from agents.base import register
from agents.heuristics import ca_mkd_weights, softmax
from agents.networks import PairScorer
from agents.observation import unsquash
from agents.reinforce import ReinforceAgent, ReinforceConfig


@dataclass(frozen=True)
class MTKDRLConfig(ReinforceConfig):
    advantage: str = "instance"
    update_every: int = 4
    hidden_sizes: tuple[int, ...] = (32,)
    init_log_std: float = 0.0
    """Initial log standard deviation of the pre-sigmoid score (learned, one scalar)."""


class GaussianPairPolicy(nn.Module):
    """Pair scorer for the mean, plus one learned log standard deviation (independent of B and K)."""

    def __init__(self, num_features: int, hidden_sizes, init_log_std: float) -> None:
        super().__init__()
        self.mean = PairScorer(num_features, hidden_sizes)
        self.log_std = nn.Parameter(torch.tensor(float(init_log_std)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mean(features)


@register("mtkd_rl")
class MTKDRLAgent(ReinforceAgent):
    config_class = MTKDRLConfig
    action_mode = "weights"

    def _build_policy(self, num_features: int) -> nn.Module:
        return GaussianPairPolicy(num_features, self.config.hidden_sizes, self.config.init_log_std)

    def _distribution(self, mean: torch.Tensor) -> torch.distributions.Distribution:
        return torch.distributions.Normal(mean, self.policy.log_std.exp())

    def _draw(self, mean: torch.Tensor, deterministic: bool) -> torch.Tensor:
        if deterministic:
            return mean
        return mean + self.policy.log_std.exp() * torch.randn(mean.shape, generator=self.generator)

    def _env_action(self, draw: torch.Tensor, grid: np.ndarray) -> np.ndarray:
        policy_weights = torch.sigmoid(draw).numpy()
        confidence = ca_mkd_weights(unsquash(self.view.feature(grid, "teacher_ce")))
        agreement = softmax(unsquash(self.view.feature(grid, "kl_teacher_student")))
        weights = (policy_weights + confidence + agreement) / 3.0
        return np.clip(weights, 0.0, 1.0).astype(np.float32).reshape(-1)
