"""Populations (``agents.population``): N seeds of one run learning together over one core, in one
loop, give the results of N separate runs up to float rounding; a stop stops every seed with a checkpoint."""

import numpy as np
import pytest

from agents.checkpoints import latest_checkpoint, read_progress
from agents.population import train_population
from agents.training import TrainConfig, train
from experiments.results import EpisodeCurves

pytestmark = pytest.mark.integration  # whole training runs

SEEDS = (0, 1, 2)
EPISODE_STEPS = 4


def configs(env_kwargs, tmp_path, agent, total_steps=3 * EPISODE_STEPS, **agent_kwargs):
    env_kwargs = {**env_kwargs, "episode_steps": EPISODE_STEPS}
    return [TrainConfig(agent=agent, total_steps=total_steps, seed=seed, env_kwargs=env_kwargs, agent_kwargs=agent_kwargs,
                        logdir=str(tmp_path / "runs"), progress_bar=False, log_every=2) for seed in SEEDS]


def assert_same_results(runs, separate_curves, together, together_curves, separate):
    for alone, both, alone_curves, both_curves in zip(separate, together, separate_curves, together_curves):
        assert not isinstance(both, BaseException), both
        assert both.env_steps == alone.env_steps
        for name in ("test_accuracy", "test_macro_f1", "dev_accuracy", "dev_macro_f1"):
            assert getattr(both, name) == pytest.approx(getattr(alone, name), abs=1e-6), name
        for name, values in alone_curves.curves.items():
            np.testing.assert_allclose(both_curves.curves[name], values, rtol=1e-4, atol=1e-5, err_msg=name)
    assert len({result.run_dir for result in together}) == len(runs)  # a run folder each


@pytest.mark.parametrize("agent, agent_kwargs", [
    ("avg_kd", {}),
    ("random", {}),
    # Stage 1 and 2 (snapshot and restore of each sub-env's student), then joint training.
    ("reinforce", {"advantage": "instance", "pretrain_student_steps": EPISODE_STEPS, "pretrain_selector_steps": EPISODE_STEPS}),
])
def test_population_runs_match_separate_runs(agent, agent_kwargs, small_env_kwargs, tmp_path):
    runs = configs(small_env_kwargs, tmp_path, agent, **agent_kwargs)
    separate_curves = [EpisodeCurves() for _ in runs]
    separate = [train(config, callback=curves) for config, curves in zip(runs, separate_curves)]
    together_curves = [EpisodeCurves() for _ in runs]
    together = train_population(runs, together_curves)
    assert_same_results(runs, separate_curves, together, together_curves, separate)


def test_mtkd_rl_population_on_the_bow_student(text_env_kwargs, tmp_path):
    """The weighting agent, with a stacked bow student."""
    runs = configs({**text_env_kwargs, "student": "bow"}, tmp_path, "mtkd_rl", total_steps=2 * EPISODE_STEPS)
    runs = [TrainConfig(**{**vars(run), "env_id": "kd_env/TeacherWeighting-v1"}) for run in runs]
    separate_curves = [EpisodeCurves() for _ in runs]
    separate = [train(config, callback=curves) for config, curves in zip(runs, separate_curves)]
    together_curves = [EpisodeCurves() for _ in runs]
    assert_same_results(runs, separate_curves, train_population(runs, together_curves), together_curves, separate)


def test_a_stop_stops_every_seed_and_checkpoints_each(small_env_kwargs, tmp_path):
    calls = {"n": 0}

    def interrupt_at_step_three(info):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as Ctrl-C, or SIGTERM (agents.training.Terminated), would

    runs = configs(small_env_kwargs, tmp_path, "avg_kd")
    with pytest.raises(KeyboardInterrupt):
        train_population(runs, [interrupt_at_step_three, None, None])
    run_dirs = sorted((tmp_path / "runs").iterdir())
    assert len(run_dirs) == len(SEEDS)
    # Seed 0 stopped inside step 3's callbacks: every seed took 3 steps, and each has a checkpoint of them.
    assert [read_progress(latest_checkpoint(run_dir))["env_steps"] for run_dir in run_dirs] == [3, 3, 3]


def test_a_callback_that_returns_false_stops_every_seed(small_env_kwargs, tmp_path):
    outcomes = train_population(configs(small_env_kwargs, tmp_path, "avg_kd"), [lambda info: False, None, None])
    assert [outcome.env_steps for outcome in outcomes] == [1, 1, 1]


def test_population_refuses_what_it_cannot_run(small_env_kwargs, tmp_path):
    with pytest.raises(ValueError, match="step by step"):
        train_population(configs(small_env_kwargs, tmp_path, "ppo"))
    mixed = configs(small_env_kwargs, tmp_path, "avg_kd")
    mixed[1] = TrainConfig(**{**vars(mixed[1]), "total_steps": 5})
    with pytest.raises(ValueError, match="everything but the seed"):
        train_population(mixed)
