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


@pytest.fixture(scope="session")
def text_env_kwargs(tmp_path_factory, tiny_bert, reviews_csv):
    """A tiny text task (made-up reviews, two head-tuned tiny-BERT teachers, cached once per session)
    with the students' options set for the tiny tokenizer; add ``student`` to choose one."""
    cache = str(tmp_path_factory.mktemp("text-cache"))
    teachers = [{"name": f"tiny-{seed}", "encoder": tiny_bert, "tuning": "head", "seed": seed} for seed in (0, 1)]
    return {
        "task": f"csv:{reviews_csv}", "teachers": teachers, "batch_size": 8,
        "task_options": {"cache_dir": cache, "semantic_encoder": tiny_bert, "device": "cpu"},
        "student_options": {"tokenizer": tiny_bert, "max_length": 16, "embedding_dim": 8, "hidden": 8},
    }
