import pytest
import torch

# Tiny tensors everywhere: one intra-op thread is faster and keeps CI timings stable.
torch.set_num_threads(1)

SMALL_SYNTHETIC = {"num_train": 256, "num_dev": 64, "num_test": 128}


@pytest.fixture
def small_env_kwargs():
    """A synthetic env small enough for many resets and full episodes in a test."""
    return {"task": "synthetic", "task_options": dict(SMALL_SYNTHETIC), "batch_size": 16}
