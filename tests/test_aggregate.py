"""rliable-style aggregates: IQM, stratified-bootstrap intervals, probability of improvement."""

import numpy as np
import pytest

from experiments.aggregate import aggregate, aggregate_table, iqm, plot_aggregate, probability_of_improvement, stratified_interval
from experiments.results import RunRecord


def record(entry, task, seed, accuracy, status="ok"):
    return RunRecord(entry=entry, task=task, seed=seed, student="head", teachers=[], test_accuracy=accuracy, test_macro_f1=accuracy,
                     dev_accuracy=accuracy, env_steps=1, wall_time_s=0.0, status=status)


def test_definitions_match_rliable():
    scores = [np.array([0.0, 1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0, 100.0])]
    assert iqm(scores) == pytest.approx(np.mean([2.0, 3.0, 4.0, 5.0]))  # the middle half of all 8 runs
    assert probability_of_improvement([np.array([2.0, 3.0])], [np.array([1.0, 2.0])]) == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    point, low, high = stratified_interval(iqm, ([np.array([0.5, 0.6, 0.7]), np.array([0.2, 0.3, 0.4])],), reps=300)
    assert low <= point <= high and high - low > 0
    point, low, high = stratified_interval(iqm, ([np.full(3, 0.5)],), reps=50)
    assert point == low == high == 0.5  # identical seeds: no spread


def test_aggregate_rows_and_outputs(tmp_path):
    rng = np.random.default_rng(0)
    records = [record(agent, task, seed, base + shift + rng.normal(0, 0.005))
               for task, base in (("a", 0.7), ("b", 0.9)) for seed in range(5)
               for agent, shift in (("avg_kd", 0.0), ("reinforce", 0.02), ("no_kd", -0.02))]
    records.append(record("reinforce", "a", 9, None, status="failed"))
    records.append(record("ppo", "a", 0, 0.99))  # not run on task b: left out
    rows = aggregate(records, reps=200)
    assert [row.entry for row in rows] == ["reinforce", "avg_kd", "no_kd"]
    by_agent = {row.entry: row for row in rows}
    assert by_agent["reinforce"].runs == 10 and by_agent["avg_kd"].improvement is None
    assert by_agent["reinforce"].improvement[0] == pytest.approx(1.0) and by_agent["no_kd"].improvement[0] == pytest.approx(0.0)
    table = aggregate_table(rows)
    assert "P(entry > avg_kd)" in table and "| reinforce | 10 |" in table
    assert plot_aggregate(rows, tmp_path / "aggregate.png").stat().st_size > 0
