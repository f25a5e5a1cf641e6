"""Lockstep runs (``agents.lockstep``): N seeds of one run over one batched env give the results of N
separate runs, up to the batched env's float tolerance."""

import numpy as np
import pytest

from agents.lockstep import LockstepError, train_in_lockstep
from agents.training import TrainConfig, train
from experiments.results import EpisodeCurves

pytestmark = pytest.mark.integration  # training runs in threads

SEEDS = (0, 1, 2)
EPISODE_STEPS = 4


def configs(small_env_kwargs, tmp_path, agent, total_steps=3 * EPISODE_STEPS, **agent_kwargs):
    env_kwargs = {**small_env_kwargs, "episode_steps": EPISODE_STEPS}
    return [TrainConfig(agent=agent, total_steps=total_steps, seed=seed, env_kwargs=env_kwargs, agent_kwargs=agent_kwargs,
                        logdir=str(tmp_path / "runs"), progress_bar=False, log_every=2) for seed in SEEDS]


@pytest.mark.parametrize("agent, agent_kwargs", [
    ("avg_kd", {}),
    ("random", {}),
    # Stage 1 and 2 (snapshot and restore of each sub-env's student), then joint training.
    ("reinforce", {"advantage": "instance", "pretrain_student_steps": EPISODE_STEPS, "pretrain_selector_steps": EPISODE_STEPS}),
])
def test_lockstep_runs_match_separate_runs(agent, agent_kwargs, small_env_kwargs, tmp_path):
    runs = configs(small_env_kwargs, tmp_path, agent, **agent_kwargs)
    separate_curves = [EpisodeCurves() for _ in runs]
    separate = [train(config, callback=curves) for config, curves in zip(runs, separate_curves)]
    lockstep_curves = [EpisodeCurves() for _ in runs]
    together = train_in_lockstep(runs, lockstep_curves)
    for alone, both, alone_curves, both_curves in zip(separate, together, separate_curves, lockstep_curves):
        assert not isinstance(both, BaseException), both
        assert both.env_steps == alone.env_steps
        for name in ("test_accuracy", "test_macro_f1", "dev_accuracy", "dev_macro_f1"):
            assert getattr(both, name) == pytest.approx(getattr(alone, name), abs=1e-6), name
        for name, values in alone_curves.curves.items():
            np.testing.assert_allclose(both_curves.curves[name], values, rtol=1e-4, atol=1e-5, err_msg=name)
    assert len({result.run_dir for result in together}) == len(SEEDS)  # a run folder each


def test_a_run_that_stops_early_stops_the_others(small_env_kwargs, tmp_path):
    calls = {"n": 0}

    def stop_after_two_steps(info):
        calls["n"] += 1
        return calls["n"] < 2

    runs = configs(small_env_kwargs, tmp_path, "avg_kd")
    outcomes = train_in_lockstep(runs, [stop_after_two_steps, None, None])
    assert not isinstance(outcomes[0], BaseException) and outcomes[0].env_steps == 2
    assert all(isinstance(outcome, LockstepError) for outcome in outcomes[1:])


def test_lockstep_refuses_what_it_cannot_run(small_env_kwargs, tmp_path):
    with pytest.raises(ValueError, match="shared random generators"):
        train_in_lockstep(configs(small_env_kwargs, tmp_path, "ppo"))
    mixed = configs(small_env_kwargs, tmp_path, "avg_kd")
    mixed[1] = TrainConfig(**{**vars(mixed[1]), "total_steps": 5})
    with pytest.raises(ValueError, match="everything but the seed"):
        train_in_lockstep(mixed)
