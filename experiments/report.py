"""Tables and plots from a results file: per grid entry means with 95% intervals, and paired differences.

The paired differences of an agent to the reference agents (Avg-KD, the best single teacher as
``best_teacher`` picks it by dev accuracy: the paper's two baselines; and hard labels alone, ``no_kd``)
are taken seed by seed on the same task (same seed = same student initialisation and batch order),
which removes the seed-to-seed spread that both share; its interval is the t interval of those
differences.

The headroom table says whether a task leaves per-instance selection anything to find: the student of
the best privileged reference (``correct_teachers``, ``oracle``) minus the better of Avg-KD's and the
best single teacher's students, paired. Without it, an agent that does not beat averaging may be
failing, or there may be nothing to win.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from experiments.results import RunRecord

REFERENCE_AGENT = "avg_kd"
BEST_SINGLE_AGENT = "best_teacher"
NO_KD_AGENT = "no_kd"
PRIVILEGED_AGENTS = ("correct_teachers", "oracle")
"""Reference selectors with privileged information: they bound selection, they do not compete."""

RunsByAgent = dict[tuple[str, str], dict[int, RunRecord]]
"""(task, entry label) -> seed -> the run that counts."""


@dataclass(frozen=True)
class Summary:
    """Mean, sample std and the 95% t-interval half-width of n values (NaN where n is too small)."""

    n: int
    mean: float
    std: float
    ci95: float

    @classmethod
    def of(cls, values: list[float]) -> "Summary":
        array = np.asarray(values, dtype=float)
        n = len(array)
        if n == 0:
            return cls(0, math.nan, math.nan, math.nan)
        if n == 1:
            return cls(1, float(array[0]), math.nan, math.nan)
        std = float(array.std(ddof=1))
        return cls(n, float(array.mean()), std, float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n))

    @property
    def lower(self) -> float:
        """The lower end of the 95% interval (NaN under 2 values)."""
        return self.mean - self.ci95


@dataclass(frozen=True)
class AgentRow:
    """One line of the comparison table: one grid entry (``RunRecord.entry``) on one task."""

    task: str
    entry: str
    test_accuracy: Summary
    test_macro_f1: Summary
    dev_accuracy: Summary
    paired_vs_reference: Summary
    paired_vs_best_single: Summary
    paired_vs_no_kd: Summary
    failed_runs: int


def successful_runs(records: list[RunRecord]) -> RunsByAgent:
    """Successful runs grouped by (task, entry label) and seed.

    Where a results file holds several successful runs of one (task, entry, seed), for instance after a
    preset's config changed, the latest one counts.
    """
    ok: RunsByAgent = defaultdict(dict)
    for record in records:
        if record.status == "ok":
            ok[(record.task, record.entry)][record.seed] = record
    return ok


def paired(runs: dict[int, RunRecord], other: dict[int, RunRecord], metric: str = "test_accuracy") -> Summary:
    """``metric`` of ``runs`` minus ``other``'s, seed by seed, over the seeds both have."""
    return Summary.of([getattr(runs[s], metric) - getattr(other[s], metric) for s in sorted(runs) if s in other])


def summarise(records: list[RunRecord], reference: str = REFERENCE_AGENT) -> list[AgentRow]:
    """Rows per (task, entry), sorted by task then mean test accuracy (best first)."""
    ok = successful_runs(records)
    failed: dict[tuple[str, str], int] = defaultdict(int)
    for record in records:
        if record.status != "ok":
            failed[(record.task, record.entry)] += 1
    rows = []
    for task, entry in sorted(set(ok) | set(failed)):
        runs = ok.get((task, entry), {})
        rows.append(
            AgentRow(
                task=task,
                entry=entry,
                test_accuracy=Summary.of([r.test_accuracy for r in runs.values()]),
                test_macro_f1=Summary.of([r.test_macro_f1 for r in runs.values()]),
                dev_accuracy=Summary.of([r.dev_accuracy for r in runs.values()]),
                paired_vs_reference=paired(runs, ok.get((task, reference), {})),
                paired_vs_best_single=paired(runs, ok.get((task, BEST_SINGLE_AGENT), {})),
                paired_vs_no_kd=paired(runs, ok.get((task, NO_KD_AGENT), {})),
                failed_runs=failed.get((task, entry), 0),
            )
        )
    return sorted(rows, key=lambda row: (row.task, -np.nan_to_num(row.test_accuracy.mean, nan=-1.0)))


@dataclass(frozen=True)
class Headroom:
    """What per-instance selection could win on one task, measured by its privileged references.

    ``baseline`` is the better of Avg-KD and the best single teacher (``best_teacher`` or a
    ``single:*`` entry), the two a learned selector must beat; ``best_of_three`` adds hard labels
    alone (``no_kd``). Every choice among agents is by their students' mean dev accuracy, never test.
    """

    task: str
    reference: str | None
    baseline: str | None
    best_of_three: str | None
    reference_accuracy: Summary
    baseline_accuracy: Summary
    headroom: Summary
    """Reference minus baseline, test accuracy, paired over seeds."""
    vs_best_of_three: Summary

    @property
    def verdict(self) -> str:
        if self.reference is None or self.baseline is None:
            return "not measured: needs correct_teachers or oracle, and avg_kd or a single teacher"
        if self.headroom.n < 2:
            return f"undetermined: {self.headroom.n} paired seed(s)"
        if not self.headroom.lower > 0:
            return "no headroom"
        # The 95% interval excludes 0 against Avg-KD and single teachers; hard labels may still match it.
        return "headroom" if self.vs_best_of_three.lower > 0 else f"headroom, but {self.best_of_three} is as good"


def _best_by_dev(runs: RunsByAgent, task: str, labels: list[str]) -> str | None:
    """The label among ``labels`` whose students have the highest mean dev accuracy on ``task``."""
    scored = [(np.mean([r.dev_accuracy for r in runs[(task, label)].values()]), label) for label in labels if runs.get((task, label))]
    return max(scored)[1] if scored else None


def _tasks(runs: RunsByAgent):
    """Per task: its entry labels, its best single teacher (by dev) and a label -> runs lookup."""
    for task in sorted({task for task, _ in runs}):
        labels = sorted(entry for t, entry in runs if t == task)
        single = _best_by_dev(runs, task, [a for a in labels if a == BEST_SINGLE_AGENT or a.startswith("single:")])
        yield task, labels, single, lambda label, task=task: runs.get((task, label), {})


def headroom_summary(records: list[RunRecord]) -> list[Headroom]:
    """One ``Headroom`` per task of ``records``."""
    runs = successful_runs(records)
    result = []
    for task, labels, single, of in _tasks(runs):
        reference = _best_by_dev(runs, task, [a for a in labels if a.split(":")[0] in PRIVILEGED_AGENTS])
        baseline = _best_by_dev(runs, task, [a for a in (REFERENCE_AGENT, single) if a])
        best_of_three = _best_by_dev(runs, task, [a for a in (NO_KD_AGENT, REFERENCE_AGENT, single) if a])
        result.append(Headroom(
            task=task, reference=reference, baseline=baseline, best_of_three=best_of_three,
            reference_accuracy=Summary.of([r.test_accuracy for r in of(reference).values()]),
            baseline_accuracy=Summary.of([r.test_accuracy for r in of(baseline).values()]),
            headroom=paired(of(reference), of(baseline)),
            vs_best_of_three=paired(of(reference), of(best_of_three)),
        ))
    return result


def headroom_table(headrooms: list[Headroom]) -> str:
    """Markdown: per task, the reference's student against the baselines' students (test accuracy)."""
    header = ["task", "privileged reference", "its student", "better of avg_kd, best single", "its student",
              "selection headroom (paired)", "best of no_kd, avg_kd, best single", "reference − best of three (paired)", "verdict"]
    return markdown(header, [
        [h.task, h.reference or "-", format_summary(h.reference_accuracy), h.baseline or "-", format_summary(h.baseline_accuracy),
         format_summary(h.headroom, signed=True), h.best_of_three or "-", format_summary(h.vs_best_of_three, signed=True), h.verdict]
        for h in headrooms
    ])


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


CLAIM_MARGIN = 0.01
"""The claim's bar: a learned selector ahead of Avg-KD and of the best single teacher by a point."""


@dataclass(frozen=True)
class Claim:
    """The paper's claim on one task: the learned selector with the best dev accuracy against Avg-KD,
    the best single teacher (also chosen by dev) and hard labels alone, paired test accuracy."""

    task: str
    selector: str | None
    best_single: str | None
    selector_accuracy: Summary
    vs_avg_kd: Summary
    vs_best_single: Summary
    vs_no_kd: Summary

    @property
    def verdict(self) -> str:
        if self.selector is None or self.best_single is None or self.vs_avg_kd.n == 0:
            return "not measured: needs a learned selector, avg_kd and a single teacher"
        beats = all(s.mean >= CLAIM_MARGIN and s.lower > 0 for s in (self.vs_avg_kd, self.vs_best_single))
        return f"met (>= +{CLAIM_MARGIN:.2f}, both intervals above 0)" if beats else "not met"


def learned(runs: dict[int, RunRecord]) -> bool:
    """Whether these runs' agent learns (``Agent.learns``): not a rule, a baseline or a privileged reference."""
    from agents import agent_class

    names = {r.config.get("train", {}).get("agent") for r in runs.values()}
    return bool(names) and None not in names and all(agent_class(name).learns for name in names)


def learned_selector(runs: RunsByAgent, task: str) -> str | None:
    """The entry of a learning agent with the best mean dev accuracy on ``task``."""
    return _best_by_dev(runs, task, sorted(entry for (t, entry), of_entry in runs.items() if t == task and learned(of_entry)))


def claim_summary(records: list[RunRecord]) -> list[Claim]:
    """One ``Claim`` per task of ``records``."""
    runs = successful_runs(records)
    result = []
    for task, labels, single, of in _tasks(runs):
        selector = learned_selector(runs, task)
        result.append(Claim(
            task=task, selector=selector, best_single=single,
            selector_accuracy=Summary.of([r.test_accuracy for r in of(selector).values()]),
            vs_avg_kd=paired(of(selector), of(REFERENCE_AGENT)),
            vs_best_single=paired(of(selector), of(single)),
            vs_no_kd=paired(of(selector), of(NO_KD_AGENT)),
        ))
    return result


def claim_table(claims: list[Claim]) -> str:
    """Markdown: per task, the learned selector picked by dev accuracy against the three baselines."""
    header = ["task", "learned selector (best dev)", "its student", "Δ vs avg_kd (paired)", "best single teacher (by dev)",
              "Δ vs it (paired)", "Δ vs no_kd (paired)", "claim"]
    return markdown(header, [
        [c.task, c.selector or "-", format_summary(c.selector_accuracy), format_summary(c.vs_avg_kd, signed=True), c.best_single or "-",
         format_summary(c.vs_best_single, signed=True), format_summary(c.vs_no_kd, signed=True), c.verdict]
        for c in claims
    ]) + CLAIM_LEGEND


CLAIM_LEGEND = (f"\nclaim (the paper's): the learned selector's student beats both Avg-KD's and the best single teacher's by at "
                f"least {CLAIM_MARGIN:.2f} test accuracy, with both paired 95% intervals above 0; \"not met\" otherwise.\n")


def format_summary(summary: Summary, signed: bool = False) -> str:
    if summary.n == 0:
        return "-"
    mean = f"{summary.mean:+.4f}" if signed else f"{summary.mean:.4f}"
    return mean if math.isnan(summary.ci95) else f"{mean} ± {summary.ci95:.4f}"


def markdown_table(rows: list[AgentRow], reference: str = REFERENCE_AGENT) -> str:
    """Mean ± 95% CI half-width over seeds; the paired columns are the row's entry minus the column's, per
    seed (the ``best_teacher`` and ``no_kd`` columns only where that entry ran)."""
    present = {r.entry for r in rows}
    optional = ((BEST_SINGLE_AGENT, "paired_vs_best_single"), (NO_KD_AGENT, "paired_vs_no_kd"))
    columns = [(reference, "paired_vs_reference")] + [(entry, name) for entry, name in optional if entry in present]
    header = (
        "| task | entry | seeds | test accuracy | std | test macro-F1 | dev accuracy |"
        + "".join(f" paired Δ vs {entry} |" for entry, _ in columns) + " failed |\n"
        + "|---" * (8 + len(columns)) + "|\n"
    )

    def paired_cell(row: AgentRow, entry: str, name: str) -> str:
        return "—" if row.entry == entry else format_summary(getattr(row, name), signed=True)

    lines = [
        f"| {r.task} | {r.entry} | {r.test_accuracy.n} | {format_summary(r.test_accuracy)} | "
        f"{'-' if math.isnan(r.test_accuracy.std) else f'{r.test_accuracy.std:.4f}'} | {format_summary(r.test_macro_f1)} | "
        f"{format_summary(r.dev_accuracy)} |" + "".join(f" {paired_cell(r, entry, name)} |" for entry, name in columns)
        + f" {r.failed_runs} |"
        for r in rows
    ]
    return header + "\n".join(lines) + "\n"


def write_csv(rows: list[AgentRow], path: str | Path) -> None:
    fields = ["test_accuracy", "test_macro_f1", "dev_accuracy", "paired_vs_reference", "paired_vs_best_single", "paired_vs_no_kd"]
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["task", "entry", "seeds", "failed"] + [f"{f}_{s}" for f in fields for s in ("mean", "std", "ci95")])
        for r in rows:
            values = [getattr(r, f) for f in fields]
            writer.writerow([r.task, r.entry, r.test_accuracy.n, r.failed_runs] + [x for v in values for x in (v.mean, v.std, v.ci95)])


def single_teacher_table(records: list[RunRecord]) -> str:
    """The paper's observation: each teacher's own test accuracy beside its student's (distilled alone)."""
    rows = [row for row in summarise(records) if row.entry.startswith("single:")]
    if not rows:
        return ""
    teacher_accuracy = {(r.task, name): acc for r in records for name, acc in r.teacher_test_accuracy.items()}
    lines = ["| task | teacher | teacher test accuracy | student distilled from it alone |", "|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: (r.task, -teacher_accuracy.get((r.task, r.entry[len("single:"):]), 0.0))):
        name = row.entry[len("single:"):]
        accuracy = teacher_accuracy.get((row.task, name))
        lines.append(f"| {row.task} | {name} | {'-' if accuracy is None else f'{accuracy:.4f}'} | {format_summary(row.test_accuracy)} |")
    return "\n".join(lines) + "\n"
