"""Tiny text fixtures for tests: a word-level BERT tokenizer and random BERT encoders, plus made-up data.

Everything fits in a few kilobytes and runs in milliseconds, so tests exercise the real loading,
fine-tuning and caching code without any pretrained model.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

WORDS = ["good", "great", "fine", "bad", "awful", "poor", "meh", "okay", "the", "film", "food", "was", "is", "very", "not", "a"]
SENTIMENT = {"good": "pos", "great": "pos", "fine": "pos", "bad": "neg", "awful": "neg", "poor": "neg", "meh": "neu", "okay": "neu"}


def write_tiny_bert(folder: Path, num_layers: int = 2, seed: int = 0) -> str:
    """A random BERT (hidden 32) with a word-level vocabulary saved as a local model directory."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=num_layers, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    return str(folder)


def sentiment_rows(n: int, seed: int = 0) -> list[dict]:
    """Short made-up reviews whose label is the sentiment word they contain (distinct texts)."""
    rng = np.random.default_rng(seed)
    rows, seen = [], set()
    while len(rows) < n:
        word = rng.choice(list(SENTIMENT))
        filler = rng.choice(WORDS[8:], size=int(rng.integers(2, 6))).tolist()
        text = " ".join([*filler[:2], str(word), *filler[2:]])
        if text not in seen:
            seen.add(text)
            rows.append({"text": text, "label": SENTIMENT[str(word)]})
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
