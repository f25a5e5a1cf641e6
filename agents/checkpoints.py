"""A run's checkpoints: each complete or absent, never half-written; a resume reads the newest.

``RUN/checkpoints/step-<env steps>-<ns>/`` holds ``agent/`` (``agents.load``), ``student.pt`` (the
student and its optimizer) and ``progress.json``. A checkpoint is written into a staging folder,
fsynced and renamed into place, and only then are older ones removed: a SIGKILL or a power cut at any
moment leaves the previous complete checkpoint. Files load with ``weights_only=True`` (data, never
code); a damaged or missing part raises ``CheckpointError`` naming it, never a raw traceback.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import torch

import agents
from agents.base import AGENT_FILE

log = logging.getLogger(__name__)

CHECKPOINTS_DIR, PROGRESS_FILE, STUDENT_FILE, AGENT_DIR = "checkpoints", "progress.json", "student.pt", "agent"
CHECKPOINT_PREFIX, STAGING_PREFIX = "step-", ".staging-"


class CheckpointError(RuntimeError):
    """A run folder that cannot be resumed; the message names what is missing or damaged."""


def save_checkpoint(run_dir: Path, agent, env, wall_time_s: float) -> Path:
    """Write a complete checkpoint of ``agent`` and the student in ``env`` (a ``RunLogger``); returns it."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    root.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
    agent.save(staging / AGENT_DIR)
    torch.save(env.unwrapped.student_state(), staging / STUDENT_FILE)
    (staging / PROGRESS_FILE).write_text(json.dumps({"env_steps": env.global_step, "wall_time_s": wall_time_s}))
    _fsync_tree(staging)
    # Names sort by env step, then by time: a second checkpoint at the same step is the newer one.
    final = root / f"{CHECKPOINT_PREFIX}{env.global_step:012d}-{time.time_ns()}"
    staging.rename(final)
    _fsync(root)
    for older in root.iterdir():  # older checkpoints and staging folders left by a crash
        if older != final:
            shutil.rmtree(older, ignore_errors=True)
    env.writer.flush()
    log.info("checkpoint at env step %d in %s", env.global_step, final)
    return final


def _checkpoints(run_dir: str | Path) -> list[Path]:
    """A run's checkpoints, oldest first."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    return sorted(root.glob(f"{CHECKPOINT_PREFIX}*")) if root.is_dir() else []


def has_checkpoint(run_dir: str | Path) -> bool:
    return bool(_checkpoints(run_dir))


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The newest checkpoint of a run, checked for all its parts."""
    found = _checkpoints(run_dir)
    if not found:
        raise CheckpointError(
            f"{run_dir} has no checkpoint ({CHECKPOINTS_DIR}/{CHECKPOINT_PREFIX}*): the run stopped before its first "
            f"one (they are written every --checkpoint-every env steps, on Ctrl-C or SIGTERM, and at the end)"
        )
    checkpoint = found[-1]
    missing = [part for part in (PROGRESS_FILE, STUDENT_FILE, f"{AGENT_DIR}/{AGENT_FILE}") if not (checkpoint / part).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {checkpoint} is damaged: {', '.join(missing)} missing")
    return checkpoint


def read_progress(checkpoint: Path) -> dict:
    """``env_steps`` and ``wall_time_s`` of a checkpoint."""
    return _loading(checkpoint / PROGRESS_FILE, lambda path: _progress(json.loads(path.read_text())))


def load_student(run_dir: str | Path, env: gym.Env) -> None:
    """Put the newest checkpointed student and its optimizer into ``env``.

    ``weights_only=True``: a checkpoint is data, so a tampered file cannot run code when it is loaded.
    """
    state = _loading(latest_checkpoint(run_dir) / STUDENT_FILE, lambda path: torch.load(path, weights_only=True))
    env.unwrapped.load_student_state(state)


def load_agent(run_dir: str | Path, env: gym.Env, name: str):
    """The newest checkpointed agent, rebuilt on ``env``; ``name``: the run's agent (its config says),
    so that the checkpoint's own ``agent.json`` cannot choose a loader that runs code."""
    return _loading(latest_checkpoint(run_dir) / AGENT_DIR, lambda path: agents.load(path, env, name))


def _loading(path: Path, load):
    """``load(path)``, with any failure turned into a ``CheckpointError`` naming the file."""
    try:
        return load(path)
    except Exception as error:  # noqa: BLE001 - truncated zip, bad JSON, refused pickle: all mean "damaged"
        raise CheckpointError(f"{path} is damaged or not a checkpoint ({type(error).__name__}: {error})") from error


def _progress(progress: dict) -> dict:
    if not isinstance(progress, dict) or not isinstance(progress.get("env_steps"), int):
        raise ValueError(f"expected {{'env_steps': int, 'wall_time_s': float}}, got {progress!r}")
    return progress


def _fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder`` and the folders themselves, so the rename publishes whole files."""
    for path in sorted(folder.rglob("*"), reverse=True):
        _fsync(path)
    _fsync(folder)


def _fsync(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
