"""Aggregate comparison across tasks (or regimes) and seeds, as the RL field reports it.

Per-task means with t intervals hide how much a few seeds decide, and averaging tasks lets one task
dominate. Agarwal et al. ("Deep RL at the Edge of the Statistical Precipice", NeurIPS 2021; the
``rliable`` library) recommend instead, over the (seed, task) score matrix of each agent:

- the interquartile mean (IQM: the mean of the middle 50% of all runs), robust to outlier runs;
- stratified-bootstrap confidence intervals: seeds resampled with replacement within each task;
- the probability of improvement P(X > Y): the chance that a run of agent X beats a run of agent Y on
  the same task (Mann-Whitney's U statistic / n_x n_y, ties counting half), averaged over tasks.

These are rliable's definitions, computed here with numpy and scipy: rliable 1.2 requires ``arch<8``,
whose releases do not import under pandas 3 (which ``datasets`` brings in).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from experiments.report import REFERENCE_AGENT as REFERENCE
from experiments.results import RunRecord

logger = logging.getLogger(__name__)



def score_matrices(records: list[RunRecord]) -> dict[str, list[np.ndarray]]:
    """Entry label -> one array of per-seed test accuracies per task, failed runs dropped (``complete_matrices``)."""
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        if record.status == "ok" and record.test_accuracy is not None:
            scores[record.entry][record.task].append(record.test_accuracy)
    return complete_matrices(scores)


def complete_matrices(scores: dict[str, dict[str, list[float]]]) -> dict[str, list[np.ndarray]]:
    """Entry -> task -> per-seed scores as entry -> one array per task; an entry missing from some task is
    left out (its aggregate would be over other tasks than the rest)."""
    tasks = sorted({task for by_task in scores.values() for task in by_task})
    partial = sorted(entry for entry, by_task in scores.items() if set(by_task) != set(tasks))
    if partial:
        logger.warning("left out of the aggregate (not run on every task of %s): %s", tasks, partial)
    return {entry: [np.asarray(by_task[task]) for task in tasks] for entry, by_task in scores.items() if entry not in partial}


def iqm(per_task: list[np.ndarray]) -> float | np.ndarray:
    """Interquartile mean of every run of every task (over the last axis: bootstrap draws lead)."""
    return stats.trim_mean(np.concatenate(per_task, axis=-1), 0.25, axis=-1)


def mean(per_task: list[np.ndarray]) -> float | np.ndarray:
    return np.concatenate(per_task, axis=-1).mean(axis=-1)


def probability_of_improvement(x: list[np.ndarray], y: list[np.ndarray]) -> float | np.ndarray:
    """P(a run of X beats a run of Y on the same task, ties counting half), averaged over tasks."""
    per_task = [(xs[..., :, None] > ys[..., None, :]).mean(axis=(-2, -1)) + 0.5 * (xs[..., :, None] == ys[..., None, :]).mean(axis=(-2, -1))
                for xs, ys in zip(x, y)]
    return np.mean(per_task, axis=0)


def stratified_interval(statistic: Callable[..., float | np.ndarray], samples: tuple[list[np.ndarray], ...],
                        reps: int = 2000) -> tuple[float, float, float]:
    """(point estimate, low, high): percentile interval over ``reps`` resamplings of the seeds within
    each task, each of ``samples`` (one per agent) resampled independently; all draws at once; 95%,
    seeded so that a report is the same each time it is made."""
    rng = np.random.default_rng(0)
    point = float(statistic(*samples))
    resampled = tuple([scores[rng.integers(0, len(scores), (reps, len(scores)))] for scores in sample] for sample in samples)
    tail = 2.5
    low, high = np.percentile(statistic(*resampled), [tail, 100 - tail])
    return point, float(low), float(high)


@dataclass(frozen=True)
class AggregateRow:
    entry: str
    """The grid entry's label (``RunRecord.entry``)."""
    runs: int
    iqm: tuple[float, float, float]
    mean: tuple[float, float, float]
    improvement: tuple[float, float, float] | None
    """P(this entry > the reference entry) with its interval; None for the reference itself."""


def aggregate(records: list[RunRecord], reps: int = 2000) -> list[AggregateRow]:
    """One row per entry of the test accuracies, best IQM first."""
    return aggregate_matrices(score_matrices(records), reps)


def aggregate_matrices(scores: dict[str, list[np.ndarray]], reps: int = 2000, reference: str | None = REFERENCE) -> list[AggregateRow]:
    """One row per entry of ``score_matrices``-shaped scores, best IQM first; P(entry > ``reference``) where
    that entry is scored (None: not computed)."""
    rows = []
    for entry, per_task in scores.items():
        improvement = None
        if reference in scores and entry != reference:
            improvement = stratified_interval(probability_of_improvement, (per_task, scores[reference]), reps)
        rows.append(AggregateRow(entry, sum(len(s) for s in per_task), stratified_interval(iqm, (per_task,), reps),
                                 stratified_interval(mean, (per_task,), reps), improvement))
    return sorted(rows, key=lambda row: -row.iqm[0])


def _interval(values: tuple[float, float, float]) -> str:
    return f"{values[0]:.4f} [{values[1]:.4f}, {values[2]:.4f}]"


def aggregate_table(rows: list[AggregateRow], score: str = "test accuracy", reference: str | None = REFERENCE) -> str:
    """Markdown: IQM and mean of ``score`` and P(entry > ``reference``) (no column for None), each with
    its 95% stratified-bootstrap interval."""
    improvement = [] if reference is None else [f"P(entry > {reference})"]
    lines = ["| " + " | ".join(["entry", "runs", f"IQM {score}", f"mean {score}", *improvement]) + " |", "|---" * (4 + len(improvement)) + "|"]
    for row in rows:
        cells = [row.entry, str(row.runs), _interval(row.iqm), _interval(row.mean)]
        if reference is not None:
            cells.append("—" if row.improvement is None else _interval(row.improvement))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_aggregate(rows: list[AggregateRow], path: str | Path) -> Path:
    """IQM and P(improvement) with their intervals, one line per entry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.4 * len(rows) + 1.5), sharey=True)
    positions = np.arange(len(rows))[::-1]
    for axis, key, title in ((left, "iqm", "IQM test accuracy"), (right, "improvement", f"P(entry > {REFERENCE})")):
        for y, row in zip(positions, rows):
            values = getattr(row, key)
            if values is not None:
                axis.plot([values[1], values[2]], [y, y], color="tab:blue", linewidth=4, alpha=0.5)
                axis.plot(values[0], y, "o", color="tab:blue")
        axis.set_title(title)
        axis.grid(axis="x", alpha=0.3)
    right.axvline(0.5, color="grey", linestyle="--")
    left.set_yticks(positions, [row.entry for row in rows])
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
