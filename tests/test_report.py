import math

import pytest

from experiments.plots import plot_accuracy, plot_curves, plot_selection
from experiments.report import Summary, markdown_table, summarise, write_csv
from experiments.results import RunRecord


def record(agent, seed, accuracy, task="synthetic", **extra):
    return RunRecord(
        agent=agent, task=task, seed=seed, student="head", teachers=["t0", "t1"], test_accuracy=accuracy,
        test_macro_f1=accuracy - 0.1, dev_accuracy=accuracy, env_steps=10, wall_time_s=1.0, **extra,
    )


def test_summary_matches_hand_computation():
    s = Summary.of([0.70, 0.72, 0.74])
    assert s.mean == pytest.approx(0.72)
    assert s.std == pytest.approx(0.02)
    assert s.ci95 == pytest.approx(4.303 * 0.02 / math.sqrt(3))
    assert math.isnan(Summary.of([0.5]).ci95) and Summary.of([]).n == 0


def test_paired_difference_is_per_seed():
    records = [record("avg_kd", s, a) for s, a in enumerate([0.60, 0.70, 0.80])]
    records += [record("reinforce", s, a + 0.01 * (s + 1)) for s, a in enumerate([0.60, 0.70, 0.80])]
    failed = RunRecord(
        agent="reinforce", task="synthetic", seed=9, student="head", teachers=[], test_accuracy=None,
        test_macro_f1=None, dev_accuracy=None, env_steps=3, wall_time_s=0.1, status="failed", error="boom",
    )
    records.append(failed)
    rows = {row.agent: row for row in summarise(records)}
    paired = rows["reinforce"].paired_vs_reference
    # Differences 0.01, 0.02, 0.03: the seed spread (0.6..0.8) does not enter the paired interval.
    assert paired.n == 3 and paired.mean == pytest.approx(0.02) and paired.std == pytest.approx(0.01)
    assert rows["reinforce"].failed_runs == 1
    table = markdown_table(list(rows.values()))
    assert "| synthetic | reinforce | 3 |" in table and "+0.0200" in table and "best_teacher" not in table


def test_paired_difference_to_the_best_single_teacher():
    records = [record("avg_kd", s, 0.60) for s in range(2)] + [record("best_teacher", s, 0.65 + 0.01 * s) for s in range(2)]
    records += [record("reinforce", s, 0.66) for s in range(2)]
    rows = {row.agent: row for row in summarise(records)}
    assert rows["reinforce"].paired_vs_best_single.mean == pytest.approx(0.005)
    assert rows["reinforce"].paired_vs_reference.mean == pytest.approx(0.06)
    table = markdown_table(list(rows.values()))
    assert "paired Δ vs best_teacher" in table and table.splitlines()[1].count("---") == 10


def test_csv_and_plots_are_written(tmp_path):
    curves = {"env_steps": [10, 20], "episode_reward": [-1.0, -0.8], "dev_accuracy": [0.5, 0.6]}
    selection = {
        "teachers": ["t0", "t1"], "rate_when_correct": [0.9, 0.8], "rate_when_wrong": [0.1, None],
        "wrong_teachers": [0, 1], "rate_by_wrong_teachers": [[0.9, 0.8], [0.5, 0.4]], "count_by_wrong_teachers": [5, 3],
    }
    records = [record(a, s, 0.6 + 0.01 * s, curves=curves, selection=selection) for a in ("avg_kd", "reinforce") for s in range(2)]
    rows = summarise(records)
    write_csv(rows, tmp_path / "table.csv")
    assert (tmp_path / "table.csv").read_text().count("\n") == 3
    assert "paired_vs_best_single_mean" in (tmp_path / "table.csv").read_text()
    for path in (plot_accuracy(rows, tmp_path / "acc.png"), plot_curves(records, tmp_path / "curves.png"), plot_selection(records, tmp_path / "sel.png")):
        assert path.stat().st_size > 1000
