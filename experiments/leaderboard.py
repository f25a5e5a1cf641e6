"""The suite's leaderboard: the IQM of the normalised score across regimes and seeds, and the per-regime table.

The aggregate is rliable's (``experiments.aggregate``): the interquartile mean of every run of every
scored regime, with stratified-bootstrap 95% intervals (seeds resampled within each regime). Regimes
without headroom are listed with their measurements, but not scored (``experiments.normalised``).
"""

from __future__ import annotations

from experiments.aggregate import AggregateRow, aggregate_matrices, aggregate_table, complete_matrices
from experiments.normalised import RegimeScale, ScoresByRegime, normalised_scores, regime_scales
from experiments.report import Summary, format_summary, markdown
from experiments.results import RunRecord

LEGEND = ("\nnormalised score: (student − best baseline) / (privileged reference − best baseline), test accuracy, paired by "
          "seed; 0 = the best of no_kd, avg_kd and the best single teacher, 1 = the reference (both picked by dev accuracy) "
          "on average. Regimes where the reference does not beat the best baseline have no headroom and are left out.\n")


def leaderboard(records: list[RunRecord], reps: int = 2000) -> str:
    """Markdown: the leaderboard over the scored regimes, then one row per regime of ``records``."""
    scales = regime_scales(records)
    scores = normalised_scores(records, scales)
    by_entry: dict[str, dict[str, list[float]]] = {}
    for regime, entries in scores.items():
        for entry, by_seed in entries.items():
            by_entry.setdefault(entry, {})[regime] = list(by_seed.values())
    rows = aggregate_matrices(complete_matrices(by_entry), reps, reference=None)
    board = (aggregate_table(rows, "normalised score", reference=None) + LEGEND if rows
             else "No regime has headroom: there is no normalised score to aggregate.\n")
    scored = ", ".join(s.regime for s in scales if s.scored) or "none"
    return f"## Leaderboard (regimes scored: {scored})\n\n{board}\n## Per regime\n\n{regime_table(scales, scores, rows)}"


def regime_table(scales: list[RegimeScale], scores: ScoresByRegime, rows: list[AggregateRow]) -> str:
    """Markdown: each regime's baseline, reference and headroom, and each entry's mean normalised score
    with its 95% t interval over seeds (leaderboard order, then the entries it left out)."""
    entries = [row.entry for row in rows]
    entries += sorted({entry for by_entry in scores.values() for entry in by_entry} - set(entries))
    header = ["regime", "best baseline (dev)", "its test accuracy", "privileged reference (dev)", "its test accuracy",
              "headroom (paired)", "status", *entries]
    lines = []
    for scale in scales:
        by_entry = scores.get(scale.regime, {})
        cells = [format_summary(Summary.of(list(by_entry[entry].values())), signed=True) if entry in by_entry else "—"
                 for entry in entries]
        lines.append([scale.regime, scale.baseline or "-", format_summary(scale.baseline_accuracy), scale.reference or "-",
                      format_summary(scale.reference_accuracy), format_summary(scale.headroom, signed=True), scale.status, *cells])
    return markdown(header, lines)
