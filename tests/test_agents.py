"""The agent interface: every agent saves/loads, the rules compute what they claim, the schedule holds."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import agents
from agents.sb3 import SB3Agent
from agents.heuristics import PrivilegedRule, ca_mkd_weights, ebkd_weights, mt_bert_weights
from agents.wrappers import ContinuingStudent

WEIGHT_AGENTS = {"ca_mkd", "ebkd", "mt_bert", "mtkd_rl"}
FAST_CONFIG = {"ppo": {"algo_kwargs": {"n_steps": 16, "batch_size": 16}}, "a2c": {"algo_kwargs": {"n_steps": 4}},
               "trpo": {"algo_kwargs": {"n_steps": 16, "batch_size": 16}}, "ppo_mlp": {"algo_kwargs": {"n_steps": 16, "batch_size": 16}},
               "a2c_mlp": {"algo_kwargs": {"n_steps": 4}}, "single_teacher": {"teacher": 2},
               "reinforce": {"advantage": "step", "update_every": 4}}


def env_for(name, kwargs):
    env_id = "kd_env/TeacherWeighting-v1" if name in WEIGHT_AGENTS else "kd_env/TeacherSelection-v1"
    return ContinuingStudent(gym.make(env_id, **kwargs))


@pytest.mark.parametrize("name", agents.agent_names())
def test_every_agent_saves_and_loads_to_identical_predictions(name, small_env_kwargs, tmp_path):
    env = env_for(name, small_env_kwargs)
    agent = agents.make(name, env, seed=1, **FAST_CONFIG.get(name, {}))
    agent.learn(32)
    obs, _ = env.reset(seed=5)
    agent.save(tmp_path / name)
    # Privileged references act on their env's current batch, so they are loaded onto the same env.
    loaded = agents.load(tmp_path / name, env if isinstance(agent, PrivilegedRule) else env_for(name, small_env_kwargs), name)
    # Our agents' stochastic predictions match too (their action RNG is saved); SB3 samples from
    # torch's global RNG, which is not part of a saved model.
    for deterministic in (True,) if isinstance(agent, SB3Agent) else (True, False):
        assert np.array_equal(agent.predict(obs, deterministic), loaded.predict(obs, deterministic))
    assert env.action_space.contains(np.asarray(agent.predict(obs)).astype(env.action_space.dtype))


def test_unknown_agent_and_wrong_env_are_refused(small_env_kwargs):
    env = env_for("avg_kd", small_env_kwargs)
    with pytest.raises(ValueError, match="unknown agent"):
        agents.make("nope", env)
    with pytest.raises(ValueError, match="TeacherWeighting"):
        agents.make("ca_mkd", env)
    with pytest.raises(ValueError, match="action_mode"):
        agents.make("reinforce", env_for("mtkd_rl", small_env_kwargs))


def test_weighting_formulas():
    ce = np.array([[0.1, 1.0, 2.0, 3.0]])
    ca = ca_mkd_weights(ce)
    softmax = np.exp(ce) / np.exp(ce).sum()
    assert np.allclose(ca, (1 - softmax) / 3) and np.allclose(ca.sum(), 1.0)
    entropy = np.array([[0.2, 0.2, 0.6, 1.0]])
    assert np.allclose(ebkd_weights(entropy), 1 - entropy / 2.0)
    assert np.allclose(mt_bert_weights(ce), 1 / (1 + ce))


def test_rule_agents_recover_losses_from_the_observation(small_env_kwargs):
    env = env_for("mt_bert", small_env_kwargs)
    obs, _ = env.reset(seed=0)
    unwrapped = env.unwrapped
    grid = obs.reshape(unwrapped.obs_shape)
    squashed = grid[..., unwrapped.feature_names.index("teacher_ce")]
    action = agents.make("mt_bert", env).predict(obs)
    # 1 / (1 + l) == 1 - squash(l): the rule must agree with the squashed feature exactly.
    assert np.allclose(action, (1 - squashed).reshape(-1), atol=1e-5)


def test_selection_rules(small_env_kwargs):
    env = env_for("avg_kd", small_env_kwargs)
    obs, _ = env.reset(seed=0)
    b, k, _ = env.unwrapped.obs_shape
    assert agents.make("no_kd", env).predict(obs).sum() == 0
    assert agents.make("avg_kd", env).predict(obs).sum() == b * k
    dev = env.unwrapped.data.splits["dev"]
    accuracy = (dev.teacher_logits.argmax(-1) == dev.labels[:, None]).float().mean(0)
    best = agents.make("best_teacher", env).predict(obs).reshape(b, k)
    assert np.array_equal(best, np.eye(k, dtype=np.int8)[[int(accuracy.argmax())] * b])
    named = agents.make("single_teacher", env, teacher=env.unwrapped.teacher_names[1]).predict(obs).reshape(b, k)
    assert named[:, 1].all() and named.sum() == b
    rate = agents.make("random", env, probability=0.25).predict(obs).mean()
    assert 0.1 < rate < 0.4


def student_parameters(env):
    return [p.detach().clone() for p in env.unwrapped.student.parameters()]


def test_three_stage_schedule_freezes_the_student_in_stage_two(small_env_kwargs):
    env = env_for("reinforce", small_env_kwargs)
    config = {"pretrain_student_steps": 20, "pretrain_selector_steps": 40, "advantage": "step", "update_every": 4}
    agent = agents.make("reinforce", env, **config)
    snapshots, selections = {}, []

    def watch(info):
        step = agent.steps_taken
        selections.append(float(np.mean(info["selection_rate"])))
        if step in (20, 60, 61):
            snapshots[step] = student_parameters(env)

    initial = [p.detach().clone() for p in agent.policy.parameters()]
    agent.learn(70, callback=watch)
    assert all(rate == 1.0 for rate in selections[:20])  # stage 1 is Avg-KD
    assert any(rate < 1.0 for rate in selections[20:60])
    assert all(torch.equal(a, b) for a, b in zip(snapshots[20], snapshots[60]))  # stage 2 left the student
    assert not all(torch.equal(a, b) for a, b in zip(snapshots[60], snapshots[61]))  # stage 3 trains it
    assert not all(torch.equal(a, b) for a, b in zip(initial, agent.policy.parameters()))


def test_shared_sb3_policy_size_does_not_depend_on_batch_size(small_env_kwargs):
    def count(name, batch_size):
        env = env_for(name, dict(small_env_kwargs, batch_size=batch_size))
        return sum(p.numel() for p in agents.make(name, env).model.policy.parameters())

    assert count("ppo", 8) == count("ppo", 64)
    assert count("a2c", 8) == count("a2c", 64)
    assert count("ppo_mlp", 8) < count("ppo_mlp", 64)


def test_instances_without_a_reward_get_no_advantage_and_stay_out_of_the_baseline():
    from agents.reinforce import leave_one_out_advantage

    rewards = np.array([1.0, 0.0, 3.0, 0.0, 2.0], dtype=np.float32)
    rewarded = np.array([True, False, True, False, True])
    np.testing.assert_allclose(leave_one_out_advantage(rewards, rewarded), [1.0 - 2.5, 0.0, 3.0 - 1.5, 0.0, 2.0 - 2.0])
    np.testing.assert_allclose(leave_one_out_advantage(rewards), rewards - (rewards.sum() - rewards) / 4)
    assert not leave_one_out_advantage(rewards, np.array([False, False, True, False, False])).any()  # nobody to compare with
