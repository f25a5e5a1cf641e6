"""Stable-Baselines3 on-policy algorithms (PPO, A2C, TRPO from sb3-contrib) as kd_env agents.

``SharedPairPolicy`` scores each (instance, teacher) pair with one small network shared by all B*K
pairs, and values the state by averaging the pairs' hidden features: its parameter count does not
depend on the batch size B, so a 32-instance batch is not a 32x larger learning problem. ``MlpPolicy``
(SB3's own, sized by B) is offered for comparison. Both classes live in importable modules, so
``PPO.load`` works on saved models.

The ``*_instance`` agents train on ``InstanceVecEnv`` (``agents.instance_vec``): every instance of a
batch is one sub-env with its own reward, the per-instance credit the batch-mean reward lacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger, configure
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor
from torch import nn

from agents.base import Agent, StepCallback, register
from agents.instance_vec import InstanceVecEnv
from agents.networks import PairScorer, shared_mlp
from agents.observation import ObservationView
from agents.tensorboard import find_logger
from kd_env.errors import UserError

MODEL_FILE = "model.zip"


def algorithm_class(name: str) -> type:
    """PPO / A2C from SB3, TRPO from sb3-contrib (imported only when asked for)."""
    if name == "ppo":
        return PPO
    if name == "a2c":
        return A2C
    if name == "trpo":
        from sb3_contrib import TRPO

        return TRPO
    raise UserError(f"unknown SB3 algorithm {name!r}; expected 'ppo', 'a2c' or 'trpo'")


class SharedPairExtractor(nn.Module):
    """SB3's ``mlp_extractor`` slot: flat obs -> (B*K pair logits, pooled value features)."""

    def __init__(self, obs_shape: Sequence[int], hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        if not hidden_sizes:
            raise UserError("the shared policy needs at least one hidden layer (its width sizes the value features)")
        self.obs_shape = tuple(obs_shape)
        b, k, f = self.obs_shape
        self.actor = PairScorer(f, hidden_sizes)
        self.critic = nn.Sequential(shared_mlp(f, hidden_sizes[:-1], hidden_sizes[-1]), nn.Tanh())
        self.latent_dim_pi = b * k
        self.latent_dim_vf = hidden_sizes[-1]

    def _pairs(self, features: torch.Tensor) -> torch.Tensor:
        return features.reshape(-1, *self.obs_shape)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return self.actor(self._pairs(features)).flatten(start_dim=1)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return self.critic(self._pairs(features)).mean(dim=(1, 2))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)


class SharedPairPolicy(ActorCriticPolicy):
    """Actor-critic policy for ``MultiBinary(B*K)`` whose weights are shared over the B*K pairs.

    The pair logits are the Bernoulli logits directly (SB3's ``action_net`` becomes the identity).
    Without ``obs_shape`` the policy reads it from the spaces as (1, B*K, F): one action per pair,
    F features each; the pairs are scored alike and averaged alike for the value either way.
    """

    def __init__(self, observation_space, action_space, lr_schedule, obs_shape=None, pair_hidden_sizes=(64,), **kwargs):
        if not isinstance(action_space, spaces.MultiBinary):
            raise UserError(f"SharedPairPolicy makes binary selections (TeacherSelection-v1), got {action_space}")
        if obs_shape is None:
            pairs = int(np.prod(action_space.shape))
            obs_shape = (1, pairs, int(np.prod(observation_space.shape)) // pairs)
        self.obs_shape = tuple(obs_shape)
        self.pair_hidden_sizes = tuple(pair_hidden_sizes)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = SharedPairExtractor(self.obs_shape, self.pair_hidden_sizes)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self.action_net = nn.Identity()
        # SB3's orthogonal init gave the pair output layer gain sqrt(2); start near p = 0.5 instead.
        last = self.mlp_extractor.actor.net[-1]
        nn.init.orthogonal_(last.weight, gain=0.01)
        nn.init.zeros_(last.bias)
        # Rebuild the optimizer: the one from super() also holds the discarded B-sized action_net.
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(obs_shape=self.obs_shape, pair_hidden_sizes=self.pair_hidden_sizes)
        return data


@dataclass(frozen=True)
class SB3Config:
    algo: str = "ppo"
    """``ppo``, ``a2c`` or ``trpo`` (sb3-contrib)."""
    policy: str = "shared"
    """``shared`` (SharedPairPolicy, size independent of B) or ``mlp`` (SB3's MlpPolicy)."""
    seed: int = 0
    """SB3's seed: the policy, its action draws and the env's first reset."""
    hidden_sizes: tuple[int, ...] = (64,)
    """Hidden layers of the shared pair network (``shared`` only)."""
    algo_kwargs: dict = field(default_factory=dict)
    """Passed to the algorithm's constructor (n_steps, learning_rate, ent_coef, ...)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        algorithm_class(self.algo)
        if self.policy not in ("shared", "mlp"):
            raise UserError(f"unknown policy {self.policy!r}; expected 'shared' or 'mlp'")


class _EnvStepLogger(Logger):
    """SB3's logger at global step = env steps: SB3 dumps at its timestep count, n_envs per env step."""

    def __init__(self, logger: Logger, n_envs: int) -> None:
        super().__init__(logger.dir, logger.output_formats)
        self.n_envs = n_envs

    def dump(self, step: int = 0) -> None:
        super().dump(step // self.n_envs)


class _ForwardSteps(BaseCallback):
    """Hands the env's info to the agent-level callback after every env step."""

    def __init__(self, callback: StepCallback | None, env_infos) -> None:
        super().__init__()
        self.step_callback = callback
        self.env_infos = env_infos

    def _on_step(self) -> bool:
        if self.step_callback is None:
            return True
        return all(self.step_callback(info) is not False for info in self.env_infos(self.locals["infos"]))


@register("ppo", algo="ppo")
@register("a2c", algo="a2c")
@register("trpo", algo="trpo")
@register("ppo_mlp", algo="ppo", policy="mlp")
@register("a2c_mlp", algo="a2c", policy="mlp")
class SB3Agent(Agent):
    config_class = SB3Config
    loads_pickle = True
    default_algo_kwargs: dict[str, dict] = {}
    """Per algorithm, constructor defaults under the config's ``algo_kwargs``; SB3's own when empty."""

    def __init__(self, env, config: SB3Config) -> None:
        super().__init__(env, config)
        self.sb3_env = self._sb3_env(env)
        if config.policy == "shared":
            policy: Any = SharedPairPolicy
            policy_kwargs = {"obs_shape": self._policy_obs_shape(), "pair_hidden_sizes": config.hidden_sizes}
        else:
            policy, policy_kwargs = "MlpPolicy", {}
        kwargs = {"device": "cpu", **self.default_algo_kwargs.get(config.algo, {}), **config.algo_kwargs}
        self.model = algorithm_class(config.algo)(
            policy, self.sb3_env, seed=config.seed, policy_kwargs=policy_kwargs, **kwargs
        )
        self._attach_logger()

    def _sb3_env(self, env):
        """What SB3 trains on: the env itself (SB3 wraps it in a one-env DummyVecEnv)."""
        return env

    def _policy_obs_shape(self) -> tuple[int, int, int]:
        """(B, K, F) of one policy input."""
        return ObservationView(self.env).shape

    def _env_infos(self, sb3_infos: list[dict]) -> list[dict]:
        """The env infos of the last SB3 step: one per env step taken."""
        return sb3_infos[:1]

    def _attach_logger(self) -> None:
        run_logger = find_logger(self.env)
        if run_logger is not None:
            self.model.set_logger(_EnvStepLogger(configure(str(run_logger.log_dir), ["tensorboard"]), self.model.n_envs))

    def learn(self, total_steps: int, callback: StepCallback | None = None) -> "SB3Agent":
        # SB3 counts a step of its n_envs sub-envs as n_envs timesteps; one agent drives one env.
        self.model.learn(
            total_timesteps=total_steps * self.model.n_envs,
            callback=_ForwardSteps(callback, self._env_infos),
            reset_num_timesteps=False,
        )
        return self

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        action, _ = self.model.predict(obs, deterministic=deterministic)
        return action

    def _save_state(self, path: Path) -> None:
        self.model.save(path / MODEL_FILE)

    def _load_state(self, path: Path) -> None:
        self.model = algorithm_class(self.config.algo).load(path / MODEL_FILE, env=self.sb3_env, device=self.model.device)
        self._attach_logger()


@register("ppo_instance", algo="ppo")
@register("a2c_instance", algo="a2c")
class InstanceSB3Agent(SB3Agent):
    """SB3 on ``InstanceVecEnv``: the policy acts per instance, rewarded with its instance's reward.

    ``n_steps`` is the rollout length in env steps, each giving B samples: PPO's default of 2,048 would
    be 2,048 env steps per update, hence a shorter default. ``gamma`` defaults to 0: a sub-env's next
    observation is another instance, whose reward its action did not earn. With SB3's gamma and
    learning rate, per-instance PPO put 0.34-0.45 of the KD weight on the synthetic task's experts
    after 1,024 steps (5 seeds), with these defaults 0.65-0.74 (A2C: 0.66-0.70). ``predict`` still
    maps the env's flat (B*K*F,) observation to its flat (B*K,) action.
    """

    default_algo_kwargs = {
        "ppo": {"n_steps": 32, "batch_size": 256, "learning_rate": 0.003, "gamma": 0.0, "clip_range": 0.3},
        "a2c": {"learning_rate": 0.003, "gamma": 0.0},
    }

    def _sb3_env(self, env):
        self.instance_env = InstanceVecEnv(DummyVecEnv([lambda: env]), ObservationView(env).shape)
        return VecMonitor(self.instance_env)

    def _policy_obs_shape(self) -> tuple[int, int, int]:
        return (1, *self.instance_env.obs_shape[1:])

    def _env_infos(self, sb3_infos: list[dict]) -> list[dict]:
        return self.instance_env.env_infos

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        rows = np.asarray(obs).reshape(self.instance_env.batch_size, -1)
        action, _ = self.model.predict(rows, deterministic=deterministic)
        return action.reshape(-1)
