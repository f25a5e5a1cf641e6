"""One training run of one agent on one env: what ``scripts/train.py`` and comparison scripts call.

A run lives in ``<logdir>/<env>__<agent>__<seed>__<time>/``: TensorBoard events, ``config.json``,
``checkpoints/`` (see ``agents.checkpoints``; written every ``checkpoint_every`` env steps, at the
end, and on Ctrl-C or SIGTERM, which then re-raise) and ``summary.json``. ``resume(run_dir)``
continues the newest checkpoint: the agent, the student and its optimizer, and the env-step count (so
TensorBoard's global step keeps increasing; events logged after that checkpoint by a killed process
are purged, not duplicated); a new episode starts with the restored student.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import gymnasium as gym
from tqdm import tqdm

import agents
from agents.checkpoints import CheckpointError, has_checkpoint, latest_checkpoint, load_agent, load_student, read_progress, save_checkpoint
from agents.tensorboard import RunLogger, drop_events_after
from agents.wrappers import ContinuingStudent
from kd_env import ENV_IDS
from kd_env.arguments import require_int

log = logging.getLogger(__name__)

CONFIG_FILE, SUMMARY_FILE = "config.json", "summary.json"
DEFAULT_CHECKPOINT_EVERY = 1000
"""Env steps between periodic checkpoints: a killed run loses at most this many."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (sent by ``timeout``, SLURM, ``docker stop``): stops a run with a checkpoint, like Ctrl-C."""


@dataclass(frozen=True)
class TrainConfig:
    agent: str
    """A name from ``agents.agent_names()``."""
    total_steps: int
    """Env steps (= distillation steps of the student) for the whole run."""
    seed: int = 0
    env_id: str = "kd_env/TeacherSelection-v1"
    env_kwargs: dict = field(default_factory=dict)
    """Keyword arguments of the env (task, batch_size, reward, ...)."""
    agent_kwargs: dict = field(default_factory=dict)
    """Config overrides of the agent (its ``seed`` is the run's)."""
    logdir: str = "runs"
    log_every: int = 1
    """Per-step TensorBoard scalars every this many env steps (episode ends are always logged)."""
    progress_bar: bool = True

    def __post_init__(self) -> None:
        agents.agent_class(self.agent)
        require_int("total_steps", self.total_steps, 1)
        require_int("seed", self.seed, 0)
        require_int("log_every", self.log_every, 1)


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


def make_env(config: TrainConfig, run_dir: Path | None = None, start_step: int = 0, base_env: gym.Env | None = None) -> gym.Env:
    """The env an agent drives: episodes continue one student; logged when ``run_dir`` is given.

    ``base_env``: the env to wrap instead of ``gym.make(config.env_id, **config.env_kwargs)`` (a
    population's sub-env, ``agents.population``).
    """
    env = ContinuingStudent(gym.make(config.env_id, **config.env_kwargs) if base_env is None else base_env)
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


def train(config: TrainConfig, callback: agents.base.StepCallback | None = None,
          checkpoint_every: int | None = DEFAULT_CHECKPOINT_EVERY) -> TrainResult:
    """A fresh run; ``callback(info)`` after every env step (return False to stop early).

    ``checkpoint_every``: env steps between periodic checkpoints (None: only at the end and on a stop).
    """
    check_checkpoint_every(checkpoint_every)
    return start_run(config).finish(callback, checkpoint_every)


def check_checkpoint_every(checkpoint_every: int | None) -> None:
    if checkpoint_every is not None:
        require_int("checkpoint_every", checkpoint_every, 1)


@dataclass
class StartedRun:
    """A fresh run with its folder, env and agent, before any learning."""

    config: TrainConfig
    run_dir: Path
    env: gym.Env
    agent: agents.Agent

    def finish(self, callback: agents.base.StepCallback | None = None,
               checkpoint_every: int | None = DEFAULT_CHECKPOINT_EVERY) -> TrainResult:
        """Learn the whole run, checkpoint it and evaluate the student (see ``train``)."""
        check_checkpoint_every(checkpoint_every)
        return _run(self.config, self.run_dir, self.env, self.agent, 0, 0.0, callback, checkpoint_every)


def start_run(config: TrainConfig, base_env: gym.Env | None = None) -> StartedRun:
    """The run folder with its config, the logged env (around ``base_env`` if given) and the agent.

    Split from learning so that a population (``agents.population``) builds its runs before they learn
    together.
    """
    # The env checks its arguments (and prepares the task) before the run folder exists: a refused
    # run leaves no folder behind.
    base_env = gym.make(config.env_id, **config.env_kwargs) if base_env is None else base_env
    run_dir = new_run_dir(config)
    write_atomically(run_dir / CONFIG_FILE, json.dumps(asdict(config), indent=2))
    env = make_env(config, run_dir, base_env=base_env)
    return StartedRun(config, run_dir, env, new_agent(config, env))


def new_agent(config: TrainConfig, env: gym.Env) -> agents.Agent:
    return agents.make(config.agent, env, **{**config.agent_kwargs, "seed": config.seed})


def resume(run_dir: str | Path, total_steps: int | None = None, callback=None,
           checkpoint_every: int | None = DEFAULT_CHECKPOINT_EVERY) -> TrainResult:
    """Continue the run in ``run_dir`` from its newest checkpoint, up to ``total_steps`` (default: the run's).

    A run stopped before its first checkpoint starts again from step 0 in its folder.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    check_checkpoint_every(checkpoint_every)
    if total_steps is not None:
        config = TrainConfig(**{**asdict(config), "total_steps": total_steps})
        write_atomically(run_dir / CONFIG_FILE, json.dumps(asdict(config), indent=2))
    if not has_checkpoint(run_dir):
        log.warning("%s has no checkpoint (the run stopped before its first): starting it again from step 0", run_dir)
        drop_events_after(run_dir, 0)
        env = make_env(config, run_dir)
        return _run(config, run_dir, env, new_agent(config, env), 0, 0.0, callback, checkpoint_every)
    progress = read_progress(latest_checkpoint(run_dir))
    env = make_env(config, run_dir, start_step=progress["env_steps"])
    env.reset(seed=config.seed)
    load_student(run_dir, env)
    agent = load_agent(run_dir, env, config.agent)
    log.info("resuming %s at env step %d", run_dir, progress["env_steps"])
    return _run(config, run_dir, env, agent, progress["env_steps"], progress["wall_time_s"], callback, checkpoint_every)


def read_run_config(run_dir: Path) -> TrainConfig:
    """The run's ``config.json``, checked like any input: its ``env_id`` must be one of ours, since
    Gymnasium imports the module an id names (``module:Env-v0``)."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a run folder: it has no {CONFIG_FILE}")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not readable JSON ({error})") from error
    names = [f.name for f in fields(TrainConfig)]
    if not isinstance(saved, dict) or set(saved) - set(names):
        unknown = sorted(set(saved) - set(names)) if isinstance(saved, dict) else type(saved).__name__
        raise CheckpointError(f"{path} is not a run config: unexpected {unknown}; its keys are {names}")
    if saved.get("env_id", TrainConfig.env_id) not in ENV_IDS:
        raise CheckpointError(f"{path}: env_id {saved['env_id']!r} is not one of {sorted(ENV_IDS)}")
    try:
        return TrainConfig(**saved)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} is not a run config: {error}") from error


def _run(config, run_dir: Path, env: RunLogger, agent, done_steps: int, wall_time_s: float, callback,
         checkpoint_every: int | None) -> TrainResult:
    """Learn the remaining steps with periodic checkpoints, checkpoint at the end (also on Ctrl-C or
    SIGTERM, then re-raise), evaluate the student."""
    remaining = max(config.total_steps - done_steps, 0)
    bar = tqdm(total=config.total_steps, initial=done_steps, desc=config.agent, disable=not config.progress_bar)
    start = time.perf_counter()

    def on_step(info):
        bar.update(1)
        if checkpoint_every is not None and env.global_step % checkpoint_every == 0:
            save_checkpoint(run_dir, agent, env, wall_time_s + time.perf_counter() - start)
        return None if callback is None else callback(info)

    stopped = True
    try:
        with sigterm_as_interrupt():
            agent.learn(remaining, callback=on_step)
        stopped = False
    finally:
        bar.close()
        wall_time_s += time.perf_counter() - start
        # An error before the first step has nothing to keep, and checkpointing an env that was
        # never reset would hide it behind its own error.
        if not stopped or env.global_step > done_steps:
            save_checkpoint(run_dir, agent, env, wall_time_s)
    return finish_run(config, run_dir, env, wall_time_s)


def finish_run(config: TrainConfig, run_dir: Path, env: RunLogger, wall_time_s: float) -> TrainResult:
    """Evaluate the run's final student, write ``summary.json`` and close the run's env."""
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
    write_atomically(run_dir / SUMMARY_FILE, json.dumps(asdict(result), indent=2))
    env.close()
    return result


@contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises ``Terminated`` in the main thread, so the run checkpoints and
    stops as on Ctrl-C. The previous handler is back before that final checkpoint: a second SIGTERM
    during it ends the process, and the last periodic checkpoint is still whole."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary sibling, flush it, and rename it over ``path``: whole or absent."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
