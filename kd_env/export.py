"""Distilled students that leave the project: saved in formats the ecosystem loads, and loaded back.

A student trained in the env is only useful if it can serve elsewhere. Two forms:

- ``transformer`` students built with ``classifier="auto"`` are the encoder family's own
  ``AutoModelForSequenceClassification``; ``save_student`` writes them with ``save_pretrained``, their
  tokenizer and ``id2label``/``label2id``, so ``transformers.pipeline("text-classification", model=OUT)``
  runs them on raw text.
- ``head`` students read frozen sentence vectors; they are saved as safetensors plus a JSON file naming
  the frozen encoder, and ``load_student(OUT).predict(texts)`` embeds the texts and classifies them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from kd_env.devices import autocast
from kd_env.errors import UserError

logger = logging.getLogger(__name__)

HEAD_FILE, HEAD_WEIGHTS = "kd_student.json", "head.safetensors"


class AutoClassifierStudent(nn.Module):
    """A ``transformers`` sequence classifier as an env student: ``forward(inputs)`` -> (B, C) logits."""

    def __init__(self, model: nn.Module, mixed_precision: bool = False) -> None:
        super().__init__()
        self.model = model
        self.mixed_precision = mixed_precision

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        # Rows are padded to the split's longest text; trim the columns no row of this batch uses.
        width = max(int(inputs["attention_mask"].sum(dim=1).max()), 1)
        batch = {name: tensor[:, :width] for name, tensor in inputs.items()}
        with autocast(batch["input_ids"].device, self.mixed_precision):
            return self.model(**batch).logits.float()


def build_auto_classifier(config, class_names: tuple[str, ...], dropouts: dict) -> AutoClassifierStudent:
    """The ``transformer`` student with ``classifier="auto"`` (``config``: ``TransformerStudentConfig``)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from kd_env.assets import resolve_encoder
    from kd_env.text_models import _quiet_transformers

    labels = {"num_labels": len(class_names), "id2label": dict(enumerate(class_names)),
              "label2id": {name: i for i, name in enumerate(class_names)}}
    with _quiet_transformers():
        if config.config is not None:
            settings = dict(config.config)
            model_type = settings.pop("model_type", None)
            if model_type is None:
                raise ValueError("the transformer student's 'config' needs a 'model_type' (e.g. 'bert')")
            model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model(model_type, **{**settings, **dropouts, **labels}))
        else:
            source = resolve_encoder(config.encoder)
            available = AutoConfig.from_pretrained(source).num_hidden_layers
            if config.num_layers > available:
                raise UserError(f"encoder {config.encoder!r} has {available} layers; cannot keep {config.num_layers}")
            model = AutoModelForSequenceClassification.from_pretrained(source, num_hidden_layers=config.num_layers, **dropouts, **labels)
    return AutoClassifierStudent(model, config.mixed_precision)


def save_student(student: nn.Module, out: str | Path, class_names: tuple[str, ...], tokenizer: str | None = None,
                 max_length: int = 64, semantic_encoder: str | None = None, cache_dir: str | None = None) -> Path:
    """Write ``student`` to ``out``: a transformers checkpoint (auto classifier) or a head student.

    ``tokenizer`` and ``max_length``: the auto classifier's tokenizer (saved beside it);
    ``semantic_encoder`` and ``max_length``: the frozen encoder whose vectors a head student reads."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(student, AutoClassifierStudent):
        from kd_env.text_models import load_tokenizer

        if tokenizer is None:
            raise ValueError("saving a transformer student needs its tokenizer's name or folder")
        student.model.save_pretrained(out)
        saved = load_tokenizer(tokenizer, cache_dir)
        saved.model_max_length = max_length  # what the student was trained on; pipelines truncate to it
        saved.save_pretrained(out)
    elif hasattr(student, "mean") and hasattr(student, "net"):  # kd_env.students.HeadStudent
        from safetensors.torch import save_file

        if semantic_encoder is None:
            raise ValueError("saving a head student needs the frozen encoder its inputs come from")
        save_file({k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()}, out / HEAD_WEIGHTS)
        spec = {"kind": "head", "class_names": list(class_names), "semantic_encoder": semantic_encoder, "max_length": max_length,
                "input_dim": int(student.mean.shape[0]), "hidden": int(student.net[0].out_features)}
        (out / HEAD_FILE).write_text(json.dumps(spec, indent=2))
    else:
        raise ValueError(
            f"cannot export a {type(student).__name__}: use the head student, or the transformer student with "
            f"student_options classifier='auto'"
        )
    logger.info("student saved to %s", out)
    return out


@dataclass
class LoadedStudent:
    """A saved student ready for raw text: ``predict(texts)`` -> class names."""

    class_names: tuple[str, ...]
    _scores: object

    @torch.no_grad()
    def predict_proba(self, texts: list[str]) -> torch.Tensor:
        """(N, C) class probabilities, in ``class_names`` order."""
        return torch.softmax(self._scores(list(texts)), dim=1)

    def predict(self, texts: list[str]) -> list[str]:
        return [self.class_names[i] for i in self.predict_proba(texts).argmax(dim=1).tolist()]


def load_student(path: str | Path, cache_dir: str | None = None) -> LoadedStudent:
    """A student ``save_student`` wrote (head or transformers checkpoint), on the CPU, for inference."""
    path = Path(path)
    if (path / HEAD_FILE).is_file():
        return _load_head(path, cache_dir)
    if (path / "config.json").is_file():
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model, tokenizer = AutoModelForSequenceClassification.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
        names = tuple(model.config.id2label[i] for i in range(model.config.num_labels))
        return LoadedStudent(names, lambda texts: model(**tokenizer(texts, truncation=True, padding=True, return_tensors="pt")).logits)
    raise FileNotFoundError(f"{path} holds no saved student ({HEAD_FILE} or a transformers config.json)")


def _load_head(path: Path, cache_dir: str | None) -> LoadedStudent:
    from safetensors.torch import load_file

    from kd_env.students import HeadStudent
    from kd_env.text_models import load_encoder, load_tokenizer, mean_pool

    spec = json.loads((path / HEAD_FILE).read_text())
    head = HeadStudent(torch.zeros(2, spec["input_dim"]), len(spec["class_names"]), spec["hidden"])
    head.load_state_dict(load_file(path / HEAD_WEIGHTS))
    head.eval()
    encoder = load_encoder(spec["semantic_encoder"], cache_dir=cache_dir).eval()
    tokenizer = load_tokenizer(spec["semantic_encoder"], cache_dir)

    def scores(texts: list[str]) -> torch.Tensor:
        batch = tokenizer(texts, truncation=True, max_length=spec["max_length"], padding=True, return_tensors="pt")
        vectors = mean_pool(encoder(**batch).last_hidden_state, batch["attention_mask"])
        return head({"features": torch.nn.functional.normalize(vectors, dim=1)})

    return LoadedStudent(tuple(spec["class_names"]), scores)
