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
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import gymnasium as gym

from agents.training import TrainConfig, load_student, make_env, train
from experiments.compare import SELECT_ENV, pending_runs, profile
from experiments.grids import GridSpec, read_mapping, require_known_keys
from experiments.presets import PROFILE
from experiments.model_card import model_card
from experiments.report import REFERENCE_AGENT as REFERENCE
from experiments.report_files import check_output_folder
from experiments.selection import selection_warning
from kd_env.config import EnvConfig
from kd_env.errors import UserError
from kd_env.export import load_student as load_saved_student
from kd_env.export import save_student
from kd_env.tasks import is_text_task, load_task
from kd_env.students import TransformerStudentConfig
from kd_env.teachers import resolve_teacher_specs
from kd_env.tasks.text_data import split_options

log = logging.getLogger(__name__)



SPEC_ENV_KEYS = ("task", "teachers", "student", "student_options", "task_options")
"""Env settings a distill spec names as keys of its own (the rest go in its ``env_kwargs``)."""


@dataclass(frozen=True)
class DistillSpec:
    """Everything a distillation depends on: the record (``distill.json``) holds it, so it can be re-run."""

    task: str
    out: str
    teachers: tuple | str = ()
    """Teacher names, checkpoint folders, spec dicts or pool names, or one pool name; empty = the task's defaults."""
    student: str = "transformer"
    agent: str = "reinforce"
    epochs: int = 3
    max_steps: int | None = None
    """Cap on each run's env steps, the recipe's stages shrunk in proportion (a quick trial; the teacher cache is kept)."""
    seed: int = 0
    profile: str = PROFILE
    """The settings profile (``kd_env.config.PROFILES``) that ``env_kwargs`` change."""
    student_options: dict = field(default_factory=dict)
    task_options: dict = field(default_factory=dict)
    env_kwargs: dict = field(default_factory=dict)
    compare_avg: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"max_steps must be >= 1, got {self.max_steps}")

    @staticmethod
    def split_env(env_kwargs: dict) -> dict:
        """Env settings as spec keys: those the spec names itself, the rest as its ``env_kwargs``."""
        rest = {key: value for key, value in env_kwargs.items() if key not in SPEC_ENV_KEYS}
        return {**{key: env_kwargs[key] for key in SPEC_ENV_KEYS if key in env_kwargs}, **({"env_kwargs": rest} if rest else {})}

    @classmethod
    def from_mapping(cls, values: dict) -> "DistillSpec":
        require_known_keys(cls, values, "distill")
        missing = [name for name in ("task", "out") if name not in values]
        if missing:
            raise UserError(f"distill needs {' and '.join('--' + name for name in missing)} (or a --config file naming them)")
        values = dict(values)
        if isinstance(values.get("teachers"), list):
            values["teachers"] = tuple(values["teachers"])
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path, overrides: dict | None = None) -> "DistillSpec":
        """A YAML or JSON file of ``DistillSpec`` keys (a ``distill.json``'s ``spec`` works); ``overrides`` win."""
        values = read_mapping(path, "distill")
        return cls.from_mapping({**values.get("spec", values), **(overrides or {})})

    def replace(self, **changes) -> "DistillSpec":
        return replace(self, **changes)


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
        resolve_teacher_specs(spec.teachers if isinstance(spec.teachers, str) else list(spec.teachers))  # a missing checkpoint folder fails now
    student_options = dict(spec.student_options)
    if spec.student == "transformer":
        student_options.setdefault("classifier", "auto")  # exportable for transformers.pipeline
    agent_names = (spec.agent,) + ((REFERENCE,) if spec.compare_avg and spec.agent != REFERENCE else ())
    grid = GridSpec(tasks=(spec.task,), agents=agent_names, seeds=(spec.seed,), student=spec.student, student_options=student_options,
                    teachers=spec.teachers, epochs=spec.epochs, env_kwargs=spec.env_kwargs, task_options=spec.task_options,
                    profile=spec.profile, name="distill")
    preset = grid.to_preset()
    facts = task_facts(preset.common_env_kwargs, spec.task)  # prepares the teachers: bad ones fail here
    empty_folder(out)
    # One run at a time, so each shows its progress bar (a grid's runs log a line each instead).
    pending = [(run.entry, replace(capped(run.config, spec.max_steps, run.entry.epoch_kwargs), progress_bar=True))
               for run in pending_runs(preset, set(), out / "runs")]
    runs = {}
    for position, (entry, config) in enumerate(pending, 1):
        log.info("distill run %d/%d: %s, %d env steps", position, len(pending), entry.label, config.total_steps)
        runs[entry.label] = run_recipe(config, entry.profile_selection)
    main = runs[spec.agent]
    config = next(config for entry, config in pending if entry.label == spec.agent)
    size = export(config, Path(main["run_dir"]), spec, student_options, out)
    settings = {key: value for key, value in config.env_kwargs.items() if key != "task"}
    warning = selection_warning(main["selection"], EnvConfig.from_kwargs(config.env_kwargs).empty_selection)
    summary = {"task": spec.task, "agent": spec.agent, "student": spec.student, "epochs": spec.epochs, "seed": spec.seed, "out": str(out),
               "spec": asdict(spec), "settings": settings, "agent_kwargs": config.agent_kwargs, **facts,
               "student_size": size, "runs": runs, "warnings": [warning] if warning else []}
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


def capped(config: TrainConfig, max_steps: int | None, stages: dict) -> TrainConfig:
    """The run cut to ``max_steps`` env steps, its stages (``stages``' keys) shrunk in proportion so
    joint training keeps its share of the budget."""
    if max_steps is None or config.total_steps <= max_steps:
        return config
    share = max_steps / config.total_steps
    shrunk = {key: max(1, int(config.agent_kwargs[key] * share)) for key in stages if key in config.agent_kwargs}
    return replace(config, total_steps=max_steps, agent_kwargs={**config.agent_kwargs, **shrunk})


def run_recipe(config: TrainConfig, profile_selection: bool) -> dict:
    """Train one run; an error stops the distillation (unlike a grid, which records it and goes on)."""
    result = train(config)
    selection = profile(config, Path(result.run_dir)) if profile_selection else {}
    return {**asdict(result), "selection": selection}


def export(config: TrainConfig, run_dir: Path, spec: DistillSpec, student_options: dict, out: Path) -> dict:
    """Rebuild the run's env, put its final student back and save it in OUT; returns its size."""
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
    parameters = sum(p.numel() for p in unwrapped.student.parameters())
    env.close()
    size = {"parameters": parameters, "disk_mb": sum(f.stat().st_size for f in out.rglob("*") if f.is_file() and f.relative_to(out).parts[0] != "runs") / 2**20}
    if is_text_task(spec.task):
        size["ms_per_text"] = latency_ms(out, load_task(spec.task, split_options(spec.task_options)[0]).splits["test"].texts, preparation.cache_dir)
    return size


def latency_ms(out: Path, texts: list[str], cache_dir: str | None) -> float:
    """Milliseconds per text of the saved student, as a user loads it, on a batch of 32 texts (CPU, after a warm-up)."""
    student = load_saved_student(out, cache_dir)
    batch = list(texts[:32])
    student.predict(batch)
    started = time.perf_counter()
    student.predict(batch)
    return 1000 * (time.perf_counter() - started) / len(batch)
