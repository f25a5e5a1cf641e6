"""The memory probes of the vector benchmark: cache-file pages and the env's array census."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch


def _load_vector_bench():
    """scripts/vector_bench.py, the benchmark's helpers (scripts/ is no package)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / "vector_bench.py"
    spec = importlib.util.spec_from_file_location("vector_bench", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


vector_bench = _load_vector_bench()
array_census, process_memory, teacher_output_arrays = (
    vector_bench.array_census, vector_bench.process_memory, vector_bench.teacher_output_arrays
)


def mapped_array(folder, name="logits", rows=4096):
    path = folder / f"{name}.npy"
    np.save(path, np.ones((rows, 64), dtype=np.float32))
    return np.load(path, mmap_mode="r")


def test_process_memory_counts_touched_cache_pages(tmp_path):
    array = mapped_array(tmp_path)
    before = process_memory(os.getpid(), tmp_path)
    assert float(array.sum()) == array.size  # touches every page of the 1 MiB file
    after = process_memory(os.getpid(), tmp_path)
    assert before.cache_rss == 0 or before.cache_rss < after.cache_rss
    assert after.cache_rss >= 1000 and 0 < after.cache_pss <= after.cache_rss
    assert process_memory(os.getpid(), tmp_path / "elsewhere").cache_rss == 0


def test_census_tells_mapped_from_private_arrays(tmp_path):
    shared = mapped_array(tmp_path)
    private = np.zeros((100, 8), dtype=np.float32)
    env = SimpleNamespace(unwrapped=SimpleNamespace(
        _teacher_logits=shared, _static=private, data={"features": torch.zeros(10)}, view=shared[:10], student=torch.nn.Linear(2, 2),
    ))
    rows = {path: (nbytes, is_mapped) for path, nbytes, is_mapped in array_census(env, tmp_path)}
    assert rows["env['_teacher_logits']"] == (shared.nbytes, True)
    assert rows["env['_static']"] == (private.nbytes, False)
    assert "env['view']" not in rows  # a view of a counted array is not counted twice
    assert not any("student" in path for path in rows)  # models are not data
    assert {path for path, _, _ in teacher_output_arrays(array_census(env, tmp_path))} == {"env['_teacher_logits']", "env['_static']"}
