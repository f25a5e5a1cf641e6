"""N teacher-selection envs stepped as one computation: the ids' ``vector_entry_point``.

``BatchedTeacherSelectionEnv`` is the N-env ``VectorEnv`` view of ``kd_env.core.DistillationCore``: it
holds no MDP logic, only Gymnasium's vector conventions (seeding, autoreset, ``_key`` masks) and the
conversion of the core's tensors to numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from kd_env.config import EnvConfig
from kd_env.core import DistillationCore
from kd_env.env import RESET_OPTIONS, CoreSettings, host_info, spaces_of
from kd_env.options import check_option_names


class BatchedTeacherSelectionEnv(CoreSettings, VectorEnv):
    """``num_envs`` independent ``TeacherSelectionEnv`` sub-envs, stepped in lockstep as one computation.

    ## Description
    Sub-env i behaves as ``TeacherSelectionEnv(**env_kwargs)`` reset with seed ``seed + i``: the same
    observations, rewards, terminations and ``info`` for the same actions, up to float rounding
    (batched matmuls sum in another order than single ones; the tests allow 1e-4 relative). Every
    student batches (``kd_env.student_stacks``): ``head`` and ``bow`` as stacked tensors, others
    (``transformer``) in a per-student loop.

    ## Spaces
    ``single_observation_space`` and ``single_action_space`` are the single env's; the batched spaces
    add a leading axis of ``num_envs``: observations (N, B*K*F), actions (N, B*K).

    ## Episodes
    All sub-envs have the same fixed episode length and start together, so they end together and
    are reset together (lockstep: one step counter, one optimizer step count). Autoreset follows
    Gymnasium's default ``NEXT_STEP`` mode: the ``step`` after the last one ignores its actions,
    resets every sub-env and returns the new observations with reward 0. An autoreset draws fresh
    students unless ``autoreset_keep_student`` is set (episodes as epochs of one continuing run).
    ``reset(options={"keep_student": True})`` keeps the students as in the single env; partial
    resets (``reset_mask``) are not supported.

    ## Info
    The single env's keys, each an array with a leading axis of N, plus Gymnasium's ``_key`` masks
    (all True: every sub-env reports the same keys at the same step).

    ## Arguments
    ``num_envs``, ``autoreset_keep_student``, and every ``TeacherSelectionEnv`` argument.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, autoreset_keep_student: bool = False, **env_kwargs: Any) -> None:
        self.core = DistillationCore(EnvConfig.from_kwargs(env_kwargs), num_envs=num_envs)
        self.num_envs = self.core.num_envs
        self.autoreset_keep_student = autoreset_keep_student
        self.single_observation_space, self.single_action_space = spaces_of(self.core)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._all_true = np.ones(self.num_envs, dtype=bool)
        self._all_true.flags.writeable = False
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self._needs_reset = False

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        options = check_option_names(
            options, RESET_OPTIONS, "reset", note="(sub-envs run in lockstep, so there is no reset_mask)"
        )
        self._seed_rngs(seed)
        obs, info = self.core.reset(self._rngs, keep_student=bool(options.get("keep_student", False)))
        self._needs_reset = False
        return obs.cpu().numpy(), self._with_masks(host_info(info))

    def step(self, actions):
        if self._needs_reset:  # NEXT_STEP autoreset: the actions are ignored
            obs, info = self.reset(options={"keep_student": self.autoreset_keep_student})
            zeros = np.zeros(self.num_envs, dtype=bool)
            return obs, np.zeros(self.num_envs), zeros, zeros.copy(), info
        obs, rewards, terminated, info = self.core.step(actions)
        self._needs_reset = terminated
        return (obs.cpu().numpy(), rewards.cpu().numpy(), np.full(self.num_envs, terminated),
                np.zeros(self.num_envs, dtype=bool), self._with_masks(host_info(info)))

    def evaluate(self, split: str = "dev") -> dict[str, np.ndarray]:
        """Every student's accuracy, macro-F1 and CE on a split: (N,) arrays."""
        return host_info(self.core.evaluate(split))

    def student(self, i: int) -> torch.nn.Module:
        """Sub-env i's student as an ordinary module (a copy for stacked students)."""
        return self.core.student(i)

    @property
    def batch_indices(self) -> np.ndarray:
        """(N, B) training-split indices of the instances in each sub-env's current observation."""
        return self.core.batch_indices

    def student_state(self, i: int) -> dict[str, dict]:
        """Sub-env i's student and optimizer state, in the single env's ``student_state()`` format."""
        return self.core.student_state(i)

    def load_student_state(self, i: int, state: dict[str, dict]) -> None:
        """Put a ``student_state()`` (of a sub-env or a single env) into sub-env i (see the core's)."""
        self.core.load_student_state(i, state)

    def __getstate__(self):
        raise TypeError("a BatchedTeacherSelectionEnv cannot be pickled: rebuild it with gym.make_vec")

    def _seed_rngs(self, seed: int | list[int | None] | None) -> None:
        """Sub-env i gets ``seed + i`` (or ``seed[i]``), as Gymnasium's vector envs seed theirs."""
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"seed must be an int, None, or a list of num_envs = {self.num_envs} seeds; got {len(seeds)}")
        for i, single_seed in enumerate(seeds):
            if single_seed is not None or self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(single_seed)

    def _with_masks(self, info: dict[str, Any]) -> dict[str, Any]:
        """Add Gymnasium's ``_key`` masks: every sub-env reports every key (lockstep), so all share
        one read-only all-True array."""
        return {**info, **{f"_{key}": self._all_true for key in info if not key.startswith("_")}}


def sub_env_infos(info: dict[str, Any], num_envs: int) -> list[dict[str, Any]]:
    """A vector env's batched ``info`` (arrays plus ``_key`` masks) as one dict per sub-env, for
    consumers written for single envs (SB3's per-env infos, per-step callbacks)."""
    keys = [key for key in info if not key.startswith("_")]
    return [{key: info[key][i] for key in keys if info.get(f"_{key}", np.ones(num_envs, bool))[i]} for i in range(num_envs)]
