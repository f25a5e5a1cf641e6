"""The headroom map: suite results on the map's regimes (``kd_env.regimes.map_regimes``: pool x label
budget L x student) turned into one table row and one heatmap cell per regime.

Per cell, every choice by mean dev accuracy, never test, and every difference in test accuracy, paired
by seed, in points (100 x accuracy) with its 95% t interval:

- **headroom**: the privileged reference (``correct_teachers``, or ``oracle``) minus the best of
  ``no_kd``, ``avg_kd`` and the best single teacher: the suite's normalisation
  (``experiments.normalised.regime_scales``). What per-instance selection could win;
- **KD gain**: ``avg_kd`` minus ``no_kd``: what averaging the teachers gives over the hard labels;
- **the best learned selector**: among the entries whose agent learns (``experiments.report.learned``:
  not the rules, such as the baselines, ``ca_mkd`` or the privileged references), the best by dev
  accuracy, and its gain over the best of the three baselines: what learned selection does win.

``kd-env map --results PATH`` writes the table (``map.md``) and the heatmap (``map.png``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import numpy as np  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402

from experiments.normalised import RegimeScale, regime_scales  # noqa: E402
from experiments.report import (  # noqa: E402
    BEST_SINGLE_AGENT, CLAIM_MARGIN, NO_KD_AGENT, REFERENCE_AGENT, Summary, learned, learned_selector, markdown, paired, successful_runs,
)
from experiments.results import RunRecord  # noqa: E402
from kd_env.regimes import MAP_LABELS, MAP_POOLS, MAP_STUDENTS, get_regime, map_regimes  # noqa: E402

BASELINES = (NO_KD_AGENT, REFERENCE_AGENT, BEST_SINGLE_AGENT)
KD_MARGIN = 0.05
"""How far a claim's distilled student must be ahead of hard labels alone for KD to matter in the cell."""


@dataclass(frozen=True)
class MapCell:
    """One regime of the map: its baselines and reference, its headroom, KD's gain and the best selector's."""

    regime: str
    pool: str
    labels: int
    student: str
    accuracy: dict[str, Summary]
    """Test accuracy of ``no_kd``, ``avg_kd``, ``best_teacher`` and the reference (key ``reference``)."""
    scale: RegimeScale
    """The best baseline, the reference and the headroom (reference − best baseline, paired)."""
    kd_gain: Summary
    """avg_kd − no_kd, paired."""
    selector: str | None
    selector_gain: Summary
    """The selector − the best baseline, paired."""
    selector_vs: dict[str, Summary]
    """The selector − each of ``no_kd``, ``avg_kd`` and ``best_teacher``, paired."""

    @property
    def bar_met(self) -> bool:
        """The bar of a claim on a cell: the selector ahead of each baseline by ``CLAIM_MARGIN`` with the
        paired interval above 0, and KD (the selector's student) ahead of hard labels by ``KD_MARGIN``."""
        if self.selector is None or any(self.selector_vs[label].n == 0 for label in BASELINES):
            return False
        ahead = all(self.selector_vs[label].mean >= CLAIM_MARGIN and self.selector_vs[label].lower > 0 for label in BASELINES)
        return ahead and self.selector_vs[NO_KD_AGENT].mean >= KD_MARGIN


def map_cells(records: list[RunRecord], selector: str | None = None) -> list[MapCell]:
    """A cell per map regime of ``records``, in pool, student, L order (``MAP_POOLS`` ...); ``selector``:
    this learned entry in every cell instead of each cell's own best by dev (one pick for the whole map)."""
    runs = successful_runs(records)
    present = {task for task, _ in runs}
    scales = {scale.regime: scale for scale in regime_scales([r for r in records if r.task in map_regimes()])}
    cells = []
    for name in (name for name in map_regimes() if name in present):
        regime = get_regime(name)
        of = lambda label, name=name: runs.get((name, label), {})  # noqa: E731
        scale = scales[name]
        if selector is None:
            chosen = learned_selector(runs, name)
        else:
            chosen = selector if runs.get((name, selector)) else None
        cells.append(MapCell(
            regime=name, pool=regime.teachers, labels=regime.task_options["labels"], student=regime.student,
            accuracy={**{label: Summary.of([r.test_accuracy for r in of(label).values()]) for label in BASELINES},
                      "reference": scale.reference_accuracy},
            scale=scale, kd_gain=paired(of(REFERENCE_AGENT), of(NO_KD_AGENT)),
            selector=chosen, selector_gain=paired(of(chosen), of(scale.baseline)) if chosen and scale.baseline else Summary.of([]),
            selector_vs={label: paired(of(chosen), of(label)) if chosen else Summary.of([]) for label in BASELINES},
        ))
    return sorted(cells, key=lambda c: (MAP_POOLS.index(c.pool), MAP_STUDENTS.index(c.student), MAP_LABELS.index(c.labels)))


def points(summary: Summary, interval: bool = True) -> str:
    """A paired difference in points: ``+4.2 ± 1.5`` (no interval under two seeds, ``-`` without any)."""
    if summary.n == 0:
        return "-"
    mean = f"{round(100 * summary.mean, 1) + 0.0:+.1f}"  # + 0.0: a mean that rounds to 0 reads +0.0, never -0.0
    return mean if math.isnan(summary.ci95) or not interval else f"{mean} ± {100 * summary.ci95:.1f}"


def map_table(cells: list[MapCell]) -> str:
    """Markdown: a row per cell, losers included; the best baseline (by dev) marked with *."""
    header = ["pool", "student", "L", "no_kd", "avg_kd", "best_teacher", "reference", "headroom (pt)", "KD gain (pt)",
              "best learned selector (by dev)", "its gain over the best baseline (pt)"]

    def accuracy(cell: MapCell, label: str) -> str:
        summary = cell.accuracy[label]
        return "-" if summary.n == 0 else f"{summary.mean:.3f}" + ("*" if label == cell.scale.baseline else "")

    rows = [[c.pool, c.student, f"{c.labels:,}", *(accuracy(c, label) for label in (*BASELINES, "reference")),
             points(c.scale.headroom), points(c.kd_gain), c.selector or "-", points(c.selector_gain)] for c in cells]
    return markdown(header, rows) + LEGEND


LEGEND = ("\nTest accuracy, mean over seeds; differences paired by seed, in points, ± the 95% t interval. * = the best "
          "baseline, by dev accuracy, of no_kd, avg_kd and best_teacher. reference = the privileged correct_teachers (or "
          "oracle). headroom = reference − the best baseline; KD gain = avg_kd − no_kd; best learned selector = the entry "
          "of a learning agent (not a rule) with the best dev accuracy.\n")


def plot_map(cells: list[MapCell], path: str | Path) -> Path:
    """Two panels (bow, head): pools x L, coloured by the headroom (points, diverging at 0), each cell
    annotated with the headroom and the best learned selector's gain over the best baseline."""
    by_key = {(c.student, c.pool, c.labels): c for c in cells}
    headrooms = [100 * c.scale.headroom.mean for c in cells if c.scale.headroom.n]
    limit = max([abs(h) for h in headrooms] + [1.0])
    norm, cmap = Normalize(-limit, limit), plt.get_cmap("RdBu").with_extremes(bad="0.85")
    fig, axes = plt.subplots(1, len(MAP_STUDENTS), figsize=(5.2 * len(MAP_STUDENTS) + 2.4, 0.75 * len(MAP_POOLS) + 1.6),
                             sharey=True, squeeze=False)
    for ax, student in zip(axes[0], MAP_STUDENTS):
        grid = np.full((len(MAP_POOLS), len(MAP_LABELS)), np.nan)
        for i, pool in enumerate(MAP_POOLS):
            for j, labels in enumerate(MAP_LABELS):
                cell = by_key.get((student, pool, labels))
                if cell is None:
                    ax.text(j, i, "not run", ha="center", va="center", fontsize=7, color="0.4")
                    continue
                if cell.scale.headroom.n:
                    grid[i, j] = 100 * cell.scale.headroom.mean
                text = f"{points(cell.scale.headroom, interval=False)}\nsel {points(cell.selector_gain, interval=False)}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7.5,
                        color="white" if not math.isnan(grid[i, j]) and abs(grid[i, j]) > 0.6 * limit else "black")
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
        ax.set_xticks(range(len(MAP_LABELS)), [f"{labels:,}" for labels in MAP_LABELS])
        ax.set_yticks(range(len(MAP_POOLS)), MAP_POOLS)  # shared: labelled on the first panel only
        ax.set_xlabel("labelled tweets L (of 2,000)")
        ax.set_title(f"{student} student")
    fig.colorbar(image, ax=axes[0].tolist(), label="headroom (points): reference − best baseline")
    fig.suptitle("Headroom map: top = headroom, sel = best learned selector (by dev) − best baseline, points", fontsize=9)
    path = Path(path)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


@dataclass(frozen=True)
class VariantRank:
    """A learned entry across the map: its mean gap to each cell's best baseline, paired by seed."""

    entry: str
    cells: int
    dev_gap: float
    test_gap: float


def rank_learned(records: list[RunRecord]) -> list[VariantRank]:
    """The learned entries by their mean dev-accuracy gap to each cell's best baseline (over the cells
    they ran), best first: the way to pick one selector for the whole map by dev."""
    runs = successful_runs(records)
    scales = {scale.regime: scale for scale in regime_scales([r for r in records if r.task in map_regimes()])}
    gaps: dict[str, list[tuple[float, float]]] = {}
    for (task, entry), of_entry in runs.items():
        scale = scales.get(task)
        if scale is None or scale.baseline is None or not learned(of_entry):
            continue
        dev, test = (paired(of_entry, runs[(task, scale.baseline)], metric) for metric in ("dev_accuracy", "test_accuracy"))
        if dev.n:
            gaps.setdefault(entry, []).append((dev.mean, test.mean))
    ranks = [VariantRank(entry, len(g), float(np.mean([d for d, _ in g])), float(np.mean([t for _, t in g]))) for entry, g in gaps.items()]
    return sorted(ranks, key=lambda r: -r.dev_gap)


def rank_table(ranks: list[VariantRank]) -> str:
    rows = [[r.entry, str(r.cells), f"{100 * r.dev_gap:+.2f}", f"{100 * r.test_gap:+.2f}"] for r in ranks]
    return markdown(["learned entry", "cells", "mean dev gap to the best baseline (pt)", "mean test gap (pt)"], rows)


def bar_table(cells: list[MapCell]) -> str:
    """Markdown: per cell with a learned selector, its paired gain over each baseline and the bar's verdict."""
    header = ["pool", "student", "L", "learned selector (by dev)", "Δ vs no_kd (pt)", "Δ vs avg_kd (pt)", "Δ vs best_teacher (pt)", "bar"]
    rows = [[c.pool, c.student, f"{c.labels:,}", c.selector, *(points(c.selector_vs[label]) for label in BASELINES),
             "met" if c.bar_met else "not met"] for c in cells if c.selector]
    return markdown(header, rows) + (
        f"\nbar: the learned selector (by dev) ahead of no_kd, avg_kd and best_teacher by at least {100 * CLAIM_MARGIN:.0f} point "
        f"each, every paired 95% interval above 0, and ahead of no_kd by at least {100 * KD_MARGIN:.0f} points (KD matters).\n")


def write_map(records: list[RunRecord], out: str | Path, selector: str | None = None) -> str:
    """Write ``map.md`` (the map, the bar per cell, the learned entries ranked by dev) and ``map.png``
    into ``out``; returns the map's table. ``selector``: see ``map_cells``."""
    cells = map_cells(records, selector)
    table = map_table(cells)
    out = Path(out)
    (out / "map.md").write_text(f"# Headroom map\n\n{table}\n## The bar per cell\n\n{bar_table(cells)}\n"
                                f"## Learned entries ranked by dev across the map\n\n{rank_table(rank_learned(records))}")
    plot_map(cells, out / "map.png")
    return table
