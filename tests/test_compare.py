"""The comparison grid on a tiny synthetic task: records, resume, failed runs, selection profiles."""

import json
import logging
import subprocess
import sys

import pytest

from experiments.compare import GridEntry, Preset, run_grid
from experiments.report import summarise
from experiments.results import read_records
from kd_env.errors import UserError

TINY = {"task_options": {"num_train": 128, "num_dev": 32, "num_test": 64}, "batch_size": 16}


def tiny_preset(entries, seeds=(0, 1)):
    return Preset(name="tiny", tasks=("synthetic",), seeds=seeds, epochs=2, common_env_kwargs=dict(TINY),
                  entries=tuple(entries), single_teachers=False)


@pytest.mark.integration
def test_grid_records_every_run_resumes_and_keeps_failures(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="experiments.compare")
    results = tmp_path / "results.jsonl"
    entries = [
        GridEntry(label="avg_kd", agent="avg_kd"),
        GridEntry(label="reinforce", agent="reinforce", agent_kwargs={"advantage": "instance", "update_every": 2},
                  epoch_kwargs={"pretrain_student_steps": 1, "pretrain_selector_steps": 1}, profile_selection=True),
        GridEntry(label="broken", agent="reinforce", agent_kwargs={"advantage": "nonsense"}),
    ]
    assert run_grid(tiny_preset(entries), results, tmp_path / "runs") == 6
    records = read_records(results)
    assert sorted((r.entry, r.seed, r.status) for r in records) == [
        ("avg_kd", 0, "ok"), ("avg_kd", 1, "ok"), ("broken", 0, "failed"), ("broken", 1, "failed"),
        ("reinforce", 0, "ok"), ("reinforce", 1, "ok"),
    ]
    reinforce = next(r for r in records if r.entry == "reinforce")
    # 2 epochs of 128 / 16 batches, plus the selector's pre-training epoch (the student is put back after it).
    assert reinforce.env_steps == 24 and next(r for r in records if r.entry == "avg_kd").env_steps == 16
    assert reinforce.config["train"]["agent_kwargs"]["pretrain_student_steps"] == 8  # 1 epoch, in steps
    assert len(reinforce.curves["dev_accuracy"]) == 3 and 0.0 <= reinforce.test_accuracy <= 1.0
    assert reinforce.selection["teachers"] == reinforce.teachers and len(reinforce.selection["rate_when_correct"]) == 4
    assert "advantage" in next(r for r in records if r.entry == "broken").error
    json.dumps([r.teacher_test_accuracy for r in records])  # plain JSON all the way down
    finished = [m for m in caplog.messages if m.startswith("finished ")]  # a log line per run, not only the bar
    assert len(finished) == 6 and finished[-1].startswith("finished 6/6: ") and any("test accuracy" in m for m in finished)

    # A re-run skips finished runs and retries only the failed ones.
    assert run_grid(tiny_preset(entries), results, tmp_path / "runs") == 2
    rows = {row.entry: row for row in summarise(read_records(results))}
    assert rows["avg_kd"].test_accuracy.n == 2 and rows["broken"].failed_runs == 4


def test_a_second_grid_into_the_same_results_is_refused(tmp_path):
    results = tmp_path / "results.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / ".results.jsonl.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match="results.jsonl is in use: another grid is writing into it"):
            run_grid(tiny_preset([GridEntry(label="avg_kd", agent="avg_kd")]), results, tmp_path / "runs")
    finally:
        holder.kill()
        holder.wait()
    assert not results.exists() and not (tmp_path / "runs").exists()


HOLD_LOCK = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.integration
def test_parallel_workers_record_the_same_runs_as_one_process(tmp_path):
    entries = [GridEntry(label="avg_kd", agent="avg_kd"), GridEntry(label="random", agent="random")]
    serial, parallel = tmp_path / "serial.jsonl", tmp_path / "parallel.jsonl"
    assert run_grid(tiny_preset(entries), serial, tmp_path / "runs") == 4
    assert run_grid(tiny_preset(entries), parallel, tmp_path / "runs", workers=2) == 4

    def outcomes(path):
        return sorted((r.entry, r.seed, r.status, r.test_accuracy) for r in read_records(path))

    assert outcomes(parallel) == outcomes(serial)
    assert run_grid(tiny_preset(entries), parallel, tmp_path / "runs", workers=2) == 0


@pytest.mark.integration
def test_population_seeds_record_what_separate_runs_record(tmp_path):
    """Seeds learning together over one core (rules and reinforce, with its stages and selection
    profile); ppo cannot (it does not learn step by step) and runs seed by seed; a failing entry fails every seed."""
    entries = [
        GridEntry(label="avg_kd", agent="avg_kd"),
        GridEntry(label="reinforce", agent="reinforce", agent_kwargs={"advantage": "instance", "update_every": 2},
                  epoch_kwargs={"pretrain_student_steps": 1, "pretrain_selector_steps": 1}, profile_selection=True),
        GridEntry(label="ppo", agent="ppo", agent_kwargs={"algo_kwargs": {"n_steps": 8, "batch_size": 8, "n_epochs": 1}}),
        GridEntry(label="broken", agent="reinforce", agent_kwargs={"advantage": "nonsense"}),
    ]
    separate, together_path = tmp_path / "separate.jsonl", tmp_path / "population.jsonl"
    assert run_grid(tiny_preset(entries, seeds=(0, 1, 2)), separate, tmp_path / "runs", population_seeds=False) == 12
    assert run_grid(tiny_preset(entries, seeds=(0, 1, 2)), together_path, tmp_path / "runs") == 12
    alone = {r.key: r for r in read_records(separate)}
    together = {r.key: r for r in read_records(together_path)}
    assert alone.keys() == together.keys()
    for key, record in alone.items():
        other = together[key]
        assert (other.status, other.env_steps) == (record.status, record.env_steps), key
        if record.status == "ok":  # float rounding may flip at most one of the 64 test (32 dev) predictions
            assert other.test_accuracy == pytest.approx(record.test_accuracy, abs=1.01 / 64), key
            assert other.curves["dev_accuracy"] == pytest.approx(record.curves["dev_accuracy"], abs=1.01 / 32), key
            assert other.selection.keys() == record.selection.keys(), key
    assert run_grid(tiny_preset(entries, seeds=(0, 1, 2)), together_path, tmp_path / "runs") == 3  # the failed


def test_every_preset_names_known_agents_features_and_unique_labels():
    import agents
    from experiments.presets import PRESETS
    from kd_env.features import validate_groups

    for preset in PRESETS.values():
        labels = [entry.label for entry in preset.entries]
        assert len(labels) == len(set(labels)), preset.name
        for entry in preset.entries:
            assert entry.agent in agents.agent_names(), (preset.name, entry.label)
            env_kwargs = {**preset.common_env_kwargs, **entry.env_kwargs}
            if "features" in env_kwargs:
                validate_groups(env_kwargs["features"])  # raises on an unknown group


def test_every_preset_runs_a_privileged_reference_for_its_headroom():
    from experiments.presets import PRESETS

    for preset in PRESETS.values():
        assert "correct_teachers" in {entry.label for entry in preset.entries}, preset.name


@pytest.mark.integration
def test_regimes_are_reported_by_name_and_build_their_own_env(tmp_path):
    """Two regimes of one task (different teacher subsets) are two rows, each run with its own teachers."""
    regimes = {
        "synthetic/two-teachers": {"task": "synthetic", "teachers": ["synthetic-teacher-0", "synthetic-teacher-1"]},
        "synthetic/all-teachers": {"task": "synthetic"},
    }
    preset = Preset(name="tiny", tasks=tuple(regimes), seeds=(0,), epochs=1, common_env_kwargs=dict(TINY),
                    entries=(GridEntry(label="avg_kd", agent="avg_kd"),), single_teachers=False, regimes=regimes)
    results = tmp_path / "results.jsonl"
    assert run_grid(preset, results, tmp_path / "runs") == 2
    teachers = {r.task: r.teachers for r in read_records(results)}
    assert teachers == {"synthetic/two-teachers": ["synthetic-teacher-0", "synthetic-teacher-1"],
                        "synthetic/all-teachers": [f"synthetic-teacher-{k}" for k in range(4)]}
    assert preset.task_env_kwargs("synthetic") == {"task": "synthetic"}
