"""InstanceVecEnv: each instance of a batch is one SB3 sub-env, rewarded with its own instance reward.

Two batch envs (n = 2) are stepped through the wrapper and, beside it, two plain envs seeded the same
way with the same joined actions: every sub-env's observation, reward, done and terminal observation
must be its instance's row of the plain env's. Short episodes make the rollout cross an episode end.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv
from test_agents_training import scalar_steps

import agents
from agents.instance_vec import InstanceVecEnv
from agents.training import TrainConfig, train
from agents.wrappers import ContinuingStudent

SEED, STEPS, EPISODE_STEPS, NUM_ENVS = 3, 5, 3, 2


class CountingCalls(gym.Wrapper):
    """Counts ``ping`` calls, to see how often ``env_method`` reaches each env."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.pings = 0

    def ping(self) -> int:
        self.pings += 1
        return self.pings


def make_envs(kwargs, env_id="kd_env/TeacherSelection-v1"):
    return [CountingCalls(gym.make(env_id, **kwargs, episode_steps=EPISODE_STEPS)) for _ in range(NUM_ENVS)]


def test_sub_envs_are_the_instances_of_their_batch(small_env_kwargs):
    vec = InstanceVecEnv(DummyVecEnv([lambda env=env: env for env in make_envs(small_env_kwargs)]))
    plain = [gym.make("kd_env/TeacherSelection-v1", **small_env_kwargs, episode_steps=EPISODE_STEPS) for _ in range(NUM_ENVS)]
    b, k, f = plain[0].unwrapped.obs_shape
    assert vec.num_envs == NUM_ENVS * b and vec.batch_size == b
    assert vec.observation_space.shape == (k * f,) and vec.action_space == spaces.MultiBinary(k)

    vec.seed(SEED)
    obs = vec.reset()
    expected = np.stack([env.reset(seed=SEED + i)[0] for i, env in enumerate(plain)])
    np.testing.assert_array_equal(obs, expected.reshape(NUM_ENVS * b, k * f))
    vec.action_space.seed(0)
    for step in range(1, STEPS + 1):
        actions = np.stack([vec.action_space.sample() for _ in range(vec.num_envs)])
        obs, rewards, dones, infos = vec.step(actions)
        assert rewards.shape == dones.shape == (NUM_ENVS * b,) and len(infos) == NUM_ENVS * b
        for i, env in enumerate(plain):
            rows = slice(i * b, (i + 1) * b)
            env_obs, reward, terminated, _, info = env.step(actions[rows].reshape(-1))
            np.testing.assert_allclose(rewards[rows], info["instance_rewards"], rtol=1e-6)
            assert np.isclose(rewards[rows].mean(), reward, atol=1e-6)  # the batch reward is their mean
            assert vec.env_infos[i]["ce"] == info["ce"]
            assert (dones[rows] == terminated).all() and terminated == (step % EPISODE_STEPS == 0)
            if terminated:
                terminal = np.stack([sub["terminal_observation"] for sub in infos[rows]])
                np.testing.assert_array_equal(terminal, env_obs.reshape(b, k * f))
                env_obs, _ = env.reset()
            else:
                assert "terminal_observation" not in infos[i * b]
            np.testing.assert_array_equal(obs[rows], env_obs.reshape(b, k * f))


def test_env_calls_reach_each_env_once_and_answer_per_sub_env(small_env_kwargs):
    envs = make_envs(small_env_kwargs)
    vec = InstanceVecEnv(DummyVecEnv([lambda env=env: env for env in envs]))
    b = vec.batch_size
    assert vec.get_attr("batch_size") == [b] * vec.num_envs
    assert vec.env_method("ping", indices=[0, 1, b]) == [1, 1, 1]
    assert vec.env_method("ping") == [2] * b + [2] * b
    assert [env.pings for env in envs] == [2, 2]
    vec.set_attr("pings", 10, indices=[b + 1])
    assert [env.pings for env in envs] == [2, 10]
    assert vec.env_is_wrapped(CountingCalls) == [True] * vec.num_envs
    assert len(vec.seed(SEED)) == vec.num_envs


def test_weighting_env_gives_box_actions_per_instance(small_env_kwargs):
    vec = InstanceVecEnv(DummyVecEnv([lambda env=env: env for env in make_envs(small_env_kwargs, "kd_env/TeacherWeighting-v1")]))
    k = vec.get_attr("num_teachers", [0])[0]
    assert vec.action_space == spaces.Box(0.0, 1.0, (k,), np.float32)
    vec.reset()
    _, rewards, _, _ = vec.step(np.full((vec.num_envs, k), 0.5, np.float32))
    assert rewards.shape == (vec.num_envs,)


@pytest.mark.integration
@pytest.mark.parametrize("name", ["ppo_instance", "a2c_instance"])
def test_instance_agents_train_on_env_steps_and_act_on_whole_batches(name, small_env_kwargs):
    env = ContinuingStudent(gym.make("kd_env/TeacherSelection-v1", **small_env_kwargs))
    agent = agents.make(name, env, seed=0)
    b, k, _ = env.unwrapped.obs_shape
    assert agent.model.n_envs == b
    before = [p.detach().clone() for p in agent.model.policy.parameters()]
    infos = []
    agent.learn(160, callback=infos.append)  # whole rollouts of 32 (PPO) and 5 (A2C)
    assert len(infos) == 160 and all("instance_rewards" in info for info in infos)  # one call per env step
    assert agent.model.num_timesteps == 160 * b
    assert any(not np.array_equal(a, p.detach()) for a, p in zip(before, agent.model.policy.parameters()))
    obs, _ = env.reset(seed=1)
    action = agent.predict(obs)
    assert action.shape == (b * k,) and env.action_space.contains(action.astype(np.int8))


@pytest.mark.integration
def test_instance_agent_logs_sb3_tags_at_env_steps(small_env_kwargs, tmp_path):
    result = train(TrainConfig(agent="ppo_instance", total_steps=32, env_kwargs=small_env_kwargs, logdir=str(tmp_path),
                               progress_bar=False, agent_kwargs={"algo_kwargs": {"n_steps": 16, "batch_size": 64}}))
    assert result.env_steps == 32
    assert scalar_steps(result.run_dir, "train/policy_gradient_loss") == [32]
    assert scalar_steps(result.run_dir, "rollout/ep_rew_mean") == [16, 32]


@pytest.mark.integration
def test_instance_ppo_weights_teachers_with_an_mlp_policy(small_env_kwargs):
    env = ContinuingStudent(gym.make("kd_env/TeacherWeighting-v1", **small_env_kwargs))
    agent = agents.make("ppo_instance", env, policy="mlp", algo_kwargs={"n_steps": 4, "batch_size": 64})
    agent.learn(8)
    obs, _ = env.reset(seed=1)
    assert env.action_space.contains(agent.predict(obs).astype(np.float32))


@pytest.mark.integration
def test_instance_agent_runs_are_reproducible_from_the_seed(small_env_kwargs):
    def trained_policy(seed):
        env = ContinuingStudent(gym.make("kd_env/TeacherSelection-v1", **small_env_kwargs))
        agent = agents.make("ppo_instance", env, seed=seed, algo_kwargs={"n_steps": 8, "batch_size": 64})
        agent.learn(24)  # crosses an episode end (16 steps)
        return [p.detach().clone() for p in agent.model.policy.parameters()]

    first, second, other = trained_policy(4), trained_policy(4), trained_policy(5)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
