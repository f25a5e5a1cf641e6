"""A text task with fine-tuned teachers -> ``DistillationData``: the builder behind every text task name.

``task_options`` mixes the task's split options (``kd_env.tasks.TaskConfig``) and the preparation
options (``kd_env.teachers.PreparationConfig``). The first call prepares whatever is missing from the
cache (teachers, frozen embeddings) with progress bars; later calls only read the cache.
"""

from __future__ import annotations

import logging

import torch

from kd_env.arguments import require_classes, require_train_size
from kd_env.tasks.data import SPLITS, DistillationData, SplitData
from kd_env.options import configs_from_options
from kd_env.tasks.text import TaskConfig, load_task
from kd_env.teachers.embeddings import sentence_embeddings
from kd_env.teachers.preparation import prepare_teachers
from kd_env.teachers.specs import PreparationConfig, resolve_teacher_specs
from kd_env.text_models import encode, load_tokenizer

logger = logging.getLogger(__name__)


def split_options(options: dict | None) -> tuple[TaskConfig, PreparationConfig]:
    return configs_from_options(options, "text task", TaskConfig, PreparationConfig)


def prepare_text_task(task: str, teachers: list | None = None, options: dict | None = None, min_train_size: int = 1):
    """Load the task and make sure its teachers and frozen embeddings are in the cache.

    Checked before any teacher is fine-tuned: at least 2 classes, ``min_train_size`` training instances.
    Returns (text task, teacher cache, embeddings entry, preparation config)."""
    task_config, preparation = split_options(options)
    text_task = load_task(task, task_config)
    require_classes(task, text_task.class_names)
    require_train_size(len(text_task.splits["train"]), min_train_size)
    cache = prepare_teachers(text_task, resolve_teacher_specs(teachers), preparation)
    return text_task, cache, sentence_embeddings(text_task, preparation), preparation


def build_text_data(
    task: str,
    teachers: list | None = None,
    options: dict | None = None,
    student: str = "head",
    student_options: dict | None = None,
    min_train_size: int = 1,
) -> DistillationData:
    """Load the task, prepare (or read) the teachers and embeddings, and lay out the student's inputs."""
    from kd_env.students import student_text_inputs

    text_task, cache, embeddings, preparation = prepare_text_task(task, teachers, options, min_train_size)
    tokenize = student_text_inputs(student, student_options)
    if tokenize is not None:
        tokenizer_name, max_length = tokenize
        tokenizer = load_tokenizer(tokenizer_name, preparation.cache_dir)
    splits = {}
    for split in SPLITS:
        outputs = cache.outputs(split)
        vectors = embeddings.tensor(f"{split}.vectors")
        if tokenize is None:
            inputs = {"features": vectors}
        else:
            inputs = encode(tokenizer, text_task.splits[split], max_length).padded()
        splits[split] = SplitData(
            labels=torch.from_numpy(text_task.splits[split].labels).long(),
            student_inputs=inputs,
            semantic=vectors,
            teacher_logits=outputs.logits,
            raw_teacher_ce=outputs.ce,
            labelled=torch.from_numpy(text_task.labelled) if split == "train" and text_task.labelled is not None else None,
        )
    for name, accuracy in cache.accuracies().items():
        logger.info("teacher %s: dev %.3f, test %.3f", name, accuracy["dev"], accuracy["test"])
    return DistillationData(task=task, class_names=text_task.class_names, teacher_names=tuple(cache.teacher_names), splits=splits)
