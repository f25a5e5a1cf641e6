"""Pure-torch multi-teacher distillation: KD losses, teacher aggregation, and weights from actions.

Shapes: B instances, K teachers, C classes. Nothing here imports gym, so the loss can be tested and
reused (e.g. by a plain training loop) without the environment. Everything is torch, on the device
of its inputs.

The loss of instance j is

    L_j = (1 - alpha) * CE(y_j, p_S) + alpha * KD_j     (L_j = KD_j for an instance without a label)

with, for the default ``weighted_ce`` aggregation (the paper's),

    KD_j = sum_k w_jk * CE(p_Tk^tau, p_S^tau)

and, for ``kl_to_average``, ``KD_j = KL(sum_k w_jk p_Tk^tau || p_S^tau)``. ``p^tau`` is the softmax of
logits / tau; with ``tau_squared`` the KD term is multiplied by tau^2 (Hinton et al.), which keeps its
gradient scale independent of tau. An instance whose weight row is all zero (no teacher selected under
the ``hard_label`` fallback) trains on the hard label only: its loss is ``CE(y_j, p_S)``.

A new aggregation is one function decorated with ``@register_aggregation(name)``; ``KDConfig`` accepts
any registered name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from kd_env.arguments import EMPTY_SELECTION_FALLBACKS, require_bool, require_choice, require_finite
from kd_env.errors import UserError
from kd_env.config import EnvConfig

AggregationFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(student log-probs at tau (B, C), teacher probs at tau (B, K, C), weights (B, K)) -> KD term (B,)."""


@dataclass(frozen=True)
class Aggregation:
    fn: AggregationFn
    mixture_gradient: bool
    """The gradient with respect to the student's log-probs at tau is ``-sum_k w_k p_Tk`` (true of
    every aggregation whose value is a cross-entropy or KL to the weighted teacher mixture, up to
    terms without the student): ``kd_loss_and_logit_gradient`` then writes the gradient out."""


_AGGREGATIONS: dict[str, Aggregation] = {}
MIN_ROW_TOTAL = 1e-12
"""A row of weights summing to less than this is an empty selection: normalising it would only scale
float noise up to a full teacher, and the loss and ``selection_rate`` would count a teacher that is not there."""


def register_aggregation(name: str, *, mixture_gradient: bool = False) -> Callable[[AggregationFn], AggregationFn]:
    """Function decorator: make ``KDConfig(aggregation=name)`` combine the teachers with this function.

    ``mixture_gradient``: see ``Aggregation``; leave it False unless it holds (a test compares the
    written-out gradient with autograd's for every aggregation that sets it).
    """

    def decorate(fn: AggregationFn) -> AggregationFn:
        if name in _AGGREGATIONS:
            raise ValueError(f"aggregation name {name!r} is already registered")
        _AGGREGATIONS[name] = Aggregation(fn, mixture_gradient)
        return fn

    return decorate


def aggregation_names() -> list[str]:
    return list(_AGGREGATIONS)


@dataclass(frozen=True)
class KDConfig:
    """How teacher outputs are turned into the student's loss."""

    alpha: float = EnvConfig.alpha
    """Share of the KD term; 1 - alpha goes to the hard label."""
    temperature: float = EnvConfig.temperature
    """Softmax temperature tau applied to teacher and student logits in the KD term."""
    tau_squared: bool = EnvConfig.tau_squared
    """Multiply the KD term by tau^2."""
    aggregation: str = EnvConfig.aggregation
    """``weighted_ce`` (sum of per-teacher soft CEs), ``kl_to_average`` (KL to the weighted mean) or
    any other name given to ``register_aggregation``."""

    def __post_init__(self) -> None:
        # Types first: a command line's alpha=nan or temperature=abc arrives as text.
        if not 0.0 <= require_finite("alpha", self.alpha) <= 1.0:
            raise UserError(f"alpha must be in [0, 1], got {self.alpha}")
        require_finite("temperature", self.temperature, 0.0, strict=True)
        require_bool("tau_squared", self.tau_squared)
        require_choice("aggregation", self.aggregation, tuple(aggregation_names()))


@dataclass(frozen=True)
class KDLoss:
    """Per-instance loss parts; ``total.mean()`` is what the optimizer minimises."""

    total: torch.Tensor
    ce: torch.Tensor
    kd: torch.Tensor


def normalise_weights(scores, empty: str = EnvConfig.empty_selection) -> torch.Tensor:
    """Non-negative (..., B, K) scores (a tensor or anything numpy reads) -> float32 weights summing to
    1 per instance, on the scores' device.

    A binary selection becomes weights averaging over the selected teachers. Rows with no teacher
    (total below ``MIN_ROW_TOTAL``) stay all-zero (``hard_label``: the instance learns from its label
    only) or become uniform (``all_teachers``).
    """
    if empty not in EMPTY_SELECTION_FALLBACKS:
        raise UserError(f"unknown empty-selection fallback {empty!r}; expected one of {EMPTY_SELECTION_FALLBACKS}")
    scores = torch.as_tensor(np.asarray(scores) if not torch.is_tensor(scores) else scores, dtype=torch.float32)
    totals = scores.sum(dim=-1, keepdim=True)
    empty_rows = totals < MIN_ROW_TOTAL
    fill = 1.0 if empty == "all_teachers" else 0.0
    scores = torch.where(empty_rows, fill, scores)
    totals = torch.where(empty_rows, fill * scores.shape[-1], totals)
    return scores / totals.clamp_min(MIN_ROW_TOTAL)


def weights_from_action(action, action_mode: str, expected_shape: tuple[int, ...], num_teachers: int, empty: str,
                        device: torch.device | str = "cpu") -> torch.Tensor:
    """Validate a flat action (raising on anything malformed) and turn it into (..., B, K) weights on ``device``.

    ``action`` is what an agent gives (a numpy array, a list, a tensor on any device). ``action_mode``
    is ``select`` (0/1 per (instance, teacher), averaged over the selected) or ``weights`` (scores in
    [0, 1], normalised per instance). ``expected_shape`` ends with B*K in row-major (instance, teacher)
    order; leading axes (one per env of a batched core) are kept. The value check is one reduction and
    one read of its result, so a malformed action is refused before anything changes.
    """
    if not torch.is_tensor(action):
        try:
            array = np.asarray(action)
        except Exception as error:  # noqa: BLE001 - any unconvertible object is a bad action
            raise ValueError(f"action must be an array of shape {expected_shape}, got {type(action).__name__}") from error
        if array.dtype.kind not in "biuf":
            raise ValueError(f"action must be numeric (bool, int or float), got dtype {array.dtype}")
        action = torch.from_numpy(np.ascontiguousarray(array))
    elif action.is_complex():
        raise ValueError(f"action must be numeric (bool, int or float), got dtype {action.dtype}")
    if tuple(action.shape) != tuple(expected_shape):
        raise ValueError(
            f"action must have shape {tuple(expected_shape)} (B*K, row-major (instance, teacher)), got {tuple(action.shape)}"
        )
    values = action.to(device=device, dtype=torch.float32).view(*expected_shape[:-1], -1, num_teachers)
    if action_mode == "select":
        # v * (1 - v) == 0 holds exactly for 0 and 1, and is False for any other value, NaN or inf.
        if bool((values * (1.0 - values)).ne(0.0).any()):
            bad = values[(values != 0) & (values != 1)][:5]
            raise ValueError(f"a MultiBinary action holds only 0 and 1; got values {bad.tolist()} (NaN or inf included)")
    elif not bool(((values >= 0.0) & (values <= 1.0)).all()):  # NaN fails both comparisons
        if not bool(values.isfinite().all()):
            raise ValueError("weights contain NaN or inf")
        raise ValueError(f"weights must lie in [0, 1]; got min {values.min().item()}, max {values.max().item()}")
    return normalise_weights(values, empty)


def soft_cross_entropy(target_probs: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """CE(target, p) = -sum_c target_c log p_c along the last dimension."""
    return -(target_probs * log_probs).sum(dim=-1)


def soft_targets(teacher_logits: torch.Tensor, config: KDConfig) -> torch.Tensor:
    """Teacher probabilities at the KD temperature: softmax(logits / tau) over the last dimension.

    They depend on the teachers alone, so a caller stepping many batches of one split can make them
    once and gather rows (the batched env does: a softmax over a last dimension of a few classes is one
    of the slowest calls of a small distillation step).
    """
    return F.softmax(teacher_logits / config.temperature, dim=-1)


def kd_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor,
    weights: torch.Tensor,
    config: KDConfig,
    labelled: torch.Tensor | None = None,
) -> KDLoss:
    """The multi-teacher KD loss per instance (see the module docstring).

    ``student_logits`` (B, C), ``labels`` (B,), ``teacher_logits`` (B, K, C), ``weights`` (B, K) with
    rows summing to 1 or all zero; ``labelled`` (B,) bool: see ``kd_loss_from_soft_targets``.
    """
    return kd_loss_from_soft_targets(student_logits, labels, soft_targets(teacher_logits, config), weights, config, labelled)


def kd_loss_from_soft_targets(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_probs: torch.Tensor,
    weights: torch.Tensor,
    config: KDConfig,
    labelled: torch.Tensor | None = None,
) -> KDLoss:
    """``kd_loss`` given the teachers' ``soft_targets`` (B, K, C) instead of their logits.

    ``labelled`` (B,) bool marks the instances whose label may be read (None: all). The others (a
    transfer set) learn from the KD term alone; their ``ce`` is computed but weighs nothing.
    """
    return _loss_parts(student_logits, labels, teacher_probs, weights, config, labelled)[0]


def _mixing(weights: torch.Tensor, labelled: torch.Tensor | None, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) weights of the CE and the KD term per instance: 1 - alpha and alpha with teachers, 1 and 0
    without; an instance without a label has CE weight 0 and KD weight 1 (or 0 without teachers)."""
    has_teacher = weights.sum(dim=-1) > 0
    ce_weight = torch.where(has_teacher, 1.0 - alpha, 1.0)
    if labelled is None:
        return ce_weight, torch.where(has_teacher, alpha, 0.0)
    return ce_weight * labelled, torch.where(has_teacher, torch.where(labelled, alpha, 1.0), 0.0)


def _loss_parts(student_logits, labels, teacher_probs, weights, config: KDConfig, labelled=None):
    """The loss parts, the student's log-probs at temperature 1 and tau that made them, and the
    per-instance weights of the CE and KD terms."""
    tau = config.temperature
    log_probs = F.log_softmax(student_logits, dim=-1)
    ce = -log_probs.gather(1, labels.unsqueeze(1)).squeeze(1)
    student_log_probs_tau = F.log_softmax(student_logits / tau, dim=-1)
    kd = _AGGREGATIONS[config.aggregation].fn(student_log_probs_tau, teacher_probs, weights)
    if config.tau_squared:
        kd = kd * tau * tau
    ce_weight, kd_weight = _mixing(weights, labelled, config.alpha)
    total = ce_weight * ce + kd_weight * kd
    return KDLoss(total=total, ce=ce, kd=kd), log_probs, student_log_probs_tau, ce_weight, kd_weight


def kd_loss_and_logit_gradient(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_probs: torch.Tensor,
    weights: torch.Tensor,
    config: KDConfig,
    scale: float,
    labelled: torch.Tensor | None = None,
) -> tuple[KDLoss, torch.Tensor]:
    """The loss parts of ``kd_loss_from_soft_targets`` and the gradient of ``scale * total.sum()``
    with respect to ``student_logits`` (B, C), with no graph through the student.

    A student that back-propagates by hand (``kd_env.student_stacks.HeadStack``) starts from this
    gradient. For an aggregation registered with ``mixture_gradient=True`` it is written out: with
    ``q = sum_k w_k p_Tk`` and ``p`` the student's probabilities,

        d total_j / d s_j = a_j (p_j - onehot(y_j)) + c_j (p_j^tau * sum(q_j) - q_j) / tau

    where ``a_j`` and ``c_j`` are the instance's CE and KD weights (``_mixing``; ``c_j`` times tau^2
    with ``tau_squared``). Any other aggregation gets it from autograd on the
    loss alone. Written out, it costs about a third of autograd on a batch of a few hundred rows.
    """
    if not _AGGREGATIONS[config.aggregation].mixture_gradient:
        leaf = student_logits.detach().requires_grad_()
        with torch.enable_grad():
            parts = kd_loss_from_soft_targets(leaf, labels, teacher_probs, weights, config, labelled)
            (parts.total.sum() * scale).backward()
        detached = KDLoss(total=parts.total.detach(), ce=parts.ce.detach(), kd=parts.kd.detach())
        return detached, leaf.grad
    with torch.no_grad():
        parts, log_probs, log_probs_tau, ce_weight, kd_weight = _loss_parts(
            student_logits, labels, teacher_probs, weights, config, labelled
        )
        tau = config.temperature
        kd_scale = (tau if config.tau_squared else 1.0 / tau) * scale
        ce_coefficient = (ce_weight * scale).unsqueeze(1)
        kd_coefficient = (kd_weight * kd_scale).unsqueeze(1)
        mixture = torch.bmm(weights.unsqueeze(1), teacher_probs).squeeze(1)
        ce_gradient = log_probs.exp_().scatter_add_(1, labels.unsqueeze(1), _minus_ones(len(labels), student_logits))
        kd_gradient = log_probs_tau.exp_().mul_(mixture.sum(dim=1, keepdim=True)).sub_(mixture)
        return parts, ce_gradient.mul_(ce_coefficient).add_(kd_gradient.mul_(kd_coefficient))


def _minus_ones(rows: int, like: torch.Tensor) -> torch.Tensor:
    return torch.full((rows, 1), -1.0, dtype=like.dtype, device=like.device)


@register_aggregation("weighted_ce", mixture_gradient=True)
def weighted_ce(student_log_probs: torch.Tensor, teacher_probs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_k w_k CE(p_Tk, p_S): each selected teacher pulls the student towards itself."""
    per_teacher = soft_cross_entropy(teacher_probs, student_log_probs.unsqueeze(1))
    return (weights * per_teacher).sum(dim=1)


@register_aggregation("kl_to_average", mixture_gradient=True)
def kl_to_average(student_log_probs: torch.Tensor, teacher_probs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """KL(sum_k w_k p_Tk || p_S): the student matches the teachers' weighted mean."""
    mixed = (weights.unsqueeze(-1) * teacher_probs).sum(dim=1)
    return (mixed * (torch.log(mixed.clamp_min(1e-12)) - student_log_probs)).sum(dim=-1)
