"""Privileged reference selectors read the env's current batch, not the observation."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

import agents
import kd_env  # noqa: F401

SELECT, WEIGHT = "kd_env/TeacherSelection-v1", "kd_env/TeacherWeighting-v1"


def rollout(agent, env, steps=6):
    """(action (B, K), teacher_correct (B, K), teacher CE (B, K), oracle (B, K)) for each step."""
    train = env.unwrapped.data.splits["train"]
    correct, ce = train.teacher_correct().numpy(), train.raw_teacher_ce.numpy()
    obs, info = env.reset(seed=0)
    shape = env.unwrapped.obs_shape[:2]
    seen = []
    for _ in range(steps):
        rows = env.unwrapped.batch_indices
        action = np.asarray(agent.predict(obs)).reshape(shape)
        seen.append((action, correct[rows], ce[rows], info["oracle"].reshape(shape).astype(bool)))
        obs, _, _, _, info = env.step(action.reshape(-1))
    return seen


@pytest.mark.parametrize("features", [None, ["semantic"], ["teacher_probs", "student_ce"]])
def test_correct_teachers_selects_the_right_ones_whatever_the_features(small_env_kwargs, features):
    env = gym.make(SELECT, **small_env_kwargs, features=features)
    checked_fallback = False
    for action, correct, _, _ in rollout(agents.make("correct_teachers", env), env):
        some = correct.any(axis=1)
        assert (action[some] == correct[some]).all()
        checked_fallback |= (~some).any()
    assert checked_fallback


@pytest.mark.parametrize("fallback", [None, "lowest_ce", "all", "none"])
def test_correct_teachers_fallbacks(small_env_kwargs, fallback):
    env = gym.make(SELECT, **small_env_kwargs)
    agent = agents.make("correct_teachers", env, **({} if fallback is None else {"fallback": fallback}))
    for action, correct, ce, _ in rollout(agent, env):
        none_right = ~correct.any(axis=1)
        expected = np.full_like(action[none_right], fallback == "all")
        if fallback in (None, "lowest_ce"):  # the default: the teacher closest to the gold label
            expected[np.arange(len(expected)), ce[none_right].argmin(axis=1)] = 1
        assert (action[none_right] == expected).all()


def test_unknown_fallback_is_refused(small_env_kwargs):
    with pytest.raises(ValueError, match="unknown fallback"):
        agents.make("correct_teachers", gym.make(SELECT, **small_env_kwargs), fallback="best")


@pytest.mark.parametrize("env_id", [SELECT, WEIGHT])
def test_oracle_selects_the_experts(small_env_kwargs, env_id):
    env = gym.make(env_id, **small_env_kwargs, features=["semantic"])
    for action, _, _, oracle in rollout(agents.make("oracle", env), env):
        assert (action.astype(bool) == oracle).all()


def test_oracle_needs_a_known_answer(small_env_kwargs):
    env = gym.make(SELECT, **small_env_kwargs)
    splits = env.unwrapped.data.splits
    splits["train"] = dataclasses.replace(splits["train"], expert_mask=None)
    with pytest.raises(ValueError, match="known answer"):
        agents.make("oracle", env)


def test_privileged_references_refuse_a_selection_profile(small_env_kwargs):
    from experiments.selection import selection_profile

    env = gym.make(SELECT, **small_env_kwargs)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="its own env's batch"):
        selection_profile(agents.make("correct_teachers", env), env)
