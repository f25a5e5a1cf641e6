"""Transformer text classifiers: loading encoders, tokenising splits, fine-tuning, batched inference.

Sentence vectors are the attention-masked mean of the last hidden states (the pooling the offline
sentence-transformers encoders were trained with; the MiniLM-L3 ONNX export has no pooler at all).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from kd_env.assets import resolve_encoder, unknown_encoder_error
from kd_env.devices import autocast
from kd_env.errors import UserError
from kd_env.tasks.text import TextSplit

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' load reports (e.g. the unused pooler of an encoder we mean-pool)."""
    from transformers.utils import logging as hf_logging

    previous, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars:
            hf_logging.enable_progress_bar()


def load_tokenizer(encoder: str, cache_dir: str | None = None):
    from transformers import AutoTokenizer

    source = resolve_encoder(encoder, cache_dir)
    try:
        with _quiet_transformers():
            return AutoTokenizer.from_pretrained(source)
    except OSError as error:
        raise unknown_encoder_error(encoder, error) from error


def load_encoder(encoder: str, num_layers: int | None = None, cache_dir: str | None = None, **config_overrides) -> nn.Module:
    """A pretrained encoder keeping its first ``num_layers`` layers (all when None)."""
    from transformers import AutoConfig, AutoModel

    source = resolve_encoder(encoder, cache_dir)
    try:
        with _quiet_transformers():
            available = AutoConfig.from_pretrained(source).num_hidden_layers
            if num_layers is not None and num_layers > available:
                raise UserError(f"encoder {encoder!r} has {available} layers; cannot keep {num_layers}")
            if num_layers is not None:
                config_overrides["num_hidden_layers"] = num_layers
            return AutoModel.from_pretrained(source, **config_overrides)
    except OSError as error:
        raise unknown_encoder_error(encoder, error) from error


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


class TextClassifier(nn.Module):
    """Encoder -> mean pooling -> dropout -> linear; ``forward`` returns (logits, pooled)."""

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_classes)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(**batch).last_hidden_state
        pooled = mean_pool(hidden, batch["attention_mask"])
        return self.head(self.dropout(pooled)), pooled


@dataclass(frozen=True)
class Encoded:
    """A split tokenised without padding; batches are padded to their own longest member."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    pad_id: int

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    def subset(self, indices) -> "Encoded":
        types = None if self.token_type_ids is None else [self.token_type_ids[i] for i in indices]
        return Encoded([self.input_ids[i] for i in indices], types, self.pad_id)

    def batch(self, indices, device: torch.device) -> dict[str, torch.Tensor]:
        rows = [self.input_ids[i] for i in indices]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, row in enumerate(rows):
            ids[j, : len(row)] = torch.tensor(row)
            mask[j, : len(row)] = 1
        batch = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
        if self.token_type_ids is not None:
            types = torch.zeros((len(rows), width), dtype=torch.long)
            for j, i in enumerate(indices):
                types[j, : len(self.token_type_ids[i])] = torch.tensor(self.token_type_ids[i])
            batch["token_type_ids"] = types.to(device)
        return batch

    def padded(self) -> dict[str, torch.Tensor]:
        """The whole split padded to its longest member (for students that index rows per step)."""
        return self.batch(range(len(self)), torch.device("cpu"))


def encode(tokenizer, split: TextSplit, max_length: int) -> Encoded:
    encoding = tokenizer(list(split.texts), None if split.text_pairs is None else list(split.text_pairs), truncation=True, max_length=max_length)
    # Only sentence pairs need segment ids; MPNet has none at all.
    types = encoding.get("token_type_ids") if split.text_pairs is not None else None
    return Encoded(encoding["input_ids"], types, tokenizer.pad_token_id)


@torch.no_grad()
def predict(model: TextClassifier, encoded: Encoded, device: torch.device, batch_size: int, mixed_precision: bool, desc: str | None = None):
    """(logits, pooled) float32 numpy arrays in split order; batches sorted by length to pad little."""
    model.eval()
    order = np.argsort(encoded.lengths(), kind="stable")
    logits, pooled = [None] * len(encoded), [None] * len(encoded)
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc=desc, disable=desc is None, leave=False):
        indices = order[start : start + batch_size]
        with autocast(device, mixed_precision):
            batch_logits, batch_pooled = model(encoded.batch(indices, device))
        for row, i in enumerate(indices):
            logits[i], pooled[i] = batch_logits[row].float().cpu(), batch_pooled[row].float().cpu()
    return torch.stack(logits).numpy(), torch.stack(pooled).numpy()


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


@dataclass(frozen=True)
class FineTuneConfig:
    """The optimisation part of a teacher spec."""

    epochs: int
    learning_rate: float
    batch_size: int
    warmup_fraction: float
    evals_per_epoch: int
    seed: int


def fine_tune(
    model: TextClassifier,
    train: tuple[Encoded, np.ndarray],
    dev: tuple[Encoded, np.ndarray],
    config: FineTuneConfig,
    device: torch.device,
    mixed_precision: bool,
    desc: str,
) -> dict:
    """AdamW with linear warm-up and decay; the model ends with its best dev-accuracy weights.

    Seeded inside a forked RNG, so the caller's torch RNG state is untouched. Returns a summary.
    """
    from transformers import get_linear_schedule_with_warmup

    (train_encoded, train_labels), (dev_encoded, dev_labels) = train, dev
    steps_per_epoch = math.ceil(len(train_encoded) / config.batch_size)
    total = steps_per_epoch * config.epochs
    eval_every = max(1, steps_per_epoch // max(1, config.evals_per_epoch))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, int(config.warmup_fraction * total), total)
    rng = np.random.default_rng(config.seed)
    labels = torch.as_tensor(train_labels, dtype=torch.long)
    best_accuracy, best_state, history = -1.0, None, []
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), tqdm(total=total, desc=desc) as bar:
        torch.manual_seed(config.seed)
        step = 0
        for _ in range(config.epochs):
            order = rng.permutation(len(train_encoded))
            for start in range(0, len(order), config.batch_size):
                indices = order[start : start + config.batch_size]
                model.train()
                with autocast(device, mixed_precision):
                    logits, _ = model(train_encoded.batch(indices, device))
                loss = nn.functional.cross_entropy(logits.float(), labels[indices].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                step += 1
                bar.update(1)
                if step % eval_every == 0 or step == total:
                    dev_accuracy = accuracy(predict(model, dev_encoded, device, 64, mixed_precision)[0], dev_labels)
                    history.append({"step": step, "dev_accuracy": dev_accuracy, "train_loss": loss.item()})
                    bar.set_postfix(dev_acc=f"{dev_accuracy:.3f}", best=f"{max(best_accuracy, dev_accuracy):.3f}")
                    if dev_accuracy > best_accuracy:
                        best_accuracy = dev_accuracy
                        best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return {"best_dev_accuracy": best_accuracy, "history": history, "train_seconds": time.perf_counter() - started, "steps": total}
