"""Named reward functions: per-instance rewards from the student's losses around one distillation step.

Every function returns one reward per instance of the batch; the env's scalar reward is their mean, so
agents that can assign credit per instance (the REINFORCE selector) and agents that cannot (SB3 on
the batch) see the same signal.

Scaling, so that rewards are O(0.1-1) on any task and RL step sizes carry over between tasks:
losses are divided by log C (the CE of a uniform guess), so ``student_ce`` lies in about [-1, 0] for a
student better than chance; gains (a loss drop across one step, typically 1e-3-1e-1 nats) are further
multiplied by ``GAIN_SCALE``.

| name          | per-instance reward                                      | extra work per step          |
|---------------|----------------------------------------------------------|------------------------------|
| student_ce    | -CE(y, p_S) after the step / log C                       | a forward of the batch        |
| student_loss  | -((1-a) CE + a KD) after the step, same weights / log C  | a forward of the batch        |
| ce_gain       | (CE before - CE after the step) / log C * GAIN_SCALE     | a forward of the batch        |
| dev_gain      | (probe CE before - after) / log C * GAIN_SCALE, shared   | a forward of the probe set    |

``dev_gain`` measures the held-out effect of the step on a fixed probe set drawn from the dev split; it
cannot be split per instance, so every instance gets the same value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GAIN_SCALE = 10.0
REWARD_NAMES = ("student_ce", "student_loss", "ce_gain", "dev_gain")


@dataclass(frozen=True)
class StepLosses:
    """Per-instance losses (numpy, (B,)) around one step; fields a reward does not need may be None."""

    ce_before: np.ndarray
    ce_after: np.ndarray | None = None
    loss_after: np.ndarray | None = None
    probe_ce_before: float | None = None
    probe_ce_after: float | None = None


def validate_reward(name: str) -> str:
    if name not in REWARD_NAMES:
        raise ValueError(f"unknown reward {name!r}; available: {list(REWARD_NAMES)}")
    return name


def needs_probe(name: str) -> bool:
    """Whether the reward needs the probe-set CE before and after each step (else the batch's)."""
    return name == "dev_gain"


def instance_rewards(name: str, losses: StepLosses, num_classes: int) -> np.ndarray:
    """(B,) rewards for the named reward; see the module table."""
    log_c = math.log(num_classes)
    if name == "student_ce":
        return -losses.ce_after / log_c
    if name == "student_loss":
        return -losses.loss_after / log_c
    if name == "ce_gain":
        return (losses.ce_before - losses.ce_after) / log_c * GAIN_SCALE
    if name == "dev_gain":
        gain = (losses.probe_ce_before - losses.probe_ce_after) / log_c * GAIN_SCALE
        return np.full_like(losses.ce_before, gain)
    raise ValueError(f"unknown reward {name!r}; available: {list(REWARD_NAMES)}")
