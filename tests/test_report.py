import math

import pytest

from experiments.plots import plot_accuracy, plot_curves, plot_selection
from experiments.report import Summary, headroom_summary, headroom_table, markdown_table, summarise, write_csv
from experiments.results import RunRecord


def record(entry, seed, accuracy, task="synthetic", dev=None, **extra):
    return RunRecord(
        entry=entry, task=task, seed=seed, student="head", teachers=["t0", "t1"], test_accuracy=accuracy,
        test_macro_f1=accuracy - 0.1, dev_accuracy=accuracy if dev is None else dev, env_steps=10, wall_time_s=1.0,
        **extra,
    )


def grid(task="synthetic", **accuracies):
    """Records of agents (keyword = label, ``__`` for ``:``) given their test accuracy per seed."""
    return [record(label.replace("__", ":"), seed, value, task=task)
            for label, values in accuracies.items() for seed, value in enumerate(values)]


def test_summary_matches_hand_computation():
    s = Summary.of([0.70, 0.72, 0.74])
    assert s.mean == pytest.approx(0.72)
    assert s.std == pytest.approx(0.02)
    assert s.ci95 == pytest.approx(4.303 * 0.02 / math.sqrt(3), rel=1e-4)  # t(0.975, 2 dof) = 4.303
    assert math.isnan(Summary.of([0.5]).ci95) and Summary.of([]).n == 0


def test_paired_difference_is_per_seed():
    records = [record("avg_kd", s, a) for s, a in enumerate([0.60, 0.70, 0.80])]
    records += [record("reinforce", s, a + 0.01 * (s + 1)) for s, a in enumerate([0.60, 0.70, 0.80])]
    failed = RunRecord(
        entry="reinforce", task="synthetic", seed=9, student="head", teachers=[], test_accuracy=None,
        test_macro_f1=None, dev_accuracy=None, env_steps=3, wall_time_s=0.1, status="failed", error="boom",
    )
    records.append(failed)
    rows = {row.entry: row for row in summarise(records)}
    paired = rows["reinforce"].paired_vs_reference
    # Differences 0.01, 0.02, 0.03: the seed spread (0.6..0.8) does not enter the paired interval.
    assert paired.n == 3 and paired.mean == pytest.approx(0.02) and paired.std == pytest.approx(0.01)
    assert rows["reinforce"].failed_runs == 1
    table = markdown_table(list(rows.values()))
    assert "| synthetic | reinforce | 3 |" in table and "+0.0200" in table and "best_teacher" not in table


def test_paired_difference_to_the_best_single_teacher():
    records = [record("avg_kd", s, 0.60) for s in range(2)] + [record("best_teacher", s, 0.65 + 0.01 * s) for s in range(2)]
    records += [record("reinforce", s, 0.66) for s in range(2)]
    rows = {row.entry: row for row in summarise(records)}
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


def test_headroom_is_the_best_reference_minus_the_better_baseline_paired():
    records = grid(no_kd=[0.60, 0.70, 0.80], avg_kd=[0.62, 0.71, 0.81], best_teacher=[0.61, 0.72, 0.80],
                   correct_teachers=[0.64, 0.73, 0.84], oracle=[0.66, 0.76, 0.86], reinforce=[0.7, 0.7, 0.7])
    (h,) = headroom_summary(records)
    assert (h.reference, h.baseline, h.best_of_three) == ("oracle", "avg_kd", "avg_kd")
    # Differences 0.04, 0.05, 0.05: the seed spread (0.6..0.8) does not enter the interval.
    assert h.headroom.n == 3 and h.headroom.mean == pytest.approx(0.14 / 3)
    assert h.verdict == "headroom"
    table = headroom_table([h])
    assert "| synthetic | oracle |" in table and "+0.0467 ± " in table and "| headroom |" in table


def test_a_task_without_headroom_says_so():
    records = grid(task="twitter", no_kd=[0.70, 0.72, 0.74], avg_kd=[0.69, 0.73, 0.74], single__a=[0.68, 0.70, 0.72],
                   correct_teachers=[0.69, 0.72, 0.75])
    (h,) = headroom_summary(records)
    assert (h.reference, h.baseline, h.best_of_three) == ("correct_teachers", "avg_kd", "no_kd")
    assert h.headroom.mean == pytest.approx(0.0) and h.verdict == "no headroom"
    assert h.vs_best_of_three.mean == pytest.approx(0.0)


def test_headroom_that_hard_labels_alone_match_says_so():
    records = grid(no_kd=[0.70, 0.72, 0.74], avg_kd=[0.60, 0.62, 0.64], oracle=[0.70, 0.73, 0.73])
    (h,) = headroom_summary(records)
    assert h.headroom.mean == pytest.approx(0.1) and h.best_of_three == "no_kd"
    assert h.verdict == "headroom, but no_kd is as good"


def test_headroom_choices_go_by_dev_accuracy_never_test():
    records = [record("avg_kd", s, 0.70, dev=0.60) for s in range(2)]
    records += [record("single:a", s, 0.65, dev=0.62) for s in range(2)] + [record("single:b", s, 0.75, dev=0.50) for s in range(2)]
    records += [record("correct_teachers:lowest_ce", s, 0.72, dev=0.70) for s in range(2)]
    records += [record("correct_teachers", s, 0.80, dev=0.65) for s in range(2)]
    (h,) = headroom_summary(records)
    assert (h.reference, h.baseline) == ("correct_teachers:lowest_ce", "single:a")
    assert h.headroom.mean == pytest.approx(0.07) and h.headroom.ci95 == 0.0 and h.verdict == "headroom"


@pytest.mark.parametrize("records, verdict", [
    (grid(avg_kd=[0.6, 0.7], reinforce=[0.7, 0.8]), "not measured"),
    (grid(avg_kd=[0.6], correct_teachers=[0.7]), "undetermined: 1 paired seed"),
])
def test_headroom_needs_a_reference_a_baseline_and_two_seeds(records, verdict):
    (h,) = headroom_summary(records)
    assert h.verdict.startswith(verdict) and verdict in headroom_table([h])


def test_table_has_the_paired_difference_to_hard_labels_where_no_kd_ran():
    rows = summarise(grid(avg_kd=[0.6, 0.7], no_kd=[0.55, 0.6], reinforce=[0.62, 0.72]))
    table = markdown_table(rows)
    assert "paired Δ vs no_kd" in table and table.splitlines()[1].count("---") == 10
    reinforce = next(r for r in rows if r.entry == "reinforce")
    assert reinforce.paired_vs_no_kd.mean == pytest.approx(0.095)


def test_the_written_report_leads_with_the_headroom(tmp_path):
    from experiments.report_files import write_report
    from experiments.results import append_record

    for run in grid(avg_kd=[0.6, 0.7, 0.8], correct_teachers=[0.65, 0.74, 0.85]):
        append_record(tmp_path / "results.jsonl", run)
    text = write_report(tmp_path / "results.jsonl", tmp_path)
    settings, rest = text.split("\n\n", 1)
    assert settings == "Settings: profile `paper` (kd_env.config)."  # these records name no env settings
    assert rest.startswith("| task | privileged reference |") and "| headroom |" in (tmp_path / "headroom.md").read_text()
    assert "The paper's claim: not measured" in text and not (tmp_path / "single_teachers.md").exists()


def test_a_report_without_a_reference_leads_with_the_table_and_names_the_profile(tmp_path):
    from experiments.report_files import write_report
    from experiments.results import append_record
    from kd_env.config import PROFILES

    recommended = {"train": {"agent": "avg_kd", "env_kwargs": {"task": "synthetic", **PROFILES["recommended"].kwargs()}}}
    no_kd = {"train": {"agent": "no_kd", "env_kwargs": {"task": "synthetic", **PROFILES["recommended"].kwargs(), "empty_selection": "hard_label"}}}
    for seed, accuracy in enumerate([0.6, 0.7]):
        append_record(tmp_path / "results.jsonl", record("avg_kd", seed, accuracy, config=recommended))
        append_record(tmp_path / "results.jsonl", record("no_kd", seed, accuracy - 0.1, config=no_kd))
    text = write_report(tmp_path / "results.jsonl", tmp_path)
    settings, table, rest = text.split("\n\n", 2)
    assert settings == "Settings: profile `recommended` (kd_env.config); entries that change it: no_kd (empty_selection=hard_label)."
    assert table.startswith("| task | entry |") and rest.startswith("Selection headroom: not measured")
    assert "The paper's claim: not measured (no learned selector ran)." in rest and "| - |" not in rest
    assert not (tmp_path / "selection.md").exists()


def profiled(entry, seed, right, wrong):
    selection = {"teachers": ["t0", "t1"], "rate_when_correct": right, "rate_when_wrong": wrong, "wrong_teachers": [0, 1, 2],
                 "rate_by_wrong_teachers": [[0.5, 0.5]] * 3, "count_by_wrong_teachers": [10, 5, 2]}
    env_kwargs = {"empty_selection": "all_teachers"}
    return record(entry, seed, 0.7, selection=selection, config={"train": {"agent": "reinforce", "env_kwargs": env_kwargs}})


def test_every_report_has_the_selection_profile_table_and_names_blind_selectors(tmp_path):
    from experiments.report_files import write_report
    from experiments.results import append_record

    runs = [profiled("reinforce", 0, [1.0, 0.9], [0.0, 0.1]), profiled("reinforce", 1, [0.96, 0.9], [0.0, 0.1]),
            profiled("ppo", 0, [0.0, 0.0], [0.0, 0.0]), profiled("ppo", 1, [0.0, 0.01], [0.0, 0.0])]
    for run in runs:
        append_record(tmp_path / "results.jsonl", run)
    text = write_report(tmp_path / "results.jsonl", tmp_path)
    selection = (tmp_path / "selection.md").read_text()
    assert selection in text
    assert "| synthetic | reinforce | t0 | 0.98 (0.96–1.00) | 0.00 | 2 |" in selection
    assert "| synthetic | reinforce | t1 | 0.90 | 0.10 | 2 |" in selection
    assert "warning: synthetic / ppo (seeds 0, 1): the selector selects no teacher, right or wrong, so the student equals Avg-KD's" in selection
    assert "reinforce (seed" not in selection


def test_a_blind_selector_is_called_out_with_what_the_student_equals():
    from experiments.selection import selection_warning

    nothing = {"rate_when_correct": [0.0, 0.01], "rate_when_wrong": [0.0, None]}
    assert "equals Avg-KD's" in selection_warning(nothing, "all_teachers")
    assert "equals no_kd's" in selection_warning(nothing, "hard_label")
    assert "every teacher" in selection_warning({"rate_when_correct": [1.0, 1.0], "rate_when_wrong": [0.99, 1.0]}, "all_teachers")
    assert selection_warning({"rate_when_correct": [0.9, 1.0], "rate_when_wrong": [0.1, 0.0]}, "all_teachers") is None


def learned_grid(**accuracies):
    """``grid`` records carrying the registered agent name each label runs (the claim reads it)."""
    names = {"reinforce": "reinforce", "ppo_instance": "ppo_instance", "avg_kd": "avg_kd", "no_kd": "no_kd",
             "correct_teachers": "correct_teachers"}
    records = []
    for label, values in accuracies.items():
        label = label.replace("__", ":")
        agent = names.get(label, "single_teacher")
        for seed, (test, dev) in enumerate(values):
            records.append(record(label, seed, test, dev=dev, config={"train": {"agent": agent}}))
    return records


def test_claim_picks_the_learned_selector_by_dev_and_ignores_rules_and_references():
    from experiments.report import claim_summary, claim_table

    records = learned_grid(
        avg_kd=[(0.60, 0.6), (0.62, 0.6), (0.61, 0.6)],
        single__t0=[(0.55, 0.5), (0.56, 0.5), (0.57, 0.5)],
        no_kd=[(0.64, 0.6), (0.65, 0.6), (0.63, 0.6)],
        correct_teachers=[(0.90, 0.9), (0.90, 0.9), (0.90, 0.9)],  # privileged: never the selector
        reinforce=[(0.66, 0.7), (0.67, 0.7), (0.68, 0.7)],
        ppo_instance=[(0.80, 0.1), (0.80, 0.1), (0.80, 0.1)],  # best on test, worst on dev: not chosen
    )
    (claim,) = claim_summary(records)
    assert claim.selector == "reinforce" and claim.best_single == "single:t0"
    assert claim.vs_avg_kd.mean == pytest.approx(0.06) and claim.vs_best_single.mean == pytest.approx(0.11)
    assert claim.vs_no_kd.mean == pytest.approx(0.03)
    assert claim.verdict.startswith("met")
    assert "| reinforce |" in claim_table([claim]) and "claim (the paper's): the learned selector's student beats" in claim_table([claim])


def test_claim_not_met_when_a_baseline_is_within_the_margin():
    from experiments.report import claim_summary

    records = learned_grid(
        avg_kd=[(0.600, 0.6), (0.610, 0.6), (0.620, 0.6)],
        single__t0=[(0.55, 0.5), (0.56, 0.5), (0.57, 0.5)],
        reinforce=[(0.605, 0.7), (0.616, 0.7), (0.624, 0.7)],  # +0.005: above Avg-KD, below the bar
    )
    (claim,) = claim_summary(records)
    assert claim.vs_avg_kd.lower > 0 and claim.verdict == "not met"
