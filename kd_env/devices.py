"""Where models run: ``device="auto"`` and optional bfloat16 mixed precision, shared by every model."""

from __future__ import annotations

import contextlib

import torch


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else as torch names it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def runtime_key(device: str, mixed_precision: bool) -> dict:
    """What a cache key records of where outputs were computed: the device type and precision.

    Another device or precision changes outputs (by rounding, or more after fine-tuning), so it gets
    its own entry. The CPU in float32 records nothing, so the keys of entries built there before the
    runtime was recorded stay valid.
    """
    device_type = resolve_device(device).type
    if device_type == "cpu" and not mixed_precision:
        return {}
    return {"runtime": {"device": device_type, "mixed_precision": bool(mixed_precision)}}


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast when mixed precision is asked for; a no-op otherwise."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
