"""Fine-tuning teachers on a task, and reading their cached outputs.

Teachers never run inside ``step``: their outputs (logits, pooled features, CE vs gold) are computed
once per (task data, teacher spec, code version) and read from the ``TeacherCache``. The disk cache
(``kd_env.cache``) stores, per teacher, ``{split}.logits`` (N, C), ``{split}.pooled`` (N, H) and
``{split}.ce`` (N,) as ``.npy`` files (memory-mappable read-only) plus the fine-tuned weights
(``model.safetensors``), so a valid entry is never recomputed. The semantic instance vectors of the
observation come from a frozen encoder and are cached the same way (``kd_env.teachers.embeddings``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from kd_env.cache import ArrayStore, CacheEntry, cache_root
from kd_env.devices import resolve_device, runtime_key
from kd_env.errors import UserError
from kd_env.tasks.data import SPLITS, TEACHER_ARRAYS
from kd_env.tasks.text import TEACHER_TRAIN, TextTask
from kd_env.teachers.checkpoints import CheckpointTeacher, check_labels, prepare_checkpoint_teacher
from kd_env.teachers.embeddings import embedding_description, sentence_embeddings, view_vectors
from kd_env.teachers.heads import HeadClassifier, VectorRows
from kd_env.teachers.slices import SliceSpec, cluster_assignments, slice_masks, teacher_training_labels
from kd_env.teachers.specs import CODE_VERSION, PreparationConfig, TeacherSpec
from kd_env.text_models import FineTuneConfig, TextClassifier, accuracy, encode, fine_tune, load_encoder, load_tokenizer, predict

logger = logging.getLogger(__name__)

STACKED_ARRAYS = tuple(f"{split}.{name}" for split in SPLITS for name in ("logits", "ce"))


@dataclass(frozen=True)
class TeacherOutputs:
    """Every teacher's outputs on one split, stacked in teacher order.

    ``logits`` (N, K, C), ``ce`` (N, K): each teacher's cross-entropy against the gold label, and
    ``pooled``: one (N, H_k) array per teacher (hidden sizes differ between teacher families).
    """

    logits: torch.Tensor
    ce: torch.Tensor
    pooled: tuple[torch.Tensor, ...]


class TeacherCache(Protocol):
    """Read access to precomputed teacher outputs."""

    @property
    def teacher_names(self) -> list[str]: ...

    def outputs(self, split: str) -> TeacherOutputs: ...




class DiskTeacherCache:
    """The teachers of one task, read from their cache entries (prepared on first use).

    The teachers' logits and CEs are also stored stacked, (N, K, C) and (N, K), in one entry of their
    own, so ``outputs`` can hand out memory-mapped tensors that every env process shares.
    """

    def __init__(self, entries: dict[str, CacheEntry], store: ArrayStore) -> None:
        self._entries = entries
        # Keyed by the checksums of the stacked arrays, not the entries' names: a teacher entry rebuilt
        # with other outputs gives another stacked entry instead of serving the stale one.
        stacked_files = [f"{name}.npy" for name in STACKED_ARRAYS]
        description = {"teachers": [[entry.checksums[f] for f in stacked_files] for entry in entries.values()],
                       "code_version": CODE_VERSION}
        self._stacked = store.get_or_build("stacked", description, self._stack, required=STACKED_ARRAYS)

    def _stack(self, folder: Path) -> tuple[dict[str, np.ndarray], dict]:
        entries = list(self._entries.values())
        arrays = {name: np.stack([e.array(name) for e in entries], axis=1) for name in STACKED_ARRAYS}
        return arrays, {}

    @property
    def teacher_names(self) -> list[str]:
        return list(self._entries)

    def entry(self, name: str) -> CacheEntry:
        return self._entries[name]

    def accuracies(self) -> dict[str, dict[str, float]]:
        """Each teacher's accuracy per split, as measured when it was prepared."""
        return {name: entry.meta["accuracy"] for name, entry in self._entries.items()}

    def outputs(self, split: str) -> TeacherOutputs:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; available: {list(SPLITS)}")
        pooled = tuple(e.tensor(f"{split}.pooled") for e in self._entries.values())
        return TeacherOutputs(self._stacked.tensor(f"{split}.logits"), self._stacked.tensor(f"{split}.ce"), pooled)


def teacher_description(task: TextTask, spec: TeacherSpec, config: PreparationConfig | None = None) -> dict:
    """Everything a teacher's outputs depend on: the cache key's content (cluster slices also depend
    on the frozen encoder whose vectors are clustered, and all on the device type and precision)."""
    config = config or PreparationConfig()
    description = {"task": task.fingerprint(), "classes": list(task.class_names), "spec": dataclasses.asdict(spec), "code_version": CODE_VERSION,
                   **runtime_key(config.device, config.mixed_precision)}
    if spec.slice is not None and SliceSpec.parse(spec.slice).kind == "cluster":
        description["slice_vectors"] = embedding_description(task, config.semantic_encoder, config.semantic_max_length)
    return description


def teacher_slices(task: TextTask, specs: list[TeacherSpec], config: PreparationConfig) -> dict[str, dict[str, np.ndarray]]:
    """Each distinct slice of ``specs`` -> its masks per teacher view (``TextTask.teacher_views``);
    refuses a slice too small to train on before any teacher is fine-tuned. Cluster centres are fitted
    to the teachers' own training data."""
    labels = {view: rows.labels for view, rows in task.teacher_views().items()}
    masks: dict[str, dict[str, np.ndarray]] = {}
    assignments: dict[int, dict[str, np.ndarray]] = {}  # number of clusters -> per-split cluster ids
    for spec in specs:
        if spec.slice is None or spec.slice in masks:
            continue
        parsed = SliceSpec.parse(spec.slice)
        parsed.validate_classes(len(task.class_names))
        if parsed.kind == "cluster" and parsed.num_clusters not in assignments:
            vectors = view_vectors(task, sentence_embeddings(task, config))
            assignments[parsed.num_clusters] = cluster_assignments(vectors, parsed.num_clusters, fit_on=TEACHER_TRAIN)
        masks[spec.slice] = slice_masks(parsed, labels, assignments.get(parsed.num_clusters))
        size = int(masks[spec.slice][TEACHER_TRAIN].sum())
        if size < spec.batch_size:
            raise UserError(f"teacher {spec.name!r}: slice {spec.slice!r} holds {size} training instances, fewer than one batch ({spec.batch_size})")
    return masks


def prepare_teachers(task: TextTask, specs: list[TeacherSpec], config: PreparationConfig) -> DiskTeacherCache:
    """Fine-tune and run every teacher not yet in the cache; load the others."""
    store = ArrayStore(cache_root(config.cache_dir))
    checkpoints = [spec for spec in specs if isinstance(spec, CheckpointTeacher)]
    for spec in checkpoints:  # a checkpoint whose labels do not fit stops everything before any teacher runs
        check_labels(spec, task.class_names)
    masks = teacher_slices(task, [spec for spec in specs if not isinstance(spec, CheckpointTeacher)], config)
    entries = {}
    for spec in specs:
        if isinstance(spec, CheckpointTeacher):
            entries[spec.name] = prepare_checkpoint_teacher(task, spec, store, config)
            continue
        entries[spec.name] = store.get_or_build(
            "teachers", teacher_description(task, spec, config),
            lambda folder, spec=spec: _build_teacher(task, spec, config, folder, masks.get(spec.slice)),
            required=TEACHER_ARRAYS,
        )
    return DiskTeacherCache(entries, store)


def load_teacher_model(entry: CacheEntry, cache_dir: str | None = None) -> TextClassifier:
    """The fine-tuned teacher of a cache entry, for running it online (benchmarks, inspection)."""
    from safetensors.torch import load_file

    spec = TeacherSpec(**entry.meta["spec"])
    if spec.tuning == "head":
        raise ValueError(f"teacher {spec.name!r} is a head over cached vectors, not a text model to run online")
    model = TextClassifier(load_encoder(spec.encoder, spec.num_layers, cache_dir), len(entry.meta["classes"]))
    model.load_state_dict(load_file(entry.file("model.safetensors")))
    return model.eval()


def _build_teacher(task: TextTask, spec: TeacherSpec, config: PreparationConfig, folder: Path, masks: dict[str, np.ndarray] | None):
    from safetensors.torch import save_file

    torch_device = resolve_device(config.device)
    started = time.perf_counter()
    labels = {view: rows.labels for view, rows in task.teacher_views().items()}
    # The teacher's dev labels follow the same rule as its training labels: a biased teacher's own
    # checkpoint selection cannot see the gold labels it was never given.
    train_ids, taught = _taught_labels(spec, labels, masks, TEACHER_TRAIN, len(task.class_names))
    dev_ids, dev_taught = _taught_labels(spec, labels, masks, "dev", len(task.class_names))
    if spec.train_fraction < 1.0:
        size = max(1, round(spec.train_fraction * len(train_ids)))
        keep = np.sort(np.random.default_rng(spec.seed).permutation(len(train_ids))[:size])
        train_ids, taught = train_ids[keep], taught[keep]
    logger.info("preparing teacher %s on %s: %s", spec.name, task.name, expected_time(spec, len(train_ids)))
    encoded, model = _teacher_inputs_and_model(task, spec, config)
    model = model.to(torch_device)
    train_subset = encoded[TEACHER_TRAIN].subset(train_ids)
    tune = FineTuneConfig(spec.epochs, spec.learning_rate, spec.batch_size, spec.warmup_fraction, spec.evals_per_epoch, spec.seed)
    summary = fine_tune(model, (train_subset, taught), (encoded["dev"].subset(dev_ids), dev_taught), tune, torch_device,
                        config.mixed_precision, desc=f"fine-tune {spec.name} on {task.name}")
    arrays, accuracies, slice_accuracies = {}, {}, {}
    for split in SPLITS:
        logits, pooled = predict(model, encoded[split], torch_device, config.inference_batch_size, config.mixed_precision, desc=f"{spec.name}: {split} outputs")
        log_probs = torch.log_softmax(torch.from_numpy(logits), dim=1)
        ce = -log_probs[torch.arange(len(logits)), torch.from_numpy(labels[split]).long()]
        arrays.update({f"{split}.logits": logits, f"{split}.pooled": pooled, f"{split}.ce": ce.numpy()})
        accuracies[split] = accuracy(logits, labels[split])
        if masks is not None:
            in_slice = masks[split]
            slice_accuracies[split] = {"in_slice": accuracy(logits[in_slice], labels[split][in_slice]),
                                       "outside_slice": accuracy(logits[~in_slice], labels[split][~in_slice])}
    save_file({k: v.contiguous() for k, v in model.cpu().state_dict().items()}, folder / "model.safetensors")
    logger.info("teacher %s on %s: accuracy %s, prepared in %.0f s", spec.name, task.name, accuracies, time.perf_counter() - started)
    meta = {"spec": dataclasses.asdict(spec), "classes": list(task.class_names), "accuracy": accuracies, "slice_accuracy": slice_accuracies,
            "prepare_seconds": time.perf_counter() - started, "device": str(torch_device), **summary}
    return arrays, meta


FULL_TUNING_RATES = {"minilm-l6": 34, "minilm-l3": 63, "mpnet-base": 4.5}
"""Training examples per second of a full fine-tune at batch 32, length 64, on the 2-core CPU (DESIGN §4;
a 3-layer MPNet: 21). Only for the estimate a user sees before minutes of silence."""


def expected_time(spec: TeacherSpec, train_size: int) -> str:
    """A rough duration of preparing this teacher on a 2-core CPU, to say before it starts."""
    if spec.tuning == "head":
        return "a head over the frozen encoder's vectors (seconds once they are cached)"
    rate = 21 if spec.encoder == "mpnet-base" and spec.num_layers else FULL_TUNING_RATES.get(spec.encoder)
    if rate is None:
        return f"a full fine-tune of {spec.encoder} for {spec.epochs} epoch(s) on {train_size} texts"
    minutes = spec.epochs * train_size / rate / 60
    return f"a full fine-tune for {spec.epochs} epoch(s) on {train_size} texts, about {max(1, round(minutes))} min on a 2-core CPU"


def _teacher_inputs_and_model(task: TextTask, spec: TeacherSpec, config: PreparationConfig):
    """Each teacher view as the teacher reads it, and its freshly initialised model (seeded by the spec)."""
    if spec.tuning == "head":
        entry = sentence_embeddings(task, dataclasses.replace(config, semantic_encoder=spec.encoder, semantic_max_length=spec.max_length))
        encoded = {view: VectorRows(vectors) for view, vectors in view_vectors(task, entry).items()}
        build = lambda: HeadClassifier(encoded["train"].vectors.shape[1], len(task.class_names))  # noqa: E731
    else:
        tokenizer = load_tokenizer(spec.encoder, config.cache_dir)
        encoded = {split: encode(tokenizer, task.splits[split], spec.max_length) for split in SPLITS}
        encoded[TEACHER_TRAIN] = encoded["train"] if task.teacher_train is None else encode(tokenizer, task.teacher_train, spec.max_length)
        build = lambda: TextClassifier(load_encoder(spec.encoder, spec.num_layers, config.cache_dir), len(task.class_names))  # noqa: E731
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        return encoded, build()


# Seeds of the label corruption per view: what the teacher is fine-tuned on, and what picks its checkpoint.
_TAUGHT_SEED_OFFSETS = {TEACHER_TRAIN: 0, "dev": 1}


def _taught_labels(spec: TeacherSpec, labels: dict[str, np.ndarray], masks: dict[str, np.ndarray] | None, split: str, num_classes: int):
    seed = spec.seed + _TAUGHT_SEED_OFFSETS[split]
    ids, taught = teacher_training_labels(labels[split], None if masks is None else masks[split], spec.outside_slice, spec.label_noise, num_classes, seed)
    if len(ids) == 0:
        raise UserError(f"teacher {spec.name!r}: slice {spec.slice!r} holds no {split} instances")
    return ids, taught
