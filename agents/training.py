"""One training run of one agent on one env: what ``scripts/train.py`` and comparison scripts call.

A run lives in ``<logdir>/<env>__<agent>__<seed>__<time>/``: TensorBoard events, ``config.json``, the
checkpoint (``agent/``, ``student.pt``, ``progress.json``; written at the end and on Ctrl-C) and
``summary.json``. ``resume(run_dir)`` continues a checkpoint: the agent, the student and its
optimizer, and the env-step count (so TensorBoard's global step keeps increasing); a new episode
starts with the restored student.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium as gym
import torch
from tqdm import tqdm

import agents
from agents.tensorboard import RunLogger
from agents.wrappers import ContinuingStudent

log = logging.getLogger(__name__)

CONFIG_FILE, PROGRESS_FILE, STUDENT_FILE, SUMMARY_FILE, AGENT_DIR = (
    "config.json", "progress.json", "student.pt", "summary.json", "agent",
)


@dataclass(frozen=True)
class TrainConfig:
    agent: str
    """A name from ``agents.agent_names()``."""
    total_steps: int
    """Env steps (= distillation steps of the student) for the whole run."""
    seed: int = 0
    env_id: str = "kd_env/TeacherSelection-v0"
    env_kwargs: dict = field(default_factory=dict)
    """Keyword arguments of the env (task, batch_size, reward, ...)."""
    agent_kwargs: dict = field(default_factory=dict)
    """Config overrides of the agent (its ``seed`` is the run's)."""
    logdir: str = "runs"
    log_every: int = 1
    """Per-step TensorBoard scalars every this many env steps (episode ends are always logged)."""
    progress_bar: bool = True


@dataclass(frozen=True)
class TrainResult:
    """What a run produced; accuracies are the final student's."""

    run_dir: str
    test_accuracy: float
    test_macro_f1: float
    dev_accuracy: float
    dev_macro_f1: float
    env_steps: int
    wall_time_s: float


def make_env(config: TrainConfig, run_dir: Path | None = None, start_step: int = 0) -> gym.Env:
    """The env an agent drives: episodes continue one student; logged when ``run_dir`` is given."""
    env = ContinuingStudent(gym.make(config.env_id, **config.env_kwargs))
    return env if run_dir is None else RunLogger(env, run_dir, start_step, config.log_every)


def new_run_dir(config: TrainConfig) -> Path:
    """Create and return a fresh run folder; safe when several processes start runs at once."""
    env_name = config.env_id.split("/")[-1]
    base = Path(config.logdir) / f"{env_name}__{config.agent}__{config.seed}__{int(time.time())}"
    base.parent.mkdir(parents=True, exist_ok=True)
    run_dir, n = base, 1
    while True:
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            run_dir, n = Path(f"{base}_{n}"), n + 1


def train(config: TrainConfig, callback: agents.base.StepCallback | None = None) -> TrainResult:
    """A fresh run; ``callback(info)`` after every env step (return False to stop early)."""
    run_dir = new_run_dir(config)
    (run_dir / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2))
    env = make_env(config, run_dir)
    agent = agents.make(config.agent, env, **{**config.agent_kwargs, "seed": config.seed})
    return _run(config, run_dir, env, agent, done_steps=0, wall_time_s=0.0, callback=callback)


def resume(run_dir: str | Path, total_steps: int | None = None, callback=None) -> TrainResult:
    """Continue the run in ``run_dir`` from its checkpoint, up to ``total_steps`` (default: the run's)."""
    run_dir = Path(run_dir)
    config = TrainConfig(**json.loads((run_dir / CONFIG_FILE).read_text()))
    if total_steps is not None:
        config = TrainConfig(**{**asdict(config), "total_steps": total_steps})
        (run_dir / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2))
    progress = json.loads((run_dir / PROGRESS_FILE).read_text())
    env = make_env(config, run_dir, start_step=progress["env_steps"])
    env.reset(seed=config.seed)
    load_student(run_dir, env)
    agent = agents.load(run_dir / AGENT_DIR, env)
    log.info("resuming %s at env step %d", run_dir, progress["env_steps"])
    return _run(config, run_dir, env, agent, progress["env_steps"], progress["wall_time_s"], callback)


def _run(config, run_dir: Path, env: RunLogger, agent, done_steps: int, wall_time_s: float, callback) -> TrainResult:
    """Learn the remaining steps, checkpoint (also on Ctrl-C, then re-raise), evaluate the student."""
    remaining = max(config.total_steps - done_steps, 0)
    bar = tqdm(total=config.total_steps, initial=done_steps, desc=config.agent, disable=not config.progress_bar)

    def on_step(info):
        bar.update(1)
        return None if callback is None else callback(info)

    start = time.perf_counter()
    try:
        agent.learn(remaining, callback=on_step)
    finally:
        bar.close()
        wall_time_s += time.perf_counter() - start
        save_checkpoint(run_dir, agent, env, wall_time_s)
    dev, test = env.unwrapped.evaluate("dev"), env.unwrapped.evaluate("test")
    result = TrainResult(
        run_dir=str(run_dir),
        test_accuracy=test["accuracy"],
        test_macro_f1=test["macro_f1"],
        dev_accuracy=dev["accuracy"],
        dev_macro_f1=dev["macro_f1"],
        env_steps=env.global_step,
        wall_time_s=wall_time_s,
    )
    (run_dir / SUMMARY_FILE).write_text(json.dumps(asdict(result), indent=2))
    env.close()
    return result


def load_student(run_dir: Path, env: gym.Env) -> None:
    """Put the checkpointed student and its optimizer into ``env``.

    ``weights_only=True``: a checkpoint is data, so a tampered file cannot run code when it is loaded.
    """
    student = torch.load(Path(run_dir) / STUDENT_FILE, weights_only=True)
    env.unwrapped.student.load_state_dict(student["student"])
    env.unwrapped.optimizer.load_state_dict(student["optimizer"])


def save_checkpoint(run_dir: Path, agent, env: RunLogger, wall_time_s: float) -> None:
    agent.save(run_dir / AGENT_DIR)
    unwrapped = env.unwrapped
    torch.save({"student": unwrapped.student.state_dict(), "optimizer": unwrapped.optimizer.state_dict()}, run_dir / STUDENT_FILE)
    (run_dir / PROGRESS_FILE).write_text(json.dumps({"env_steps": env.global_step, "wall_time_s": wall_time_s}))
    env.writer.flush()
    log.info("checkpoint at env step %d in %s", env.global_step, run_dir)
