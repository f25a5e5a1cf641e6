"""The benchmark suite: the regime registry, the normalised score, the leaderboard and ``kd-env suite``."""

import json
import re
import subprocess
import sys

import pytest
from scipy import stats
from typer.testing import CliRunner

from experiments.leaderboard import leaderboard
from experiments.normalised import normalised_scores, regime_scales
from experiments.results import RunRecord
from experiments.suite import SuiteSpec, benchmark_regimes
from kd_cli.app import app
from kd_env import regimes
from kd_env.config import PROFILES
from kd_env.errors import UserError

runner = CliRunner()
TINY = "synthetic-tiny-v1"


# ------------------------------------------------------------------------------ the registry
@pytest.fixture
def fresh_registry(monkeypatch):
    """Regimes registered in a test vanish after it."""
    monkeypatch.setattr(regimes, "_REGISTRY", dict(regimes._REGISTRY))


def test_builtin_regimes_are_versioned_and_carry_the_recommended_profile():
    names = regimes.regime_names()
    for name in ("biased-specialists-bow-v1", "specialists-bow-v1", "mixed-quality-bow-v1", "zoo-bow-v1", "zoo-mixed-bow-v1",
                 "zoo-labels100-bow-v1", "zoo-labels300-bow-v1", "zoo-labels1000-bow-v1", TINY):
        assert name in names
    demo = regimes.get_regime("biased-specialists-bow-v1")
    assert demo.version == 1 and demo.description
    assert demo.env_kwargs() == {**PROFILES["recommended"].kwargs(), "task": "twitter-sentiment", "teachers": "biased-specialists", "student": "bow"}
    budgets = [regimes.get_regime(f"zoo-labels{n}-bow-v1").env_kwargs()["task_options"] for n in (100, 300, 1000)]
    assert [b["labels"] for b in budgets] == [100, 300, 1000]
    assert {b["labels"] + b["transfer"] for b in budgets} == {2000}  # the same rows, so the same cache entries
    assert TINY not in benchmark_regimes() and "zoo-bow-v1" in benchmark_regimes()
    assert regimes.get_regime(TINY).known_answer and not demo.known_answer


def test_the_map_is_every_pool_budget_and_student_and_only_the_zoo_bow_cells_run_by_default():
    names = regimes.map_regimes()
    assert len(names) == len(set(names)) == 6 * 4 * 2 and names[0] == "zoo-labels100-bow-v1"
    for name in names:
        regime = regimes.get_regime(name)
        pool, labels, student = re.fullmatch(r"(.+)-labels(\d+)-(bow|head)-v1", name).groups()
        assert (regime.teachers, regime.student, regime.task) == (pool, student, "twitter-sentiment")
        assert regime.task_options == {"labels": int(labels), "transfer": 2000 - int(labels)}
        assert regime.benchmark == (name in ("zoo-labels100-bow-v1", "zoo-labels300-bow-v1", "zoo-labels1000-bow-v1"))
    assert {regimes.get_regime(n).teachers for n in names} == set(regimes.MAP_POOLS)
    assert "diverse-encoders-labels2000-head-v1" in names and "diverse-encoders-labels2000-head-v1" not in benchmark_regimes()
    assert regimes.expand_regimes(["zoo-bow-v1", "map", "zoo-labels100-bow-v1"]) == ("zoo-bow-v1", *names)


def test_suite_regimes_map_runs_the_whole_map(tmp_path, monkeypatch):
    import experiments.suite

    ran = []
    monkeypatch.setattr(experiments.suite, "run_suite", lambda spec, *a, **k: ran.append(spec.regimes) or 0)
    result = runner.invoke(app, ["suite", "--regimes", "map", "--agents", "ca_mkd", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert ran == [regimes.map_regimes()]


def test_env_kwargs_are_a_fresh_copy():
    regime = regimes.get_regime(TINY)
    regime.env_kwargs()["task_options"]["num_train"] = 1
    assert regime.env_kwargs()["task_options"]["num_train"] == 128


def test_unknown_regime_is_a_one_line_user_error_listing_the_names():
    with pytest.raises(UserError) as error:
        regimes.get_regime("zoo-bow")
    message = str(error.value)
    assert "\n" not in message and "unknown regime 'zoo-bow'" in message and "zoo-bow-v1" in message and TINY in message


def test_register_checks_names_versions_and_settings(fresh_registry):
    regime = regimes.register("my-regime-v3", description="mine", task="synthetic", settings={"batch_size": 8}, epochs=3)
    assert regimes.get_regime("my-regime-v3") is regime and regime.version == 3 and regime.env_kwargs()["batch_size"] == 8
    with pytest.raises(ValueError, match="already registered"):
        regimes.register("my-regime-v3", description="again", task="synthetic")
    with pytest.raises(ValueError, match="end in a version"):
        regimes.register("my-regime", description="no version", task="synthetic")
    with pytest.raises(UserError, match=r"unknown regime 'typo-v1' env options \['batch_sise'\]"):
        regimes.register("typo-v1", description="typo", task="synthetic", settings={"batch_sise": 8})
    assert "typo-v1" not in regimes.regime_names()


def test_kd_env_regimes_imports_no_agents_or_experiments():
    code = "import sys, kd_env.regimes; print([m for m in sys.modules if m.split('.')[0] in ('agents', 'experiments', 'kd_cli')])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


# ------------------------------------------------------------------------------ the normalised score
def record(entry, task, seed, test, dev):
    return RunRecord(entry=entry, task=task, seed=seed, student="bow", teachers=[], test_accuracy=test, test_macro_f1=test,
                     dev_accuracy=dev, env_steps=1, wall_time_s=0.0)


def runs(task, entry, tests, dev):
    return [record(entry, task, seed, test, dev) for seed, test in enumerate(tests)]


def regime_records(task="r", shift=0.0):
    """avg_kd is the best baseline by dev (best_teacher is better on test, worse on dev); headroom 0.10."""
    return [
        *runs(task, "no_kd", [0.60, 0.62, 0.61], dev=0.60),
        *runs(task, "avg_kd", [0.65, 0.70, 0.60], dev=0.70),
        *runs(task, "best_teacher", [0.90, 0.90, 0.90], dev=0.65),
        *runs(task, "correct_teachers", [0.75, 0.78, 0.72], dev=0.80),
        *runs(task, "reinforce", [0.70 + shift, 0.72 + shift, 0.66 + shift], dev=0.75),
    ]


def test_normalised_score_pairs_by_seed_over_the_dev_chosen_baseline():
    records = regime_records() + [record("reinforce", "r", 3, 0.99, 0.75)]  # seed 3: no baseline run to pair with
    (scale,) = regime_scales(records)
    assert (scale.baseline, scale.reference, scale.status) == ("avg_kd", "correct_teachers", "scored")
    assert scale.headroom.mean == pytest.approx(0.10) and scale.headroom.n == 3
    scores = normalised_scores(records, [scale])["r"]
    # Paired: (0.05, 0.02, 0.06) / 0.10; against avg_kd's mean (0.65) it would be (0.5, 0.7, 0.1).
    assert list(scores["reinforce"]) == [0, 1, 2]
    assert list(scores["reinforce"].values()) == pytest.approx([0.5, 0.2, 0.6])
    assert list(scores["avg_kd"].values()) == pytest.approx([0.0, 0.0, 0.0])
    assert sum(scores["correct_teachers"].values()) / 3 == pytest.approx(1.0)
    assert scores["best_teacher"][0] == pytest.approx(2.5)


def test_the_reference_is_the_privileged_entry_best_by_dev():
    records = regime_records() + runs("r", "oracle", [0.85, 0.85, 0.85], dev=0.79)
    (scale,) = regime_scales(records)
    assert scale.reference == "correct_teachers"
    records = regime_records() + runs("r", "oracle", [0.70, 0.80, 0.70], dev=0.90)
    (scale,) = regime_scales(records)
    assert scale.reference == "oracle" and scale.headroom.mean == pytest.approx(0.25 / 3)


def test_a_regime_without_headroom_is_not_scored():
    flat = [r for r in regime_records("flat") if r.entry != "correct_teachers"] + runs("flat", "correct_teachers", [0.65, 0.70, 0.60], dev=0.8)
    worse = [r for r in regime_records("worse") if r.entry != "correct_teachers"] + runs("worse", "correct_teachers", [0.5, 0.5, 0.5], dev=0.8)
    missing = [r for r in regime_records("missing") if r.entry != "correct_teachers"]
    # avg_kd's seeds 0.65, 0.70, 0.60: a reference 0.70, 0.66, 0.61 is ahead by +0.0067 on average, within noise
    noise = [r for r in regime_records("noise") if r.entry != "correct_teachers"] + runs("noise", "correct_teachers", [0.70, 0.66, 0.61], dev=0.8)
    scales = {s.regime: s for s in regime_scales(flat + worse + missing + noise)}
    assert scales["noise"].headroom.mean > 0 and scales["noise"].status.startswith("headroom within noise")
    assert scales["flat"].headroom.mean == pytest.approx(0.0) and scales["flat"].status.startswith("no headroom")
    assert scales["worse"].headroom.mean < 0 and scales["worse"].status.startswith("no headroom")
    assert scales["missing"].status.startswith("not measured")
    assert normalised_scores(flat + worse + missing + noise, list(scales.values())) == {}


# ------------------------------------------------------------------------------ the leaderboard
def test_leaderboard_aggregates_scored_regimes_and_lists_every_regime():
    flat = [r for r in regime_records("flat") if r.entry != "correct_teachers"] + runs("flat", "correct_teachers", [0.5, 0.5, 0.5], dev=0.8)
    records = regime_records("a") + regime_records("b", shift=0.02) + flat + [record("ppo", "a", 0, 0.9, 0.9)]
    board = leaderboard(records, reps=200)
    assert "regimes scored: a, b)" in board
    rows = {line.split(" | ")[0].strip("| "): line for line in board.splitlines() if line.startswith("| ")}
    expected = stats.trim_mean([0.5, 0.2, 0.6, 0.7, 0.4, 0.8], 0.25)
    assert rows["reinforce"].startswith(f"| reinforce | 6 | {expected:.4f} [")
    assert rows["avg_kd"].startswith("| avg_kd | 6 | 0.0000 [0.0000, 0.0000]")
    assert "| ppo | " not in board.split("## Per regime")[0]  # ran on one scored regime of two: left out of the aggregate
    assert rows["flat"].count("—") >= 5 and "no headroom" in rows["flat"]
    assert "| a | avg_kd | 0.6500 ± " in board and "| +0.4333 ± " in rows["a"]  # reinforce: (0.5 + 0.2 + 0.6) / 3


def test_leaderboard_without_headroom_says_so():
    board = leaderboard([r for r in regime_records() if r.entry != "correct_teachers"], reps=50)
    assert "No regime has headroom" in board and "regimes scored: none" in board and "not measured" in board


# ------------------------------------------------------------------------------ the suite and its command
def test_suite_always_runs_the_baselines_and_references():
    spec = SuiteSpec((TINY, "zoo-bow-v1"), agents=("reinforce", "avg_kd", "reinforce"), seeds=(0,))
    assert [e.label for e in spec.entries(TINY)] == ["no_kd", "avg_kd", "best_teacher", "correct_teachers", "oracle", "reinforce"]
    assert [e.label for e in spec.entries("zoo-bow-v1")] == ["no_kd", "avg_kd", "best_teacher", "correct_teachers", "reinforce"]
    tiny, zoo = spec.presets()
    assert tiny.tasks == (TINY,) and tiny.epochs == 2 and tiny.task_env_kwargs(TINY) == regimes.get_regime(TINY).env_kwargs()
    assert zoo.epochs == 10 and not zoo.single_teachers
    assert SuiteSpec(seeds=(0,)).regimes == benchmark_regimes()


@pytest.mark.parametrize("args, message", [
    (["--regimes", "zoo-bow-v1,nope-v1"], "unknown regime 'nope-v1'"),
    (["--agents", "reinforce,dqn"], "unknown agent 'dqn'"),
    (["--seeds", "0-x"], "malformed seeds '0-x'"),
    (["--regimes", ""], "at least one regime, one agent and one seed"),
    (["--regimes", f"{TINY},zoo-bow-v1", "--agents", "oracle"], "oracle needs a task with a known answer; regime 'zoo-bow-v1'"),
    (["--regimes", TINY, "--agents", "reinforce:stages3"], "reinforce:stages3's recipe pre-trains .* give at least 4 epochs"),
    (["--report-only"], "no results in .*results.jsonl to report"),
])
def test_suite_bad_input_is_one_line_before_compute(tmp_path, monkeypatch, args, message):
    import experiments.suite

    monkeypatch.setattr(experiments.suite, "run_grid", lambda *a, **k: pytest.fail("compute started before the input was checked"))
    result = runner.invoke(app, ["suite", *args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    error = result.stderr.strip()
    assert error.startswith("error: ") and "\n" not in error and re.search(message, error), error


@pytest.mark.integration
def test_suite_runs_the_tiny_regime_and_rebuilds_its_leaderboard(tmp_path):
    out = tmp_path / "out"
    args = ["suite", "--regimes", TINY, "--agents", "reinforce,ca_mkd", "--seeds", "0,1", "--out", str(out)]
    result = runner.invoke(app, [*args, "--logdir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    entries = ["avg_kd", "best_teacher", "ca_mkd", "correct_teachers", "no_kd", "oracle", "reinforce"]
    assert sorted((r["entry"], r["seed"]) for r in records) == [(e, s) for e in entries for s in (0, 1)]
    assert all(r["status"] == "ok" and r["task"] == TINY for r in records)
    board = (out / "leaderboard.md").read_text()
    assert "## Leaderboard" in board and f"| {TINY} | " in board and board in result.output
    again = runner.invoke(app, [*args, "--report-only"])
    assert again.exit_code == 0 and (out / "leaderboard.md").read_text() == board
