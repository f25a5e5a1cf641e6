"""The benchmark suite: agents x regimes (``kd_env.regimes``) x seeds through the comparison grid.

Every regime runs, besides the agents asked for, what its normalised score needs
(``experiments.normalised``): the baselines ``no_kd``, ``avg_kd`` and ``best_teacher``, and the
privileged reference ``correct_teachers`` (and ``oracle`` where the task knows each instance's
experts). Each regime is one grid, reported under its versioned name, with its own epochs; all write
one results file, so an interrupted suite re-run skips what is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from experiments.compare import GridEntry, Preset, run_grid
from experiments.grids import check_stages, grid_entry
from experiments.presets import AVG_KD, BEST_TEACHER, CORRECT_TEACHERS, NO_KD, ORACLE
from experiments.results import RunRecord, read_records
from kd_env.errors import UserError
from kd_env.regimes import get_regime, regime_names

REQUIRED = (NO_KD, AVG_KD, BEST_TEACHER, CORRECT_TEACHERS)
"""What every regime runs for its normalised score: the three baselines and the privileged reference."""
DEFAULT_AGENTS = ("reinforce:probe_alignment+mlp32+labelled_probe", "reinforce", "ca_mkd", "mtkd_rl")
"""The learned selector the headroom map picked by dev (docs/results.md), the paper's selector with the
batch-label reward, a classic weighting rule and MTKD-RL."""
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
NAME = "suite"
"""The preset name of every regime's grid (part of each run's key)."""


def benchmark_regimes() -> tuple[str, ...]:
    """The regimes a suite runs by default: every registered one but those meant for tests."""
    return tuple(name for name in regime_names() if get_regime(name).benchmark)


@dataclass(frozen=True)
class SuiteSpec:
    """Which regimes, agents and seeds; checked on construction, before anything is computed."""

    regimes: tuple[str, ...] = field(default_factory=benchmark_regimes)
    agents: tuple[str, ...] = DEFAULT_AGENTS
    seeds: tuple[int, ...] = DEFAULT_SEEDS

    def __post_init__(self) -> None:
        if not self.regimes or not self.agents or not self.seeds:
            raise UserError("a suite needs at least one regime, one agent and one seed")
        for name in self.regimes:
            regime = get_regime(name)
            for entry in self.entries(name):
                check_stages(entry, regime.epochs)
                if entry.agent == ORACLE.agent and not regime.known_answer:
                    raise UserError(f"oracle needs a task with a known answer; regime {name!r} ({regime.task}) has none, and "
                                    f"correct_teachers is its privileged reference")

    def entries(self, regime: str) -> tuple[GridEntry, ...]:
        """The regime's baselines and references, then the agents' recipes (``experiments.grids``)."""
        required = REQUIRED + ((ORACLE,) if get_regime(regime).known_answer else ())
        entries = {entry.label: entry for entry in required}
        for entry in map(grid_entry, self.agents):
            entries.setdefault(entry.label, entry)
        return tuple(entries.values())

    def presets(self) -> list[Preset]:
        """One grid per regime."""
        return [
            Preset(name=NAME, tasks=(name,), seeds=self.seeds, epochs=get_regime(name).epochs, common_env_kwargs={},
                   entries=self.entries(name), single_teachers=False, regimes={name: get_regime(name).env_kwargs()})
            for name in self.regimes
        ]

    def records(self, results: str | Path) -> list[RunRecord]:
        """The runs of ``results`` this suite is made of: its regimes, entries and seeds."""
        wanted = {(name, entry.label) for name in self.regimes for entry in self.entries(name)}
        return [r for r in read_records(results) if (r.task, r.entry) in wanted and r.seed in self.seeds]


def run_suite(spec: SuiteSpec, results: str | Path, logdir: str | Path, workers: int = 1, threads: int | None = None) -> int:
    """Run every (regime, entry, seed) not yet in ``results``, regime by regime; returns how many runs it made."""
    return sum(run_grid(preset, results, logdir, workers, threads=threads) for preset in spec.presets())
