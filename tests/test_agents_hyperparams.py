"""hyperparams/*.yml (rl-baselines3-zoo format) build and run the algorithm they name on the env."""

import importlib
from pathlib import Path

import gymnasium as gym
import pytest
import yaml
from stable_baselines3 import A2C, PPO

import kd_env  # noqa: F401
from experiments.presets import PPO_SETTINGS, PROFILE
from kd_env.config import profile

pytestmark = pytest.mark.integration  # trains each zoo algorithm

ROOT = Path(__file__).resolve().parents[1]
NON_ALGO_KEYS = {"n_timesteps", "policy", "env_kwargs", "env_wrapper", "policy_kwargs"}


def import_path(dotted):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("algo, cls", [("ppo", PPO), ("a2c", A2C)])
def test_zoo_hyperparams_build_and_run(algo, cls):
    (env_id, params), = yaml.safe_load((ROOT / "hyperparams" / f"{algo}.yml").read_text()).items()
    env = gym.make(env_id, **params["env_kwargs"])
    for wrapper in params["env_wrapper"]:
        env = import_path(wrapper)(env)
    policy_kwargs = eval(params["policy_kwargs"])  # the zoo evaluates this string the same way
    algo_kwargs = {k: v for k, v in params.items() if k not in NON_ALGO_KEYS}
    model = cls(import_path(params["policy"]), env, policy_kwargs=policy_kwargs, device="cpu", **algo_kwargs)
    b, k, f = env.unwrapped.obs_shape
    assert model.policy.obs_shape == (1, b * k, f)  # read from the spaces
    model.learn(64)
    assert model.num_timesteps >= 64


def test_zoo_settings_are_the_learning_setup():
    """The YAML cannot import, so this test keeps it equal to the presets' profile (kd_env.config) and PPO settings."""
    ppo = next(iter(yaml.safe_load((ROOT / "hyperparams" / "ppo.yml").read_text()).values()))
    assert {k: v for k, v in ppo.items() if k not in NON_ALGO_KEYS} == PPO_SETTINGS
    for algo in ("ppo", "a2c"):
        params = next(iter(yaml.safe_load((ROOT / "hyperparams" / f"{algo}.yml").read_text()).values()))
        assert params["env_kwargs"] == {"task": "synthetic", **profile(PROFILE).kwargs()}
