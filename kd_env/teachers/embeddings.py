"""The semantic instance vectors of the observation: a frozen encoder's L2-normalised mean-pooled
vectors of every split, cached like the teachers' outputs (``embeddings`` entries). With a label budget
the entry also holds the vectors of the teachers' own training data (``TEACHER_TRAIN``), which head
teachers train on and cluster slices are fitted to."""

from __future__ import annotations

import numpy as np
import torch

from kd_env.cache import ArrayStore, CacheEntry, cache_root
from kd_env.devices import resolve_device, runtime_key
from kd_env.tasks.data import SPLITS
from kd_env.tasks.text import TEACHER_TRAIN, TextSplit, TextTask
from kd_env.teachers.specs import CODE_VERSION, PreparationConfig
from kd_env.text_models import encode, load_encoder, load_tokenizer, mean_pool, predict


def embedding_description(task: TextTask, encoder: str, max_length: int) -> dict:
    return {"task": task.fingerprint(), "encoder": encoder, "max_length": max_length, "code_version": CODE_VERSION}


def sentence_embeddings(task: TextTask, config: PreparationConfig) -> CacheEntry:
    """Frozen-encoder, L2-normalised mean-pooled vectors of every split (``{split}.vectors``), cached."""
    store = ArrayStore(cache_root(config.cache_dir))
    description = {**embedding_description(task, config.semantic_encoder, config.semantic_max_length),
                   **runtime_key(config.device, config.mixed_precision)}
    return store.get_or_build("embeddings", description, lambda folder: _build_embeddings(task, config),
                              required=tuple(f"{view}.vectors" for view in _stored_views(task)))


def view_vectors(task: TextTask, entry: CacheEntry) -> dict[str, np.ndarray]:
    """Every teacher view's vectors (``TextTask.teacher_views``) from a ``sentence_embeddings`` entry."""
    vectors = {view: np.asarray(entry.array(f"{view}.vectors")) for view in _stored_views(task)}
    vectors.setdefault(TEACHER_TRAIN, vectors["train"])
    return vectors


def _stored_views(task: TextTask) -> dict[str, TextSplit]:
    """The views an entry stores: ``TEACHER_TRAIN`` only where it is not the train split itself."""
    views = task.teacher_views()
    return views if task.teacher_train is not None else {split: views[split] for split in SPLITS}


def _build_embeddings(task: TextTask, config: PreparationConfig):
    torch_device = resolve_device(config.device)
    tokenizer = load_tokenizer(config.semantic_encoder, config.cache_dir)
    encoder = load_encoder(config.semantic_encoder, cache_dir=config.cache_dir).to(torch_device)
    model = _PooledEncoder(encoder)
    arrays = {}
    for split, rows in _stored_views(task).items():
        encoded = encode(tokenizer, rows, config.semantic_max_length)
        _, pooled = predict(model, encoded, torch_device, config.inference_batch_size, config.mixed_precision, desc=f"{config.semantic_encoder}: {split} embeddings")
        arrays[f"{split}.vectors"] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return arrays, {"encoder": config.semantic_encoder}


class _PooledEncoder(torch.nn.Module):
    """A frozen encoder with ``TextClassifier``'s (logits, pooled) interface, for ``predict``."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, batch):
        pooled = mean_pool(self.encoder(**batch).last_hidden_state, batch["attention_mask"])
        return pooled[:, :0], pooled
