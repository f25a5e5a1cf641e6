"""Student builders: the model the environment trains, one optimizer step per env step.

A student is an ``nn.Module`` whose ``forward(inputs)`` takes the dict of tensors of a batch (the
``student_inputs`` of a split, indexed by the batch) and returns (B, C) logits.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from kd_env.arguments import require_int
from kd_env.errors import UserError
from kd_env.tasks.data import DistillationData
from kd_env.devices import autocast
from kd_env.options import config_from_options


class HeadStudent(nn.Module):
    """A small MLP over fixed instance vectors (``features``): the fast student.

    Inputs are standardised with the training split's statistics, kept as buffers so a saved student
    carries them.
    """

    cheap_forward = True
    """Its forward is per-call overhead, not arithmetic: the env may run it on two batches at once."""

    def __init__(self, train_features: torch.Tensor, num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.register_buffer("mean", train_features.mean(dim=0))
        self.register_buffer("std", train_features.std(dim=0).clamp_min(1e-6))
        self.net = nn.Sequential(
            nn.Linear(train_features.shape[1], hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net((inputs["features"] - self.mean) / self.std)


@dataclass(frozen=True)
class HeadStudentConfig:
    """The ``head`` student's options (``student_options``)."""

    hidden: int = 64
    """Width of the MLP's hidden layer."""

    @classmethod
    def from_options(cls, options: dict | None) -> "HeadStudentConfig":
        config = config_from_options(cls, options, "head student")
        require_int("hidden", config.hidden, 1)
        return config


def _build_head(data: DistillationData, **options) -> nn.Module:
    config = HeadStudentConfig.from_options(options)
    train_inputs = data.splits["train"].student_inputs
    if "features" not in train_inputs:
        raise UserError(f"the head student needs 'features' inputs; task {data.task!r} provides {sorted(train_inputs)}")
    return HeadStudent(train_inputs["features"], data.num_classes, config.hidden)


def validate_student_options(name: str, options: dict | None) -> None:
    """Raise on an unknown student or bad options now, before any data is prepared for it."""
    student_text_inputs(name, options)  # checks the name and a tokenised student's options
    if name == "head":
        HeadStudentConfig.from_options(options)


@dataclass(frozen=True)
class TransformerStudentConfig:
    """The ``transformer`` student's options (``student_options``)."""

    encoder: str = "minilm-l6"
    """Pretrained encoder whose first ``num_layers`` layers are kept (the paper's BERT_3 analogue)."""
    num_layers: int = 3
    config: dict | None = None
    """A transformers config dict (with ``model_type``): a randomly initialised student instead."""
    tokenizer: str | None = None
    """Tokenizer name or directory; default: the encoder's (required with ``config``)."""
    max_length: int = 64
    dropout: float = 0.0
    """Off by default: dropout draws from torch's global RNG in every forward, which would make two
    envs reset with the same seed diverge. Set > 0 only when rollouts need not be reproducible."""
    mixed_precision: bool = False
    """bfloat16 autocast in the forward pass (worth it on a GPU)."""
    classifier: str = "mean_pool"
    """``mean_pool``: a linear layer over the mean of the last hidden states; ``auto``: the encoder
    family's own ``AutoModelForSequenceClassification`` head, a student ``kd_env.export`` saves for
    ``transformers.pipeline``."""

    @classmethod
    def from_options(cls, options: dict | None) -> "TransformerStudentConfig":
        config = config_from_options(cls, options, "transformer student")
        if config.config is not None and config.tokenizer is None:
            raise UserError("a transformer student built from a config needs a 'tokenizer' (name or directory)")
        require_int("num_layers", config.num_layers, 1)
        require_int("max_length", config.max_length, 1)
        if not 0.0 <= config.dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1), got {config.dropout}")
        if config.classifier not in ("mean_pool", "auto"):
            raise UserError(f"classifier must be 'mean_pool' or 'auto', got {config.classifier!r}")
        return config

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer or self.encoder


class TransformerStudent(nn.Module):
    """A shallow transformer classifier over token ids (``input_ids``, ``attention_mask``[, ``token_type_ids``])."""

    def __init__(self, encoder: nn.Module, num_classes: int, mixed_precision: bool = False) -> None:
        super().__init__()
        from kd_env.text_models import TextClassifier

        self.classifier = TextClassifier(encoder, num_classes, dropout=encoder.config.hidden_dropout_prob)
        self.mixed_precision = mixed_precision

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        # Rows are padded to the split's longest text; trim the columns no row of this batch uses.
        width = max(int(inputs["attention_mask"].sum(dim=1).max()), 1)
        batch = {name: tensor[:, :width] for name, tensor in inputs.items()}
        with autocast(batch["input_ids"].device, self.mixed_precision):
            logits, _ = self.classifier(batch)
        return logits.float()


def _build_transformer(data: DistillationData, **options) -> nn.Module:
    from kd_env.text_models import load_encoder

    config = TransformerStudentConfig.from_options(options)
    train_inputs = data.splits["train"].student_inputs
    if "input_ids" not in train_inputs:
        raise UserError(f"the transformer student needs token inputs; task {data.task!r} provides {sorted(train_inputs)}")
    dropouts = {"hidden_dropout_prob": config.dropout, "attention_probs_dropout_prob": config.dropout}
    if config.classifier == "auto":
        from kd_env.export import build_auto_classifier

        return build_auto_classifier(config, data.class_names, dropouts)
    if config.config is not None:
        from transformers import AutoConfig, AutoModel

        settings = dict(config.config)
        model_type = settings.pop("model_type", None)
        if model_type is None:
            raise UserError("the transformer student's 'config' needs a 'model_type' (e.g. 'bert')")
        encoder = AutoModel.from_config(AutoConfig.for_model(model_type, **{**settings, **dropouts}))
    else:
        encoder = load_encoder(config.encoder, config.num_layers, **dropouts)
    return TransformerStudent(encoder, data.num_classes, config.mixed_precision)


@dataclass(frozen=True)
class BagStudentConfig:
    """The ``bow`` student's options (``student_options``)."""

    embedding_dim: int = 64
    """Width of the trainable word-piece embeddings (ignored with ``pretrained_embeddings``)."""
    hidden: int = 64
    pretrained_embeddings: str | None = None
    """An encoder whose input-embedding matrix initialises the embeddings; None = random."""
    tokenizer: str = "minilm-l6"
    """Tokenizer name or directory (word pieces; its vocabulary sizes the embedding table)."""
    max_length: int = 64

    @classmethod
    def from_options(cls, options: dict | None) -> "BagStudentConfig":
        config = config_from_options(cls, options, "bow student")
        for name in ("embedding_dim", "hidden", "max_length"):
            if getattr(config, name) < 1:
                raise UserError(f"bow student: {name} must be >= 1, got {getattr(config, name)}")
        return config

    @property
    def tokenizer_name(self) -> str:
        return self.pretrained_embeddings or self.tokenizer


class BagStudent(nn.Module):
    """Mean of trainable word-piece embeddings -> MLP: a small student that shares no backbone with
    any teacher, so it has a real capacity gap for distillation to fill."""

    def __init__(self, embedding: nn.Embedding, num_classes: int, hidden: int) -> None:
        super().__init__()
        self.embedding = embedding
        self.net = nn.Sequential(nn.Linear(embedding.embedding_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = inputs["attention_mask"].unsqueeze(-1).to(self.embedding.weight.dtype)
        summed = (self.embedding(inputs["input_ids"]) * mask).sum(dim=1)
        return self.net(summed / mask.sum(dim=1).clamp_min(1.0))


@functools.lru_cache(maxsize=4)
def _vocabulary_size(tokenizer: str) -> int:
    from kd_env.text_models import load_tokenizer

    return len(load_tokenizer(tokenizer))


@functools.lru_cache(maxsize=2)
def _input_embeddings(encoder: str) -> torch.Tensor:
    from kd_env.text_models import load_encoder

    # Loading must not draw from the student's seeded RNG: only the first build would, and two
    # builds with one seed would differ.
    with torch.random.fork_rng(devices=[]):
        return load_encoder(encoder).get_input_embeddings().weight.detach()


def _build_bow(data: DistillationData, **options) -> nn.Module:
    """Every env reset builds a fresh student: the tokenizer's size and the pretrained embeddings are
    read from disk once per process, not once per episode."""
    config = BagStudentConfig.from_options(options)
    if "input_ids" not in data.splits["train"].student_inputs:
        raise UserError(f"the bow student needs token inputs; task {data.task!r} provides {sorted(data.splits['train'].student_inputs)}")
    if config.pretrained_embeddings is not None:
        # A copy: the student trains its embeddings, the cached ones stay as loaded.
        embedding = nn.Embedding.from_pretrained(_input_embeddings(config.pretrained_embeddings).clone(), freeze=False)
    else:
        embedding = nn.Embedding(_vocabulary_size(config.tokenizer), config.embedding_dim)
    return BagStudent(embedding, data.num_classes, config.hidden)


# What each token-reading student's options say about tokenising: (tokenizer name, max length).
TOKENIZED_STUDENT_CONFIGS = {"transformer": TransformerStudentConfig, "bow": BagStudentConfig}


def student_text_inputs(name: str, options: dict | None) -> tuple[str, int] | None:
    """What a text task must give a student: None = frozen sentence vectors (``features``), else the
    (tokenizer, max_length) to tokenise every split with."""
    if not isinstance(name, str) or name not in STUDENT_BUILDERS:
        raise UserError(f"unknown student {name!r}; available: {sorted(STUDENT_BUILDERS)}")
    if name not in TOKENIZED_STUDENT_CONFIGS:
        return None
    config = TOKENIZED_STUDENT_CONFIGS[name].from_options(options)
    return config.tokenizer_name, config.max_length


STUDENT_BUILDERS: dict[str, Callable[..., nn.Module]] = {"head": _build_head, "transformer": _build_transformer, "bow": _build_bow}
DEFAULT_LEARNING_RATES = {"head": 3e-3, "transformer": 5e-5, "bow": 3e-3}


def default_learning_rate(name: str) -> float:
    """The AdamW learning rate a student uses unless told otherwise (heads and transformers differ 100x)."""
    if name not in DEFAULT_LEARNING_RATES:
        raise UserError(f"unknown student {name!r}; available: {sorted(STUDENT_BUILDERS)}")
    return DEFAULT_LEARNING_RATES[name]


def build_student(name: str, data: DistillationData, seed: int, options: dict | None = None) -> nn.Module:
    """Build a freshly initialised student, seeded without touching torch's global RNG state."""
    if not isinstance(name, str) or name not in STUDENT_BUILDERS:
        raise UserError(f"unknown student {name!r}; available: {sorted(STUDENT_BUILDERS)}")
    with torch.random.fork_rng(devices=[]):
        # The CPU generator only: fork_rng restores no accelerator state, and torch.manual_seed would
        # also (lazily) reseed every accelerator's, recording a stack trace each time.
        torch.default_generator.manual_seed(seed)
        return STUDENT_BUILDERS[name](data, **(options or {}))
