"""kd_env: multi-teacher knowledge distillation as a Gymnasium environment.

Importing the package registers ``kd_env/TeacherSelection-v1`` (binary selection per instance and
teacher) and ``kd_env/TeacherWeighting-v1`` (continuous weights). Registration is idempotent. Both ids
have a ``vector_entry_point``: ``gym.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point")``
(also the default mode) builds N envs stepped as one computation (``kd_env.batched_env``).
"""

from gymnasium.envs.registration import register, registry

from kd_env.distill import KDConfig, kd_loss, normalise_weights
from kd_env.env import TeacherSelectionEnv
from kd_env.export import load_student

ENV_IDS = {
    "kd_env/TeacherSelection-v1": {"action_mode": "select"},
    "kd_env/TeacherWeighting-v1": {"action_mode": "weights"},
}

for _env_id, _kwargs in ENV_IDS.items():
    if _env_id not in registry:
        register(
            id=_env_id,
            entry_point="kd_env.env:TeacherSelectionEnv",
            vector_entry_point="kd_env.batched_env:BatchedTeacherSelectionEnv",
            kwargs=_kwargs,
        )

__all__ = ["ENV_IDS", "KDConfig", "TeacherSelectionEnv", "kd_loss", "load_student", "normalise_weights"]
