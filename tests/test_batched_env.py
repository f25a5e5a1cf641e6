"""The batched vector env (``vector_entry_point``): sub-env i steps exactly like a single env seeded
``seed + i``, for every reward and both action modes, across episode ends and ``keep_student`` resets.

Batched matmuls sum in another order than single ones, so values agree to float rounding, amplified
a little by training: ``RTOL``/``ATOL`` below are the documented tolerance.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3 import A2C, PPO

import agents
import kd_env
from agents.instance_vec import InstanceVecEnv
from agents.sb3 import SharedPairPolicy
from agents.sb3_vec import BatchedVecEnv
from kd_env import student_stacks
from kd_env.batched_env import BatchedTeacherSelectionEnv
from kd_env.rewards import reward_names
from kd_env.students import HeadStudent

ENV_IDS = sorted(kd_env.ENV_IDS)
NUM_ENVS, SEED, EPISODE_STEPS = 3, 11, 3
RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture
def kwargs(small_env_kwargs):
    return {**small_env_kwargs, "episode_steps": EPISODE_STEPS}


def make_batched(env_id, num_envs=NUM_ENVS, **kwargs):
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)


def sampled_actions(env, steps, num_envs=NUM_ENVS):
    env.single_action_space.seed(5)
    return [np.stack([env.single_action_space.sample() for _ in range(num_envs)]) for _ in range(steps)]


def as_array(value) -> np.ndarray:
    """Numbers, arrays or tensors (on any device) as a float64 array."""
    return np.asarray(value.detach().cpu() if torch.is_tensor(value) else value, dtype=np.float64)


def assert_close(expected, got, where):
    np.testing.assert_allclose(as_array(got), as_array(expected), rtol=RTOL, atol=ATOL, err_msg=where)


def assert_info_matches(single_info, batched_info, i, where):
    assert set(single_info) == {k for k in batched_info if not k.startswith("_") and batched_info[f"_{k}"][i]}, where
    for key, value in single_info.items():
        assert_close(value, batched_info[key][i], f"{where}: info[{key!r}]")


def compare_rollouts(env_id, kwargs, steps, keep_on_autoreset=False, batched_kwargs=None):
    """Step a batched env and NUM_ENVS single envs with the same actions; compare everything."""
    batched = make_batched(env_id, autoreset_keep_student=keep_on_autoreset, **(batched_kwargs or {}), **kwargs)
    singles = [gym.make(env_id, **kwargs) for _ in range(NUM_ENVS)]
    obs, info = batched.reset(seed=SEED)
    for i, env in enumerate(singles):
        single_obs, single_info = env.reset(seed=SEED + i)
        assert_close(single_obs, obs[i], f"reset, env {i}")
        assert_info_matches(single_info, info, i, f"reset, env {i}")
    needs_reset, ends = False, 0
    for t, actions in enumerate(sampled_actions(batched, steps), start=1):
        obs, rewards, terminated, truncated, info = batched.step(actions)
        for i, env in enumerate(singles):
            where = f"step {t}, env {i}"
            if needs_reset:  # NEXT_STEP autoreset
                single_obs, single_info = env.reset(options={"keep_student": True} if keep_on_autoreset else None)
                single_reward, single_terminated = 0.0, False
            else:
                single_obs, single_reward, single_terminated, _, single_info = env.step(actions[i])
            assert_close(single_obs, obs[i], where)
            assert_close(single_reward, rewards[i], f"{where}: reward")
            assert terminated[i] == single_terminated and not truncated[i], where
            assert_info_matches(single_info, info, i, where)
        ends += int(terminated.all())
        needs_reset = bool(terminated.all())
    return batched, singles, ends


@pytest.mark.parametrize("reward", reward_names())
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sub_envs_match_single_envs(env_id, reward, kwargs):
    _, _, ends = compare_rollouts(env_id, {**kwargs, "reward": reward, "terminal_bonus": 0.5}, steps=2 * EPISODE_STEPS + 2)
    assert ends == 2  # two episode ends, with dev metrics, the terminal bonus and an autoreset between


@pytest.mark.parametrize("features", [["teacher_probs", "semantic"], ["student_ce", "progress"], ["teacher_id", "kl_teacher_student"]])
def test_feature_subsets_match_single_envs(features, kwargs):
    """Observations with only static, only dynamic, or mixed feature groups."""
    compare_rollouts("kd_env/TeacherSelection-v1", {**kwargs, "features": features}, steps=EPISODE_STEPS + 1)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_keep_student_resets_match_single_envs(env_id, kwargs):
    batched, singles, _ = compare_rollouts(env_id, kwargs, steps=EPISODE_STEPS + 2, keep_on_autoreset=True)
    actions = sampled_actions(batched, EPISODE_STEPS)
    obs, info = batched.reset(options={"keep_student": True})
    for i, env in enumerate(singles):
        # The single envs are one autoreset step behind; bring them to the same point.
        single_obs, _ = env.reset(options={"keep_student": True})
        assert_close(single_obs, obs[i], f"keep_student reset, env {i}")
    for t, action in enumerate(actions):
        obs, rewards, _, _, info = batched.step(action)
        for i, env in enumerate(singles):
            single_obs, single_reward, _, _, single_info = env.step(action[i])
            assert_close(single_obs, obs[i], f"after keep_student, step {t}, env {i}")
            assert_info_matches(single_info, info, i, f"after keep_student, step {t}, env {i}")
    for i, env in enumerate(singles):
        for got, expected in zip(batched.unwrapped.student(i).parameters(), env.unwrapped.student.parameters()):
            assert_close(expected.detach(), got.detach(), f"student {i}")


@pytest.mark.parametrize("cheap_forward", [True, False])
def test_loop_stack_matches_single_envs(cheap_forward, kwargs, monkeypatch):
    """The fallback path (a loop over ordinary students), exercised with head students; without
    ``cheap_forward`` (as for transformers) the reward's and the next batch's forwards are separate."""
    monkeypatch.setattr(student_stacks, "STACKS", {})
    monkeypatch.setattr(HeadStudent, "cheap_forward", cheap_forward)
    batched, _, ends = compare_rollouts("kd_env/TeacherSelection-v1", kwargs, steps=EPISODE_STEPS + 2)
    assert isinstance(batched.unwrapped.core.students, student_stacks.LoopStack) and ends == 1


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_make_vec_builds_the_batched_env(env_id, kwargs):
    env = gym.make_vec(env_id, num_envs=2, **kwargs)  # the vector entry point is the default mode
    assert isinstance(env.unwrapped, BatchedTeacherSelectionEnv)
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    single = gym.make(env_id, **kwargs)
    assert env.single_observation_space == single.observation_space
    assert env.single_action_space == single.action_space
    assert env.observation_space.shape == (2, *single.observation_space.shape)
    assert env.action_space.shape == (2, *single.action_space.shape)
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape and obs.dtype == np.float32
    obs, rewards, terminated, truncated, _ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and rewards.shape == terminated.shape == truncated.shape == (2,)
    assert env.spec.kwargs["num_envs"] == 2


def test_sub_envs_have_their_own_students_and_share_teacher_outputs(kwargs):
    env = make_batched("kd_env/TeacherSelection-v1", **kwargs).unwrapped
    env.reset(seed=0)
    first, second = (list(env.student(i).parameters()) for i in (0, 1))
    assert not all(torch.equal(a, b) for a, b in zip(first, second))
    train, core = env.data.splits["train"], env.core
    if core.device.type == "cpu":  # on a GPU: the one copy made there
        assert core._teacher_logits.data_ptr() == train.teacher_logits.data_ptr()  # one copy, not N
    assert core._soft_targets.shape == train.teacher_logits.shape  # the targets once, for all sub-envs


@pytest.mark.parametrize("num_envs", [0, -1, 1.5, True, "2"])
def test_bad_num_envs(num_envs, kwargs):
    with pytest.raises(ValueError, match="num_envs"):
        BatchedTeacherSelectionEnv(num_envs=num_envs, **kwargs)


def test_bad_actions(kwargs):
    env = make_batched("kd_env/TeacherSelection-v1", **kwargs)
    env.reset(seed=0)
    good = env.action_space.sample()
    for bad in (good[:-1], good[0], good.reshape(-1), np.zeros((NUM_ENVS, good.shape[1] + 1))):
        with pytest.raises(ValueError, match="num_envs, B\\*K"):
            env.step(bad)
    with pytest.raises(ValueError, match="only 0 and 1"):
        env.step(np.full(good.shape, 2))
    obs, *_ = env.step(good)  # the failed calls changed nothing
    assert obs.shape == env.observation_space.shape


def test_partial_resets_are_refused(kwargs):
    env = make_batched("kd_env/TeacherSelection-v1", **kwargs)
    with pytest.raises(ValueError, match="lockstep"):
        env.reset(seed=0, options={"reset_mask": np.array([True, False, True])})


def test_sb3_adapter_steps_like_the_vector_env(kwargs):
    env_id = "kd_env/TeacherSelection-v1"
    reference = make_batched(env_id, **kwargs)
    venv = BatchedVecEnv(make_batched(env_id, **kwargs))
    venv.seed(SEED)
    expected, _ = reference.reset(seed=SEED)
    np.testing.assert_array_equal(venv.reset(), expected)
    dones_seen = 0
    for actions in sampled_actions(reference, 2 * EPISODE_STEPS):
        expected, rewards, terminated, _, _ = reference.step(actions)
        obs, got_rewards, dones, infos = venv.step(actions)
        np.testing.assert_allclose(got_rewards, rewards, rtol=1e-6)
        assert (dones == terminated).all() and len(infos) == NUM_ENVS
        if terminated.all():  # SB3 resets at once; the vector env resets on its next step
            np.testing.assert_array_equal(np.stack([info["terminal_observation"] for info in infos]), expected)
            expected, *_ = reference.step(actions)
            dones_seen += 1
        np.testing.assert_array_equal(obs, expected)
    assert dones_seen == 2 and "instance_rewards" in infos[0]


@pytest.mark.parametrize("algo", [PPO, A2C])
def test_sb3_trains_on_the_batched_env(algo, kwargs):
    env = make_batched("kd_env/TeacherSelection-v1", autoreset_keep_student=True, **kwargs)
    venv = BatchedVecEnv(env)
    policy_kwargs = {"obs_shape": env.unwrapped.obs_shape, "pair_hidden_sizes": (8,)}
    algo_kwargs = {"n_steps": 4, "batch_size": 6, "n_epochs": 1} if algo is PPO else {"n_steps": 4}
    model = algo(SharedPairPolicy, venv, seed=0, policy_kwargs=policy_kwargs, device="cpu", **algo_kwargs)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=NUM_ENVS * 8)
    assert model.num_timesteps == NUM_ENVS * 8
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters()))


def reinforce_policy_after(env, steps, **config):
    agent = agents.make("reinforce", env, **config)
    infos = []
    agent.learn(steps, callback=infos.append)
    return agent, infos


@pytest.mark.parametrize("advantage", ["episode", "instance"])
def test_reinforce_on_one_batched_sub_env_learns_as_on_a_single_env(advantage, kwargs):
    steps = 2 * EPISODE_STEPS + 1
    single, _ = reinforce_policy_after(gym.make("kd_env/TeacherSelection-v1", **kwargs), steps, advantage=advantage)
    batched, _ = reinforce_policy_after(make_batched("kd_env/TeacherSelection-v1", num_envs=1, **kwargs), steps, advantage=advantage)
    for expected, got in zip(single.policy.parameters(), batched.policy.parameters()):
        assert_close(expected.detach(), got.detach(), "policy")


def test_reinforce_acts_on_every_sub_env(kwargs):
    env = make_batched("kd_env/TeacherSelection-v1", **kwargs)
    agent, infos = reinforce_policy_after(env, NUM_ENVS * EPISODE_STEPS, advantage="instance", update_every=1)
    assert agent.steps_taken == NUM_ENVS * EPISODE_STEPS and len(infos) == NUM_ENVS * EPISODE_STEPS
    assert infos[-1]["episode_step"] == EPISODE_STEPS and "dev_accuracy" in infos[-1]
    obs, _ = env.reset(seed=0)
    assert agent.predict(obs).shape == env.action_space.shape
    with pytest.raises(ValueError, match="single env"):
        agents.make("reinforce", env, pretrain_selector_steps=2)


def test_instance_vec_env_composes_with_the_adapter(kwargs):
    """Per-instance PPO (each instance of each sub-env one SB3 sub-env) on the batched env."""
    env = make_batched("kd_env/TeacherSelection-v1", autoreset_keep_student=True, **kwargs)
    vec = InstanceVecEnv(BatchedVecEnv(env))
    b = env.unwrapped.batch_size
    assert vec.num_envs == NUM_ENVS * b
    vec.seed(SEED)
    obs = vec.reset()
    expected, _ = make_batched("kd_env/TeacherSelection-v1", **kwargs).reset(seed=SEED)
    np.testing.assert_array_equal(obs, expected.reshape(NUM_ENVS * b, -1))
    model = PPO("MlpPolicy", vec, n_steps=2, batch_size=vec.num_envs, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=vec.num_envs * 4)
    assert model.num_timesteps == vec.num_envs * 4


@pytest.mark.parametrize("fallback", [False, True], ids=["stacked", "loop"])
def test_sub_env_student_state_is_a_single_env_state(fallback, kwargs, monkeypatch):
    """A sub-env's ``student_state(i)`` matches the single env's after the same steps, loads into a
    single env, and loads back into the batched env (for the per-env loop too)."""
    if fallback:
        monkeypatch.setattr(student_stacks, "STACKS", {})
    batched, singles, _ = compare_rollouts(ENV_IDS[0], kwargs, steps=2)
    batched = batched.unwrapped
    for i, single in enumerate(singles):
        state, expected = batched.student_state(i), single.unwrapped.student_state()
        for name, value in expected["student"].items():
            assert_close(value, state["student"][name], f"env {i}: {name}")
        assert state["optimizer"]["param_groups"] == expected["optimizer"]["param_groups"]
        for j, moments in expected["optimizer"]["state"].items():
            for key, value in moments.items():
                assert_close(value, state["optimizer"]["state"][j][key], f"env {i}: optimizer {j} {key}")
        single.unwrapped.load_student_state(state)  # the single env's format
    # Sub-env 2 takes sub-env 0's student; the single env 2 does the same: they still step alike.
    state = batched.student_state(0)
    batched.load_student_state(2, state)
    singles[2].unwrapped.load_student_state(state)
    actions = sampled_actions(batched, 1)[0]
    obs, rewards, *_ = batched.step(actions)
    single_obs, single_reward, *_ = singles[2].step(actions[2])
    assert_close(single_obs, obs[2], "sub-env 2 after loading sub-env 0's state")
    assert_close(single_reward, rewards[2], "reward after loading")
    with pytest.raises(ValueError, match="env index"):
        batched.student_state(NUM_ENVS)


def test_stacked_students_must_stay_in_step(kwargs):
    batched = make_batched(ENV_IDS[0], **kwargs).unwrapped
    batched.reset(seed=SEED)
    actions = sampled_actions(batched, 2)
    batched.step(actions[0])
    earlier = batched.student_state(1)
    batched.step(actions[1])
    batched.load_student_state(1, earlier)  # one step behind the others
    with pytest.raises(RuntimeError, match="different numbers of optimizer steps"):
        batched.step(actions[0])
