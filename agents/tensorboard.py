"""TensorBoard for every agent: a wrapper that logs what the env reports, at global step = env steps.

Tag families: ``charts/`` (rewards, returns, episode length), ``env/`` (the env's diagnostics: student
CE/KD, batch accuracy, per-teacher selection rates, oracle agreement, dev metrics at episode ends) and
``losses/`` (written by learning agents through ``scalar``). SB3 agents also write SB3's own tags into
the same run directory. Because every value is written at the wrapper's count of env steps, the
global step is the same for every agent and strictly increasing, across resumes too.
"""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium as gym
import numpy as np
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.summary.writer.record_writer import RecordWriter
from torch.utils.tensorboard import SummaryWriter

STEP_DIAGNOSTICS = ("ce", "kd", "loss", "batch_accuracy", "selection_agreement", "expert_weight")
EPISODE_DIAGNOSTICS = ("dev_accuracy", "dev_macro_f1", "dev_ce")


class RunLogger(gym.Wrapper):
    """Counts env steps and logs rewards and diagnostics; ``start_step`` resumes a count.

    Per-step scalars are written every ``log_every`` steps (a scalar costs ~50 us, comparable to a
    distillation step of a small student); episode-end scalars always.
    """

    def __init__(self, env: gym.Env, log_dir: str | Path, start_step: int = 0, log_every: int = 1) -> None:
        super().__init__(env)
        if log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {log_every}")
        self.log_every = log_every
        self.log_dir = Path(log_dir)
        # A resumed run drops the events a killed process logged after its checkpoint, so no step is
        # shown twice: from the files (for every reader), and through purge_step for a TensorBoard
        # that loaded them already (it drops the run's events at steps >= purge_step).
        if start_step:
            drop_events_after(self.log_dir, start_step)
        self.writer = SummaryWriter(str(self.log_dir), purge_step=start_step + 1 if start_step else None)
        self.global_step = start_step
        self.teacher_names = list(env.unwrapped.teacher_names)
        self._episode_return = 0.0
        self._episode_length = 0

    def scalar(self, tag: str, value: float) -> None:
        """Log ``value`` at the current env step (for agent-side metrics such as ``losses/*``)."""
        self.writer.add_scalar(tag, float(value), self.global_step)

    def reset(self, **kwargs):
        self._episode_return, self._episode_length = 0.0, 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.global_step += 1
        self._episode_return += float(reward)
        self._episode_length += 1
        if self.global_step % self.log_every == 0:
            self._log_step(reward, info)
        if terminated or truncated:
            self.scalar("charts/episode_return", self._episode_return)
            self.scalar("charts/episode_mean_reward", self._episode_return / self._episode_length)
            self.scalar("charts/episode_length", self._episode_length)
            for key in EPISODE_DIAGNOSTICS:
                if key in info:
                    self.scalar(f"env/{key}", info[key])
        return obs, reward, terminated, truncated, info

    def _log_step(self, reward: float, info: dict) -> None:
        self.scalar("charts/reward", reward)
        for key in STEP_DIAGNOSTICS:
            if key in info:
                self.scalar(f"env/{key}", info[key])
        for name, rate in zip(self.teacher_names, np.asarray(info.get("selection_rate", ())).tolist()):
            self.scalar(f"env/selection_rate/{name}", rate)

    def close(self) -> None:
        self.writer.close()
        super().close()


def drop_events_after(log_dir: Path, step: int) -> int:
    """Rewrite the event files in ``log_dir`` without their events at steps > ``step``, each through a
    temporary file renamed over it; returns how many events were dropped."""
    dropped = 0
    for path in sorted(Path(log_dir).glob("events.out.tfevents.*")):
        records = list(RawEventFileLoader(str(path)).Load())
        kept = [record for record in records if Event.FromString(record).step <= step]
        if len(kept) == len(records):
            continue
        temporary = path.with_name(f".{path.name}.tmp")
        with open(temporary, "wb") as handle:
            writer = RecordWriter(handle)
            for record in kept:
                writer.write(record)
            writer.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        dropped += len(records) - len(kept)
    return dropped


def find_logger(env: gym.Env) -> RunLogger | None:
    """The RunLogger among ``env``'s wrappers, if any."""
    while env is not None:
        if isinstance(env, RunLogger):
            return env
        env = getattr(env, "env", None)
    return None
