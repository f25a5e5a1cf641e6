"""The comparison grid: agents x tasks x seeds, each run a fresh student distilled by one agent.

Every run goes through ``agents.training.train`` (TensorBoard run, checkpoint, final dev/test metrics)
and is appended to the results file the moment it ends, so an interrupted grid re-run skips what is
done. A run that raises is recorded as failed with its error, and the grid goes on.
"""

from __future__ import annotations

import logging
import multiprocessing
import traceback
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium as gym
import torch
from filelock import FileLock, Timeout
from tqdm.auto import tqdm

import kd_env  # noqa: F401 - registers the env ids
from agents.checkpoints import load_agent, load_student
from agents.population import learns_in_population, train_population
from agents.training import TrainConfig, TrainResult, make_env, train
from experiments.results import EpisodeCurves, RunRecord, append_record, completed_keys, failed_record, finished_record, run_key
from experiments.selection import selection_profile
from kd_env.config import EnvConfig
from kd_env.devices import intra_op_threads
from kd_env.errors import UserError

log = logging.getLogger(__name__)

SELECT_ENV, WEIGHT_ENV = "kd_env/TeacherSelection-v1", "kd_env/TeacherWeighting-v1"


@dataclass(frozen=True)
class GridEntry:
    """One agent of the grid as it appears in the tables."""

    label: str
    agent: str
    env_id: str = SELECT_ENV
    env_kwargs: dict = field(default_factory=dict)
    """Overrides of the preset's common env kwargs for this agent only."""
    agent_kwargs: dict = field(default_factory=dict)
    epoch_kwargs: dict = field(default_factory=dict)
    """Agent kwargs given in epochs of the task (e.g. stage lengths), turned into env steps per task."""
    profile_selection: bool = False
    """Record what the trained selector picks (``experiments.selection``)."""


@dataclass(frozen=True)
class Preset:
    """A named grid: tasks, seeds, budget in epochs, the env settings all agents share, the agents."""

    name: str
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    epochs: int
    common_env_kwargs: dict
    entries: tuple[GridEntry, ...]
    single_teachers: bool = True
    """Add one ``single:<teacher>`` entry per teacher of each task."""
    regimes: dict = field(default_factory=dict)
    """Names in ``tasks`` that stand for env kwargs (a task with a teacher pool, a student...): a
    regime is reported under its name like a task."""

    def task_env_kwargs(self, task: str) -> dict:
        """The env kwargs that make ``task`` (a task name, or a regime name of ``regimes``)."""
        return dict(self.regimes.get(task, {"task": task}))


def entries_for_task(preset: Preset, teacher_names: tuple[str, ...]) -> list[GridEntry]:
    singles = [
        GridEntry(label=f"single:{name}", agent="single_teacher", agent_kwargs={"teacher": name})
        for name in teacher_names
    ] if preset.single_teachers else []
    return list(preset.entries) + singles


def task_facts(preset: Preset, task: str) -> tuple[tuple[str, ...], int, dict[str, float]]:
    """The task's teacher names, its episode length and each teacher's own test accuracy."""
    env = gym.make(SELECT_ENV, **{**preset.common_env_kwargs, **preset.task_env_kwargs(task)}).unwrapped
    correct = env.data.splits["test"].teacher_correct().float().mean(dim=0)
    accuracy = {name: float(value) for name, value in zip(env.teacher_names, correct)}
    return env.teacher_names, env.episode_steps, accuracy


@dataclass(frozen=True)
class PendingRun:
    """One (task, entry, seed) of the grid not yet in the results file."""

    task: str
    """The task or regime name the run is reported under."""
    entry: GridEntry
    config: TrainConfig
    record_config: dict
    teachers: tuple[str, ...]
    teacher_accuracy: dict[str, float]


def pending_runs(preset: Preset, done: set[str], logdir: str | Path) -> list[PendingRun]:
    """Every run of the grid whose key is not in ``done``, ordered entry by entry (then task, seed).

    Entry-major order means a grid stopped part-way has whole rows (an agent on every task and seed)
    rather than whole tasks with agents missing.
    """
    pending = []
    for task_position, task in enumerate(preset.tasks):
        teachers, episode_steps, teacher_accuracy = task_facts(preset, task)
        for entry_position, entry in enumerate(entries_for_task(preset, teachers)):
            stage_kwargs = {k: v * episode_steps for k, v in entry.epoch_kwargs.items()}
            for seed in preset.seeds:
                config = TrainConfig(
                    agent=entry.agent,
                    # Selector pre-training puts the student back at its end: those steps come on top,
                    # so every student gets the same number of distillation epochs.
                    total_steps=preset.epochs * episode_steps + stage_kwargs.get("pretrain_selector_steps", 0),
                    seed=seed,
                    env_id=entry.env_id,
                    env_kwargs={**preset.common_env_kwargs, **preset.task_env_kwargs(task), **entry.env_kwargs},
                    agent_kwargs={**entry.agent_kwargs, **stage_kwargs},
                    logdir=str(logdir),
                    log_every=10,
                    progress_bar=False,
                )
                record_config = {"preset": preset.name, "train": asdict(config) | {"logdir": None}}
                if run_key(entry.label, task, seed, record_config) not in done:
                    order = (entry_position, task_position, seed)
                    pending.append((order, PendingRun(task, entry, config, record_config, teachers, teacher_accuracy)))
    return [run for _, run in sorted(pending, key=lambda item: item[0])]


def run_grid(preset: Preset, results_path: str | Path, logdir: str | Path, workers: int = 1, population_seeds: bool = True,
             threads: int | None = None) -> int:
    """Run every (task, entry, seed) not yet in ``results_path``; returns how many runs it made.

    With ``workers > 1`` runs go to that many spawned processes, each with ``threads`` torch threads or
    an equal share of the cores other work leaves free (``kd_env.devices.intra_op_threads``; workers
    pay off with more cores or cheaper students; docs/benchmarks.md). Records are appended by this
    process as runs finish, in whatever order they finish.

    With ``population_seeds`` (the default), the pending seeds of one (task, entry) learn together as
    the sub-envs of one distillation core (``agents.population``), for agents that learn step by step
    (the rules, ``reinforce``, ``mtkd_rl``); SB3 agents run seed by seed. The records are those of
    separate runs up to float rounding (docs/benchmarks.md).
    """
    if workers < 1:
        raise UserError(f"workers must be >= 1, got {workers}")
    with only_writer(results_path):
        pending = pending_runs(preset, completed_keys(results_path), logdir)
        groups = population_groups(pending) if population_seeds else [[run] for run in pending]
        progress = tqdm(total=len(pending), desc=f"{preset.name} runs", unit="run")

        def record(results: list[RunRecord]) -> None:
            for result in results:
                append_record(results_path, result)
                progress.set_postfix_str(f"last: {result.task} / {result.entry} / seed {result.seed}: {result.status}")
                progress.update()
                # A line per finished run: the bar may reach a log file only at its end.
                log.info("finished %d/%d: %s / %s / seed %d: %s%s", progress.n, len(pending), result.task, result.entry, result.seed, result.status,
                         "" if result.test_accuracy is None else f", test accuracy {result.test_accuracy:.4f}")

        if workers == 1:
            for group in groups:
                record(execute_group(group))
        else:
            per_worker = intra_op_threads(workers, threads)
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context, initializer=torch.set_num_threads, initargs=(per_worker,)) as pool:
                for future in as_completed([pool.submit(execute_group, group) for group in groups]):
                    record(future.result())
        progress.close()
        return len(pending)


@contextmanager
def only_writer(results_path: str | Path) -> Iterator[None]:
    """Held while a grid runs: a second grid writing the same results file is refused at once,
    instead of reading the same pending runs and running each of them twice."""
    results_path = Path(results_path)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(results_path.parent / f".{results_path.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(f"{results_path} is in use: another grid is writing into it; wait for it to end or "
                        f"choose another output folder") from None
    try:
        yield
    finally:
        lock.release()


def population_groups(pending: list[PendingRun]) -> list[list[PendingRun]]:
    """Pending runs grouped by (task, entry) where the agent can learn in a population; the rest alone."""
    groups: list[list[PendingRun]] = []
    together: dict[tuple[str, str], list[PendingRun]] = {}
    for run in pending:
        if not learns_in_population(run.entry.agent):
            groups.append([run])
            continue
        key = (run.task, run.entry.label)
        if key not in together:
            together[key] = []
            groups.append(together[key])
        together[key].append(run)
    return groups


def execute_group(runs: list[PendingRun]) -> list[RunRecord]:
    """One run alone, or several seeds of one (task, entry) as one population."""
    if len(runs) == 1:
        return [execute(runs[0])]
    for run in runs:
        log.info("run %s / %s / seed %d (%d steps, in a population of %d)", run.task, run.entry.label, run.config.seed,
                 run.config.total_steps, len(runs))
    curves = [EpisodeCurves() for _ in runs]
    outcomes = train_population([run.config for run in runs], curves)
    for run, outcome in zip(runs, outcomes):
        if isinstance(outcome, BaseException):
            log.error("run %s / seed %d failed: %s", run.entry.label, run.config.seed, outcome)
    return [record_run(run, outcome, run_curves) for run, outcome, run_curves in zip(runs, outcomes, curves)]


def execute(run: PendingRun) -> RunRecord:
    config = run.config
    log.info("run %s / %s / seed %d (%d steps)", run.task, run.entry.label, config.seed, config.total_steps)
    curves = EpisodeCurves()
    try:
        outcome = train(config, callback=curves)
    except Exception as error:  # noqa: BLE001 - a failed run is recorded and the grid goes on
        log.error("run %s failed:\n%s", run.entry.label, traceback.format_exc())
        outcome = error
    return record_run(run, outcome, curves)


def record_run(run: PendingRun, outcome: TrainResult | BaseException, curves: EpisodeCurves) -> RunRecord:
    """A run's record: its result with the selection profile if asked, or its error."""
    config = run.config
    common = dict(
        entry=run.entry.label, task=run.task, seed=config.seed,
        student=config.env_kwargs.get("student", EnvConfig.student), teachers=list(run.teachers), config=run.record_config,
        teacher_test_accuracy=run.teacher_accuracy,
    )
    if not isinstance(outcome, BaseException):
        try:
            selection = profile(config, Path(outcome.run_dir)) if run.entry.profile_selection else {}
            return finished_record(outcome, curves, **common, selection=selection)
        except Exception as error:  # noqa: BLE001 - a failed profile fails the run
            log.error("profiling run %s failed:\n%s", run.entry.label, traceback.format_exc())
            outcome = error
    return failed_record(f"{type(outcome).__name__}: {outcome}", curves.steps, 0.0, **common)


def profile(config: TrainConfig, run_dir: Path) -> dict:
    """Selection profile of the run's saved agent, acting with its saved student (on a copy)."""
    env = make_env(config)
    env.reset(seed=config.seed)
    load_student(run_dir, env)
    return selection_profile(load_agent(run_dir, env, config.agent), env)
