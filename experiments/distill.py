"""Distil your own: one agent's recipe on the user's task and teachers, and a student that leaves the project.

``distill(spec)`` checks every input before any compute (the output folder, the agent, the seeds via
``GridSpec``), runs the agent's recipe (the comparison's, ``experiments.grids.grid_entry``), and writes
to OUT: the student (``kd_env.export``: a ``transformers.pipeline`` checkpoint for ``transformer``, a
``kd_env.load_student`` folder for ``head``), a model card ``README.md``, ``distill.json`` with the
numbers, and the TensorBoard runs in ``runs/``. With ``compare_avg`` Avg-KD runs too, for the card.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium as gym

from agents.training import TrainConfig, load_student, make_env, train
from experiments.compare import SELECT_ENV, pending_runs, profile
from experiments.grids import GridSpec
from experiments.model_card import model_card
from experiments.report import REFERENCE_AGENT as REFERENCE
from experiments.report_files import check_output_folder
from kd_env.errors import UserError
from kd_env.export import save_student
from kd_env.students import TransformerStudentConfig
from kd_env.teachers import resolve_teacher_specs
from kd_env.tasks.text_data import split_options

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class DistillSpec:
    task: str
    out: str
    teachers: tuple = ()
    """Teacher names, checkpoint folders or spec dicts; empty = the task's defaults."""
    student: str = "transformer"
    agent: str = "reinforce"
    epochs: int = 3
    seed: int = 0
    student_options: dict = field(default_factory=dict)
    task_options: dict = field(default_factory=dict)
    env_kwargs: dict = field(default_factory=dict)
    compare_avg: bool = False
    overwrite: bool = False


def check_out(out: str | Path, overwrite: bool) -> Path:
    """Refuse a non-empty OUT unless ``overwrite`` (and never the working folder, home or one of their parents)."""
    out = check_output_folder(Path(out))
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"output folder {out} exists and is not empty; pass --overwrite to replace it")
        resolved = out.resolve()
        if resolved in (Path.cwd().resolve(), *Path.cwd().resolve().parents, Path.home().resolve()):
            raise UserError(f"refusing to overwrite {out}: it is the working folder, home, or a parent of them")
    return out


def distill(spec: DistillSpec) -> dict:
    """Run the recipe and write OUT; returns the numbers of ``distill.json``."""
    out = check_out(spec.out, spec.overwrite)
    if spec.teachers:
        resolve_teacher_specs(list(spec.teachers))  # a missing checkpoint folder fails now
    student_options = dict(spec.student_options)
    if spec.student == "transformer":
        student_options.setdefault("classifier", "auto")  # exportable for transformers.pipeline
    agent_names = (spec.agent,) + ((REFERENCE,) if spec.compare_avg and spec.agent != REFERENCE else ())
    grid = GridSpec(tasks=(spec.task,), agents=agent_names, seeds=(spec.seed,), student=spec.student, student_options=student_options,
                    teachers=tuple(spec.teachers), epochs=spec.epochs, env_kwargs=spec.env_kwargs, task_options=spec.task_options, name="distill")
    preset = grid.to_preset()
    facts = task_facts(preset.common_env_kwargs, spec.task)  # prepares the teachers: bad ones fail here
    empty_folder(out)
    pending = pending_runs(preset, set(), out / "runs")
    runs = {run.entry.label: run_recipe(run.config, run.entry.profile_selection) for run in pending}
    main = runs[spec.agent]
    config = next(run.config for run in pending if run.entry.label == spec.agent)
    export(config, Path(main["run_dir"]), spec, student_options, out)
    settings = {key: value for key, value in config.env_kwargs.items() if key != "task" and isinstance(value, (bool, int, float, str))}
    summary = {"task": spec.task, "agent": spec.agent, "student": spec.student, "epochs": spec.epochs, "seed": spec.seed, "out": str(out),
               "settings": settings, "agent_kwargs": config.agent_kwargs, **facts, "runs": runs}
    (out / "distill.json").write_text(json.dumps(summary, indent=2))
    (out / "README.md").write_text(model_card(summary))
    log.info("distilled student in %s (test accuracy %.4f)", out, main["test_accuracy"])
    return summary


def empty_folder(out: Path) -> None:
    """Make ``out`` an empty folder; a link to a folder stays a link, to the emptied folder."""
    out.mkdir(parents=True, exist_ok=True)
    for child in out.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def task_facts(env_kwargs: dict, task: str) -> dict:
    """Split sizes, classes and each teacher's dev/test accuracy, for the card."""
    env = gym.make(SELECT_ENV, **{**env_kwargs, "task": task}).unwrapped
    facts = {"classes": list(env.data.class_names), "sizes": {name: len(split) for name, split in env.data.splits.items()}, "teachers": {}}
    for split in ("dev", "test"):
        correct = env.data.splits[split].teacher_correct().float().mean(dim=0)
        for name, value in zip(env.teacher_names, correct.tolist()):
            facts["teachers"].setdefault(name, {})[f"{split}_accuracy"] = value
    env.close()
    return facts


def run_recipe(config: TrainConfig, profile_selection: bool) -> dict:
    """Train one run; an error stops the distillation (unlike a grid, which records it and goes on)."""
    result = train(config)
    selection = profile(config, Path(result.run_dir)) if profile_selection else {}
    return {**asdict(result), "selection": selection}


def export(config: TrainConfig, run_dir: Path, spec: DistillSpec, student_options: dict, out: Path) -> None:
    """Rebuild the run's env, put its final student back and save it in OUT."""
    env = make_env(config)
    env.reset(seed=config.seed)
    load_student(run_dir, env)
    unwrapped = env.unwrapped
    preparation = split_options(spec.task_options)[1]
    if spec.student == "transformer":
        options = TransformerStudentConfig.from_options(student_options)
        save_student(unwrapped.student, out, unwrapped.data.class_names, tokenizer=options.tokenizer_name,
                     max_length=options.max_length, cache_dir=preparation.cache_dir)
    else:
        save_student(unwrapped.student, out, unwrapped.data.class_names, semantic_encoder=preparation.semantic_encoder,
                     max_length=preparation.semantic_max_length, cache_dir=preparation.cache_dir)
    env.close()
