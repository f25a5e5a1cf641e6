"""A Gymnasium vector env as Stable-Baselines3's ``VecEnv``, so SB3 trains on a batched kd_env directly.

SB3 has its own vector API: ``step`` returns (obs, rewards, dones, infos) with one info dict per
sub-env, and a finished sub-env is reset at once, its last observation kept in
``info["terminal_observation"]``. ``BatchedVecEnv`` adapts ``kd_env.batched_env`` (whose sub-envs run
in lockstep and so end together) to that: after an episode end it resets the whole vector env,
keeping the students when the env's ``autoreset_keep_student`` says so.

It composes with ``agents.instance_vec.InstanceVecEnv`` (per-instance credit for SB3) like any
``VecEnv``: ``get_attr`` answers with the vector env's attributes (the same for every sub-env).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import VectorEnv
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from kd_env.batched_env import sub_env_infos


class BatchedVecEnv(VecEnv):
    """SB3 ``VecEnv`` view of a lockstep Gymnasium ``VectorEnv`` (see the module docstring)."""

    def __init__(self, env: VectorEnv) -> None:
        self.env = env
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self._actions: np.ndarray | None = None

    def reset(self) -> VecEnvObs:
        seeds = None if all(seed is None for seed in self._seeds) else list(self._seeds)
        options = self._options[0] or None
        if any(opts != self._options[0] for opts in self._options):
            raise ValueError("the sub-envs of a batched env reset together: give every sub-env the same options")
        obs, info = self.env.reset(seed=seeds, options=options)
        self.reset_infos = sub_env_infos(info, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, terminated, truncated, info = self.env.step(self._actions)
        infos = sub_env_infos(info, self.num_envs)
        dones = terminated | truncated
        if dones.any():
            if not dones.all():
                raise RuntimeError("BatchedVecEnv needs sub-envs that end together (a lockstep vector env)")
            for i, sub_info in enumerate(infos):
                sub_info["terminal_observation"] = obs[i]
                sub_info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            keep = getattr(self.env, "autoreset_keep_student", False)
            obs, reset_info = self.env.reset(options={"keep_student": True} if keep else None)
            self.reset_infos = sub_env_infos(reset_info, self.num_envs)
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.env.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.env, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise NotImplementedError("the sub-envs of a batched env share their attributes; set them on the vector env")

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        raise NotImplementedError("the sub-envs of a batched env are not separate objects; call the vector env's methods")

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))
