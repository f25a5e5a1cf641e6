"""Ray Tune sweeps: planning (no Ray needed), a 2-trial sweep on a local Ray instance, failed trials, and resuming."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from experiments.results import read_records
from experiments.sweep import SweepSpec, Trial, _record_writer, plan_trials, run_sweep

ENV_KWARGS = {"task": "synthetic", "task_options": {"num_train": 256, "num_dev": 64, "num_test": 128}, "batch_size": 16}


@pytest.fixture(scope="module")
def local_ray():
    """One small local Ray instance for the module (its start-up is the slow part); skips without Ray."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_plan_covers_the_grid_with_stable_distinct_keys():
    spec = SweepSpec(agents=("avg_kd", "random"), seeds=(0, 1), total_steps=5, env_kwargs=ENV_KWARGS,
                     env_grid={"reward": ["student_ce", "ce_gain"]}, agent_grid={"probability": [0.3, 0.7]})
    trials = plan_trials(spec)
    assert len(trials) == 2 * 2 * 2 * 2
    assert len({t.key for t in trials}) == len(trials)
    assert [t.key for t in trials] == [t.key for t in plan_trials(spec)]
    assert {t.env_kwargs["reward"] for t in trials} == {"student_ce", "ce_gain"}
    assert all(t.env_kwargs["batch_size"] == 16 for t in trials)


def test_sweep_spec_rejects_empty_grids():
    with pytest.raises(ValueError, match="non-empty lists"):
        SweepSpec(agents=("avg_kd",), seeds=(0,), total_steps=5, env_grid={"reward": []})


def test_unknown_agent_fails_before_ray_starts(tmp_path):
    spec = SweepSpec(agents=("no_such_agent",), seeds=(0,), total_steps=5, env_kwargs=ENV_KWARGS)
    with pytest.raises(ValueError, match="unknown agents"):
        run_sweep(spec, tmp_path / "results.jsonl")


@pytest.mark.integration
def test_two_trial_sweep_records_accuracies_and_resumes(tmp_path, local_ray):
    results = tmp_path / "results.jsonl"
    spec = SweepSpec(agents=("avg_kd", "random"), seeds=(0,), total_steps=20, env_kwargs=ENV_KWARGS)
    written = run_sweep(spec, results, logdir=tmp_path / "runs")

    records = read_records(results)
    assert sorted(r.entry for r in records) == ["avg_kd", "random"]
    assert {r.key for r in records} == {t.key for t in plan_trials(spec)}
    assert [r.key for r in written] == [r.key for r in records]
    for record in records:
        assert record.status == "ok", record.error
        assert 0.0 <= record.dev_accuracy <= 1.0 and 0.0 <= record.test_accuracy <= 1.0
        assert record.env_steps == 20
        assert record.curves["env_steps"] == [16]  # one episode of 256 // 16 steps ended
    # A re-run finds every key done: nothing runs, nothing is appended.
    assert run_sweep(spec, results, logdir=tmp_path / "runs") == []
    assert len(read_records(results)) == 2


@pytest.mark.integration
def test_failed_trial_is_recorded_and_retried_alone(tmp_path, local_ray):
    results = tmp_path / "results.jsonl"
    # batch_size 10**6 exceeds the 256-instance training split: that trial's env raises.
    spec = SweepSpec(agents=("avg_kd",), seeds=(0,), total_steps=10, env_kwargs=ENV_KWARGS,
                     env_grid={"batch_size": [16, 10**6]})
    run_sweep(spec, results, logdir=tmp_path / "runs")
    by_batch = {r.config["env_kwargs"]["batch_size"]: r for r in read_records(results)}
    assert by_batch[16].status == "ok" and by_batch[16].dev_accuracy is not None
    assert by_batch[10**6].status == "failed" and "larger than the training split" in by_batch[10**6].error

    retried = run_sweep(spec, results, logdir=tmp_path / "runs")
    assert [r.config["env_kwargs"]["batch_size"] for r in retried] == [10**6]
    assert len(read_records(results)) == 3


def test_dead_worker_is_recorded_as_an_error(tmp_path):
    """A trial whose worker died reports nothing; the callback still writes an error record."""
    pytest.importorskip("ray.tune")
    trial = Trial("avg_kd", 3, 10, "kd_env/TeacherSelection-v1", ENV_KWARGS, {})
    writer = _record_writer(tmp_path / "results.jsonl")
    dead = SimpleNamespace(config={"trial": vars(trial)}, error_file="/tmp/error.txt")
    writer.on_trial_error(iteration=1, trials=[dead], trial=dead)
    (record,) = read_records(tmp_path / "results.jsonl")
    assert (record.key, record.status, record.error) == (trial.key, "failed", "trial error: /tmp/error.txt")
