"""The suite's normalised score: where a run's student lands between the best baseline (0) and the
privileged reference (1), so that regimes of different difficulty can be aggregated.

Per regime (a ``task`` of the results), every choice by mean dev accuracy, never test
(``experiments.report.headroom_summary``):

- the best baseline B: the best of ``no_kd``, ``avg_kd`` and the best single teacher (``best_teacher``
  or a ``single:*`` entry): what a learned selector must beat;
- the privileged reference R: the better of ``correct_teachers`` and ``oracle``;
- the headroom H: R's test accuracy minus B's, paired by seed, averaged over the seeds both ran.

A run of seed s scores ``(test_s - B_test_s) / H``. The numerator pairs the run with B's run of the
same seed (same student initialisation and batch order), so the spread both share cancels; the
denominator is one number per regime, as the Atari human-normalised score has one per game: a
per-seed denominator would blow up on a seed where R happens to tie B. B scores 0 on every seed, R 1 on
average.

A regime where H's paired 95% interval reaches 0 (the reference does not clearly beat the best
baseline) has **no headroom**: a score there would divide by noise, zero, or flip its sign, so the
regime is reported as such and left out of the aggregate. So is a regime that lacks a baseline or a reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.report import Summary, headroom_summary, successful_runs
from experiments.results import RunRecord

ScoresByRegime = dict[str, dict[str, dict[int, float]]]
"""Regime -> entry label -> seed -> normalised score."""


@dataclass(frozen=True)
class RegimeScale:
    """A regime's zero (the best baseline) and its unit (the headroom to the privileged reference)."""

    regime: str
    baseline: str | None
    reference: str | None
    baseline_accuracy: Summary
    reference_accuracy: Summary
    headroom: Summary
    """Reference minus baseline, test accuracy, paired by seed."""

    @property
    def scored(self) -> bool:
        """Headroom whose paired 95% interval lies above 0: a denominator at noise level would blow the
        scores up (a headroom of +0.0002 turned a 1-point gain into a score of 50)."""
        return self.headroom.n > 1 and self.headroom.lower > 0

    @property
    def status(self) -> str:
        if self.baseline is None or self.reference is None:
            return "not measured: needs no_kd, avg_kd or a single teacher, and correct_teachers or oracle"
        if self.headroom.n == 0:
            return "not measured: no seed ran both the baseline and the reference"
        if self.scored:
            return "scored"
        return "no headroom: left out of the aggregate" if self.headroom.mean <= 0 else "headroom within noise (interval reaches 0): left out of the aggregate"


def regime_scales(records: list[RunRecord]) -> list[RegimeScale]:
    """One ``RegimeScale`` per task of ``records``."""
    runs = successful_runs(records)

    def test_accuracy(task: str, label: str | None) -> Summary:
        return Summary.of([r.test_accuracy for r in runs.get((task, label), {}).values()])

    return [
        RegimeScale(h.task, h.best_of_three, h.reference, test_accuracy(h.task, h.best_of_three),
                    test_accuracy(h.task, h.reference), h.vs_best_of_three)
        for h in headroom_summary(records)
    ]


def normalised_scores(records: list[RunRecord], scales: list[RegimeScale]) -> ScoresByRegime:
    """The normalised test accuracy of every successful run of a scored regime whose seed the baseline also ran."""
    runs = successful_runs(records)
    scores: ScoresByRegime = {}
    for scale in scales:
        if not scale.scored:
            continue
        baseline = runs[(scale.regime, scale.baseline)]
        scores[scale.regime] = {
            entry: {seed: (run.test_accuracy - baseline[seed].test_accuracy) / scale.headroom.mean
                    for seed, run in sorted(by_seed.items()) if seed in baseline}
            for (task, entry), by_seed in sorted(runs.items()) if task == scale.regime
        }
    return scores
