"""N seeds of one grid entry learning together over one core, against the same seeds run one by one.

    python scripts/bench_population.py --seeds 5 --rounds 2 [--baseline-tree PATH]

The ``demo`` regime (twitter-sentiment, biased-specialists teachers, ``bow`` student, the
``recommended`` settings, 10 epochs), with the ``avg_kd`` and ``reinforce`` entries of the demo
preset. In alternating rounds of one run: ``run_grid`` with every entry's seeds as one population
(``agents.population``), and ``run_grid`` with each seed alone, each into a fresh results file.
Wall clock and CPU time (this process, all threads) of each; then the records of the two ways,
compared run by run. Teachers are prepared (and cached) before the clock starts.

With ``--baseline-tree PATH`` (a checkout of an earlier commit): the same grid, each seed alone, run by
that tree's code in a child process, in the same rounds: what the change gains over the code before it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import torch

import kd_env  # noqa: F401  (registers the ids)
from experiments.compare import run_grid
from experiments.presets import AVG_KD, PRESETS, REINFORCE
from experiments.results import read_records

BASELINE_CHILD = """
import json, resource, sys, time
from experiments.compare import run_grid
from experiments.presets import AVG_KD, PRESETS, REINFORCE
import dataclasses, torch
seeds, results, logdir = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
torch.set_num_threads(1)
preset = dataclasses.replace(PRESETS["demo"], seeds=tuple(seeds), entries=(AVG_KD, REINFORCE))
wall, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
run_grid(preset, results, logdir)
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps([time.perf_counter() - wall, after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime]))
"""


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed_grid(preset, folder: Path, population: bool) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    run_grid(preset, folder / "results.jsonl", folder / "runs", population_seeds=population)
    return time.perf_counter() - wall, cpu_seconds() - cpu


def timed_baseline(tree: Path, seeds: list[int], folder: Path) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    output = subprocess.run([sys.executable, "-c", BASELINE_CHILD, json.dumps(seeds), str(folder / "results.jsonl"), str(folder / "runs")],
                            cwd=tree, env=env, check=True, capture_output=True, text=True).stdout
    return tuple(json.loads(output.strip().splitlines()[-1]))


def compare_records(a: Path, b: Path) -> tuple[int, float, float]:
    """(runs, largest test-accuracy difference, largest dev-accuracy difference) between two results files."""
    first = {record.key: record for record in read_records(a)}
    second = {record.key: record for record in read_records(b)}
    if first.keys() != second.keys():
        raise RuntimeError(f"the two ways made different runs: {sorted(set(first) ^ set(second))}")
    test = max(abs(first[key].test_accuracy - second[key].test_accuracy) for key in first)
    dev = max(abs(first[key].dev_accuracy - second[key].dev_accuracy) for key in first)
    return len(first), test, dev


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline-tree", metavar="PATH", help="also time an earlier checkout's separate runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    preset = dataclasses.replace(PRESETS["demo"], seeds=tuple(seeds), entries=(AVG_KD, REINFORCE))
    regime = preset.regimes[preset.tasks[0]]
    gym.make("kd_env/TeacherSelection-v1", **{**preset.common_env_kwargs, **regime})  # prepares and caches the teachers

    ways = ["population", "separate"] + (["baseline"] if args.baseline_tree else [])
    times: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(args.rounds):
            for way in ways:
                folder = Path(scratch) / f"{way}-{round_index}"
                folder.mkdir()
                if way == "baseline":
                    times[way].append(timed_baseline(Path(args.baseline_tree).resolve(), seeds, folder))
                else:
                    times[way].append(timed_grid(preset, folder, population=way == "population"))
        runs, test_gap, dev_gap = compare_records(Path(scratch) / "population-0" / "results.jsonl",
                                                  Path(scratch) / "separate-0" / "results.jsonl")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"demo regime (bow student), entries avg_kd and reinforce, {args.seeds} seeds each; 1 torch thread; "
          f"load average {load}; medians of {args.rounds} alternating rounds")
    medians = {way: (statistics.median(t[0] for t in values), statistics.median(t[1] for t in values)) for way, values in times.items()}
    print("| way | wall s | CPU s |")
    print("|---|---|---|")
    for way, (wall, cpu) in medians.items():
        print(f"| {way} | {wall:.1f} | {cpu:.1f} |")
    population = medians["population"]
    for way in ways[1:]:
        wall, cpu = medians[way]
        print(f"{way} / population: {wall / population[0]:.2f}x wall, {cpu / population[1]:.2f}x CPU")
    print(f"records: {runs} runs each way; largest |difference| in test accuracy {test_gap:.4f}, in dev accuracy {dev_gap:.4f}")


if __name__ == "__main__":
    main()
