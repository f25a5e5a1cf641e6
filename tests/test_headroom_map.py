"""The headroom map (``experiments.headroom_map``, ``kd-env map``) from made-up suite records."""

import dataclasses

import pytest
from typer.testing import CliRunner

from experiments.headroom_map import bar_table, map_cells, map_table, points
from experiments.report import Summary
from experiments.results import RunRecord, append_record
from kd_cli.app import app

BOW, HEAD = "zoo-labels100-bow-v1", "mixed-quality-labels2000-head-v1"


def runs(task, entry, tests, dev):
    config = {"train": {"agent": "single_teacher" if entry.startswith("single:") else entry.split(":")[0]}}
    return [RunRecord(entry=entry, task=task, seed=seed, student="bow", teachers=[], test_accuracy=test, test_macro_f1=test,
                      dev_accuracy=dev, env_steps=1, wall_time_s=0.0, config=config) for seed, test in enumerate(tests)]


def cell_records(task):
    """avg_kd is the best baseline by dev; reinforce is the learned selector by dev (reinforce:episode is
    better on test only; ca_mkd, a rule, is better by dev but no learner)."""
    return [
        *runs(task, "no_kd", [0.60, 0.62, 0.61], dev=0.60),
        *runs(task, "avg_kd", [0.65, 0.70, 0.60], dev=0.70),
        *runs(task, "best_teacher", [0.90, 0.90, 0.90], dev=0.65),
        *runs(task, "single:clean", [0.99, 0.99, 0.99], dev=0.62),  # a baseline (worse by dev), not a selector
        *runs(task, "correct_teachers", [0.75, 0.78, 0.72], dev=0.80),
        *runs(task, "ca_mkd", [0.70, 0.72, 0.66], dev=0.75),
        *runs(task, "reinforce", [0.70, 0.72, 0.66], dev=0.74),
        *runs(task, "reinforce:episode", [0.95, 0.95, 0.95], dev=0.73),
    ]


def records():
    no_headroom = [r for r in cell_records(HEAD) if r.entry not in ("correct_teachers", "ca_mkd", "reinforce", "reinforce:episode")]
    return cell_records(BOW) + no_headroom + runs(HEAD, "correct_teachers", [0.5, 0.5, 0.5], dev=0.8) + runs("zoo-bow-v1", "no_kd", [0.6], 0.6)


def test_a_cell_pairs_by_seed_and_chooses_by_dev():
    zoo, mixed = map_cells(records())  # zoo-bow-v1 is no map regime: left out; pools in MAP_POOLS order
    assert (zoo.regime, zoo.pool, zoo.labels, zoo.student) == (BOW, "zoo", 100, "bow")
    assert (zoo.scale.baseline, zoo.scale.reference) == ("avg_kd", "correct_teachers")
    assert zoo.scale.headroom.mean == pytest.approx((0.10 + 0.08 + 0.12) / 3) and zoo.scale.headroom.n == 3
    assert zoo.kd_gain.mean == pytest.approx((0.05 + 0.08 - 0.01) / 3)
    assert zoo.selector == "reinforce" and zoo.selector_gain.mean == pytest.approx((0.05 + 0.02 + 0.06) / 3)
    assert (mixed.pool, mixed.labels, mixed.student, mixed.selector) == ("mixed-quality", 2000, "head", None)
    assert mixed.scale.headroom.mean == pytest.approx(-0.15)
    # reinforce beats avg_kd by 4.3 points and best_teacher by less than nothing: the bar is not met
    assert zoo.selector_vs["best_teacher"].mean == pytest.approx((0.70 + 0.72 + 0.66) / 3 - 0.90) and not zoo.bar_met


def test_the_table_has_every_cell_in_points():
    table = map_table(map_cells(records()))
    rows = [line for line in table.splitlines() if line.startswith("| zoo |") or line.startswith("| mixed-quality |")]
    assert rows[0].startswith("| zoo | bow | 100 | 0.610 | 0.650* | 0.900 | 0.750 | +10.0 ± 5.0 | +4.0 ± ")
    assert "| reinforce | +4.3 ± " in rows[0]
    assert points(Summary.of([-0.0004, -0.0002])) == "+0.0 ± 0.1" and points(Summary.of([0.0123]), interval=False) == "+1.2"
    assert rows[1].startswith("| mixed-quality | head | 2,000 | ") and "| 0.500 | -15.0 ± 12.4 |" in rows[1] and rows[1].endswith("| - | - |")


def test_kd_env_map_writes_the_table_and_the_heatmap(tmp_path):
    results = tmp_path / "results.jsonl"
    for record in records():
        append_record(results, record)
    result = CliRunner().invoke(app, ["map", "--results", str(results), "--out", str(tmp_path / "map")])
    assert result.exit_code == 0, result.output
    assert "| zoo | bow | 100 |" in (tmp_path / "map" / "map.md").read_text()
    assert (tmp_path / "map" / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = CliRunner().invoke(app, ["map", "--results", str(tmp_path / "none.jsonl")])
    assert missing.exit_code == 2 and "no results in" in missing.stderr


def test_the_bar_needs_every_baseline_beaten_and_kd_to_matter():
    def cell(selector_tests, no_kd_tests):
        records = [*runs(BOW, "no_kd", no_kd_tests, dev=0.60), *runs(BOW, "avg_kd", [0.60, 0.61, 0.62], dev=0.70),
                   *runs(BOW, "best_teacher", [0.58, 0.60, 0.59], dev=0.65), *runs(BOW, "correct_teachers", [0.70, 0.71, 0.72], dev=0.80),
                   *runs(BOW, "reinforce", selector_tests, dev=0.75)]
        return map_cells(records)[0]

    assert cell([0.63, 0.64, 0.65], [0.55, 0.56, 0.57]).bar_met  # +3 over avg_kd, +8 over no_kd
    assert not cell([0.63, 0.64, 0.65], [0.60, 0.60, 0.60]).bar_met  # KD adds only 4 points over hard labels
    assert not cell([0.62, 0.60, 0.66], [0.55, 0.56, 0.57]).bar_met  # +1.7 over avg_kd, but the interval reaches below 0
    table = bar_table([cell([0.63, 0.64, 0.65], [0.55, 0.56, 0.57])])
    assert "| zoo | bow | 100 | reinforce | +8.0 ± 0.0 | +3.0 ± 0.0 | +5.0 ± 2.5 | met |" in table


def test_learned_entries_rank_by_their_dev_gap_and_one_can_fill_every_cell():
    from experiments.headroom_map import rank_learned

    ranks = rank_learned(records())
    assert [r.entry for r in ranks] == ["reinforce", "reinforce:episode"]  # ca_mkd is a rule
    assert ranks[0].dev_gap == pytest.approx(0.74 - 0.70) and ranks[1].test_gap == pytest.approx(0.95 - 0.65)
    zoo = map_cells(records(), selector="reinforce:episode")[0]
    assert zoo.selector == "reinforce:episode" and zoo.selector_vs["avg_kd"].mean == pytest.approx(0.30)
