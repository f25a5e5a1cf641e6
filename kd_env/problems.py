"""Task name -> ``DistillationData``: the one place the environment asks for its data."""

from __future__ import annotations

from kd_env.data import DistillationData
from kd_env.synthetic import build_synthetic_data

TASK_BUILDERS = {"synthetic": build_synthetic_data}


def available_tasks() -> list[str]:
    return sorted(TASK_BUILDERS)


def build_distillation_data(task: str, teachers: list[str] | None, task_options: dict | None) -> DistillationData:
    if task not in TASK_BUILDERS:
        raise ValueError(f"unknown task {task!r}; available: {available_tasks()}")
    return TASK_BUILDERS[task](teachers=teachers, options=task_options)
