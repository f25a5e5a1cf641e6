"""``kd-env``: prepare teachers, train one agent, compare agents, run the benchmark suite and its headroom map, sweep, distill a student, benchmark.

The env's settings are flags derived from ``kd_env.config.EnvConfig`` (``kd_cli.env_options``): one
per field, the same in every subcommand, over a ``--profile``; ``--env-kwargs`` and ``--agent-kwargs``
take repeatable ``KEY=VALUE`` pairs or a JSON object. Bad input (an unknown agent, malformed seeds, a missing checkpoint folder, a
non-empty output folder) is reported in one line before anything is computed.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from pathlib import Path
from typing import Annotated

import typer

from experiments.compare import SELECT_ENV
from kd_cli.env_options import EnvOptions, choice_type, env_options, plain
from kd_cli.options import parse_grid, parse_pairs

app = typer.Typer(help="Multi-teacher knowledge distillation with an RL agent choosing the teachers: prepare teachers, train one agent, compare agents, run the benchmark suite, sweep, distill a student, benchmark.", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
log = logging.getLogger("kd_cli")

# The option types every subcommand shares (one syntax, one help text); the env's come from kd_cli.env_options.
Pairs = list[str] | None
AgentKwargs = Annotated[Pairs, typer.Option("--agent-kwargs", metavar="KEY=VALUE", help="An agent config field (learning_rate=0.05) or a JSON object. Repeatable.")]
Seed = Annotated[int, typer.Option(help="Seed of the run (student initialisation, batch order, agent).")]
EnvId = Annotated[str, typer.Option(help="kd_env/TeacherSelection-v1 (select teachers) or kd_env/TeacherWeighting-v1 (weights).")]
Logdir = Annotated[Path, typer.Option(help="Folder of the TensorBoard runs.")]

def agent_help() -> str:
    import agents

    return f"Agents: {', '.join(agents.agent_names())}."


USER_ERRORS = (FileNotFoundError, FileExistsError, PermissionError)
"""Besides ``kd_env.errors.UserError``: what a missing, occupied or locked path raises."""


def user_errors(command):
    """Bad input ends the command with one line on stderr and exit code 2 (``-v`` shows the traceback);
    any other exception is a bug and shows its traceback."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except Exception as error:
            from kd_env.errors import UserError  # here: importing kd_env loads torch, and --help stays fast

            if not isinstance(error, (UserError, *USER_ERRORS)) or log.isEnabledFor(logging.DEBUG):
                raise
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from error

    return run


THREADS: dict[str, int | None] = {"threads": None}
"""The ``--threads`` override, for subcommands that share threads out between worker processes."""


@app.callback()
def main_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging and full tracebacks.")] = False,
    threads: Annotated[int | None, typer.Option(min=1, help="Torch CPU threads per process (default: the cores other work leaves free, shared out between --workers).")] = None,
) -> None:
    from kd_env.devices import set_intra_op_threads

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    THREADS["threads"] = threads
    log.debug("torch threads: %d", set_intra_op_threads(1, threads))


@app.command()
@user_errors
@env_options(only=("task", "teachers", "task_options"), with_profile=False)
def prepare(env: EnvOptions) -> None:
    """Fine-tune (or run) a task's teachers and fill the cache, then print their accuracies."""
    from kd_env.config import EnvConfig
    from kd_env.tasks.text_data import prepare_text_task

    config = EnvConfig.from_kwargs(env.kwargs)
    _, cache, _, _ = prepare_text_task(config.task, config.teachers, config.task_options)
    typer.echo("| teacher | train | dev | test | prepared in |\n|---|---|---|---|---|")
    for name in cache.teacher_names:
        meta = cache.entry(name).meta
        accuracy = meta["accuracy"]
        typer.echo(f"| {name} | {accuracy['train']:.3f} | {accuracy['dev']:.3f} | {accuracy['test']:.3f} | {meta['prepare_seconds']:.0f} s |")


@app.command()
@user_errors
@env_options()
def train(
    agent: Annotated[str | None, typer.Option(help=agent_help())] = None,
    total_steps: Annotated[int | None, typer.Option(help="Env steps of the whole run (with --resume: a new total).")] = None,
    seed: Seed = 0,
    logdir: Logdir = Path("runs"),
    env_id: EnvId = SELECT_ENV,
    agent_kwargs: AgentKwargs = None,
    resume: Annotated[Path | None, typer.Option(metavar="RUN_DIR", help="Continue the newest checkpoint in this run folder.")] = None,
    checkpoint_every: Annotated[int, typer.Option(metavar="N", help="Env steps between periodic checkpoints (0: only at the end and on Ctrl-C/SIGTERM).")] = 1000,
    *,
    env: EnvOptions,
) -> None:
    """Train one agent (its student is trained as a side effect); Ctrl-C and SIGTERM checkpoint, --resume continues."""
    import signal

    from agents.checkpoints import CheckpointError
    from agents.training import Terminated, TrainConfig
    from agents.training import resume as resume_run
    from agents.training import train as train_run
    from kd_env.errors import UserError

    every = checkpoint_every or None
    try:
        if resume is not None:
            result = resume_run(resume, total_steps=total_steps, checkpoint_every=every)
        else:
            if agent is None or total_steps is None:
                raise UserError("--agent and --total-steps are needed unless --resume is given")
            config = TrainConfig(agent=agent, total_steps=total_steps, seed=seed, env_id=env_id, logdir=str(logdir),
                                 env_kwargs=env.resolved(),
                                 agent_kwargs=parse_pairs(agent_kwargs, "--agent-kwargs"))
            result = train_run(config, checkpoint_every=every)
    except CheckpointError as error:
        typer.echo(f"cannot resume: {error}", err=True)
        raise typer.Exit(2) from error
    except Terminated as stop:
        typer.echo("terminated: checkpoint saved; continue with --resume RUN_DIR", err=True)
        raise typer.Exit(128 + signal.SIGTERM) from stop
    except KeyboardInterrupt as stop:
        typer.echo("interrupted: checkpoint saved; continue with --resume RUN_DIR", err=True)
        raise typer.Exit(130) from stop
    typer.echo(f"run: {result.run_dir}\nenv steps: {result.env_steps}  wall time: {result.wall_time_s:.1f}s")
    typer.echo(f"student dev accuracy: {result.dev_accuracy:.4f}  test accuracy: {result.test_accuracy:.4f}  test macro-F1: {result.test_macro_f1:.4f}")


def preset_names() -> list[str]:
    from experiments.presets import PRESETS

    return sorted(PRESETS)


@app.command()
@user_errors
@env_options(exclude=("task",))
def compare(
    preset: Annotated[choice_type("preset", preset_names()) | None, typer.Option(help="A named grid (default: demo, the README's main job).")] = None,
    grid: Annotated[Path | None, typer.Option(help="A YAML or JSON file of grid keys (tasks, agents, seeds, profile, student, student_options, teachers, epochs, env_kwargs, task_options, single_teachers); flags override it.")] = None,
    task: Annotated[list[str] | None, typer.Option(help="Ad-hoc grid: a task (csv:reviews.csv, ...). Repeatable.")] = None,
    agents_: Annotated[str | None, typer.Option("--agents", help="Ad-hoc grid: agents or preset entries (reinforce:episode, ...), comma-separated (reinforce,avg_kd,ppo). " + agent_help())] = None,
    seeds: Annotated[str | None, typer.Option(help="Ad-hoc grid: seeds as a range or list: 0-4, 0,2,5.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Ad-hoc grid: student epochs of every run.")] = None,
    single_teachers: Annotated[bool | None, typer.Option("--single-teachers/--no-single-teachers", help="Ad-hoc grid: also distil from each teacher alone.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder: results.jsonl, tables, plots (default results/<preset or grid name>).")] = None,
    logdir: Logdir = Path("runs"),
    workers: Annotated[int, typer.Option(help="Runs in parallel processes (CPU threads are shared out).")] = 1,
    population_seeds: Annotated[bool, typer.Option(help="Learn the seeds of each (task, entry) together over one batched distillation core, for agents that learn step by step (rules, reinforce, mtkd_rl); same records as separate runs up to float rounding. --no-population-seeds runs every seed alone.")] = True,
    report_only: Annotated[bool, typer.Option(help="Only rebuild the tables and plots from the results file.")] = False,
    *,
    env: EnvOptions,
) -> None:
    """Compare agents over tasks and seeds (a preset, or an ad-hoc grid from flags or a file); re-runs skip finished runs."""
    from experiments.compare import run_grid
    from experiments.grids import GridSpec
    from experiments.presets import PRESETS
    from experiments.report_files import check_output_folder, write_report
    from kd_env.errors import UserError

    flags = {key: value for key, value in {
        "tasks": task, "agents": agents_, "seeds": seeds, "epochs": epochs, "single_teachers": single_teachers, "profile": env.profile,
        **grid_env_keys(env.kwargs),
    }.items() if value is not None}
    if preset is not None and (flags or grid is not None):
        raise UserError("--preset fixes the whole grid; give either --preset or an ad-hoc grid (--grid FILE and/or --task, --agents, ...)")
    if preset is not None or not (flags or grid is not None):
        chosen = PRESETS[plain(preset) or "demo"]
    else:
        spec = GridSpec.from_file(grid, flags) if grid is not None else GridSpec.from_mapping(flags)
        chosen = spec.to_preset()
    out = check_output_folder(out or Path("results") / chosen.name)
    results = out / "results.jsonl"
    if report_only and not (results.is_file() and results.stat().st_size):
        raise FileNotFoundError(f"no results in {results} to report; run without --report-only first")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if not report_only:
        made = run_grid(chosen, results, logdir, workers, population_seeds, THREADS["threads"])
        typer.echo(f"{made} new runs in {time.perf_counter() - start:.0f} s")
    typer.echo(write_report(results, out))
    typer.echo(f"tables and plots in {out}/")


def grid_env_keys(env_kwargs: dict) -> dict:
    """The env flags of ``compare`` as grid keys: those a grid names itself, the rest as its ``env_kwargs``."""
    from experiments.grids import GRID_ENV_KEYS

    rest = {key: value for key, value in env_kwargs.items() if key not in GRID_ENV_KEYS}
    return {**{key: env_kwargs[key] for key in GRID_ENV_KEYS if key in env_kwargs}, "env_kwargs": rest or None}


def regime_help() -> str:
    from kd_env.regimes import MAP_LABELS, MAP_POOLS, map_regimes, regime_names

    others = [name for name in regime_names() if name not in map_regimes()]
    return (f"Regimes: {', '.join(others)}; the map's {{pool}}-labels{{L}}-{{student}}-v1 with pool in {', '.join(MAP_POOLS)}, "
            f"L in {', '.join(map(str, MAP_LABELS))}, student bow or head.")


@app.command()
@user_errors
def suite(
    regimes: Annotated[str | None, typer.Option(help="Regimes, comma-separated; map = the headroom map's 48 (default: the benchmark regimes). " + regime_help())] = None,
    agents_: Annotated[str | None, typer.Option("--agents", help="Agents or preset entries to score, comma-separated (default: reinforce:probe_alignment+mlp32+labelled_probe, the map's pick by dev, then reinforce,ca_mkd,mtkd_rl); the baselines and the privileged references always run. " + agent_help())] = None,
    seeds: Annotated[str, typer.Option(help="Seeds as a range or list: 0-4, 0,2,5.")] = "0-4",
    out: Annotated[Path, typer.Option(help="Output folder: results.jsonl and leaderboard.md.")] = Path("results/suite"),
    logdir: Logdir = Path("runs"),
    workers: Annotated[int, typer.Option(help="Runs in parallel processes (CPU threads are shared out).")] = 1,
    report_only: Annotated[bool, typer.Option(help="Only rebuild the leaderboard of these regimes, agents and seeds from the results file.")] = False,
) -> None:
    """Run agents x regimes (kd_env.regimes, which fix every env setting) x seeds and print the leaderboard of normalised scores; re-runs skip finished runs."""
    from experiments.grids import parse_seeds, split_names
    from experiments.leaderboard import leaderboard
    from experiments.report_files import check_output_folder
    from experiments.suite import DEFAULT_AGENTS, SuiteSpec, benchmark_regimes, run_suite
    from kd_env.regimes import expand_regimes

    spec = SuiteSpec(expand_regimes(split_names(regimes)) if regimes is not None else benchmark_regimes(),
                     split_names(agents_) if agents_ is not None else DEFAULT_AGENTS, parse_seeds(seeds))
    out = check_output_folder(out)
    results = out / "results.jsonl"
    if report_only and not (results.is_file() and results.stat().st_size):
        raise FileNotFoundError(f"no results in {results} to report; run without --report-only first")
    out.mkdir(parents=True, exist_ok=True)
    if not report_only:
        start = time.perf_counter()
        made = run_suite(spec, results, logdir, workers, THREADS["threads"])
        typer.echo(f"{made} new runs in {time.perf_counter() - start:.0f} s")
    board = leaderboard(spec.records(results))
    (out / "leaderboard.md").write_text(board)
    typer.echo(board)
    typer.echo(f"leaderboard in {out / 'leaderboard.md'}")


@app.command("map")
@user_errors
def headroom_map(
    results: Annotated[Path, typer.Option(help="A suite's results file holding map regimes (kd-env suite --regimes map).")],
    out: Annotated[Path | None, typer.Option(help="Output folder: map.md and map.png (default: the results file's folder).")] = None,
    selector: Annotated[str | None, typer.Option(help="One learned entry for every cell (e.g. the top of map.md's ranking by dev) instead of each cell's best by dev.")] = None,
) -> None:
    """The headroom map of a suite's results: per map regime (pool x label budget x student), the headroom, KD's gain and the best selector's gain, as a table and a heatmap."""
    from experiments.headroom_map import write_map
    from experiments.report_files import check_output_folder
    from experiments.results import read_records

    if not (results.is_file() and results.stat().st_size):
        raise FileNotFoundError(f"no results in {results}; run kd-env suite --regimes map first")
    out = check_output_folder(out or results.parent)
    out.mkdir(parents=True, exist_ok=True)
    typer.echo(write_map(read_records(results), out, selector))
    typer.echo(f"map.md and map.png in {out}/")


@app.command()
@user_errors
@env_options()
def sweep(
    agents_: Annotated[str, typer.Option("--agents", help="Agents, comma-separated. " + agent_help())],
    total_steps: Annotated[int, typer.Option(help="Env steps of each training run.")],
    seeds: Annotated[str, typer.Option(help="Seeds as a range or list: 0-4, 0,2,5.")] = "0",
    env_id: EnvId = SELECT_ENV,
    env_grid: Annotated[Pairs, typer.Option("--env-grid", metavar="KEY=[V1,V2]", help="An env argument and the JSON list of values to try. Repeatable.")] = None,
    agent_kwargs: AgentKwargs = None,
    agent_grid: Annotated[Pairs, typer.Option("--agent-grid", metavar="KEY=[V1,V2]", help="An agent config field and the JSON list of values to try. Repeatable.")] = None,
    results: Annotated[Path, typer.Option(help="JSON-lines results file (appended; finished trials are skipped on re-runs).")] = Path("results/sweep.jsonl"),
    logdir: Logdir = Path("runs"),
    address: Annotated[str | None, typer.Option(help="Ray cluster address (default: RAY_ADDRESS, else a local instance).")] = None,
    num_cpus: Annotated[int | None, typer.Option(help="CPUs of a local Ray instance (default: all).")] = None,
    cpus_per_trial: Annotated[float, typer.Option(help="CPUs Ray reserves for each trial.")] = 1.0,
    name: Annotated[str, typer.Option(help="Ray Tune experiment name.")] = "kd_env_sweep",
    *,
    env: EnvOptions,
) -> None:
    """Sweep agents x seeds x env/agent configs with Ray Tune, one training run per trial."""
    from experiments.grids import grid_entry, parse_seeds, split_names
    from experiments.sweep import SweepSpec, run_sweep

    names = split_names(agents_)
    for agent in names:
        grid_entry(agent)
    spec = SweepSpec(
        agents=names, seeds=parse_seeds(seeds), total_steps=total_steps, env_id=env_id,
        env_kwargs=env.resolved(), env_grid=parse_grid(env_grid, "--env-grid"),
        agent_kwargs=parse_pairs(agent_kwargs, "--agent-kwargs"), agent_grid=parse_grid(agent_grid, "--agent-grid"),
    )
    records = run_sweep(spec, results, logdir, address, num_cpus, cpus_per_trial, name)
    failed = [r for r in records if r.status != "ok"]
    typer.echo(f"{len(records)} trials run ({len(failed)} failed); results in {results}")
    if failed:
        raise typer.Exit(1)


@app.command()
@user_errors
@env_options()
def distill(
    out: Annotated[Path | None, typer.Option(help="Output folder: the student, its model card README.md, distill.json, TensorBoard runs/.")] = None,
    config: Annotated[Path | None, typer.Option(help="A YAML or JSON file of distill keys (task, out, teachers, student, agent, epochs, max_steps, seed, profile, student_options, task_options, env_kwargs, compare_avg); flags override it.")] = None,
    agent: Annotated[str | None, typer.Option(help="The agent whose recipe chooses the teachers per instance (default reinforce).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Student epochs (selector pre-training comes on top; default 3).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Cap the student's training at this many env steps (a quick trial that keeps the teacher cache).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the run (default 0).")] = None,
    compare_avg: Annotated[bool | None, typer.Option("--compare-avg/--no-compare-avg", help="Also train an Avg-KD student and report it beside yours in the model card.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists and is not empty.")] = False,
    *,
    env: EnvOptions,
) -> None:
    """Distil a student (default: transformer) from your teachers on your data (--task csv:PATH, ...) with an agent's recipe, and save it for use elsewhere."""
    from experiments.distill import DistillSpec
    from experiments.distill import distill as run_distill

    flags = {key: value for key, value in {
        "out": None if out is None else str(out), "agent": agent, "epochs": epochs, "max_steps": max_steps, "seed": seed,
        "compare_avg": compare_avg, "profile": env.profile, **DistillSpec.split_env(env.kwargs),
    }.items() if value is not None}
    spec = DistillSpec.from_file(config, flags) if config is not None else DistillSpec.from_mapping(flags)
    summary = run_distill(spec if not overwrite else spec.replace(overwrite=True))
    for label, run in summary["runs"].items():
        typer.echo(f"{label}: dev accuracy {run['dev_accuracy']:.4f}, test accuracy {run['test_accuracy']:.4f}")
    for warning in summary["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"student, model card and TensorBoard runs in {spec.out}/")


@app.command()
@user_errors
@env_options()
def bench(
    steps: Annotated[int, typer.Option(help="Env steps to time.")] = 500,
    seed: Seed = 0,
    env_id: EnvId = SELECT_ENV,
    *,
    env: EnvOptions,
) -> None:
    """Env steps per second under random actions (construction and resets excluded); detailed benchmarks: scripts/bench_*.py."""
    from experiments.throughput import env_throughput

    result = env_throughput(env_id, env.resolved(), steps, seed)
    typer.echo(json.dumps(result, indent=2))


def main(argv: list[str] | None = None, prog_name: str = "kd-env"):
    """The console entry point (``argv`` for wrappers and tests)."""
    return app(args=argv, prog_name=prog_name)
