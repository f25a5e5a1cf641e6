import copy
import doctest
import json
import multiprocessing
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import kd_env
from kd_env.tasks.data import DistillationData

ENV_IDS = sorted(kd_env.ENV_IDS)
# SB3 recommends [-1, 1] Box actions; the weighting env's [0, 1] weights are deliberate.
ACCEPTED_SB3_WARNINGS = {"kd_env/TeacherWeighting-v1": ["symmetric and normalized Box action space"]}


def make(env_id, **kwargs):
    return gym.make(env_id, **kwargs)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_env_checker(env_id, small_env_kwargs):
    env = make(env_id, **small_env_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env.unwrapped)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_env_checker(env_id, small_env_kwargs):
    env = make(env_id, **small_env_kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env.unwrapped)
    unexpected = [
        str(w.message) for w in caught
        if not any(accepted in str(w.message) for accepted in ACCEPTED_SB3_WARNINGS.get(env_id, []))
    ]
    assert unexpected == []


@pytest.mark.integration
@pytest.mark.parametrize("algo", [PPO, A2C])
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_algorithms_run_unchanged(algo, env_id, small_env_kwargs):
    env = make(env_id, **small_env_kwargs)
    model = algo("MlpPolicy", env, n_steps=64, seed=0, device="cpu")
    model.learn(total_timesteps=256)
    action, _ = model.predict(env.reset(seed=0)[0])
    assert env.action_space.contains(action.astype(env.action_space.dtype))


def rollout(env_id, kwargs, seed, steps):
    """Observations, rewards and infos (flattened to one list of arrays) of a seeded rollout."""
    env = make(env_id, **kwargs)
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    trace = [obs, *info_arrays(info)]
    for _ in range(steps):
        obs, reward, terminated, _, info = env.step(env.action_space.sample())
        trace += [obs, np.array([reward]), *info_arrays(info)]
        if terminated:
            obs, info = env.reset()
            trace += [obs, *info_arrays(info)]
    return trace


def info_arrays(info):
    """An info dict as arrays: its keys (so a missing or extra key shows) and each value."""
    return [np.array(sorted(info)), *(np.asarray(info[key]) for key in sorted(info))]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_rollout(env_id, small_env_kwargs):
    first = rollout(env_id, small_env_kwargs, seed=3, steps=40)
    second = rollout(env_id, small_env_kwargs, seed=3, steps=40)
    other = rollout(env_id, small_env_kwargs, seed=4, steps=40)
    assert len(first) == len(second)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_env_docstring_examples_run():
    """The env docstring's ``Examples`` block is a doctest, so it cannot drift from the env."""
    (test,) = doctest.DocTestFinder(recurse=False).find(kd_env.TeacherSelectionEnv, globs={})
    result = doctest.DocTestRunner().run(test)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_spec_json_round_trip(env_id, small_env_kwargs):
    env = make(env_id, **small_env_kwargs, features=["teacher_probs", "student_ce"])
    text = env.spec.to_json()
    spec = gym.envs.registration.EnvSpec.from_json(text)
    assert spec == env.spec
    remade = gym.make(spec)
    assert remade.observation_space == env.observation_space
    assert json.loads(text)["kwargs"]["features"] == ["teacher_probs", "student_ce"]


def _make_in_fresh_process(queue):
    import gymnasium

    env = gymnasium.make("kd_env:kd_env/TeacherSelection-v1", task="synthetic", task_options={"num_train": 64, "num_dev": 16, "num_test": 16})
    obs, _ = env.reset(seed=0)
    queue.put(obs.shape)


@pytest.mark.integration
def test_make_with_module_prefix_in_spawned_process():
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_make_in_fresh_process, args=(queue,))
    process.start()
    process.join(timeout=120)
    assert process.exitcode == 0
    assert len(queue.get(timeout=5)) == 1


def test_pickle_round_trip_continues_identically(small_env_kwargs):
    env = make("kd_env/TeacherSelection-v1", **small_env_kwargs).unwrapped
    env.reset(seed=0)
    env.step(np.ones(env.action_space.shape, dtype=np.int8))
    clone = pickle.loads(pickle.dumps(env))
    action = np.zeros(env.action_space.shape, dtype=np.int8)
    action[::3] = 1
    a, b = env.step(action), clone.step(action)
    if env.core.device.type == "cpu":
        assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    else:  # the clone redoes the pending forward on B rows, not 2B: a GPU may round it otherwise
        np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-6)
        assert a[1] == pytest.approx(b[1], rel=1e-5)


def test_observation_layout_and_info(small_env_kwargs):
    env = make("kd_env/TeacherSelection-v1", **small_env_kwargs).unwrapped
    obs, info = env.reset(seed=0)
    b, k, f = env.obs_shape
    assert obs.shape == (b * k * f,) and len(env.feature_names) == f
    assert info["oracle"].shape == (b * k,)
    features = obs.reshape(b, k, f)
    teacher_id = [env.feature_names.index(f"teacher_id[{t}]") for t in env.teacher_names]
    assert np.array_equal(features[0][:, teacher_id], np.eye(k))
    # Selecting exactly the oracle's experts agrees with it everywhere.
    _, reward, terminated, _, step_info = env.step(info["oracle"])
    assert step_info["selection_agreement"] == 1.0 and step_info["expert_weight"] == pytest.approx(1.0)
    assert reward == pytest.approx(float(step_info["instance_rewards"].mean()), rel=1e-5)
    assert step_info["selection_rate"].shape == (k,)
    for key in ("ce", "kd", "loss", "batch_accuracy", "episode_step"):
        assert key in step_info
    assert not terminated


def test_episode_end_reports_dev_metrics_and_terminal_bonus(small_env_kwargs):
    """The bonus is terminal_bonus * dev accuracy on the last step's rewards, and nothing else changes."""

    def episode(terminal_bonus):
        env = make("kd_env/TeacherSelection-v1", **small_env_kwargs, episode_steps=3, terminal_bonus=terminal_bonus).unwrapped
        env.reset(seed=0)
        ones = np.ones(env.action_space.shape, dtype=np.int8)
        steps = [env.step(ones) for _ in range(3)]
        with pytest.raises(RuntimeError, match="reset"):
            env.step(ones)
        return steps

    with_bonus, without = episode(2.0), episode(0.0)
    assert [s[2:4] for s in with_bonus] == [(False, False), (False, False), (True, False)]
    for (_, reward, _, _, info), (_, reward_0, _, _, info_0) in zip(with_bonus[:2], without[:2]):
        assert reward == reward_0 and np.array_equal(info["instance_rewards"], info_0["instance_rewards"])
    (_, reward, _, _, info), (_, reward_0, _, _, info_0) = with_bonus[2], without[2]
    assert {"dev_accuracy", "dev_macro_f1", "dev_ce"} <= set(info) and info["dev_accuracy"] == info_0["dev_accuracy"]
    bonus = 2.0 * info["dev_accuracy"]
    np.testing.assert_allclose(info["instance_rewards"], info_0["instance_rewards"] + bonus, rtol=1e-6)
    assert reward == pytest.approx(reward_0 + bonus, abs=1e-6)
    assert reward == pytest.approx(float(np.mean(info["instance_rewards"])), rel=1e-5)


def test_keep_student_continues_training(small_env_kwargs):
    env = make("kd_env/TeacherSelection-v1", **small_env_kwargs).unwrapped
    env.reset(seed=0)
    initial = env.student.state_dict()
    ones = np.ones(env.action_space.shape, dtype=np.int8)
    terminated = False
    while not terminated:
        _, _, terminated, _, _ = env.step(ones)
    trained, trained_weights = env.evaluate("dev"), env.student.state_dict()
    env.reset(options={"keep_student": True})
    assert env.evaluate("dev") == trained
    assert all(torch.equal(trained_weights[name], value) for name, value in env.student.state_dict().items())
    env.reset(seed=0)
    assert all(torch.equal(initial[name], value) for name, value in env.student.state_dict().items())


def test_loaded_student_state_continues_identically(small_env_kwargs):
    """``load_student_state(student_state())`` restores the student and its optimizer exactly, and the
    caller's copy survives the steps that follow."""
    env = make("kd_env/TeacherSelection-v1", **small_env_kwargs).unwrapped
    env.reset(seed=0)
    ones = np.ones(env.action_space.shape, dtype=np.int8)
    env.step(ones)
    saved = copy.deepcopy(env.student_state())

    def two_steps():
        env.load_student_state(saved)
        env.reset(seed=1, options={"keep_student": True})
        return [env.step(ones)[1] for _ in range(2)], env.evaluate("dev")

    assert two_steps() == two_steps()


def test_student_learns_something(small_env_kwargs):
    env = make("kd_env/TeacherSelection-v1", **small_env_kwargs).unwrapped
    env.reset(seed=0)
    before = env.evaluate("test")["accuracy"]
    zeros = np.zeros(env.action_space.shape, dtype=np.int8)
    for _ in range(5):
        terminated = False
        while not terminated:
            _, _, terminated, _, _ = env.step(zeros)
        env.reset(options={"keep_student": True})
    after = env.evaluate("test")
    assert after["accuracy"] > before + 0.2
    assert 0.0 < after["macro_f1"] <= 1.0


# ---------------------------------------------------------------------------------- bad input
def state_fingerprint(env):
    return [p.detach().clone() for p in env.student.parameters()], env.core.step_count, env.batch_indices.copy()


@pytest.mark.parametrize(
    "action, message",
    [
        (np.ones(7, dtype=np.int8), "shape"),
        (np.full(64, 2, dtype=np.int8), "only 0 and 1"),
        (np.full(64, np.nan), "0 and 1"),
        (np.array(["1"] * 64), "numeric"),
        (np.ones((16, 4), dtype=np.int8), "shape"),
    ],
)
def test_bad_selection_actions_raise_and_change_nothing(action, message, small_env_kwargs):
    env = make("kd_env/TeacherSelection-v1", **small_env_kwargs).unwrapped
    env.reset(seed=0)
    before = state_fingerprint(env)
    with pytest.raises(ValueError, match=message):
        env.step(action)
    after = state_fingerprint(env)
    assert all(torch.equal(a, b) for a, b in zip(before[0], after[0])) and before[1:2] == after[1:2]
    assert np.array_equal(before[2], after[2])
    env.step(np.ones(64, dtype=np.int8))  # still usable


@pytest.mark.parametrize("action, message", [(np.full(64, np.nan, np.float32), "NaN"), (np.full(64, 1.5, np.float32), r"\[0, 1\]")])
def test_bad_weight_actions_raise(action, message, small_env_kwargs):
    env = make("kd_env/TeacherWeighting-v1", **small_env_kwargs).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(action)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"task": "imagenet"}, "synthetic"),
        ({"teachers": ["bert-huge"]}, "available: .*synthetic-teacher-0"),
        ({"student": "giant"}, "available: .*head"),
        ({"batch_size": 10_000}, "larger than the training split"),
        ({"task_options": {"num_dev": 0}}, "empty split"),
        ({"reward": "vibes"}, "student_ce"),
        ({"features": ["nope"]}, "teacher_probs"),
        ({"action_mode": "dance"}, "select"),
        ({"empty_selection": "maybe"}, "hard_label"),
        ({"task_options": {"colour": "red"}}, "num_classes"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kd_env.TeacherSelectionEnv(**{"task": "synthetic", **kwargs})


def test_teacher_class_count_mismatch_is_rejected():
    from kd_env.tasks.synthetic import build_synthetic_data

    data = build_synthetic_data(options={"num_train": 32, "num_dev": 8, "num_test": 8})
    train = data.splits["train"]
    broken = dict(data.splits, train=train.__class__(
        labels=train.labels, student_inputs=train.student_inputs, semantic=train.semantic,
        teacher_logits=train.teacher_logits[..., :3], raw_teacher_ce=train.raw_teacher_ce,
    ))
    with pytest.raises(ValueError, match="3 classes but the task has 4"):
        DistillationData(task="synthetic", class_names=data.class_names, teacher_names=data.teacher_names, splits=broken)


def test_unknown_reset_option(small_env_kwargs):
    env = make("kd_env/TeacherSelection-v1", **small_env_kwargs).unwrapped
    with pytest.raises(ValueError, match="keep_student"):
        env.reset(options={"keep_teacher": True})


def test_non_finite_loss_raises_with_step_and_losses(small_env_kwargs):
    env = make("kd_env/TeacherSelection-v1", **small_env_kwargs, learning_rate=1e38).unwrapped
    env.reset(seed=0)
    ones = np.ones(env.action_space.shape, dtype=np.int8)
    with pytest.raises(FloatingPointError, match=r"step \d+.*: loss=.*ce=.*kd="):
        for _ in range(10):
            env.step(ones)
