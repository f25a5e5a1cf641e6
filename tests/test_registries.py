"""Rewards and aggregations as registries: a new one is one decorated function, and the built-in ones
give the values they gave before they became registry entries."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from kd_env import distill, features, rewards
from kd_env.distill import KDConfig, kd_loss

# Rewards, the last observation's sum and info["loss"] over four steps from seed 0, recorded with the
# if-chain implementations (the registries changed no value).
RECORDED = {
    ("student_ce", "weighted_ce"): ([-0.9186011552810669, -1.0365339517593384, -0.9192317724227905, -0.6255512833595276], 419.45733642578125, 1.3191680908203125),
    ("student_ce", "kl_to_average"): ([-0.9186011552810669, -1.0365339517593384, -0.9192317724227905, -0.6255512833595276], 419.45733642578125, 0.8821253776550293),
    ("student_loss", "weighted_ce"): ([-0.9474748969078064, -1.0065627098083496, -0.9475288391113281, -0.6644601821899414], 419.45733642578125, 1.3191680908203125),
    ("student_loss", "kl_to_average"): ([-0.6322453022003174, -0.6901061534881592, -0.6169924736022949, -0.34920042753219604], 419.45733642578125, 0.8821253776550293),
    ("ce_gain", "weighted_ce"): ([0.4100164771080017, 0.19659852981567383, 0.22236567735671997, 0.4991151690483093], 419.45733642578125, 1.3191680908203125),
    ("ce_gain", "kl_to_average"): ([0.4100164771080017, 0.19659852981567383, 0.22236567735671997, 0.4991151690483093], 419.45733642578125, 0.8821253776550293),
    ("dev_gain", "weighted_ce"): ([0.13792578876018524, 0.18571460247039795, 0.17145122587680817, 0.4421929121017456], 419.45733642578125, 1.3191680908203125),
    ("dev_gain", "kl_to_average"): ([0.13792578876018524, 0.18571460247039795, 0.17145122587680817, 0.4421929121017456], 419.45733642578125, 0.8821253776550293),
}


def rollout(small_env_kwargs, steps=4, **kwargs):
    """Rewards, instance rewards, the last observation and the last info of a seed-0 random rollout."""
    env = gym.make("kd_env/TeacherSelection-v1", **{**small_env_kwargs, "episode_steps": 4, "terminal_bonus": 0.5, **kwargs})
    obs, _ = env.reset(seed=0)
    env.action_space.seed(0)
    rewards_, instance = [], []
    for _ in range(steps):
        obs, reward, _, _, info = env.step(env.action_space.sample())
        rewards_.append(reward)
        instance.append(info["instance_rewards"])
    return rewards_, instance, obs, info


@pytest.fixture
def fresh_registries(monkeypatch):
    """Registrations made in a test vanish after it."""
    monkeypatch.setattr(rewards, "_REGISTRY", dict(rewards._REGISTRY))
    monkeypatch.setattr(distill, "_AGGREGATIONS", dict(distill._AGGREGATIONS))
    for name in ("GROUPS", "STATIC_GROUPS", "DYNAMIC_GROUPS", "FEATURE_GROUPS"):
        value = getattr(features, name)
        monkeypatch.setattr(features, name, dict(value) if isinstance(value, dict) else value)


@pytest.mark.parametrize(("reward", "aggregation"), sorted(RECORDED))
def test_builtin_rewards_and_aggregations_give_the_recorded_rollouts(reward, aggregation, small_env_kwargs):
    recorded_rewards, recorded_obs_sum, recorded_loss = RECORDED[reward, aggregation]
    got, _, obs, info = rollout(small_env_kwargs, reward=reward, aggregation=aggregation)
    assert np.allclose(got, recorded_rewards, rtol=1e-5, atol=1e-6)
    assert np.isclose(float(obs.sum()), recorded_obs_sum, rtol=1e-5)
    assert np.isclose(info["loss"], recorded_loss, rtol=1e-5)


def test_builtin_names_are_registered():
    assert rewards.reward_names() == ["student_ce", "student_loss", "ce_gain", "dev_gain", "probe_alignment"]
    assert distill.aggregation_names() == ["weighted_ce", "kl_to_average"]


def test_a_new_reward_is_one_decorated_function(fresh_registries, small_env_kwargs):
    @rewards.register("minus_loss", needs=["loss_after"])
    def minus_loss(losses, log_c):
        return -losses.loss_after / log_c

    assert rollout(small_env_kwargs, reward="minus_loss")[0] == rollout(small_env_kwargs, reward="student_loss")[0]


def test_a_reward_gets_every_loss_it_declares(fresh_registries, small_env_kwargs):
    """A reward reading both the batch after the step and the probe set gets both from the env."""

    @rewards.register("batch_and_dev_gain", needs=["ce_after", "probe_ce"])
    def batch_and_dev_gain(losses, log_c):
        return rewards.ce_gain(losses, log_c) + rewards.dev_gain(losses, log_c)

    both = rollout(small_env_kwargs, reward="batch_and_dev_gain")[1]
    batch = rollout(small_env_kwargs, reward="ce_gain")[1]
    dev = rollout(small_env_kwargs, reward="dev_gain")[1]
    # Without the terminal step's bonus, which each rollout adds once.
    assert all(np.allclose(b, x + y, atol=1e-5) for b, x, y in zip(both[:-1], batch[:-1], dev[:-1]))


def test_registering_rejects_duplicates_and_unknown_losses(fresh_registries):
    with pytest.raises(ValueError, match="already registered"):
        rewards.register("ce_gain", needs=["ce_after"])(rewards.ce_gain)
    with pytest.raises(ValueError, match="unknown losses"):
        rewards.register("accuracy", needs=["accuracy_after"])
    with pytest.raises(ValueError, match="already registered"):
        distill.register_aggregation("weighted_ce")(distill.weighted_ce)


def test_a_new_aggregation_is_one_decorated_function(fresh_registries):
    @distill.register_aggregation("best_teacher_ce")
    def best_teacher_ce(student_log_probs, teacher_probs, weights):
        return distill.soft_cross_entropy(teacher_probs, student_log_probs.unsqueeze(1)).min(dim=1).values

    student, teachers = torch.randn(3, 4), torch.randn(3, 2, 4)
    weights, labels = torch.full((3, 2), 0.5), torch.tensor([0, 1, 2])
    out = kd_loss(student, labels, teachers, weights, KDConfig(aggregation="best_teacher_ce", temperature=1.0))
    per_teacher = distill.soft_cross_entropy(teachers.softmax(-1), student.log_softmax(-1).unsqueeze(1))
    assert torch.allclose(out.kd, per_teacher.min(dim=1).values)


def test_builtin_feature_groups_keep_their_order():
    assert features.feature_groups() == (
        "teacher_probs", "teacher_ce", "teacher_entropy", "teacher_correct", "teacher_id", "semantic",
        "student_probs", "student_ce", "kl_teacher_student", "progress",
    )


def test_a_new_feature_group_is_one_decorated_function(fresh_registries, small_env_kwargs):
    @features.register("teacher_max_prob")
    def teacher_max_prob(x):
        return x.teacher_probs.amax(dim=-1, keepdim=True)

    assert features.STATIC_GROUPS[-1] == "teacher_max_prob"
    assert features.feature_groups()[-1] == "progress"  # static groups stay before dynamic ones
    env = gym.make("kd_env/TeacherSelection-v1", **{**small_env_kwargs, "features": ["teacher_probs", "teacher_max_prob"]})
    obs, _ = env.reset(seed=0)
    b, k, f = env.unwrapped.obs_shape
    assert env.unwrapped.feature_names[-1] == "teacher_max_prob"
    pairs = obs.reshape(b, k, f)
    np.testing.assert_allclose(pairs[..., -1], pairs[..., :-1].max(axis=-1))
    with pytest.raises(ValueError, match="already registered"):
        features.register("semantic")(teacher_max_prob)
