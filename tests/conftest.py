import os

import pytest
import torch

# Tiny tensors everywhere: one intra-op thread is faster and keeps CI timings stable.
torch.set_num_threads(1)

SMALL_SYNTHETIC = {"num_train": 256, "num_dev": 64, "num_test": 128}
TEST_DEVICE = os.environ.get("KD_ENV_TEST_DEVICE")
"""Where the small envs' students train: unset (the env's default, the CPU), or e.g. ``cuda`` to run
the env tests on a GPU machine (CI has none)."""


@pytest.fixture
def small_env_kwargs():
    """A synthetic env small enough for many resets and full episodes in a test."""
    device = {"device": TEST_DEVICE} if TEST_DEVICE else {}
    return {"task": "synthetic", "task_options": dict(SMALL_SYNTHETIC), "batch_size": 16, **device}


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A tiny random BERT with a word-level vocabulary, as a local model directory."""
    from tiny_text import write_tiny_bert

    return write_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="session")
def reviews_csv(tmp_path_factory):
    """160 made-up three-class reviews in a csv file."""
    from tiny_text import sentiment_rows, write_csv

    return write_csv(tmp_path_factory.mktemp("data") / "reviews.csv", sentiment_rows(160))
