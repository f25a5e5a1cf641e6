"""Teachers: specs (``specs``), fine-tuning and the cached outputs (``preparation``), the semantic
vectors (``embeddings``), head-tuned (``heads``) and checkpoint (``checkpoints``) teachers, named pools
(``pools``) and the slices pools are made of (``slices``).

The names below are re-exported so that ``from kd_env.teachers import TeacherSpec`` keeps working.
"""

from kd_env.teachers.embeddings import embedding_description, sentence_embeddings
from kd_env.teachers.preparation import (
    DiskTeacherCache,
    TeacherCache,
    TeacherOutputs,
    load_teacher_model,
    prepare_teachers,
    teacher_description,
    teacher_slices,
)
from kd_env.teachers.specs import CODE_VERSION, NAMED_TEACHERS, PreparationConfig, TeacherSpec, resolve_teacher_specs

__all__ = [
    "CODE_VERSION", "NAMED_TEACHERS", "DiskTeacherCache", "PreparationConfig", "TeacherCache", "TeacherOutputs",
    "TeacherSpec", "embedding_description", "load_teacher_model", "prepare_teachers", "resolve_teacher_specs",
    "sentence_embeddings", "teacher_description", "teacher_slices",
]
