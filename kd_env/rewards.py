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
| probe_alignment | sum_k w_jk s_jk - mean_k s_jk (see below), label-free   | a forward and backward of the probe set, two forwards of the batch |

``dev_gain`` measures the held-out effect of the step on a fixed probe set drawn from the dev split; it
cannot be split per instance, so every instance gets the same value.

``probe_alignment`` is per instance and reads no label of the batch, so it rewards the selections on
a transfer set's unlabelled instances too. After the step the env takes a small look-ahead step
``theta' = theta - eps * g`` down the probe set's CE gradient g (eps so that the probe's CE drops by
``PROBE_DROP`` nats, to first order) and measures, for every instance j and teacher k, how much
closer that step brings the student to teacher k on j, in units of the probe's own drop:

    s_jk = (CE(p_Tk, p_S(theta)) - CE(p_Tk, p_S(theta'))) / (probe CE(theta) - probe CE(theta'))

s_jk > 0: teacher k pulls the student on j where the labelled probe pulls it (to first order it is
<grad of teacher k's KD term on j, g> / |g|^2, the example-reweighting signal of Ren et al., ICML 2018,
"Learning to Reweight Examples for Robust Deep Learning"). The reward is the selected teachers'
weighted alignment over that of all teachers averaged, so it scores the choice, not the instance.

A new reward is one function decorated with ``@register(name, needs=...)``: ``needs`` names the losses
(``LOSSES``) the env must compute around each step for it, so the env never branches on a reward's name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from kd_env.errors import UserError

GAIN_SCALE = 10.0
PROBE_DROP = 1e-2
"""Nats by which ``probe_alignment``'s look-ahead step lowers the probe set's CE (to first order): large
enough for float32 differences, small enough for the first-order picture."""
LOSSES = ("ce_after", "loss_after", "probe_ce", "teacher_alignment")
"""What a reward can ask the env for, beyond ``ce_before`` (always there): the batch's per-instance CE
after the step, its KD loss (same weights) after the step, the probe set's mean CE before and after,
or each (instance, teacher)'s alignment with the probe set (``probe_alignment``) and the step's weights."""


@dataclass(frozen=True)
class StepLosses:
    """Per-instance losses around one step, torch tensors on the env's device: (..., B) per instance
(a leading axis per env of a batched core), (..., 1) for the probe set's means. Fields a reward does
not need may be None. Losses against the gold label cannot be known on instances without a label
(a transfer set): the core zeroes the rewards it computes from the batch there (``Reward.reads_batch_labels``)."""

    ce_before: torch.Tensor
    ce_after: torch.Tensor | None = None
    loss_after: torch.Tensor | None = None
    probe_ce_before: torch.Tensor | None = None
    probe_ce_after: torch.Tensor | None = None
    teacher_alignment: torch.Tensor | None = None
    """(..., B, K) s_jk of ``probe_alignment``."""
    weights: torch.Tensor | None = None
    """(..., B, K) the step's normalised teacher weights (given with ``teacher_alignment``)."""


RewardFn = Callable[[StepLosses, float], torch.Tensor]
"""(losses, log C) -> (..., B) per-instance rewards."""


@dataclass(frozen=True)
class Reward:
    """A registered reward: its function and the losses it reads."""

    name: str
    fn: RewardFn
    needs: frozenset[str]
    label_free: bool = False
    """Whether its value on an instance reads no gold label of the batch (then it rewards unlabelled
    instances too)."""

    @property
    def uses_probe_set(self) -> bool:
        """Whether it reads the probe set at all."""
        return not self.needs.isdisjoint({"probe_ce", "teacher_alignment"})

    @property
    def needs_probe(self) -> bool:
        """Whether the env must measure the probe set's CE before and after each step."""
        return "probe_ce" in self.needs

    @property
    def reads_batch_labels(self) -> bool:
        """Whether its per-instance values may come from the batch's gold labels."""
        return not self.label_free

    @property
    def needs_batch_after(self) -> bool:
        """Whether the env must forward the batch again after the step."""
        return not self.needs.isdisjoint({"ce_after", "loss_after", "teacher_alignment"})


_REGISTRY: dict[str, Reward] = {}


def register(name: str, *, needs: Iterable[str], label_free: bool = False) -> Callable[[RewardFn], RewardFn]:
    """Function decorator: make ``reward=name`` in the env use this function, given the losses it
    ``needs``; ``label_free``: it reads no gold label of the batch (the env then keeps it on unlabelled instances)."""
    needs = frozenset(needs)
    unknown = sorted(needs - set(LOSSES))
    if unknown:
        raise ValueError(f"unknown losses {unknown} for reward {name!r}; available: {list(LOSSES)}")

    def decorate(fn: RewardFn) -> RewardFn:
        if name in _REGISTRY:
            raise ValueError(f"reward name {name!r} is already registered")
        _REGISTRY[name] = Reward(name, fn, needs, label_free)
        return fn

    return decorate


def reward_names() -> list[str]:
    return list(_REGISTRY)


def get_reward(name: str) -> Reward:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise UserError(f"unknown reward {name!r}; available: {reward_names()}")
    return _REGISTRY[name]


def instance_rewards(name: str, losses: StepLosses, num_classes: int) -> torch.Tensor:
    """(..., B) rewards for the named reward; see the module table."""
    return get_reward(name).fn(losses, math.log(num_classes))


@register("student_ce", needs=["ce_after"])
def student_ce(losses: StepLosses, log_c: float) -> torch.Tensor:
    return -losses.ce_after / log_c


@register("student_loss", needs=["loss_after"])
def student_loss(losses: StepLosses, log_c: float) -> torch.Tensor:
    return -losses.loss_after / log_c


@register("ce_gain", needs=["ce_after"])
def ce_gain(losses: StepLosses, log_c: float) -> torch.Tensor:
    return (losses.ce_before - losses.ce_after) / log_c * GAIN_SCALE


@register("dev_gain", needs=["probe_ce"], label_free=True)
def dev_gain(losses: StepLosses, log_c: float) -> torch.Tensor:
    gain = (losses.probe_ce_before - losses.probe_ce_after) / log_c * GAIN_SCALE
    return gain.expand_as(losses.ce_before)


@register("probe_alignment", needs=["teacher_alignment"], label_free=True)
def probe_alignment(losses: StepLosses, log_c: float) -> torch.Tensor:
    alignment = losses.teacher_alignment
    return (losses.weights * alignment).sum(dim=-1) - alignment.mean(dim=-1)
