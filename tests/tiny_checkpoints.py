"""Tiny fine-tuned-looking checkpoints for tests: a random BERT sequence classifier with its tokenizer
and ``id2label``, saved as ``save_pretrained`` would leave a user's own fine-tuned teacher."""

from __future__ import annotations

from pathlib import Path

from tiny_text import write_tiny_bert


def write_tiny_classifier(folder: Path, labels: list[str], seed: int = 0) -> str:
    """A random 1-layer BERT classifier over ``labels`` (in that output order), tokenizer included."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    write_tiny_bert(folder, num_layers=1, seed=seed)  # the tokenizer files and a config to start from
    config = BertConfig.from_pretrained(folder, num_labels=len(labels), id2label=dict(enumerate(labels)),
                                        label2id={label: i for i, label in enumerate(labels)})
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(folder)
    return str(folder)
