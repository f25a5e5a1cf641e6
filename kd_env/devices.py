"""Where models run: ``device="auto"``, optional bfloat16 mixed precision, and how many CPU threads."""

from __future__ import annotations

import contextlib
import os

import torch

from kd_env.errors import UserError


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else as torch names it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise UserError(f"device must be cpu, cuda, cuda:N or auto, got {device!r}") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r}: this machine has no CUDA device; use cpu or auto")
    return resolved


def runtime_key(device: str, mixed_precision: bool) -> dict:
    """What a cache key records of where outputs were computed: the device type and precision.

    Another device or precision changes outputs (by rounding, or more after fine-tuning), so it gets
    its own entry. The CPU in float32 records nothing, so the keys of entries built there before the
    runtime was recorded stay valid.
    """
    device_type = resolve_device(device).type if device == "auto" else torch.device(device).type
    if device_type == "cpu" and not mixed_precision:
        return {}
    return {"runtime": {"device": device_type, "mixed_precision": bool(mixed_precision)}}


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast when mixed precision is asked for; a no-op otherwise."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def intra_op_threads(workers: int = 1, threads: int | None = None) -> int:
    """Torch intra-op threads for each of ``workers`` processes: ``threads`` if given, else an equal
    share of the cores this process may use that other work is not already keeping busy (the 1-minute
    load average), at least 1. More busy threads than cores make torch's workers spin against each
    other: a fine-tune measured 1.8 it/s instead of 68 (docs/benchmarks.md)."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise UserError(f"threads must be an integer >= 1, got {threads!r}")
        return threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = min(int(os.getloadavg()[0]), cores - 1)
    return max(1, (cores - busy) // max(1, workers))


def set_intra_op_threads(workers: int = 1, threads: int | None = None) -> int:
    """Apply ``intra_op_threads`` to this process's torch; returns the number set."""
    chosen = intra_op_threads(workers, threads)
    torch.set_num_threads(chosen)
    return chosen
