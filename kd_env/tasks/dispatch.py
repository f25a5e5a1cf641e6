"""Task name -> ``DistillationData``: the one place the environment asks for its data.

Every builder takes ``(task, teachers, options, student, student_options, min_train_size)``: text tasks
need the student, since head students read frozen sentence vectors and transformer students token ids,
and check ``min_train_size`` (the env's batch size) before they fine-tune any teacher.
"""

from __future__ import annotations

from kd_env.errors import UserError
from kd_env.tasks.data import DistillationData
from kd_env.tasks.synthetic import build_synthetic_data
from kd_env.tasks.text import BUNDLED_TASKS, GLUE_PREFIX, USER_FILE_PREFIXES, text_task_names
from kd_env.tasks.text_data import build_text_data


def _build_synthetic(task: str, teachers, options, student: str, student_options, min_train_size: int) -> DistillationData:
    """The synthetic data is the same for every student, and cheap: the env checks its size afterwards."""
    return build_synthetic_data(teachers=teachers, options=options)


TASK_BUILDERS = {"synthetic": _build_synthetic, **{name: build_text_data for name in BUNDLED_TASKS}}
# Name forms with a parameter after the prefix (``glue:mrpc``, ``csv:data/reviews.csv``).
PREFIX_BUILDERS = {prefix: build_text_data for prefix in (GLUE_PREFIX, *USER_FILE_PREFIXES)}


def available_tasks() -> list[str]:
    """Every task name form the env accepts: ``synthetic`` and the text tasks."""
    return ["synthetic", *text_task_names()]


def build_distillation_data(
    task: str,
    teachers: list | None,
    task_options: dict | None,
    student: str = "head",
    student_options: dict | None = None,
    min_train_size: int = 1,
) -> DistillationData:
    if not isinstance(task, str):
        raise UserError(f"task must be a task name or prefix:PATH, got {task!r}; available: {available_tasks()}")
    builder = TASK_BUILDERS.get(task) or next((b for p, b in PREFIX_BUILDERS.items() if task.startswith(p)), None)
    if builder is None:
        raise UserError(f"unknown task {task!r}; available: {available_tasks()}")
    return builder(task=task, teachers=teachers, options=task_options, student=student, student_options=student_options,
                   min_train_size=min_train_size)
