"""Each pool teacher's accuracy on the test split, inside and outside its domain, as a markdown table.

A domain teacher is only worth selecting where it is competent: this table says where that is. It
prepares (or reads from the cache) the pools' teachers on the task, with the real offline encoders.
Teachers without a slice have no domain: their in-domain column is their overall accuracy. The last
column of each pool is how many of its teachers each test instance is in-domain for (share of test).

    OMP_NUM_THREADS=1 python scripts/pool_accuracy.py                     # zoo and zoo-mixed on tweets
    OMP_NUM_THREADS=1 python scripts/pool_accuracy.py --pools specialists --task bbc-news
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

from kd_env.tasks.text_data import prepare_text_task
from kd_env.teachers import resolve_teacher_specs, teacher_slices


def pool_rows(task_name: str, pool: str) -> tuple[list[str], str]:
    """The table rows of one pool's teachers, and its coverage line (test instances by in-domain count)."""
    text_task, cache, _, preparation = prepare_text_task(task_name, pool)
    specs = resolve_teacher_specs(pool)
    masks = teacher_slices(text_task, specs, preparation)
    rows, covered = [], np.zeros(len(text_task.splits["test"]), dtype=int)
    for spec in specs:
        meta = cache.entry(spec.name).meta
        test = meta["accuracy"]["test"]
        inside = meta["slice_accuracy"].get("test", {}).get("in_slice", test)
        outside = meta["slice_accuracy"].get("test", {}).get("outside_slice", float("nan"))
        in_domain = masks[spec.slice]["test"] if spec.slice is not None else np.ones_like(covered, dtype=bool)
        covered += in_domain
        rows.append(f"| {pool} | {spec.name} | {spec.encoder} | {spec.slice or 'all'} | {in_domain.mean():.2f} | "
                    f"{inside:.3f} | {outside:.3f} | {test:.3f} |")
    counts = np.bincount(covered)
    coverage = ", ".join(f"{k}: {share:.2f}" for k, share in enumerate(counts / counts.sum()) if share > 0)
    return rows, f"{pool}: test instances by number of in-domain teachers: {coverage}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="twitter-sentiment")
    parser.add_argument("--pools", nargs="+", default=["zoo", "zoo-mixed"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    table = ["| pool | teacher | encoder | domain | share of test in domain | test acc in domain | out of domain | all |",
             "|---|---|---|---|---|---|---|---|"]
    coverage = []
    for pool in args.pools:
        rows, line = pool_rows(args.task, pool)
        table += rows
        coverage.append(line)
    print(f"task {args.task}\n")
    print("\n".join(table))
    print()
    print("\n".join(coverage))


if __name__ == "__main__":
    main()
