"""Vector envs (Gymnasium sync/async, SB3 SubprocVecEnv) step exactly like single envs seeded the same way.

Both vector APIs seed sub-env i with ``seed + i`` and reset a finished sub-env by themselves; each
sub-env is compared step by step with a single env given the same seed, the same actions, and a reset
(without seed) where its episode ended. Short episodes make the rollouts cross two episode ends.
"""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import SubprocVecEnv

import kd_env  # noqa: F401  (registers the ids)
from kd_env import ENV_IDS

NUM_ENVS, SEED, STEPS, EPISODE_STEPS = 2, 7, 9, 4
COMPARED_INFO = ("ce", "kd", "batch_accuracy", "selection_agreement", "dev_accuracy")


def env_kwargs(small_env_kwargs) -> dict:
    return {**small_env_kwargs, "episode_steps": EPISODE_STEPS}


def actions_for(env_id: str, kwargs: dict) -> np.ndarray:
    """(STEPS, NUM_ENVS, B*K) actions, a different sequence per sub-env."""
    space = gym.make(env_id, **kwargs).action_space
    space.seed(123)
    return np.stack([np.stack([space.sample() for _ in range(NUM_ENVS)]) for _ in range(STEPS)])


def single_env_rollout(env_id: str, kwargs: dict, seed: int, actions: np.ndarray) -> list[dict]:
    """What a vector env with next-step autoreset should return for one sub-env, step by step."""
    env = gym.make(env_id, **kwargs)
    obs, _ = env.reset(seed=seed)
    steps, needs_reset = [{"obs": obs}], False
    for action in actions:
        if needs_reset:  # next-step autoreset: the action is ignored, the reset observation returned
            obs, _ = env.reset()
            steps.append({"obs": obs, "reward": 0.0, "terminated": False})
            needs_reset = False
            continue
        obs, reward, terminated, _, info = env.step(action)
        steps.append({"obs": obs, "reward": reward, "terminated": terminated, **{k: info[k] for k in COMPARED_INFO if k in info}})
        needs_reset = terminated
    env.close()
    return steps


def assert_same_step(expected: dict, got: dict, where: str) -> None:
    assert set(expected) == set(got), where
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-6, atol=1e-7, err_msg=f"{where}: {key}")


@pytest.mark.parametrize("mode", ["sync", pytest.param("async", marks=pytest.mark.integration)])  # async spawns processes
@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_gymnasium_vector_env_matches_single_envs(mode, env_id, small_env_kwargs):
    kwargs = env_kwargs(small_env_kwargs)
    actions = actions_for(env_id, kwargs)
    expected = [single_env_rollout(env_id, kwargs, SEED + i, actions[:, i]) for i in range(NUM_ENVS)]

    vector_env = gym.make_vec(env_id, num_envs=NUM_ENVS, vectorization_mode=mode, **kwargs)
    try:
        obs, _ = vector_env.reset(seed=SEED)
        for i in range(NUM_ENVS):
            assert_same_step(expected[i][0], {"obs": obs[i]}, f"{mode} reset, env {i}")
        for t, action in enumerate(actions, start=1):
            obs, reward, terminated, _, info = vector_env.step(action)
            for i in range(NUM_ENVS):
                got = {"obs": obs[i], "reward": reward[i], "terminated": terminated[i]}
                got.update({k: info[k][i] for k in COMPARED_INFO if k in info and info[f"_{k}"][i]})
                assert_same_step(expected[i][t], got, f"{mode} step {t}, env {i}")
    finally:
        vector_env.close()
    # The rollout crossed episode ends, so autoreset and end-of-episode dev metrics were compared too.
    assert sum("dev_accuracy" in step for step in expected[0]) == 2


@pytest.mark.integration
def test_sb3_subproc_vec_env_matches_single_envs(small_env_kwargs):
    env_id = "kd_env/TeacherSelection-v1"
    kwargs = env_kwargs(small_env_kwargs)
    actions = actions_for(env_id, kwargs)
    singles = [gym.make(env_id, **kwargs) for _ in range(NUM_ENVS)]
    expected_obs = np.stack([env.reset(seed=SEED + i)[0] for i, env in enumerate(singles)])

    # "kd_env:" makes gym.make import the package in the worker, whatever the start method.
    make = functools.partial(gym.make, f"kd_env:{env_id}", **kwargs)
    vector_env = SubprocVecEnv([make] * NUM_ENVS)
    try:
        vector_env.seed(SEED)
        np.testing.assert_allclose(vector_env.reset(), expected_obs, rtol=1e-6, atol=1e-7)
        dones_seen = 0
        for t, action in enumerate(actions, start=1):
            obs, rewards, dones, infos = vector_env.step(action)
            for i, env in enumerate(singles):
                expected, reward, terminated, _, _ = env.step(action[i])
                assert dones[i] == terminated, f"step {t}, env {i}"
                np.testing.assert_allclose(rewards[i], reward, rtol=1e-6, atol=1e-7, err_msg=f"step {t}, env {i}")
                if terminated:  # SB3 resets at once and keeps the last observation in the info
                    np.testing.assert_allclose(infos[i]["terminal_observation"], expected, rtol=1e-6, atol=1e-7)
                    expected, _ = env.reset()
                    dones_seen += 1
                np.testing.assert_allclose(obs[i], expected, rtol=1e-6, atol=1e-7, err_msg=f"step {t}, env {i}")
        assert dones_seen == 2 * NUM_ENVS
    finally:
        vector_env.close()


def test_sub_envs_train_their_own_students(small_env_kwargs):
    """Different seeds give different students: the sub-envs do not share one."""
    vector_env = gym.make_vec("kd_env/TeacherSelection-v1", num_envs=NUM_ENVS, vectorization_mode="sync", **small_env_kwargs)
    try:
        vector_env.reset(seed=SEED)
        students = [env.unwrapped.student for env in vector_env.envs]
        assert students[0] is not students[1]
        pairs = zip(students[0].parameters(), students[1].parameters())
        assert not all(torch.equal(a, b) for a, b in pairs)
    finally:
        vector_env.close()
