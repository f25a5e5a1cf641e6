"""Teachers fine-tuned elsewhere: a local Hugging Face checkpoint folder, used as is.

Users often have their own fine-tuned classifiers; re-fine-tuning them here would throw that work away.
A checkpoint teacher is loaded with ``AutoModelForSequenceClassification`` and only run: its outputs
on every split are computed once and cached like any teacher's, keyed by a hash of the checkpoint
folder's content (so an edited or re-saved checkpoint is run again, a moved one is not). Its
``id2label`` must name the task's classes; its output columns are reordered to the task's class order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kd_env.cache import ArrayStore, CacheEntry
from kd_env.errors import UserError
from kd_env.tasks.data import SPLITS, TEACHER_ARRAYS
from kd_env.devices import resolve_device, runtime_key
from kd_env.tasks.text import TextTask
from kd_env.text_models import accuracy, encode, mean_pool, predict

logger = logging.getLogger(__name__)

# Bump when how a checkpoint's outputs are computed changes: old cache entries are then ignored.
CHECKPOINT_CODE_VERSION = 1
_GENERIC_LABEL = re.compile(r"label_(\d+)")


VOCABULARY_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")
"""Files that hold a tokenizer's vocabulary: one must be in a checkpoint teacher's folder."""


@dataclass(frozen=True)
class CheckpointTeacher:
    """A teacher given as a local fine-tuned checkpoint folder (config, weights, tokenizer)."""

    name: str
    checkpoint: str
    """The folder ``save_pretrained`` wrote (with the tokenizer saved beside the model)."""
    max_length: int = 128
    """Tokens per text the checkpoint sees (longer texts are truncated)."""

    def __post_init__(self) -> None:
        folder = Path(self.checkpoint)
        if not folder.is_dir():
            raise FileNotFoundError(f"teacher {self.name!r}: checkpoint folder {self.checkpoint} does not exist")
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"teacher {self.name!r}: {self.checkpoint} has no config.json; give a folder that save_pretrained wrote")
        if not any((folder / name).is_file() for name in VOCABULARY_FILES):
            # transformers would build an empty-vocabulary tokenizer (all-[UNK] input) or fail deep inside.
            raise UserError(f"teacher {self.name!r}: {self.checkpoint} has no tokenizer vocabulary (none of {', '.join(VOCABULARY_FILES)}); "
                             "save the tokenizer beside the model (tokenizer.save_pretrained(folder))")
        if self.max_length < 8:
            raise UserError(f"teacher {self.name!r}: max_length must be >= 8, got {self.max_length}")


def looks_like_checkpoint(value: str) -> bool:
    """A teacher string naming a folder rather than a built-in teacher."""
    return "/" in value or "\\" in value or value.startswith(".") or Path(value).is_dir()


def checkpoint_teacher(value: str | dict) -> CheckpointTeacher:
    """A folder path, or a dict with ``checkpoint`` (and optionally ``name``, ``max_length``)."""
    if isinstance(value, str):
        value = {"checkpoint": value}
    folder = str(value["checkpoint"])
    return CheckpointTeacher(**{"name": Path(folder.rstrip("/\\")).name, **value, "checkpoint": folder})


def label_columns(id2label: dict, class_names: tuple[str, ...], where: str) -> list[int]:
    """For each task class, the checkpoint's output column that predicts it.

    Names match exactly, else case-insensitively; the transformers default ``LABEL_i`` matches a task
    class named ``i`` (integer labels). Anything else is an error naming both label sets.
    """
    def normal(name) -> str:
        text = str(name).strip().lower()
        generic = _GENERIC_LABEL.fullmatch(text)
        return generic.group(1) if generic else text

    labels = {int(i): str(name) for i, name in id2label.items()}
    for key in (str, normal):
        index = {key(name): i for i, name in labels.items()}
        if len(index) == len(labels) == len(class_names) and all(key(c) in index for c in class_names):
            return [index[key(c)] for c in class_names]
    raise UserError(
        f"{where}: its labels {[labels[i] for i in sorted(labels)]} do not match the task's classes {list(class_names)}; "
        f"set id2label in its config.json to the task's class names"
    )


def check_labels(spec: CheckpointTeacher, class_names: tuple[str, ...]) -> list[int]:
    """Read only the checkpoint's config and map its labels: cheap, so done before any teacher runs."""
    from transformers import AutoConfig

    return label_columns(AutoConfig.from_pretrained(spec.checkpoint).id2label, class_names, f"checkpoint teacher {spec.name!r} ({spec.checkpoint})")


def folder_hash(folder: str | Path) -> str:
    """SHA-256 of every file's relative path and bytes, in path order (hidden files skipped)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\x00")
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def prepare_checkpoint_teacher(task: TextTask, spec: CheckpointTeacher, store: ArrayStore, config) -> CacheEntry:
    """The cache entry of a checkpoint teacher's outputs (computed on first use).

    ``config`` is the ``PreparationConfig`` (its device type and precision are in the key, not its batch size)."""
    columns = check_labels(spec, task.class_names)
    description = {
        "task": task.fingerprint(), "classes": list(task.class_names), "checkpoint_sha256": folder_hash(spec.checkpoint),
        "max_length": spec.max_length, "kind": "checkpoint", "code_version": CHECKPOINT_CODE_VERSION,
        **runtime_key(config.device, config.mixed_precision),
    }
    return store.get_or_build("teachers", description, lambda folder: _run_checkpoint(task, spec, columns, config),
                              required=TEACHER_ARRAYS)


class _CheckpointClassifier(torch.nn.Module):
    """A sequence classifier with ``TextClassifier``'s (logits, pooled) interface, for ``predict``."""

    def __init__(self, model: torch.nn.Module, columns: list[int]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("columns", torch.tensor(columns), persistent=False)

    def forward(self, batch):
        output = self.model(**batch, output_hidden_states=True)
        return output.logits[:, self.columns], mean_pool(output.hidden_states[-1], batch["attention_mask"])


def _run_checkpoint(task: TextTask, spec: CheckpointTeacher, columns: list[int], config):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    started = time.perf_counter()
    device = resolve_device(config.device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.checkpoint)
    except (OSError, ValueError) as error:
        raise UserError(f"checkpoint teacher {spec.name!r}: no tokenizer in {spec.checkpoint} ({error}); save it beside the model") from error
    model = _CheckpointClassifier(AutoModelForSequenceClassification.from_pretrained(spec.checkpoint), columns).to(device)
    arrays, accuracies = {}, {}
    for split in SPLITS:
        labels = task.splits[split].labels
        encoded = encode(tokenizer, task.splits[split], spec.max_length)
        logits, pooled = predict(model, encoded, device, config.inference_batch_size, config.mixed_precision, desc=f"{spec.name}: {split} outputs")
        log_probs = torch.log_softmax(torch.from_numpy(logits), dim=1)
        ce = -log_probs[torch.arange(len(logits)), torch.from_numpy(labels).long()]
        arrays.update({f"{split}.logits": logits, f"{split}.pooled": pooled, f"{split}.ce": ce.numpy().astype(np.float32)})
        accuracies[split] = accuracy(logits, labels)
    logger.info("checkpoint teacher %s on %s: accuracy %s", spec.name, task.name, accuracies)
    meta = {"spec": dataclasses.asdict(spec), "classes": list(task.class_names), "accuracy": accuracies,
            "prepare_seconds": time.perf_counter() - started, "device": str(device)}
    return arrays, meta
