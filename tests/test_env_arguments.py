"""Bad env arguments fail at once, before any data is prepared or any teacher fine-tuned."""

import gymnasium as gym
import pytest
import torch
from tiny_text import sentiment_rows, write_csv

import kd_env  # noqa: F401 - registers the env ids
from kd_env.errors import UserError
from kd_env.tasks import text_data as text_problem


@pytest.fixture
def no_preparation(monkeypatch):
    """Fail the test if any text task gets as far as preparing teachers."""

    def refuse(*args, **kwargs):
        raise AssertionError("teachers were prepared before the arguments were checked")

    monkeypatch.setattr(text_problem, "prepare_teachers", refuse)


def text_task(tmp_path, rows):
    return f"csv:{write_csv(tmp_path / 'reviews.csv', rows)}"


BAD_ARGUMENTS = [
    ({"batch_size": 2.5}, "batch_size must be an integer"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"episode_steps": 0}, "episode_steps must be >= 1"),
    ({"episode_steps": "10"}, "episode_steps must be an integer"),
    ({"learning_rate": -1.0}, "learning_rate must be > 0"),
    ({"learning_rate": 0.0}, "learning_rate must be > 0"),
    ({"learning_rate": float("nan")}, "learning_rate must be a finite number"),
    ({"learning_rate": float("inf")}, "learning_rate must be a finite number"),
    ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
    ({"probe_size": -3}, "probe_size must be >= 0"),
    ({"probe_size": 0, "reward": "dev_gain"}, "probe_size must be >= 1"),
    ({"terminal_bonus": float("inf")}, "terminal_bonus must be a finite number"),
    ({"semantic_dim": 0}, "semantic_dim must be >= 1"),
    ({"student_options": {"hidden": 0}}, "hidden must be >= 1"),
    ({"student_options": {"width": 3}}, "unknown head student options"),
    ({"student": "transformer", "student_options": {"num_layers": 0}}, "num_layers must be >= 1"),
    ({"student": "transformer", "student_options": {"max_length": 0}}, "max_length must be >= 1"),
    ({"student": "mlp"}, "unknown student 'mlp'"),
    # What a command line's --env-kwargs passes as text when it is not JSON.
    ({"alpha": "nan"}, "alpha must be a finite number, got 'nan'"),
    ({"temperature": "abc"}, "temperature must be a finite number, got 'abc'"),
    ({"tau_squared": "yes"}, "tau_squared must be true or false"),
    ({"aggregation": ["weighted_ce"]}, "unknown aggregation"),
    ({"student": ["head"]}, "unknown student"),
    ({"student_options": "hidden=3"}, "student options must be a JSON object"),
    ({"task": 3}, "task must be a task name"),
    ({"reward": ["dev_gain"]}, "unknown reward"),
    ({"features": ["colour"]}, "unknown feature groups"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_ARGUMENTS)
def test_bad_argument_is_refused_before_teachers_are_prepared(changes, message, tmp_path, no_preparation):
    kwargs = {"task": text_task(tmp_path, sentiment_rows(60)), **changes}
    with pytest.raises(UserError, match=message):
        gym.make("kd_env/TeacherSelection-v1", **kwargs)


def test_batch_larger_than_the_training_split_is_refused_before_teachers(tmp_path, no_preparation):
    with pytest.raises(ValueError, match=r"batch_size 64 is larger than the training split \(\d+ instances\)"):
        gym.make("kd_env/TeacherSelection-v1", task=text_task(tmp_path, sentiment_rows(48)), batch_size=64)


def test_single_class_task_is_refused_before_teachers(tmp_path, no_preparation):
    rows = [row for row in sentiment_rows(200) if row["label"] == "pos"]
    with pytest.raises(ValueError, match=r"has 1 class\(es\) \['pos'\]; a classification task needs at least 2"):
        gym.make("kd_env/TeacherSelection-v1", task=text_task(tmp_path, rows), batch_size=4)


def test_zero_probe_size_is_fine_when_no_reward_reads_the_probe(small_env_kwargs):
    env = gym.make("kd_env/TeacherSelection-v1", probe_size=0, **small_env_kwargs)
    env.reset(seed=0)
    _, reward, *_ = env.step(env.action_space.sample())
    assert reward == reward


@pytest.mark.parametrize("kwargs, message", [
    ({"task_options": {"num_train": "x"}}, "num_train must be an integer, got 'x'"),
    ({"task_options": {"seed": "x"}}, "seed must be an integer"),
    ({"device": 3}, "device must be cpu, cuda, cuda:N or auto, got 3"),
    ({"teachers": 5}, "teachers must be a list of teachers, a pool name or None, got 5"),
    ({"student_options": {"hidden": "64"}}, "hidden must be an integer"),
])
def test_values_of_the_wrong_type_are_one_user_error(kwargs, message):
    """A string where a number belongs (as a command line gives it) is refused in one line, before any
    config compares it."""
    with pytest.raises(UserError, match=message):
        kd_env.TeacherSelectionEnv(**{"task": "synthetic", **kwargs})


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_a_cuda_device_without_one_is_one_user_error():
    with pytest.raises(UserError, match="no CUDA device"):
        kd_env.TeacherSelectionEnv(task="synthetic", device="cuda")
