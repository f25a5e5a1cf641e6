"""Everything one distillation problem needs, per split: labels, student inputs, teacher outputs.

A task builder (the synthetic task here; text tasks elsewhere) turns a task name into a
``DistillationData``; the environment only ever reads this object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

SPLITS = ("train", "dev", "test")
TEACHER_ARRAYS = tuple(f"{split}.{name}" for split in SPLITS for name in ("logits", "ce", "pooled"))
"""The arrays of every teacher's cache entry, whether fine-tuned here or run from a checkpoint."""


@dataclass(frozen=True)
class SplitData:
    """One split: N instances, K teachers, C classes.

    ``student_inputs`` maps input names to tensors whose first dimension is N (``features`` for the
    head student, ``input_ids``/``attention_mask`` for a transformer student). ``semantic`` is the
    (N, D) frozen-encoder vector of each instance. ``raw_teacher_ce`` (N, K) is each teacher's
    cross-entropy against the gold label, unbounded (the observation's ``teacher_ce`` feature group is
    its squashed form, computed from the logits). ``expert_mask`` (N, K) marks the teachers known to
    be right for an instance, where the task knows it (the synthetic task); else None.

    ``labelled`` (N,) bool marks the rows whose label the student may read (a label budget with an
    unlabelled transfer set, ``kd_env.tasks.budget``); None = every row. ``labels`` holds the gold label
    on every row all the same: on unlabelled rows it is the hidden truth, which only privileged
    references (``teacher_correct``, ``expert_mask``) and analysis may read, never a loss, feature or
    reward.
    """

    labels: torch.Tensor
    student_inputs: dict[str, torch.Tensor]
    semantic: torch.Tensor
    teacher_logits: torch.Tensor
    raw_teacher_ce: torch.Tensor
    expert_mask: torch.Tensor | None = None
    labelled: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def teacher_correct(self) -> torch.Tensor:
        """(N, K) bool: whether each teacher's top class is the gold label.

        The one definition of "a teacher is right", shared by reference selectors, selection profiles
        and reports, so they never disagree on ties or on which labels count as gold.
        """
        return self.teacher_logits.argmax(dim=-1) == self.labels[:, None]

    def label_mask(self) -> torch.Tensor:
        """(N,) bool: where the label may be read (every row when ``labelled`` is None)."""
        return torch.ones(len(self), dtype=torch.bool) if self.labelled is None else self.labelled

    def validate(self, name: str, num_classes: int, num_teachers: int) -> None:
        n = len(self)
        if n == 0:
            raise ValueError(f"split {name!r} is empty")
        if self.teacher_logits.ndim != 3 or self.teacher_logits.shape[:2] != (n, num_teachers):
            raise ValueError(
                f"split {name!r}: teacher logits have shape {tuple(self.teacher_logits.shape)}, "
                f"expected ({n}, {num_teachers}, {num_classes})"
            )
        if self.teacher_logits.shape[2] != num_classes:
            raise ValueError(
                f"split {name!r}: teachers output {self.teacher_logits.shape[2]} classes but the task has "
                f"{num_classes}"
            )
        if self.raw_teacher_ce.shape != (n, num_teachers):
            raise ValueError(f"split {name!r}: teacher CE has shape {tuple(self.raw_teacher_ce.shape)}, expected ({n}, {num_teachers})")
        if self.semantic.ndim != 2 or self.semantic.shape[0] != n:
            raise ValueError(f"split {name!r}: semantic vectors have shape {tuple(self.semantic.shape)}, expected ({n}, D)")
        for key, tensor in self.student_inputs.items():
            if tensor.shape[0] != n:
                raise ValueError(f"split {name!r}: student input {key!r} has {tensor.shape[0]} rows, expected {n}")
        if int(self.labels.min()) < 0 or int(self.labels.max()) >= num_classes:
            raise ValueError(f"split {name!r}: labels outside [0, {num_classes})")
        if self.labelled is not None:
            if self.labelled.dtype != torch.bool or tuple(self.labelled.shape) != (n,):
                raise ValueError(f"split {name!r}: the labelled mask is {self.labelled.dtype} of shape {tuple(self.labelled.shape)}, expected bool ({n},)")
            if not bool(self.labelled.any()):
                raise ValueError(f"split {name!r}: no row is labelled")


@dataclass(frozen=True)
class DistillationData:
    """A task's splits with its teachers' outputs, ready for the environment."""

    task: str
    class_names: tuple[str, ...]
    teacher_names: tuple[str, ...]
    splits: dict[str, SplitData] = field(repr=False)

    def __post_init__(self) -> None:
        missing = [s for s in SPLITS if s not in self.splits]
        if missing:
            raise ValueError(f"task {self.task!r} lacks splits {missing}; expected {list(SPLITS)}")
        for name, split in self.splits.items():
            split.validate(name, self.num_classes, self.num_teachers)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_teachers(self) -> int:
        return len(self.teacher_names)
