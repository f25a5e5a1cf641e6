"""Run a comparison grid (agents x tasks x seeds) and write its tables and plots.

    python scripts/compare.py --preset quick          # the README's main job
    python scripts/compare.py --preset full --workers 2
    python scripts/compare.py --preset quick --report-only

Results are appended to <out>/results.jsonl as runs finish; re-running skips finished runs.
Outputs in <out>/: table.md, table.csv, single_teachers.md, accuracy.png, curves.png, selection.png;
TensorBoard runs in --logdir.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from experiments.compare import run_grid
from experiments.plots import plot_accuracy, plot_curves, plot_selection
from experiments.presets import PRESETS
from experiments.report import markdown_table, single_teacher_table, summarise, write_csv
from experiments.results import read_records


def write_report(results: Path, out: Path) -> str:
    records = read_records(results)
    rows = summarise(records)
    table = markdown_table(rows)
    singles = single_teacher_table(records)
    (out / "table.md").write_text(table)
    (out / "single_teachers.md").write_text(singles)
    write_csv(rows, out / "table.csv")
    plot_accuracy(rows, out / "accuracy.png")
    plot_curves(records, out / "curves.png")
    plot_selection(records, out / "selection.png")
    return table + ("\n" + singles if singles else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    parser.add_argument("--out", type=Path, help="output folder (default results/<preset>)")
    parser.add_argument("--logdir", type=Path, default=Path("runs"), help="TensorBoard runs")
    parser.add_argument("--workers", type=int, default=1, help="runs in parallel processes (CPU threads are shared out)")
    parser.add_argument("--report-only", action="store_true", help="only rebuild tables and plots")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = args.out or Path("results") / args.preset
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if not args.report_only:
        made = run_grid(PRESETS[args.preset], out / "results.jsonl", args.logdir, args.workers)
        print(f"{made} new runs in {time.perf_counter() - start:.0f} s")
    print(write_report(out / "results.jsonl", out))
    print(f"tables and plots in {out}/")


if __name__ == "__main__":
    main()
