"""Tasks: a task name -> ``DistillationData`` (``dispatch.build_distillation_data``, the one place the
env asks for its data), from the synthetic task (``synthetic``) or a text task (``text``: bundled, GLUE
and user files) with its teachers' outputs (``text_data``); ``data`` holds the arrays' containers, ``budget`` the
label budget and transfer set (task options ``labels``, ``transfer``).

The text-task names below are re-exported so that ``from kd_env.tasks import load_task`` keeps working.
The dispatcher is not, since it imports the teachers, which import the text tasks.
"""

from kd_env.tasks.data import SPLITS, DistillationData, SplitData
from kd_env.tasks.text import (
    BUNDLED_TASKS,
    GLUE_PREFIX,
    GLUE_TASKS,
    TASK_OPTION_NAMES,
    USER_FILE_PREFIXES,
    TaskConfig,
    TextSplit,
    TextTask,
    is_text_task,
    load_task,
    text_task_names,
)

__all__ = [
    "BUNDLED_TASKS", "GLUE_PREFIX", "GLUE_TASKS", "SPLITS", "TASK_OPTION_NAMES", "USER_FILE_PREFIXES",
    "DistillationData", "SplitData", "TaskConfig", "TextSplit", "TextTask", "is_text_task", "load_task",
    "text_task_names",
]
