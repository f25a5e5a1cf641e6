"""Tables and plots from a results file: per-agent means with 95% intervals, and paired differences.

The paired differences of an agent to the reference agents (Avg-KD, and the best single teacher as
``best_teacher`` picks it by dev accuracy: the paper's two baselines) are taken seed by seed on the same
task (same seed = same student initialisation and batch order), which removes the seed-to-seed spread
that both share; its interval is the t interval of those differences.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.results import RunRecord

REFERENCE_AGENT = "avg_kd"
BEST_SINGLE_AGENT = "best_teacher"
# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom; 1.96 beyond.
_T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)


def t_quantile_975(degrees_of_freedom: int) -> float:
    return _T_975[degrees_of_freedom - 1] if degrees_of_freedom <= len(_T_975) else 1.96


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
        return cls(n, float(array.mean()), std, t_quantile_975(n - 1) * std / math.sqrt(n))


@dataclass(frozen=True)
class AgentRow:
    """One line of the comparison table."""

    task: str
    agent: str
    test_accuracy: Summary
    test_macro_f1: Summary
    dev_accuracy: Summary
    paired_vs_reference: Summary
    paired_vs_best_single: Summary
    failed_runs: int


def summarise(records: list[RunRecord], reference: str = REFERENCE_AGENT) -> list[AgentRow]:
    """Rows per (task, agent), sorted by task then mean test accuracy (best first).

    Agents are grouped by their label; where a results file holds several successful runs of one
    (task, agent, seed), for instance after a preset's config changed, the latest one counts.
    """
    ok: dict[tuple[str, str], dict[int, RunRecord]] = defaultdict(dict)
    failed: dict[tuple[str, str], int] = defaultdict(int)
    for record in records:
        if record.status == "ok":
            ok[(record.task, record.agent)][record.seed] = record
        else:
            failed[(record.task, record.agent)] += 1
    rows = []
    for task, agent in sorted(set(ok) | set(failed)):
        runs = ok.get((task, agent), {})

        def paired(other: str) -> Summary:
            other_runs = ok.get((task, other), {})
            return Summary.of([runs[s].test_accuracy - other_runs[s].test_accuracy for s in sorted(runs) if s in other_runs])

        rows.append(
            AgentRow(
                task=task,
                agent=agent,
                test_accuracy=Summary.of([r.test_accuracy for r in runs.values()]),
                test_macro_f1=Summary.of([r.test_macro_f1 for r in runs.values()]),
                dev_accuracy=Summary.of([r.dev_accuracy for r in runs.values()]),
                paired_vs_reference=paired(reference),
                paired_vs_best_single=paired(BEST_SINGLE_AGENT),
                failed_runs=failed.get((task, agent), 0),
            )
        )
    return sorted(rows, key=lambda row: (row.task, -np.nan_to_num(row.test_accuracy.mean, nan=-1.0)))


def _fmt(summary: Summary, signed: bool = False) -> str:
    if summary.n == 0:
        return "-"
    mean = f"{summary.mean:+.4f}" if signed else f"{summary.mean:.4f}"
    return mean if math.isnan(summary.ci95) else f"{mean} ± {summary.ci95:.4f}"


def markdown_table(rows: list[AgentRow], reference: str = REFERENCE_AGENT) -> str:
    """Mean ± 95% CI half-width over seeds; the paired columns are agent minus reference, per seed
    (the ``best_teacher`` column only where that agent ran)."""
    best_single = any(r.agent == BEST_SINGLE_AGENT for r in rows)
    extra = f" paired Δ vs {BEST_SINGLE_AGENT} |" if best_single else ""
    header = (
        f"| task | agent | seeds | test accuracy | std | test macro-F1 | dev accuracy | paired Δ vs {reference} |{extra} failed |\n"
        + "|---" * (9 + best_single) + "|\n"
    )

    def paired_cell(row: AgentRow, other: str, summary: Summary) -> str:
        return "—" if row.agent == other else _fmt(summary, signed=True)

    lines = [
        f"| {r.task} | {r.agent} | {r.test_accuracy.n} | {_fmt(r.test_accuracy)} | "
        f"{'-' if math.isnan(r.test_accuracy.std) else f'{r.test_accuracy.std:.4f}'} | {_fmt(r.test_macro_f1)} | "
        f"{_fmt(r.dev_accuracy)} | {paired_cell(r, reference, r.paired_vs_reference)} |"
        + (f" {paired_cell(r, BEST_SINGLE_AGENT, r.paired_vs_best_single)} |" if best_single else "")
        + f" {r.failed_runs} |"
        for r in rows
    ]
    return header + "\n".join(lines) + "\n"


def write_csv(rows: list[AgentRow], path: str | Path) -> None:
    fields = ["test_accuracy", "test_macro_f1", "dev_accuracy", "paired_vs_reference", "paired_vs_best_single"]
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["task", "agent", "seeds", "failed"] + [f"{f}_{s}" for f in fields for s in ("mean", "std", "ci95")])
        for r in rows:
            values = [getattr(r, f) for f in fields]
            writer.writerow([r.task, r.agent, r.test_accuracy.n, r.failed_runs] + [x for v in values for x in (v.mean, v.std, v.ci95)])


def single_teacher_table(records: list[RunRecord]) -> str:
    """The paper's observation: each teacher's own test accuracy beside its student's (distilled alone)."""
    rows = [row for row in summarise(records) if row.agent.startswith("single:")]
    if not rows:
        return ""
    teacher_accuracy = {(r.task, name): acc for r in records for name, acc in r.teacher_test_accuracy.items()}
    lines = ["| task | teacher | teacher test accuracy | student distilled from it alone |", "|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: (r.task, -teacher_accuracy.get((r.task, r.agent[len("single:"):]), 0.0))):
        name = row.agent[len("single:"):]
        accuracy = teacher_accuracy.get((row.task, name))
        lines.append(f"| {row.task} | {name} | {'-' if accuracy is None else f'{accuracy:.4f}'} | {_fmt(row.test_accuracy)} |")
    return "\n".join(lines) + "\n"
