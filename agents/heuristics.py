"""Fixed-rule agents: classic multi-teacher weighting baselines acting through the same env.

Selection rules (both env ids): ``no_kd`` (nothing selected: hard labels only, under the env's default
``empty_selection="hard_label"``), ``avg_kd`` (all teachers), ``single_teacher`` (one given teacher),
``best_teacher`` (the teacher with the best dev accuracy), ``random`` (each teacher with probability p).

Privileged references (both env ids), which bound what per-instance selection can reach rather than
compete with learners: ``correct_teachers`` (per instance, the teachers whose top class is the gold
label) and ``oracle`` (the task's known answer, where it has one: the synthetic task's experts).

Weighting rules (``TeacherWeighting-v1`` only; i = instance, m = teacher, l = teacher CE vs gold,
H = teacher entropy, both recovered from the observation):
``ca_mkd`` ``(1 - softmax_m(l_i.)) / (M - 1)`` (Zhang et al. 2022), ``ebkd`` ``1 - H_im / sum_m H_im``
(Kwon et al. 2020), ``mt_bert`` ``1 / (1 + l_im)`` (Wu et al. 2021). The env normalises each row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from agents.base import register
from agents.observation import ObservationView, unsquash
from agents.stepping import StepwiseAgent
from kd_env.errors import UserError


def softmax(values: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = np.exp(values - values.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def ca_mkd_weights(teacher_ce: np.ndarray) -> np.ndarray:
    """(B, K) confidence-aware weights from teacher CEs: low CE -> high weight."""
    k = teacher_ce.shape[-1]
    return (1.0 - softmax(teacher_ce)) / max(k - 1, 1)


def ebkd_weights(teacher_entropy: np.ndarray) -> np.ndarray:
    """(B, K) entropy-based weights: confident (low-entropy) teachers weigh more."""
    return 1.0 - teacher_entropy / np.maximum(teacher_entropy.sum(axis=-1, keepdims=True), 1e-12)


def mt_bert_weights(teacher_ce: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + teacher_ce)


@dataclass(frozen=True)
class RuleConfig:
    """Fixed rules have almost nothing to configure."""

    seed: int = 0
    """Seeds the env's first reset and, for ``random``, the selection draws."""
    teacher: str | int | None = None
    """``single_teacher``: the teacher's name or index."""
    probability: float = 0.5
    """``random``: the chance of selecting each (instance, teacher)."""
    fallback: str = "lowest_ce"
    """``correct_teachers``, for an instance no teacher gets right: ``lowest_ce`` (the teacher closest
    to the gold label; the better reference in every synthetic variant measured, docs/results.md), ``all``
    (Avg-KD there: wrong teachers still carry dark knowledge) or ``none`` (nothing selected: the env's
    ``empty_selection`` decides)."""


class RuleAgent(StepwiseAgent):
    """Drives the env with ``rule(grid) -> (B, K)`` scores; ``learn`` just trains the student."""

    learns = False

    config_class = RuleConfig
    needs_weights_env = False

    def __init__(self, env, config: RuleConfig) -> None:
        super().__init__(env, config)
        self.view = ObservationView(env)
        self.action_mode = env.unwrapped.action_mode
        if self.needs_weights_env and self.action_mode != "weights":
            raise UserError(f"{type(self).__name__} gives continuous weights: use kd_env/TeacherWeighting-v1")

    def rule(self, grid: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        scores = self.rule(self.view.grid(obs)).reshape(-1)
        if self.action_mode == "select":
            return (scores > 0).astype(np.int8)
        return np.clip(scores, 0.0, 1.0).astype(np.float32)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.predict(obs)

    def observe(self, obs, reward, terminated, truncated, info) -> dict | None:
        return {} if terminated or truncated else None

    def _save_state(self, path: Path) -> None:
        torch.save(self._state(), path / "state.pt")

    def _load_state(self, path: Path) -> None:
        self._set_state(torch.load(path / "state.pt", weights_only=True))

    def _state(self) -> dict:
        return {}

    def _set_state(self, state: dict) -> None:
        pass


@register("no_kd")
class NoKD(RuleAgent):
    def rule(self, grid):
        return np.zeros(grid.shape[:2], dtype=np.float32)


@register("avg_kd")
class AvgKD(RuleAgent):
    def rule(self, grid):
        return np.ones(grid.shape[:2], dtype=np.float32)


@register("single_teacher")
class SingleTeacher(RuleAgent):
    def __init__(self, env, config: RuleConfig) -> None:
        super().__init__(env, config)
        names = list(env.unwrapped.teacher_names)
        if config.teacher is None:
            raise UserError(f"single_teacher needs teacher=<name or index>; teachers: {names}")
        self.teacher = config.teacher if isinstance(config.teacher, int) else names.index(config.teacher)

    def rule(self, grid):
        scores = np.zeros(grid.shape[:2], dtype=np.float32)
        scores[:, self.teacher] = 1.0
        return scores


@register("best_teacher")
class BestTeacher(SingleTeacher):
    """The single teacher with the highest dev accuracy (a teacher's own, not its student's)."""

    def __init__(self, env, config: RuleConfig) -> None:
        accuracy = env.unwrapped.data.splits["dev"].teacher_correct().float().mean(dim=0)
        super().__init__(env, RuleConfig(seed=config.seed, teacher=int(accuracy.argmax())))
        self.config = config


@register("random")
class RandomSelection(RuleAgent):
    def __init__(self, env, config: RuleConfig) -> None:
        super().__init__(env, config)
        self.rng = np.random.default_rng(config.seed)

    def rule(self, grid):
        return (self.rng.random(grid.shape[:2]) < self.config.probability).astype(np.float32)

    def _state(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def _set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


FALLBACKS = ("all", "lowest_ce", "none")


class PrivilegedRule(RuleAgent):
    """A reference that reads facts about the env's current batch from the env, not the observation.

    So it works with any feature set; ``predict`` acts on the batch the env is at, whatever ``obs``
    it is given (it is meant for driving its own env, not for scoring observations from elsewhere).
    """

    def _rows(self) -> np.ndarray:
        return self.env.unwrapped.batch_indices


@register("correct_teachers")
class CorrectTeachers(PrivilegedRule):
    """Per instance, the teachers whose top class is the gold label; ``fallback`` where none is.

    Legitimate at training time (the gold label is known there, and the paper's state holds each
    teacher's CE against it), and the reference for the headroom of per-instance selection.
    """

    def __init__(self, env, config: RuleConfig) -> None:
        super().__init__(env, config)
        if config.fallback not in FALLBACKS:
            raise UserError(f"unknown fallback {config.fallback!r}; expected one of {FALLBACKS}")
        train = env.unwrapped.data.splits["train"]
        self.correct = train.teacher_correct().numpy()
        self.raw_teacher_ce = train.raw_teacher_ce.numpy()

    def rule(self, grid):
        rows = self._rows()
        scores = self.correct[rows].astype(np.float32)
        none_right = ~scores.any(axis=1)
        if self.config.fallback == "all":
            scores[none_right] = 1.0
        elif self.config.fallback == "lowest_ce":
            scores[none_right, self.raw_teacher_ce[rows[none_right]].argmin(axis=1)] = 1.0
        return scores


@register("oracle")
class Oracle(PrivilegedRule):
    """The task's known answer per instance: the teachers its ``expert_mask`` marks (synthetic task)."""

    def __init__(self, env, config: RuleConfig) -> None:
        super().__init__(env, config)
        mask = env.unwrapped.data.splits["train"].expert_mask
        if mask is None:
            raise UserError(f"oracle needs a task with a known answer (an expert mask, e.g. synthetic); {env.unwrapped.task!r} has none")
        self.mask = mask.numpy().astype(bool)

    def rule(self, grid):
        return self.mask[self._rows()].astype(np.float32)


@register("ca_mkd")
class CAMKD(RuleAgent):
    needs_weights_env = True

    def rule(self, grid):
        return ca_mkd_weights(unsquash(self.view.feature(grid, "teacher_ce")))


@register("ebkd")
class EBKD(RuleAgent):
    needs_weights_env = True

    def rule(self, grid):
        return ebkd_weights(self.view.feature(grid, "teacher_entropy"))


@register("mt_bert")
class MTBERT(RuleAgent):
    needs_weights_env = True

    def rule(self, grid):
        return mt_bert_weights(unsquash(self.view.feature(grid, "teacher_ce")))
