"""Measurements behind ``scripts/bench_vector.py``: async vector-env scaling and who holds teacher outputs.

Memory is read from ``/proc/PID/smaps``: a page of a memory-mapped cache file is shared by every
process that maps it, and PSS charges each process its share, so the PSS summed over the workers counts
a shared page once. Copies a process makes itself are private; ``array_census`` lists the arrays an
env holds and whether each lives in a cache-file mapping or in private memory.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import kd_env  # noqa: F401  (registers the ids)

ENV_ID = "kd_env/TeacherSelection-v1"


# ------------------------------------------------------------------------------------------ speed
def _timed_steps(vector_env: gym.vector.VectorEnv, steps: int) -> float:
    """Aggregate env steps per second over ``steps`` vector steps (episode ends and autoresets included)."""
    actions = [vector_env.action_space.sample() for _ in range(steps)]
    start = time.perf_counter()
    for action in actions:
        vector_env.step(action)
    return vector_env.num_envs * steps / (time.perf_counter() - start)


def async_scaling(env_kwargs: dict, num_envs: tuple[int, ...] = (1, 2), steps: int = 100, rounds: int = 5) -> dict[int, float]:
    """Median aggregate env steps/s per number of async workers, measured in alternating rounds."""
    vector_envs = {n: gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="async", **env_kwargs) for n in num_envs}
    try:
        for n, vector_env in vector_envs.items():
            vector_env.reset(seed=0)
            vector_env.action_space.seed(0)
            _timed_steps(vector_env, max(steps // 5, 1))  # warm-up
        rates: dict[int, list[float]] = {n: [] for n in num_envs}
        for _ in range(rounds):
            for n, vector_env in vector_envs.items():
                rates[n].append(_timed_steps(vector_env, steps))
        return {n: statistics.median(values) for n, values in rates.items()}
    finally:
        for vector_env in vector_envs.values():
            vector_env.close()


# ----------------------------------------------------------------------------------------- memory
@dataclasses.dataclass(frozen=True)
class ProcessMemory:
    """kB of one process: in mappings of cache files, and in the whole process."""

    cache_rss: int
    cache_pss: int
    total_pss: int
    total_private: int


def process_memory(pid: int | str, cache_root: Path) -> ProcessMemory:
    root = str(Path(cache_root).resolve())
    in_cache, sums = False, {"cache_rss": 0, "cache_pss": 0, "total_pss": 0, "total_private": 0}
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if not fields[0].endswith(":"):  # a mapping's header: address perms offset dev inode [path]
            in_cache = len(fields) >= 6 and fields[5].startswith(root)
            continue
        name, kb = fields[0][:-1], int(fields[1]) if fields[1].isdigit() else 0
        if name == "Pss":
            sums["total_pss"] += kb
            sums["cache_pss"] += kb if in_cache else 0
        elif name == "Rss" and in_cache:
            sums["cache_rss"] += kb
        elif name in ("Private_Clean", "Private_Dirty"):
            sums["total_private"] += kb
    return ProcessMemory(**sums)


def worker_memory(env_kwargs: dict, num_envs: int, cache_root: Path, steps: int) -> list[ProcessMemory]:
    """Memory of each async worker after reset and ``steps`` steps, read while all of them are alive.

    Mapped pages become resident as batches touch them: take at least one episode of steps, so one
    env has touched the whole split too and the 1-env baseline is not undercounted."""
    vector_env = gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="async", **env_kwargs)
    try:
        vector_env.reset(seed=0)
        for _ in range(steps):
            vector_env.step(vector_env.action_space.sample())
        return [process_memory(process.pid, cache_root) for process in vector_env.processes]
    finally:
        vector_env.close()


def _mapped_ranges(cache_root: Path) -> list[tuple[int, int]]:
    root = str(Path(cache_root).resolve())
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[5].startswith(root):
            start, end = fields[0].split("-")
            ranges.append((int(start, 16), int(end, 16)))
    return ranges


def _arrays(value, path: str, seen: set[int]):
    """(path, address, nbytes) of every numpy array and torch tensor reachable through data containers."""
    if id(value) in seen or isinstance(value, (torch.nn.Module, torch.optim.Optimizer)):
        return
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        storage = value.untyped_storage()
        yield path, storage.data_ptr(), storage.nbytes()
    elif isinstance(value, np.ndarray):
        base = value
        while isinstance(base.base, np.ndarray):
            base = base.base
        yield path, base.__array_interface__["data"][0], base.nbytes
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _arrays(item, f"{path}[{key!r}]", seen)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _arrays(item, f"{path}[{index}]", seen)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _arrays(getattr(value, field.name), f"{path}.{field.name}", seen)


def array_census(env: gym.Env, cache_root: Path) -> list[tuple[str, int, bool]]:
    """(attribute path, bytes, memory-mapped from the cache?) of each distinct array the env holds."""
    ranges = _mapped_ranges(cache_root)
    unwrapped, rows, addresses = env.unwrapped, [], set()
    for path, address, nbytes in _arrays(vars(unwrapped), "env", set()):
        if address in addresses or nbytes == 0:
            continue
        addresses.add(address)
        rows.append((path, nbytes, any(start <= address < end for start, end in ranges)))
    return sorted(rows, key=lambda row: -row[1])


def cache_root_of(env_kwargs: dict) -> Path:
    from kd_env.cache import cache_root

    return cache_root((env_kwargs.get("task_options") or {}).get("cache_dir"))


def teacher_output_arrays(census: list[tuple[str, int, bool]]) -> list[tuple[str, int, bool]]:
    """The census rows that hold teacher outputs or arrays computed from them (by attribute name)."""
    return [row for row in census if any(word in row[0] for word in ("teacher", "static"))]
