"""Ray Tune sweeps: agents x seeds x env/agent configs, one training run per trial, results as RunRecords.

The same call runs on a laptop (a local Ray instance is started here) or on a cluster (``address``,
or ``RAY_ADDRESS`` in the environment; the project must be installed on every node). Trials are planned
here rather than by a Tune searcher, so that every trial is one key of the results file
(``experiments.results``): a re-run skips the keys already done and retries the failed ones. The
driver appends each trial's record as soon as the trial ends, so workers need no shared disk, and a
trial that fails (its training raised, or its worker died) is recorded with its error while the
other trials go on.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from experiments.results import EpisodeCurves, RunRecord, append_record, completed_keys, failed_record, finished_record, record_from_json, run_key
from kd_env.errors import UserError

logger = logging.getLogger(__name__)

DEFAULT_ENV_ID = "kd_env/TeacherSelection-v1"


@dataclass(frozen=True)
class SweepSpec:
    """The grid: every agent x seed x combination of the ``*_grid`` values is one trial."""

    agents: tuple[str, ...]
    seeds: tuple[int, ...]
    total_steps: int
    """Env steps of every trial's training run."""
    env_id: str = DEFAULT_ENV_ID
    env_kwargs: dict = field(default_factory=dict)
    """Env keyword arguments shared by every trial (task, batch_size, ...)."""
    env_grid: dict[str, list] = field(default_factory=dict)
    """Env keyword -> the values to sweep."""
    agent_kwargs: dict = field(default_factory=dict)
    """Agent config overrides shared by every trial."""
    agent_grid: dict[str, list] = field(default_factory=dict)
    """Agent config field -> the values to sweep."""

    def __post_init__(self) -> None:
        if not self.agents or not self.seeds:
            raise UserError("a sweep needs at least one agent and one seed")
        if self.total_steps < 1:
            raise UserError(f"total_steps must be >= 1, got {self.total_steps}")
        for name, grid in (("env_grid", self.env_grid), ("agent_grid", self.agent_grid)):
            empty = [key for key, values in grid.items() if not isinstance(values, list) or not values]
            if empty:
                raise UserError(f"{name}: {empty} must map to non-empty lists of values")


@dataclass(frozen=True)
class Trial:
    """One training run of the sweep; JSON-friendly, as Tune hands it to a worker."""

    agent: str
    seed: int
    total_steps: int
    env_id: str
    env_kwargs: dict
    agent_kwargs: dict

    @property
    def task(self) -> str:
        return self.env_kwargs.get("task", "synthetic")

    @property
    def config(self) -> dict:
        """Everything but agent, task and seed that makes the run what it is (part of its key)."""
        return {"env_id": self.env_id, "env_kwargs": self.env_kwargs, "agent_kwargs": self.agent_kwargs, "total_steps": self.total_steps}

    @property
    def key(self) -> str:
        return run_key(self.agent, self.task, self.seed, self.config)


def plan_trials(spec: SweepSpec) -> list[Trial]:
    """Every trial of the grid, in a stable order (agents, then seeds, then grid values)."""
    env_points = _grid_points(spec.env_grid)
    agent_points = _grid_points(spec.agent_grid)
    return [
        Trial(agent, seed, spec.total_steps, spec.env_id, {**spec.env_kwargs, **env_point}, {**spec.agent_kwargs, **agent_point})
        for agent, seed, env_point, agent_point in itertools.product(spec.agents, spec.seeds, env_points, agent_points)
    ]


def _grid_points(grid: dict[str, list]) -> list[dict]:
    keys = sorted(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def trial_identity(trial: Trial) -> dict:
    """The fields that name a trial's record (the rest come from its outcome)."""
    return dict(
        entry=trial.agent, task=trial.task, seed=trial.seed, student=trial.env_kwargs.get("student", "head"),
        teachers=list(trial.env_kwargs.get("teachers") or []), config=trial.config,
    )


def error_record(trial: Trial, error: str, wall_time_s: float = 0.0) -> RunRecord:
    return failed_record(error, 0, wall_time_s, **trial_identity(trial))


def run_trial(trial: Trial, logdir: str) -> RunRecord:
    """One training run through the agents library; any exception becomes an error record."""
    from agents.training import TrainConfig, train

    started = time.perf_counter()
    try:
        curves = EpisodeCurves()
        config = TrainConfig(
            agent=trial.agent, total_steps=trial.total_steps, seed=trial.seed, env_id=trial.env_id,
            env_kwargs=trial.env_kwargs, agent_kwargs=trial.agent_kwargs, logdir=logdir, progress_bar=False,
        )
        result = train(config, callback=curves)
    except Exception:  # noqa: BLE001 - a trial's failure, whatever it is, is recorded, not raised
        logger.exception("trial %s failed", trial.key)
        return error_record(trial, traceback.format_exc(limit=-6), time.perf_counter() - started)
    return finished_record(result, curves, **trial_identity(trial))


def tune_trainable(config: dict) -> None:
    """Tune's function trainable: runs one trial and reports its accuracies and its whole record."""
    import torch
    from ray import tune

    torch.set_num_threads(max(1, int(config["threads"])))
    record = run_trial(Trial(**config["trial"]), config["logdir"])
    tune.report({
        "dev_accuracy": record.dev_accuracy,
        "test_accuracy": record.test_accuracy,
        "failed": record.status != "ok",
        "record": json.dumps(asdict(record)),
    })


def _record_writer(results_path: Path):
    """A Tune callback (built lazily: Ray is optional) appending each trial's record as it ends."""
    from ray import tune

    class RecordWriter(tune.Callback):
        def __init__(self) -> None:
            self.written: list[RunRecord] = []

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            self._write(record_from_json(json.loads(result["record"])))

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            # The worker died (or the trainable raised before reporting): no record came back.
            self._write(error_record(Trial(**trial.config["trial"]), f"trial error: {trial.error_file or 'worker died'}"))

        def _write(self, record: RunRecord) -> None:
            append_record(results_path, record)
            self.written.append(record)
            logger.info("trial %s: %s (dev %s, test %s)", record.key, record.status, record.dev_accuracy, record.test_accuracy)

    return RecordWriter()


def connect_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), else start a local instance; True if started here.

    An already initialised Ray (a notebook, a test fixture) is used as it is.
    """
    import ray

    if ray.is_initialized():
        return False
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, include_dashboard=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False)
    return True


def run_sweep(
    spec: SweepSpec,
    results_path: str | Path,
    logdir: str | Path = "runs",
    address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_trial: float = 1.0,
    name: str = "kd_env_sweep",
) -> list[RunRecord]:
    """Run every trial of ``spec`` not yet in ``results_path``; returns the records written by this call."""
    from agents import agent_names

    unknown = sorted(set(spec.agents) - set(agent_names()))
    if unknown:
        raise UserError(f"unknown agents {unknown}; available: {agent_names()}")
    results_path = Path(results_path).resolve()
    done = completed_keys(results_path)
    planned = plan_trials(spec)
    pending = [trial for trial in planned if trial.key not in done]
    logger.info("sweep %s: %d trials, %d already done", name, len(planned), len(planned) - len(pending))
    if not pending:
        return []

    import ray
    from ray import tune

    started = connect_ray(address, num_cpus)
    writer = _record_writer(results_path)
    try:
        tuner = tune.Tuner(
            tune.with_resources(tune_trainable, {"cpu": cpus_per_trial}),
            param_space={
                "trial": tune.grid_search([asdict(trial) for trial in pending]),
                "logdir": str(Path(logdir).resolve()),
                "threads": max(1, int(cpus_per_trial)),
            },
            run_config=tune.RunConfig(
                name=name, storage_path=str(results_path.parent / "ray_tune"), callbacks=[writer], verbose=0,
            ),
        )
        tuner.fit()
    finally:
        if started:
            ray.shutdown()
    return writer.written
