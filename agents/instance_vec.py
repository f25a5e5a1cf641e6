"""Each instance of a batch as one SB3 sub-env, so on-policy SB3 algorithms get per-instance credit.

A kd_env step acts on a batch of B instances and returns one batch-mean reward; PPO on that reward
cannot tell which of the B*K decisions helped (batch-level rewards learn flat selection profiles).
``InstanceVecEnv`` wraps an SB3 ``VecEnv`` of n such batch envs and exposes n*B sub-envs: sub-env
``i * B + j`` is instance j of env i. It observes that instance's (K, F) pair features, flattened to
(K*F,), acts ``MultiBinary(K)`` (``Box([0, 1]^K)`` for the weighting env), and is rewarded with its
own ``info["instance_rewards"][j]``. The policy is then a per-instance policy and every sample of a
rollout carries its own reward.

Consequences for SB3:

* One SB3 step is one step of each batch env; SB3 counts it as n*B timesteps, and ``n_steps`` (the
  rollout length per sub-env) is counted in env steps.
* The B sub-envs of one env start and end their episodes together: ``dones`` and
  ``TimeLimit.truncated`` are the env's, ``terminal_observation`` is the sub-env's row of the env's.
  The inner ``VecEnv`` resets finished envs itself (SB3's auto-reset).
* ``seed``, ``set_options``, ``get_attr``, ``set_attr``, ``env_method`` and ``env_is_wrapped`` take
  sub-env indices; each addresses the env that holds the sub-env, once per env however many of its
  sub-envs are named, and answers once per named sub-env.
* The batch envs' own infos of the last step are kept in ``env_infos`` (n dicts), for loggers and
  callbacks that want env diagnostics; the sub-envs' infos carry only what SB3 reads.

The inner ``VecEnv`` can be a ``DummyVecEnv``/``SubprocVecEnv`` of kd_env envs, or any ``VecEnv`` whose
observations are flat (B*K*F,) rows, actions flat (B*K,) rows and infos hold ``instance_rewards``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn


def instance_spaces(obs_shape: Sequence[int], observation_space: spaces.Box, action_space: spaces.Space):
    """One instance's (observation, action) spaces, cut from a batch env's flat spaces."""
    b, k, f = obs_shape
    if observation_space.shape != (b * k * f,):
        raise ValueError(f"expected a flat (B*K*F,) = ({b * k * f},) observation space, got {observation_space.shape}")
    low = observation_space.low.reshape(b, k * f)
    high = observation_space.high.reshape(b, k * f)
    if not ((low == low[0]).all() and (high == high[0]).all()):
        raise ValueError("the instances of a batch must share their observation bounds")
    observation = spaces.Box(low=low[0], high=high[0], dtype=observation_space.dtype)
    if isinstance(action_space, spaces.MultiBinary) and action_space.shape == (b * k,):
        return observation, spaces.MultiBinary(k)
    if isinstance(action_space, spaces.Box) and action_space.shape == (b * k,):
        return observation, spaces.Box(low=0.0, high=1.0, shape=(k,), dtype=action_space.dtype)
    raise ValueError(f"expected MultiBinary(B*K) or Box((B*K,)) actions with B*K = {b * k}, got {action_space}")


class InstanceVecEnv(VecEnvWrapper):
    """n batch envs of B instances as n*B single-instance sub-envs (see the module docstring)."""

    def __init__(self, venv: VecEnv, obs_shape: Sequence[int] | None = None) -> None:
        if obs_shape is None:
            obs_shape = venv.get_attr("obs_shape", indices=[0])[0]
        self.obs_shape = tuple(int(n) for n in obs_shape)
        self.batch_size = self.obs_shape[0]
        self.env_infos: list[dict[str, Any]] = [{} for _ in range(venv.num_envs)]
        observation_space, action_space = instance_spaces(self.obs_shape, venv.observation_space, venv.action_space)
        super().__init__(venv, observation_space, action_space)
        # VecEnvWrapper sizes itself by the inner venv: count the sub-envs instead.
        self.num_envs = venv.num_envs * self.batch_size
        self.reset_infos = self._per_sub_env(venv.reset_infos)

    # ------------------------------------------------------------------------- stepping
    def reset(self) -> np.ndarray:
        obs = self.venv.reset()
        self.reset_infos = self._per_sub_env(self.venv.reset_infos)
        return self._split(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(np.asarray(actions).reshape(self.venv.num_envs, -1))

    def step_wait(self) -> VecEnvStepReturn:
        obs, _, dones, infos = self.venv.step_wait()
        self.env_infos = list(infos)
        rewards = np.stack([np.asarray(info["instance_rewards"], dtype=np.float32) for info in infos]).reshape(-1)
        sub_infos: list[dict[str, Any]] = []
        for info in infos:
            truncated = bool(info.get("TimeLimit.truncated", False))
            terminal = info.get("terminal_observation")
            rows = None if terminal is None else self._split(terminal)
            for j in range(self.batch_size):
                sub = {"TimeLimit.truncated": truncated}
                if rows is not None:
                    sub["terminal_observation"] = rows[j]
                sub_infos.append(sub)
        self.reset_infos = self._per_sub_env(self.venv.reset_infos)
        return self._split(obs), rewards, np.repeat(np.asarray(dones), self.batch_size), sub_infos

    def _split(self, obs: np.ndarray) -> np.ndarray:
        """(n, B*K*F) -> (n*B, K*F), row i*B + j = instance j of env i; one env's (B*K*F,) -> (B, K*F)."""
        return np.asarray(obs).reshape(-1, self.observation_space.shape[0])

    # ----------------------------------------------------------------- sub-env indices
    def _env_indices(self, indices: VecEnvIndices) -> tuple[list[int], list[int]]:
        """(distinct envs in first-named order, the env of every named sub-env)."""
        owners = [i // self.batch_size for i in self._get_indices(indices)]
        return list(dict.fromkeys(owners)), owners

    def _per_sub_env(self, values: Sequence[Any]) -> list[Any]:
        return [values[i // self.batch_size] for i in range(self.num_envs)]

    def _dispatch(self, call, indices: VecEnvIndices) -> list[Any]:
        envs, owners = self._env_indices(indices)
        results = dict(zip(envs, call(envs)))
        return [results[i] for i in owners]

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seeds the batch envs (env i: seed + i, SB3's rule); answers per sub-env."""
        return self._per_sub_env(self.venv.seed(seed))

    def set_options(self, options: list[dict] | dict | None = None) -> None:
        """A list names one options dict per sub-env; each env takes its first sub-env's."""
        if isinstance(options, list):
            options = options[:: self.batch_size]
        self.venv.set_options(options)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return self._dispatch(lambda envs: self.venv.get_attr(attr_name, envs), indices)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        self.venv.set_attr(attr_name, value, self._env_indices(indices)[0])

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        return self._dispatch(
            lambda envs: self.venv.env_method(method_name, *method_args, indices=envs, **method_kwargs), indices
        )

    def env_is_wrapped(self, wrapper_class, indices: VecEnvIndices = None) -> list[bool]:
        return self._dispatch(lambda envs: self.venv.env_is_wrapped(wrapper_class, envs), indices)
