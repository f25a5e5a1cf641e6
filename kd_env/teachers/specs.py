"""Teacher specs: what a teacher is (encoder, depth, fine-tuning, slice), the named defaults, and the
preparation settings shared by teachers and embeddings.

A spec's fields, with ``CODE_VERSION``, are the content of its cache key (``preparation.teacher_description``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from kd_env.arguments import require_teachers
from kd_env.errors import UserError
from kd_env.options import check_option_names
from kd_env.teachers.checkpoints import checkpoint_teacher, looks_like_checkpoint
from kd_env.teachers.pools import HEAD, TEACHER_POOLS, expand_pools, pool_teachers
from kd_env.teachers.slices import OUTSIDE_SLICE_MODES, SliceSpec

# Bump when fine-tuning or inference changes what a cache entry holds: old entries are then ignored.
CODE_VERSION = 1


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher: which encoder, how much of it, and how it is fine-tuned (all part of the cache key)."""

    name: str
    encoder: str
    """An offline encoder name (``kd_env.assets``), a local model directory or a hub id."""
    num_layers: int | None = None
    """Keep the first k encoder layers (None = all): a cheaper, weaker teacher."""
    seed: int = 0
    epochs: int = 1
    learning_rate: float = 1e-4
    max_length: int = 64
    train_fraction: float = 1.0
    """Share of the training split the teacher is fine-tuned on (a seeded subset)."""
    batch_size: int = 32
    warmup_fraction: float = 0.1
    evals_per_epoch: int = 3
    """Dev evaluations per epoch; the best one's weights are kept."""
    slice: str | None = None
    """The instances it learns honestly (``kd_env.teachers.slices``: ``cluster:M:i`` or ``classes:a,b``); None = all."""
    outside_slice: str = "drop"
    """What it learns outside its slice: ``drop`` (nothing), ``shift`` (gold + 1: a systematic bias),
    ``random`` (random labels)."""
    label_noise: float = 0.0
    """Share of its training labels replaced by a different random class (a lower-quality teacher)."""
    tuning: str = "full"
    """``full``: fine-tune the encoder; ``head``: train an MLP head on the frozen encoder's cached
    sentence vectors (seconds instead of minutes; ``kd_env.teachers.heads``)."""

    def __post_init__(self) -> None:
        if self.slice is not None:
            SliceSpec.parse(self.slice)
        if self.outside_slice not in OUTSIDE_SLICE_MODES:
            raise UserError(f"teacher {self.name!r}: outside_slice must be one of {list(OUTSIDE_SLICE_MODES)}, got {self.outside_slice!r}")
        if self.tuning not in ("full", "head"):
            raise UserError(f"teacher {self.name!r}: tuning must be 'full' or 'head', got {self.tuning!r}")
        if self.tuning == "head" and self.num_layers is not None:
            raise UserError(f"teacher {self.name!r}: a head-tuned teacher reads the whole frozen encoder; num_layers must be None")
        if not 0.0 <= self.label_noise < 1.0:
            raise UserError(f"teacher {self.name!r}: label_noise must be in [0, 1), got {self.label_noise}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise UserError(f"teacher {self.name!r}: train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.epochs < 1 or self.batch_size < 1 or self.max_length < 8:
            raise UserError(f"teacher {self.name!r}: epochs and batch_size must be >= 1 and max_length >= 8")
        if self.num_layers is not None and self.num_layers < 1:
            raise UserError(f"teacher {self.name!r}: num_layers must be >= 1 or None, got {self.num_layers}")


# Families, depths and data sizes differ on purpose, as selection only matters when teachers differ.
# Fine-tuned teachers cost minutes each on a CPU; head-tuned ones seconds over vectors computed once.
NAMED_TEACHERS = {
    "minilm-l6": TeacherSpec("minilm-l6", "minilm-l6"),
    "minilm-l3": TeacherSpec("minilm-l3", "minilm-l3"),
    "mpnet-l3": TeacherSpec("mpnet-l3", "mpnet-base", num_layers=3, learning_rate=5e-5),
    "minilm-l6-head": TeacherSpec("minilm-l6-head", **HEAD),
    "minilm-l3-head": TeacherSpec("minilm-l3-head", **{**HEAD, "encoder": "minilm-l3"}),
    "minilm-l6-head-10pct": TeacherSpec("minilm-l6-head-10pct", **HEAD, train_fraction=0.1),
}


def resolve_teacher_specs(teachers: list | str | None) -> list[TeacherSpec]:
    """Teacher names (``NAMED_TEACHERS`` keys), checkpoint folders, dicts of ``TeacherSpec`` fields or
    pool names (``kd_env.teachers.pools``), or one pool name; None = the ``default`` pool."""
    require_teachers(teachers)
    teachers = pool_teachers(teachers or "default") if teachers is None or isinstance(teachers, str) else expand_pools(teachers)
    if not teachers:
        raise UserError(f"at least one teacher is needed; named teachers: {sorted(NAMED_TEACHERS)}")
    specs = []
    known = {f.name for f in fields(TeacherSpec)}
    for teacher in teachers:
        if (isinstance(teacher, str) and teacher not in NAMED_TEACHERS and looks_like_checkpoint(teacher)) or (
            isinstance(teacher, dict) and "checkpoint" in teacher
        ):
            specs.append(checkpoint_teacher(teacher))
        elif isinstance(teacher, str):
            if teacher not in NAMED_TEACHERS:
                raise UserError(f"unknown teacher {teacher!r}; named teachers: {sorted(NAMED_TEACHERS)}, pools: {sorted(TEACHER_POOLS)}, a checkpoint folder, or a dict of {sorted(known)}")
            specs.append(NAMED_TEACHERS[teacher])
        elif isinstance(teacher, dict):
            check_option_names(teacher, known, "teacher spec")
            if "encoder" not in teacher:
                raise UserError(f"teacher spec {teacher}: no 'encoder'; fields: {sorted(known)}")
            specs.append(TeacherSpec(**{"name": teacher["encoder"], **teacher}))
        else:
            raise UserError(f"a teacher is a name or a dict of spec fields, got {type(teacher).__name__}")
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise UserError(f"teacher names must be unique, got {names}")
    return specs


@dataclass(frozen=True)
class PreparationConfig:
    """Where and how teachers and embeddings are prepared (``task_options`` keys). The cache keys hold
    the device type and precision (``kd_env.devices.runtime_key``), not the folder or batch size."""

    cache_dir: str | None = None
    """The cache root (default ``KD_ENV_CACHE`` or the user cache; see ``kd_env.cache.cache_root``)."""
    semantic_encoder: str = "minilm-l6"
    """The frozen encoder of the semantic instance vectors (and the head student's inputs)."""
    semantic_max_length: int = 64
    inference_batch_size: int = 64
    device: str = "auto"
    """Where teachers are fine-tuned and run: ``auto`` = CUDA when available, else CPU."""
    mixed_precision: bool = False
    """bfloat16 autocast for fine-tuning and inference (worth it on a GPU)."""
